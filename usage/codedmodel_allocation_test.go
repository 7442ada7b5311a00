//go:build !race

package usage

import (
	"strings"
	"testing"
)

// TestCodedModelAllocation: a gzip body that inflates far past the bound
// costs a decoder and a buffer from the pools, not what it inflates to (it
// allocated 21 MB for 9 KB, and 41 KB for every gzip request).
func TestCodedModelAllocation(t *testing.T) {
	bomb := gzipped(t, `{"messages":[{"role":"user","content":"`+strings.Repeat("0", 64<<20)+`"}],"model":"m"}`)
	small := gzipped(t, `{"model":"gpt-4o"}`)
	CodedModel([]byte("gzip"), small) // the pools' first decoder and buffer
	for _, tt := range []struct {
		name string
		body []byte
	}{{"bomb", bomb}, {"small", small}} {
		if allocs := testing.AllocsPerRun(20, func() { CodedModel([]byte("gzip"), tt.body) }); allocs > 4 {
			t.Errorf("%s: %.0f allocations a call; want the pooled decoder and buffer (at most 4)", tt.name, allocs)
		}
	}
}
