package quota

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"sync/atomic"

	"github.com/redis/rueidis"
)

// bucketSHA is the SHA1 that EVALSHA names bucket.lua by.
var bucketSHA = func() string {
	sum := sha1.Sum([]byte(bucketLua))
	return hex.EncodeToString(sum[:])
}()

// The commands of a decision are built once per tenant (and relay key) and
// pinned, so rueidis never recycles them and every decision sends the same
// command values: no builder, key or argument string per decision. A
// command is built by the builder of the client that runs it; the store's
// client is created once and never replaced, so the commands stay valid.

// readCmds are a tenant's or key's client-side cached reads.
type readCmds struct {
	blk rueidis.Cacheable // GET blocked-until key
	cfg rueidis.Cacheable // HMGET override hash (tenants only)
}

// takeCmd is the EVALSHA take of one tenant (or tenant and key) for the
// limits and lease size it was built with. keys and args rebuild it as an
// EVAL when the server does not know the script.
type takeCmd struct {
	lim   limits
	lease int
	cmd   rueidis.Completed
	keys  []string
	args  []string
}

// tenantCmds returns the tenant's pinned reads, building them on first use.
func (ts *tenantState) tenantCmds(c rueidis.Client) *readCmds {
	if r := ts.reads.Load(); r != nil {
		return r
	}
	r := &readCmds{
		blk: c.B().Get().Key(ts.blkKey).Cache().Pin(),
		cfg: c.B().Hmget().Key(ts.cfgKey).Field(cfgFields...).Cache().Pin(),
	}
	if !ts.reads.CompareAndSwap(nil, r) {
		return ts.reads.Load()
	}
	return r
}

// keyCmds returns the key's pinned read of its blocked-until key.
func (ks *keyState) keyCmds(c rueidis.Client) *readCmds {
	if r := ks.reads.Load(); r != nil {
		return r
	}
	r := &readCmds{blk: c.B().Get().Key(ks.blkKey).Cache().Pin()}
	if !ks.reads.CompareAndSwap(nil, r) {
		return ks.reads.Load()
	}
	return r
}

// take returns the pinned take script for lim that asks for leases of up to
// lease tokens, from slot when it was built for the same limits and lease.
// A changed override or lease size builds (and allocates) it anew, once per
// change.
func take(c rueidis.Client, slot *atomic.Pointer[takeCmd], keys []string, lim limits, kl *keyLimit, lease int) *takeCmd {
	return scriptCmd(c, slot, "take", keys, lim, kl, lease)
}

// renewCmd returns the pinned renew script (a lease taken in the
// background, for no request: bucket.lua) for lim and lease, from slot when
// it was built for the same.
func renewCmd(c rueidis.Client, slot *atomic.Pointer[takeCmd], keys []string, lim limits, kl *keyLimit, lease int) *takeCmd {
	return scriptCmd(c, slot, "renew", keys, lim, kl, lease)
}

// scriptCmd builds (or returns from slot) the script run of mode "take" or
// "renew".
func scriptCmd(c rueidis.Client, slot *atomic.Pointer[takeCmd], mode string, keys []string, lim limits, kl *keyLimit, lease int) *takeCmd {
	if t := slot.Load(); t != nil && t.lim == lim && t.lease == lease {
		return t
	}
	args := make([]string, 5, 7)
	args[0] = mode
	args[1] = strconv.FormatInt(lim.rpm, 10)
	args[2] = strconv.FormatInt(lim.burst, 10)
	args[3] = strconv.FormatInt(lim.tpm, 10)
	args[4] = strconv.Itoa(lease)
	if kl != nil {
		args = append(args, strconv.FormatInt(kl.rpm, 10), strconv.FormatInt(kl.burst, 10))
	}
	t := &takeCmd{
		lim:   lim,
		lease: lease,
		cmd:   c.B().Evalsha().Sha1(bucketSHA).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build().Pin(),
		keys:  keys,
		args:  args,
	}
	slot.Store(t)
	return t
}

// runScript runs cmd, an EVALSHA of bucket.lua, and when the server does not
// know the script (first use, restart, failover) the EVAL that loads it.
func runScript(ctx context.Context, c rueidis.Client, cmd rueidis.Completed, keys, args []string) rueidis.RedisResult {
	r := c.Do(ctx, cmd)
	if err, ok := rueidis.IsRedisErr(r.Error()); ok && err.IsNoScript() {
		r = c.Do(ctx, c.B().Eval().Script(bucketLua).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build())
	}
	return r
}
