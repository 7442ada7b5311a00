//go:build !race

package usage

import "testing"

func TestFindAllocs(t *testing.T) {
	data := []byte(openAIStream + anthropicStream)
	if n := testing.AllocsPerRun(100, func() { Find(data) }); n != 0 {
		t.Fatalf("Find allocates %v times per run", n)
	}
}

func TestInjectIncludeUsageAllocs(t *testing.T) {
	body := []byte(`{"model":"m","stream":true}`)
	dst := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { InjectIncludeUsage(dst[:0], body) }); n != 0 {
		t.Fatalf("InjectIncludeUsage allocates %v times per run", n)
	}
}
