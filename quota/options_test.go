package quota

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name      string
		give      Options
		wantField string
	}{
		{"default negative", Options{Default: -5}, "default"},
		{"burst negative", Options{Burst: -1}, "burst"},
		{"tenant zero", Options{Tenants: map[string]int{"acme": 0}}, "tenants.acme"},
		{"tenant below unlimited", Options{Tenants: map[string]int{"acme": -2}}, "tenants.acme"},
		{"key zero", Options{Keys: map[string]int{"k1": 0}}, "keys.k1"},
		{"tokens negative", Options{TokensPerMinute: -1}, "tokens_per_minute"},
		{"tenant tokens negative", Options{TenantTokens: map[string]int64{"acme": -1}}, "tenant_tokens.acme"},
		{"policy", Options{OnRedisError: "ignore"}, "on_redis_error"},
		{"timeout", Options{Timeout: -1}, "timeout"},
		{"lease negative", Options{Lease: -1}, "lease"},
		{"lease ttl negative", Options{LeaseTTL: -1}, "lease_ttl"},
		{"prefix tag", Options{KeyPrefix: "rl:{x}:"}, "key_prefix"},
		{"empty addr", Options{RedisAddr: "a:1,,b:2"}, "redis_addr"},
		{"default past the largest limit", Options{Default: MaxLimit + 1}, "default"},
		{"burst past the largest limit", Options{Burst: MaxLimit + 1}, "burst"},
		{"tenant past the largest limit", Options{Tenants: map[string]int{"acme": MaxLimit + 1}}, "tenants.acme"},
		{"key past the largest limit", Options{Keys: map[string]int{"k1": MaxLimit + 1}}, "keys.k1"},
		{"tokens past the largest limit", Options{TokensPerMinute: MaxLimit + 1}, "tokens_per_minute"},
		{"tenant tokens past the largest limit", Options{TenantTokens: map[string]int64{"acme": MaxLimit + 1}}, "tenant_tokens.acme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.give)
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Field != tt.wantField {
				t.Fatalf("New: %v, want an *OptionError for %s", err, tt.wantField)
			}
			if !strings.HasPrefix(err.Error(), "quota: "+tt.wantField+"=") {
				t.Fatalf("message %q does not name the field", err)
			}
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	l, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o := l.o
	if o.Default != 100 || o.OnRedisError != OnErrorLocal || o.Timeout <= 0 || o.KeyPrefix != "relay:rl:" || o.Logger == nil ||
		o.Lease != 16 || o.LeaseTTL != time.Second {
		t.Fatalf("defaults not applied: %+v", o)
	}
	if lim := o.fileLimits("acme"); lim.burst != 100 {
		t.Fatalf("burst default %d, want a minute's worth (100)", lim.burst)
	}
	if l.redis != nil {
		t.Fatal("no RedisAddr must mean in-process buckets")
	}
}

// TestProbeKeysShareASlot: the probe's script keys carry one hash tag, so
// that a Redis Cluster takes them in one script (it refuses keys of several
// slots; rueidis's cluster client panicked on them, with no tenant yet at a
// start without Redis).
func TestProbeKeysShareASlot(t *testing.T) {
	o := Options{KeyPrefix: "relay:rl:"}
	for _, ts := range []*tenantState{nil, {name: "acme"}} {
		keys := o.probeKeys(ts)
		tag := hashTag(keys[0])
		if tag == "" {
			t.Errorf("%v: key %s has no hash tag", ts, keys[0])
		}
		for _, k := range keys[1:] {
			if hashTag(k) != tag {
				t.Errorf("%v: keys %v are in different slots", ts, keys)
			}
		}
	}
}

// hashTag is the part of key a Redis Cluster hashes: the first {...} with
// something in it, "" for none (then the whole key is hashed).
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return ""
	}
	return key[i+1 : i+1+j]
}
