package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/stream-relay/stream-relay/chlog"
)

// lookupFailed returns the error for a miss that is no answer: a directory
// under spool_dir exists but could not be listed (spool_dir a regular file,
// permissions), or ClickHouse is configured and none of its nodes could be
// asked (unreachable, database or table missing, credentials refused), so
// the row may well be there. It returns nil for a clean miss: every
// directory was read (or does not exist yet) and a node answered, or there
// is no ClickHouse (embedded mode: the files are all there is).
//
// Find asks the nodes last, in order, stopping at the first that answers,
// and records each failure as "clickhouse: CAUSE": when none answered, the
// last len(nodes) failures are the nodes', in the same order.
//
// A miss on the shards that answered while another shard of the cluster
// did not is no answer either: the row may be on that shard.
func lookupFailed(nf *chlog.NotFoundError) error {
	var nodes, local []string
	for _, l := range nf.Looked {
		if strings.HasPrefix(l, "clickhouse ") {
			nodes = append(nodes, l)
		} else {
			local = append(local, l)
		}
	}
	if len(nf.Unreadable) > 0 {
		msg := fmt.Sprintf("request_id %s could not be looked up: %s (looked in: %s)",
			nf.ID, strings.Join(nf.Unreadable, "; "), strings.Join(nf.Looked, "; "))
		if other := slices.DeleteFunc(slices.Clone(nf.Failed), func(f string) bool { return slices.Contains(nf.Unreadable, f) }); len(other) > 0 {
			msg += "; also failed: " + strings.Join(other, "; ")
		}
		return errors.New(msg)
	}
	if len(nf.Unanswered) > 0 {
		msg := fmt.Sprintf("request_id %s could not be looked up: %s (%s); the local files do not hold it (looked in: %s)",
			nf.ID, nf.UnansweredText(), nodes[len(nodes)-1], strings.Join(local, "; "))
		if len(nf.Failed) > 0 {
			msg += "; also failed: " + strings.Join(nf.Failed, "; ")
		}
		return errors.New(msg)
	}
	if len(nodes) == 0 || len(nf.Failed) < len(nodes) {
		return nil
	}
	other, tail := nf.Failed[:len(nf.Failed)-len(nodes)], nf.Failed[len(nf.Failed)-len(nodes):]
	causes := make([]string, len(nodes))
	for i, f := range tail {
		cause, ok := strings.CutPrefix(f, "clickhouse: ")
		if !ok {
			return nil // a node answered: the failures before it are not all ClickHouse's
		}
		causes[i] = nodes[i] + ": " + cause
	}
	msg := fmt.Sprintf("request_id %s could not be looked up: %s; the local files do not hold it (looked in: %s)",
		nf.ID, strings.Join(causes, "; "), strings.Join(local, "; "))
	if len(other) > 0 {
		msg += "; also failed: " + strings.Join(other, "; ")
	}
	return errors.New(msg)
}
