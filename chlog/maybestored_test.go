package chlog

import (
	"fmt"
	"testing"
)

// TestMaybeStored: an exception that can come after the insert wrote its
// part (a throwing materialized view: any code) is checked before a
// re-send; one a query gets before it runs (the password, the grants, a
// quota), a broken block (reject), or an error without an exception is not.
func TestMaybeStored(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&Exception{Status: 500, Code: 395, Message: "view threw"}, true},
		{&Exception{Status: 500, Code: 60, Message: "table does not exist"}, true},
		{&Exception{Status: 500, Code: 252, Message: "too many parts"}, true},
		{&Exception{Status: 516, Code: 516, Message: "authentication failed"}, false},
		{&Exception{Status: 403, Code: 193, Message: "wrong password"}, false},
		{&Exception{Status: 500, Code: 202, Message: "too many simultaneous queries"}, false},
		{&Exception{Status: 500, Code: 81, Message: "database does not exist"}, false},
		{&Exception{Status: 400, Code: 33, Message: "cannot read all data"}, false},
		{fmt.Errorf("chlog: insert: %w", &Exception{Status: 500, Code: 201, Message: "quota"}), false},
		{fmt.Errorf("dial: refused"), false},
	} {
		if got := maybeStored(tt.err); got != tt.want {
			t.Errorf("maybeStored(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
