-- Prelude of every queue script. Key layout of queue Q with prefix P, all
-- under the hash tag {P:q:Q} (one Redis Cluster slot):
--   B:meta       hash  paused (0|1), seq / lseq (wait order counters),
--                      fseq (layout 1.2 only: see add_done)
--   B:wait       zset  waiting jobs, score priority*2^31 + 2^30 + seq
--                      (lifo jobs take -lseq: ahead of their priority)
--   B:delayed    zset  delayed jobs by delayUntil
--   B:active     zset  active jobs by leaseUntil, and PIN at +inf
--   B:completed  zset  completed jobs by finishedOn*4096 + finish seq % 4096
--   B:failed     zset  failed jobs, the same (retention order, Q-10)
--   B:ids        zset  every job by timestamp (listing)
--   B:j:<id>     hash  the job record: 'r' the fields no script reads,
--                      packed (redis/queue.c), state, timestamp, nologs,
--                      and priority, lifo, roc, rof, attemptsMade,
--                      stalledCount, progress, delayUntil, group... only
--                      when not their default (absent = 0, roc/rof -1);
--                      leaseToken / leaseUntil mean something only while
--                      state is 'active' (since layout 1.3 an attempt's
--                      end leaves them: the state says they are over)
--   B:l:<id>     list  the job's log entries (JSON texts)
--   B:lim[...]   zset  limiter activations by time (sliding window)
-- Every change that may make a job runnable sooner than the reply of an
-- empty reserve said (enqueue, delayed enqueue, retry, release, resume,
-- reap) publishes the queue name on the wake channel (queue_batch: n
-- enqueues at once, the name, a NUL and n): instances cache empty
-- reserves until such a note (redis/queue.c).
-- KEYS[1] = B:meta routes the call; ARGV[1] = B, ARGV[2] = the wake
-- channel, ARGV[3] = the queue name. Replies: {code, ...}, code < 0 an
-- NV_E* code. Layout version 1.3 (records of layout 1, every field on
-- its own, are still read; an active set of layout 1.1, without PIN, gets
-- it at the next reservation; layout 1.2 removed the lease fields at the
-- end of an attempt and kept the finish counter fseq in B:meta, both
-- left as they are: the reader ignores lease fields of a job that is
-- not active, and fseq is no longer read).
local B, META, WAIT, DELAYED, ACTIVE, DONE, IDS
-- PIN, a member longer than zset-max-listpack-value (64 by default) that
-- is no job id (those have no control characters), keeps B:active a
-- skiplist: as a listpack (up to 128 members) each ZADD / ZREM scans and
-- decodes the whole set, 5-8 us of Redis CPU per job at a hundred active
-- jobs. Its score +inf keeps it out of every range of leases; it is
-- never counted or listed.
local PIN = '\1active-set-pin: keeps this sorted set a skiplist (see queue_common.lua)'
-- (run first by every script: see gen.sh). The key names of the queues
-- seen last are kept between calls (as functions, the library's locals
-- live on): a call's setup is a lookup, not seven new strings.
local names, nnames = {}, 0
local function setup()
  B = ARGV[1]
  local k = names[B]
  if not k then
    if nnames >= 256 then names, nnames = {}, 0 end
    k = { B .. ':meta', B .. ':wait', B .. ':delayed', B .. ':active',
      { completed = B .. ':completed', failed = B .. ':failed' }, B .. ':ids' }
    names[B], nnames = k, nnames + 1
  end
  META, WAIT, DELAYED, ACTIVE, DONE, IDS = k[1], k[2], k[3], k[4], k[5], k[6]
end
-- the ops of queue_batch that finish a job, and those that reserve one
local FIN = { F = true, X = true, Y = true }
local RES = { R = true, X = true, Y = true, H = true }
-- Integers (< 2^53) as text: '%d' formats a 64-bit integer, several times
-- cheaper than '%.0f' or the '%.17g' redis.call applies to a Lua number.
local function I(x) return string.format('%d', x) end
local function jkey(id) return B .. ':j:' .. id end
local function lkey(id) return B .. ':l:' .. id end
local function paused() return redis.call('HGET', META, 'paused') == '1' end
local function wake() redis.call('PUBLISH', ARGV[2], ARGV[3]) end
-- Make job id waiting (its state field too, unless 'stated'). The wait
-- order counters grow until the set is empty and they are large (scores
-- stay exact below 2^53).
local function make_waiting(id, prio, lifo, stated)
  local k = jkey(id)
  if prio == nil then
    local f = redis.call('HMGET', k, 'priority', 'lifo')
    prio, lifo = tonumber(f[1] or '0') or 0, f[2]
  end
  local n
  if lifo == '1' then
    n = -redis.call('HINCRBY', META, 'lseq', '1')
  else
    n = redis.call('HINCRBY', META, 'seq', '1')
  end
  if (n > 536870912 or n < -536870912) and redis.call('ZCARD', WAIT) == 0 then
    redis.call('HSET', META, 'seq', '0', 'lseq', '0')
    if lifo == '1' then n = -redis.call('HINCRBY', META, 'lseq', '1')
    else n = redis.call('HINCRBY', META, 'seq', '1') end
  end
  redis.call('ZADD', WAIT, I(prio * 2147483648 + 1073741824 + n), id)
  if not stated then redis.call('HSET', k, 'state', 'waiting') end
end
-- META 'due' is the earliest delayUntil in B:delayed, '-' when none;
-- absent (unknown) or due means: look. Adding a delayed job lowers it.
local function add_delayed(id, at)
  redis.call('ZADD', DELAYED, I(at), id)
  local d = redis.call('HGET', META, 'due')
  if d and (d == '-' or tonumber(d) > at) then
    redis.call('HSET', META, 'due', I(at))
  end
end
local function getjob(id)
  local h = redis.call('HGETALL', jkey(id))
  if #h == 0 then return false end
  return { h, paused() and 1 or 0, redis.call('LRANGE', lkey(id), 0, -1) }
end
-- Delete a job record; 'set' (optional) is the one state set holding it.
local function drop(id, set)
  if set then
    redis.call('ZREM', set, id)
  else
    redis.call('ZREM', WAIT, id)
    redis.call('ZREM', DELAYED, id)
    redis.call('ZREM', ACTIVE, id)
    redis.call('ZREM', DONE.completed, id)
    redis.call('ZREM', DONE.failed, id)
  end
  redis.call('ZREM', IDS, id)
  redis.call('DEL', jkey(id), lkey(id))
end
-- Record 'id' in the set of its final state, newest last (finishedOn,
-- then the finishing order within one ms), keeping the newest 'keep'
-- (when > 0) of that state (Q-10). The order within one ms comes from a
-- counter in the library's memory (as functions, its locals live on
-- between calls), not from B:meta: a write less per finish. It starts
-- again at 0 when the server restarts or loads the library: finishes of
-- one ms on either side of that are all that could be misordered. Run
-- as EVAL (no functions), the counter lives one call only: there the
-- counter in B:meta (layout 1.2) is kept.
local fseq = 0
local function add_done(state, id, now, keep)
  local set = DONE[state]
  local seq
  if FUNCTIONS then
    fseq = (fseq + 1) % 4096
    seq = fseq
  else
    seq = redis.call('HINCRBY', META, 'fseq', '1') % 4096
  end
  redis.call('ZADD', set, I(now * 4096 + seq), id)
  if keep > 0 then
    -- all but the newest 'keep' (none while the set holds no more)
    for _, o in ipairs(redis.call('ZRANGE', set, '0', I(-keep - 1))) do drop(o, set) end
  end
end
-- Move a job into a final state set and apply its retention (Q-10):
-- true (0) removes the job; N keeps the newest N of its final state.
local function finalize(state, id, now, field, value)
  local k = jkey(id)
  local keep = tonumber(redis.call('HGET', k, state == 'completed' and 'roc' or 'rof') or '-1') or -1
  if keep == 0 then
    drop(id, ACTIVE)
    return
  end
  redis.call('HSET', k, 'state', state, 'finishedOn', I(now), field, value)
  add_done(state, id, now, keep)
end
local function take_lease(id, token)
  local h = redis.call('HMGET', jkey(id), 'state', 'leaseToken')
  if h[1] ~= 'active' or h[2] ~= token then return false end
  return true
end

-- Reserve (W-2, Q-4, Q-12, Q-13): promote due delayed jobs, then take the
-- first runnable waiting job. Returns 1, the record before the change, its
-- logs (see reserved_reply; the caller sets state, processedOn,
-- leaseUntil, leaseToken, finishedOn itself) or -3, next_at.
-- Q-15: {1, waiting, delayed, active, completed, failed, paused}.
local function counts()
  local w = redis.call('ZCARD', WAIT)
  local p = 0
  if paused() then p = w; w = 0 end
  return { 1, w, redis.call('ZCARD', DELAYED), redis.call('ZCOUNT', ACTIVE, '-inf', '(+inf'),
    redis.call('ZCARD', DONE.completed), redis.call('ZCARD', DONE.failed), p }
end
-- Promote the delayed jobs due at 'now'. Returns paused (bool) and the
-- earliest delayUntil left ('-' when none).
local function promote(now)
  local m = redis.call('HMGET', META, 'paused', 'due')
  local first = m[2]
  if not first or (first ~= '-' and tonumber(first) <= now) then
    local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', I(now), 'LIMIT', 0, 1000)
    for _, id in ipairs(due) do
      redis.call('ZREM', DELAYED, id)
      make_waiting(id)
    end
    if #due > 1 then wake() end
    local d = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
    first = #d > 0 and d[2] or '-'
    redis.call('HSET', META, 'due', first)
  end
  return m[1] == '1', first
end
-- next_at of an empty reserve at 'now' (limiter time 'nxt', 0 = none).
local function next_at(first, now, nxt)
  if first ~= '-' then
    local d = tonumber(first)
    if d < now then d = now end
    if nxt == 0 or d < nxt then nxt = d end
  end
  return I(nxt)
end
-- A job just reserved, for the reply: its record before the change (the
-- adapter applies the change) and its logs (0 when none).
local function reserved_reply(id, h)
  -- flow jobs keep no logs (Q-20); 'nologs' marks a plain job enqueued
  -- since layout 1.1 that has none yet (queue_log removes it)
  for i = 1, #h, 2 do
    if h[i] == 'runId' or h[i] == 'nologs' then return h, 0 end
  end
  local l = redis.call('LRANGE', lkey(id), 0, -1)
  if #l == 0 then return h, 0 end
  return h, l
end
-- 'lease' is the new lease's end (leaseUntil), as text.
local function reserve_next(now, lease, token, lmax, ldur, grouped)
  local is_paused, first = promote(now)
  if is_paused then return -3, 0 end
  local function limkey(g)
    if not grouped then return B .. ':lim' end
    if g then return B .. ':lim:=' .. g end
    return B .. ':lim:-'
  end
  -- 0 when the window of lk admits one more activation, else the time it will.
  local function window(lk)
    redis.call('ZREMRANGEBYSCORE', lk, '-inf', I(now - ldur))
    local n = redis.call('ZCARD', lk)
    if n < lmax then return 0 end
    local o = redis.call('ZRANGE', lk, n - lmax, n - lmax, 'WITHSCORES')
    return tonumber(o[2]) + ldur
  end
  local pick, pickg, nxt = nil, nil, 0
  if lmax <= 0 then
    -- (not ZPOPMIN, whose score formatting costs more than the ZREM
    -- below: see queue_batch's run_fast)
    pick = redis.call('ZRANGE', WAIT, '0', '0')[1]
  elseif not grouped then
    if redis.call('ZCARD', WAIT) > 0 then
      local t = window(limkey(nil))
      if t == 0 then pick = redis.call('ZRANGE', WAIT, '0', '0')[1] else nxt = t end
    end
  else
    local seen, off = {}, 0
    while not pick do
      local batch = redis.call('ZRANGE', WAIT, off, off + 99)
      if #batch == 0 then break end
      for _, id in ipairs(batch) do
        local g = redis.call('HGET', jkey(id), 'group')
        if not g then g = nil end
        local gk = limkey(g)
        local t = seen[gk]
        if t == nil then t = window(gk); seen[gk] = t end
        if t == 0 then pick = id; pickg = g; break end
        if nxt == 0 or t < nxt then nxt = t end
      end
      off = off + 100
    end
  end
  if not pick then return -3, next_at(first, now, nxt) end
  local k = jkey(pick)
  redis.call('ZREM', WAIT, pick)
  redis.call('ZADD', ACTIVE, lease, pick, '+inf', PIN)
  local h = redis.call('HGETALL', k)
  redis.call('HSET', k, 'state', 'active', 'processedOn', I(now),
    'leaseUntil', lease, 'leaseToken', token, 'finishedOn', '0')
  if lmax > 0 then
    local lk = limkey(pickg)
    redis.call('ZADD', lk, I(now), token)
    redis.call('PEXPIRE', lk, I(ldur + 60000))
  end
  return 1, reserved_reply(pick, h)
end
-- End an attempt (Q-6..Q-8, W-4, W-7): kind 0 complete, 1 retry, 2 fail,
-- 3 release. Returns 1, or -22 when the lease is gone.
local function finish_job(id, token, kind, now, rv, reason, retry_at)
  local k = jkey(id)
  local h = redis.call('HMGET', k, 'state', 'leaseToken', 'roc', 'rof', 'attemptsMade')
  if h[1] ~= 'active' or h[2] ~= token then return -22 end
  redis.call('ZREM', ACTIVE, id)
  if kind == 3 then
    make_waiting(id)
    wake()
    return 1
  end
  local attempts = (tonumber(h[5] or '0') or 0) + 1
  if kind == 0 or kind == 2 then
    local state = kind == 0 and 'completed' or 'failed'
    local keep = -1
    if kind == 0 then keep = tonumber(h[3] or '-1') or -1
    else keep = tonumber(h[4] or '-1') or -1 end
    if keep == 0 then
      redis.call('ZREM', IDS, id)
      redis.call('DEL', k, lkey(id))
      return 1
    end
    if kind == 0 then
      redis.call('HSET', k, 'attemptsMade', I(attempts), 'state', state,
        'finishedOn', I(now), 'returnvalue', rv)
    else
      redis.call('HSET', k, 'attemptsMade', I(attempts), 'state', state,
        'finishedOn', I(now), 'failedReason', reason)
    end
    add_done(state, id, now, keep)
    return 1
  end
  if retry_at > now then
    redis.call('HSET', k, 'attemptsMade', I(attempts), 'failedReason', reason,
      'state', 'delayed', 'delayUntil', I(retry_at))
    add_delayed(id, retry_at)
  else
    redis.call('HSET', k, 'attemptsMade', I(attempts), 'failedReason', reason,
      'state', 'waiting')
    make_waiting(id, nil, nil, true)
  end
  wake()
  return 1
end
