//go:build !race

package quota

import (
	"context"
	"testing"
)

func TestLocalDecisionDoesNotAllocate(t *testing.T) {
	l, err := New(Options{
		Default:         1 << 30,
		TokensPerMinute: MaxLimit,
		Keys:            map[string]int{"k1": 1 << 30},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	tests := []struct{ name, tenant, key string }{
		{"tenant", "acme", ""},
		{"tenant and key", "acme", "k1"},
		{"key without limit", "acme", "k2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l.Take(ctx, tt.tenant, tt.key) // creates the buckets once
			if n := testing.AllocsPerRun(1000, func() { l.Take(ctx, tt.tenant, tt.key) }); n != 0 {
				t.Fatalf("Take allocates %v times per decision, want 0", n)
			}
		})
	}
	t.Run("debit", func(t *testing.T) {
		if n := testing.AllocsPerRun(1000, func() { l.Debit(ctx, "acme", 1) }); n != 0 {
			t.Fatalf("Debit allocates %v times, want 0", n)
		}
	})
}
