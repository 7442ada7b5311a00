package telemetry

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/upstream"
)

// TestExpositionMetadata: with every scrape-time source set, the
// exposition parses strictly (servicetest.ParseExposition: one TYPE and at
// most one HELP per family, before its samples; coherent histograms and
// summaries), every family has its TYPE, and the relay's families are
// exactly those of the families table, each with its type and its one-line
// description. The library's own families keep their TYPE; an empty HELP
// is dropped.
func TestExpositionMetadata(t *testing.T) {
	m := withTraffic("openai", "tts")
	m.SetStorageNodeErrors(func() []chlog.NodeErrors {
		return []chlog.NodeErrors{{Node: "ch1:8123", Errors: 2}, {Node: "ch2:8123"}}
	})
	m.SetUpstreams(func() []upstream.TargetStatus {
		return []upstream.TargetStatus{{Route: "openai", Target: "0", Healthy: true}, {Route: "openai", Target: "backup", Ejections: 1}}
	})
	m.ConfigReloaded(true)
	m.SetCertExpiry(func() time.Time { return time.Unix(1893456000, 0) })
	var buf bytes.Buffer
	m.WritePrometheus(&buf)
	fams, err := servicetest.ParseExposition(buf.Bytes())
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.Bytes())
	}
	for name, f := range fams {
		if f.Type == "" {
			t.Errorf("%s has no TYPE", name)
		}
		if !strings.HasPrefix(name, "relay_") {
			continue
		}
		want, ok := families[name]
		switch {
		case !ok:
			t.Errorf("%s is exported but missing from families", name)
		case f.Type != want.typ || f.Help != want.help:
			t.Errorf("%s: TYPE %q, HELP %q; want %q, %q", name, f.Type, f.Help, want.typ, want.help)
		case f.Type == "histogram" && f.Counted != f.Series:
			t.Errorf("%s: %d of %d series have _sum and _count", name, f.Counted, f.Series)
		}
	}
	for name, f := range families {
		if fams[name] == nil {
			t.Errorf("families describes %s, which is not exported", name)
		}
		if f.help == "" || strings.ContainsAny(f.help, "\\\n") || !strings.HasSuffix(f.help, ".") {
			t.Errorf("%s: HELP %q is not one plain sentence", name, f.help)
		}
	}
	for _, library := range []string{"go_goroutines", "process_open_fds", "go_gc_duration_seconds"} {
		if f := fams[library]; f == nil || f.Type == "" {
			t.Errorf("%s: %+v, want a TYPE", library, f)
		}
	}
	if bytes.Contains(buf.Bytes(), []byte("# HELP go_goroutines\n")) {
		t.Error("an empty HELP line is written")
	}
}
