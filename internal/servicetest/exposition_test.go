package servicetest

import (
	"strings"
	"testing"
)

// TestParseExposition: a valid exposition with each family type parses to
// its families; each broken one is refused for its own reason.
func TestParseExposition(t *testing.T) {
	good := `# HELP req_total Requests.
# TYPE req_total counter
req_total{route="a",status="200"} 3
req_total{route="b", status="200"} 1 1700000000000
# TYPE up gauge
up 1
# HELP lat_ms Latency.
# TYPE lat_ms histogram
lat_ms_bucket{route="a",le="10"} 1
lat_ms_bucket{route="a",le="+Inf"} 3
lat_ms_sum{route="a"} 40.5
lat_ms_count{route="a"} 3
lat_ms_bucket{route="b",le="10"} 0
lat_ms_bucket{route="b",le="+Inf"} 0
lat_ms_sum{route="b"} 0
lat_ms_count{route="b"} 0
# TYPE rt_seconds histogram
rt_seconds_bucket{le="0.1"} 2
rt_seconds_bucket{le="+Inf"} 2
# TYPE gc_seconds summary
gc_seconds{quantile="0"} 0.1
gc_seconds{quantile="1"} 0.3
gc_seconds_sum 1.5
gc_seconds_count 9
# a comment
`
	fams, err := ParseExposition([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Family{
		"req_total":  {Type: "counter", Help: "Requests.", Series: 2},
		"up":         {Type: "gauge", Series: 1},
		"lat_ms":     {Type: "histogram", Help: "Latency.", Series: 2, Counted: 2},
		"rt_seconds": {Type: "histogram", Series: 1},
		"gc_seconds": {Type: "summary", Series: 1, Counted: 1},
	}
	if len(fams) != len(want) {
		t.Errorf("%d families, want %d", len(fams), len(want))
	}
	for name, w := range want {
		if f := fams[name]; f == nil || *f != w {
			t.Errorf("%s = %+v, want %+v", name, f, w)
		}
	}
	if _, err := ParseExposition([]byte("# TYPE esc gauge\n" + `esc{v="a\"b\\c\nd"} NaN` + "\n")); err != nil {
		t.Errorf("escaped label value: %v", err)
	}

	for _, tt := range []struct{ name, text, err string }{
		{"no type", "x 1\n", "before any TYPE"},
		{"other family's type", "# TYPE a gauge\na 1\nb 2\n", "not of family a"},
		{"split family", "# TYPE a gauge\na{k=\"1\"} 1\n# TYPE b gauge\nb 1\na{k=\"2\"} 1\n", "not of family b"},
		{"second type", "# TYPE a gauge\n# TYPE a gauge\n", "second TYPE"},
		{"second help", "# HELP a x\n# HELP a y\n", "second HELP"},
		{"type after samples", "# TYPE a gauge\na 1\n# TYPE b gauge\n# TYPE a gauge\n", "after its samples"},
		{"help after samples", "# TYPE a gauge\na 1\n# HELP a late\n", "after its samples"},
		{"repeated series", "# TYPE a gauge\na{k=\"1\"} 1\na{k=\"1\"} 2\n", "twice"},
		{"unknown type", "# TYPE a meter\n", "unknown type"},
		{"bucket outside histogram", "# TYPE a counter\na_bucket{le=\"1\"} 1\n", "in counter"},
		{"no +Inf", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", "+Inf"},
		{"count differs", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n", "_count"},
		{"not cumulative", "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\n", "less than"},
		{"sum without count", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\n", "together"},
		{"bad value", "# TYPE a gauge\na one\n", "value"},
		{"bad label", "# TYPE a gauge\na{k=1} 1\n", "not quoted"},
		{"no final line feed", "# TYPE a gauge\na 1", "line feed"},
	} {
		_, err := ParseExposition([]byte(tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: err %v, want one with %q", tt.name, err, tt.err)
		}
	}
}
