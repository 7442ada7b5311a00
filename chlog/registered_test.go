package chlog

import "testing"

func TestSQLStringAndUnescapeTSV(t *testing.T) {
	for in, want := range map[string]string{
		"/clickhouse/tables/01/db.t/replicas/r1": "'/clickhouse/tables/01/db.t/replicas/r1'",
		`it's`:                                   `'it\'s'`,
		`a\b`:                                    `'a\\b'`,
		``:                                       `''`,
		`\'`:                                     `'\\\''`,
	} {
		if got := sqlString(in); got != want {
			t.Errorf("sqlString(%q) = %s; want %s", in, got, want)
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
