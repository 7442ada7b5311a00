package quota

import "github.com/redis/rueidis"

// override is what a tenant's Redis override hash (relay:rl:{tenant}:cfg)
// sets. rpm and burst are 0 when the hash does not set them (or sets an
// invalid value); tpm counts only with hasTPM, 0 being a valid budget (off).
type override struct {
	rpm, burst, tpm int64
	hasTPM          bool
}

// with merges ov into the tenant's file limits. A new rate without a burst
// of its own gets the file's burst rule.
func (ts *tenantState) with(ov override) limits {
	lim := ts.file
	if ov.rpm != 0 {
		lim.rpm = ov.rpm
	}
	if ov.hasTPM {
		lim.tpm = ov.tpm
	}
	switch {
	case ov.burst > 0:
		lim.burst = ov.burst
	case lim.rpm != ts.file.rpm:
		lim.burst = ts.fileBurst(lim.rpm)
	}
	return lim
}

// ignoredValue is the last value of one override field that overridden
// ignored and warned about.
type ignoredValue struct {
	v   string
	set bool
}

// overridden reads the tenant's override hash (HMGET rpm burst tpm) and
// merges it into the file limits. Malformed or out-of-range fields (rpm 0
// or below -1, burst 0 or below, tpm below 0, any above MaxLimit, anything
// not an integer) are
// ignored: an operator's typo must not lift or zero a limit. Each one is
// logged once per tenant, field and value (ignoredOverride); a valid hash
// costs nothing more.
func (l *Limiter) overridden(ts *tenantState, r rueidis.RedisResult) (limits, override, error) {
	var ov override
	vals, err := r.ToArray()
	if err != nil {
		return limits{}, ov, err
	}
	if len(vals) == len(cfgFields) {
		for i := range vals {
			m := &vals[i]
			if m.IsNil() {
				continue
			}
			v, err := m.AsInt64()
			switch {
			case err != nil, v > MaxLimit:
			case i == 0 && (v > 0 || v == Unlimited):
				ov.rpm = v
				continue
			case i == 1 && v > 0:
				ov.burst = v
				continue
			case i == 2 && v >= 0:
				ov.tpm, ov.hasTPM = v, true
				continue
			}
			l.ignoredOverride(ts, i, m)
		}
	}
	return ts.with(ov), ov, nil
}

// maxLoggedValue bounds the part of an ignored value that is logged.
const maxLoggedValue = 64

// ignoredOverride warns that the tenant's override field i holds a value
// overridden ignores, once per tenant, field and value: the value is read
// by every decision (from the client-side cache) while it stays.
func (l *Limiter) ignoredOverride(ts *tenantState, i int, m *rueidis.RedisMessage) {
	v, _ := m.ToString()
	ts.mu.Lock()
	seen := ts.ignored[i]
	if seen.set && seen.v == v {
		ts.mu.Unlock()
		return
	}
	ts.ignored[i] = ignoredValue{v: v, set: true}
	ts.mu.Unlock()
	if len(v) > maxLoggedValue {
		v = v[:maxLoggedValue] + "..."
	}
	l.o.Logger.Warn("quota: ignored an invalid value in a tenant's override hash; the file's limit applies",
		"tenant", ts.name, "key", ts.cfgKey, "field", cfgFields[i], "value", v, "want", cfgWant[i])
}

// cfgWant says, per field of cfgFields, which values an override may take.
var cfgWant = [...]string{
	"an integer from 1 to 10^12, or -1 for unlimited",
	"an integer from 1 to 10^12",
	"an integer from 0 to 10^12 (0 = no token budget)",
}
