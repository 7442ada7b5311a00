package chlog

import (
	"strings"
	"testing"
)

func TestQuoteStringAndUnescapeTSV(t *testing.T) {
	for in, want := range map[string]string{
		"/clickhouse/tables/01/db.t/replicas/r1": "'/clickhouse/tables/01/db.t/replicas/r1'",
		`it's`:                                   `'it\'s'`,
		`a\b`:                                    `'a\\b'`,
		``:                                       `''`,
		`\'`:                                     `'\\\''`,
	} {
		if got := quoteString(in); got != want {
			t.Errorf("quoteString(%q) = %s; want %s", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"20261201_1_1_0": "20261201_1_1_0",
		`a\tb\nc\\d\'e`:  "a\tb\nc\\d'e",
		`end\`:           `end\`,
	} {
		if got := unescapeTSV(in); got != want {
			t.Errorf("unescapeTSV(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestReplicaTemplate(t *testing.T) {
	engine := `ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}.{table}', '{replica}') PARTITION BY toYYYYMMDD(created_at)`
	args := quotedArgs(engine, 2)
	if len(args) != 2 || args[0] != "/clickhouse/tables/{shard}/{database}.{table}" || args[1] != "{replica}" {
		t.Fatalf("quotedArgs = %q", args)
	}
	if got := quotedArgs(`E('a\'b', 'c\\d')`, 2); len(got) != 2 || got[0] != "a'b" || got[1] != `c\d` {
		t.Fatalf("escaped quotedArgs = %q", got)
	}
	tpl := replicaTemplate{path: args[0], replica: args[1], db: "relay", table: "stream_logs_local"}
	path, err := tpl.replicaPath("launch" + macroSep + "/x" + pairSep + "replica" + macroSep + "r2" + pairSep + "shard" + macroSep + "02")
	if err != nil || path != "/clickhouse/tables/02/relay.stream_logs_local/replicas/r2" {
		t.Fatalf("replicaPath = %q, %v", path, err)
	}
	if _, err := tpl.replicaPath("shard" + macroSep + "01"); err == nil || !strings.Contains(err.Error(), "{replica}") {
		t.Fatalf("replicaPath without the replica macro: %v; want an error naming it", err)
	}
	if _, err := expandMacros("/a/{shard", map[string]string{"shard": "1"}); err == nil {
		t.Fatal("an unclosed macro expanded")
	}
}
