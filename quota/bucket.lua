-- Token buckets of one tenant, refilled by elapsed time on the server's clock.
-- Every key carries the tenant's hash tag, so the script runs on one Redis
-- Cluster node. The refill arithmetic mirrors bucket.go.
--
-- A bucket is a hash {t = tokens, ts = server time in ms of the last write};
-- a missing bucket is full. It expires once it would be full again, and
-- not within keepMs of its last write.
--
-- take:  KEYS  = req, blk, tok [, key req, key blk]
--        ARGV  = "take", rpm (-1 = off), burst, tpm (0 = off), lease
--                [, key rpm, key burst]
--        Takes one token from every request bucket when all of them hold one
--        and the token bucket is above zero. On refusal it writes the
--        blocked-until key(s) with a PX expiry of the wait until the next
--        token, which relay instances read through their client-side cache.
--        With lease > 1 an admission takes a lease: up to lease tokens from
--        every request bucket at once, but only as many as leave each bucket
--        at least half full; fewer than 2 that way and it takes 1 as without
--        a lease. So near the limit every request is still decided here.
--        Returns {allowed 0|1, req level, key level, tok level, taken}, the
--        levels after refill and before taking, as integers in micro-tokens
--        (an integer reply is read without allocating; strings are not), and
--        the tokens taken from each request bucket (0 on refusal).
-- renew: KEYS and ARGV as take, with "renew" first. A relay renewing a lease
--        in the background, for no request of its own: it takes a lease
--        exactly as take would, but never a single token, and writes no
--        blocked-until key. Where take would grant no lease it takes nothing
--        and returns allowed 0, taken 0.
-- give:  KEYS  = req, blk, tok [, key req, key blk] (as take)
--        ARGV  = "give", rpm (-1 = off), burst, tpm (0 = off), n
--                [, key rpm, key burst]
--        Returns n unused leased tokens to the request bucket(s), capped at
--        their capacity, and deletes a blocked-until key whose buckets admit
--        again, so that relays stop refusing from their caches. Returns 1.
-- debit: KEYS  = tok, blk [, req]
--        ARGV  = "debit", tpm, tokens [, rpm, burst] (the request bucket's,
--                for the blocked-until key's reset)
--        Drains the token bucket (it may go negative: debt). When it is at or
--        below zero the tenant's blocked-until key is extended to the time it
--        becomes positive. Returns the new level in micro-tokens.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local function level(key, rate, cap)
  local v = redis.call('HMGET', key, 't', 'ts')
  local x, ts = tonumber(v[1]), tonumber(v[2])
  if x == nil or ts == nil then
    return cap
  end
  if now > ts then
    x = x + (now - ts) * rate
  elseif ts > now then
    -- Written at a later time than Redis now tells (a failover to a
    -- replica whose clock is behind, a clock stepped back): the bucket
    -- refills from now on. Left as it was, a refused tenant's bucket
    -- (refusals do not store it) stayed empty until the clock caught up.
    redis.call('HSET', key, 'ts', now)
  end
  if x > cap then
    x = cap
  end
  return x
end

-- micro converts a level to the integer micro-tokens of the reply, rounded
-- to nearest and kept within what Redis converts to a 64-bit integer.
local function micro(x)
  local m = math.floor(x * 1000000 + 0.5)
  if m > 9e18 then
    return 9e18
  elseif m < -9e18 then
    return -9e18
  end
  return m
end

-- A bucket outlives the time it takes to fill by at least keepMs: limits
-- lowered meanwhile (an operator's HSET after a tenant ran its bucket dry or
-- into debt) then apply to the level it had, where a bucket gone at the old
-- rate's refill time would read as full under the new limits.
local keepMs = 3600000

local function store(key, x, rate, cap)
  redis.call('HSET', key, 't', x, 'ts', now)
  redis.call('PEXPIRE', key, math.max(math.ceil((cap - x) / rate) + 1000, keepMs))
end

-- block writes the blocked-until key for ms (unless it is there for longer
-- already). Its value, "r" and a number, is how long after the block ends
-- the request bucket the refusal reports is full again (X-RateLimit-Reset;
-- full: that bucket's time to be full from now, -1 for none): the block may
-- be the token budget's, with the request bucket anywhere.
local function block(key, ms, full)
  if ms < 1 then
    ms = 1
  end
  if redis.call('PTTL', key) < ms then
    local after = 'r-1'
    if full >= 0 then
      after = 'r' .. math.max(0, full - ms)
    end
    redis.call('SET', key, after, 'PX', ms)
  end
end

if ARGV[1] == 'debit' then
  local tpm, n = tonumber(ARGV[2]), tonumber(ARGV[3])
  local rate = tpm / 60000
  local x = level(KEYS[1], rate, tpm) - n
  store(KEYS[1], x, rate, tpm)
  if x <= 0 then
    local full = -1
    local rpm, burst = tonumber(ARGV[4] or '-1'), tonumber(ARGV[5] or '0')
    if #KEYS >= 3 and rpm > 0 then
      local rrate = rpm / 60000
      full = math.ceil((burst - level(KEYS[3], rrate, burst)) / rrate)
    end
    block(KEYS[2], math.floor(-x / rate) + 1, full)
  end
  return micro(x)
end

if ARGV[1] == 'give' then
  local rpm, burst, tpm, n = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  if rpm > 0 then
    local rate = rpm / 60000
    local x = math.min(level(KEYS[1], rate, burst) + n, burst)
    store(KEYS[1], x, rate, burst)
    if x >= 1 and (tpm <= 0 or level(KEYS[3], tpm / 60000, tpm) > 0) then
      redis.call('DEL', KEYS[2])
    end
  end
  if #KEYS == 5 then
    local krpm, kburst = tonumber(ARGV[6]), tonumber(ARGV[7])
    local krate = krpm / 60000
    local x = math.min(level(KEYS[4], krate, kburst) + n, kburst)
    store(KEYS[4], x, krate, kburst)
    if x >= 1 then
      redis.call('DEL', KEYS[5])
    end
  end
  return 1
end

local renew = ARGV[1] == 'renew'
local rpm, burst, tpm = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local lease = tonumber(ARGV[5])
local keyed = #KEYS == 5
local req, key, tok = 0, 0, 0
local rrate, krate, trate
local krpm, kburst
if rpm > 0 then
  rrate = rpm / 60000
  req = level(KEYS[1], rrate, burst)
end
if keyed then
  krpm, kburst = tonumber(ARGV[6]), tonumber(ARGV[7])
  krate = krpm / 60000
  key = level(KEYS[4], krate, kburst)
end
if tpm > 0 then
  trate = tpm / 60000
  tok = level(KEYS[3], trate, tpm)
end

local tenantWait, keyWait = 0, 0
if rpm > 0 and req < 1 then
  tenantWait = math.ceil((1 - req) / rrate)
end
if tpm > 0 and tok <= 0 then
  tenantWait = math.max(tenantWait, math.floor(-tok / trate) + 1)
end
if keyed and key < 1 then
  keyWait = math.ceil((1 - key) / krate)
end

local allowed, n = 0, 0
if tenantWait == 0 and keyWait == 0 then
  allowed, n = 1, lease
  if rpm > 0 then
    n = math.min(n, math.floor(req - burst / 2))
  end
  if keyed then
    n = math.min(n, math.floor(key - kburst / 2))
  end
  if n < 2 then
    n = 1
    if renew then
      allowed, n = 0, 0
    end
  end
  if rpm > 0 and n > 0 then
    store(KEYS[1], req - n, rrate, burst)
  end
  if keyed and n > 0 then
    store(KEYS[4], key - n, krate, kburst)
  end
elseif not renew then
  -- The refusal reports the tenant's request bucket, or the key's where
  -- the tenant has none (bucket.go, decide).
  local keyFull = -1
  if keyed then
    keyFull = math.ceil((kburst - key) / krate)
  end
  if tenantWait > 0 then
    local full = keyFull
    if rpm > 0 then
      full = math.ceil((burst - req) / rrate)
    end
    block(KEYS[2], tenantWait, full)
  end
  if keyWait > 0 then
    block(KEYS[5], keyWait, keyFull)
  end
end
return {allowed, micro(req), micro(key), micro(tok), n}
