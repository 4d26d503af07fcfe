-- Several reserve / finish / finish_reserve calls of one queue, gathered
-- from concurrent threads by the adapter, run in one step (one round trip
-- for all). ARGV[4] = number of ops, then per op its letter and arguments:
--   R now lease token lmax ldur grouped             1 job logs | -3 next_at
--   F id token kind now rv reason retry_at          code
--   X id token kind now rv reason retry_at lease token lmax ldur grouped
--                                                   -22 | 1 1 job logs | 1 0 next_at
--   Y id token now rv lease token                   as X (kind 0, no limiter)
--   C                                               {as queue_counts}
--   E m now max id timestamp delayUntil priority lifo field value...
--                                                   1 state paused | 0 job paused logs | -18
--   e as E, for a caller that does not want a new job's state: its
--     paused is 0 (a read less)
--   H lease token m now max id ... (e's arguments after its letter, with
--     a reserve's lease end and token in front): an enqueue (as e) and a
--     reserve without limiter (as R, at the enqueue's now), for a worker
--     of the caller's instance that sleeps (a hand-off: redis/queue.c)
--                                                   e's reply, then R's,
--     or 2 for R's when the job reserved is the new one, as given (a
--     lone H whose queue had nothing runnable before it: see lone_h)
-- (E: m counts the arguments after it, max is the most unfinished jobs or
-- 0, the pairs are the new record, its state and 'nologs' among them;
-- 1: a new job, 0: an existing one, -18: the queue is full.)
-- ('lease' is the new lease's end, leaseUntil; X: finish, then when it
-- succeeded reserve; job: the record before the reservation, logs: its
-- log entries, 0 when none.) Reply: 1, then the replies of the ops in
-- turn, flat (a table per reply costs Redis more to send). The ops are
-- concurrent calls: any order that keeps each X's finish before its
-- reserve is theirs, and gives each reserve what is due at its own now.
-- When no op has a limiter and no finish makes a job runnable again
-- (retry, release), every finish runs first and the reserves then share
-- one promotion (at the earliest now), one take from the wait set and one
-- ZADD, unless a delayed job comes due between the earliest and the latest
-- now (then each reserve runs in turn); the finishes share one ZREM of the
-- active set, and those that remove their job one ZREM of the ids and one
-- DEL. Otherwise each op runs in turn. Counts are taken once, after every
-- other op of the batch. Enqueues run before the other ops; when none has
-- a maximum, the plain ones (neither delayed nor lifo) share one HINCRBY
-- of the wait order, one ZADD to the wait set; all share one ZADD to the
-- ids and one note (its count after a NUL: see redis/queue.c), sent after
-- the reserves: the jobs the H ops took are not announced.
-- Everything above "-- @call" is made once, at FUNCTION LOAD (see
-- gen.sh): a call makes no closures (each cost Redis ~0.5-1 us with its
-- upvalues, and work for the garbage collector) and only the tables it
-- must (ops, codes, replies).
--
-- Per call: ARGV index of op i's letter, its finish code, the record it
-- reserved (or the existing job of an enqueue), its logs or next_at (an
-- enqueue: its state, or the logs of the existing job).
local ops, code, hs, xs
-- the enqueue part of H ops: its code, existing record, state or logs
local ec, eh, ex
local enq_paused   -- the pause flag, for the enqueues' replies
local woken        -- jobs the enqueues made runnable (see announce)
-- The finish of the op at 'f': id, token, kind, now, returnvalue, reason,
-- retry_at (numbers as text).
local function fargs(f)
  if ARGV[f] == 'Y' then return ARGV[f + 1], ARGV[f + 2], '0', ARGV[f + 3], ARGV[f + 4], '', '0' end
  return ARGV[f + 1], ARGV[f + 2], ARGV[f + 3], ARGV[f + 4], ARGV[f + 5], ARGV[f + 6], ARGV[f + 7]
end
-- The reserve of the op at 'f': now, lease, token, lmax, ldur, grouped.
local function rargs(f)
  local c = ARGV[f]
  if c == 'R' then return ARGV[f + 1], ARGV[f + 2], ARGV[f + 3], ARGV[f + 4], ARGV[f + 5], ARGV[f + 6] end
  if c == 'Y' then return ARGV[f + 3], ARGV[f + 5], ARGV[f + 6], '0', '0', '0' end
  if c == 'H' then return ARGV[f + 4], ARGV[f + 1], ARGV[f + 2], '0', '0', '0' end
  return ARGV[f + 4], ARGV[f + 8], ARGV[f + 9], ARGV[f + 10], ARGV[f + 11], ARGV[f + 12]
end
local function enqueues(capped)
  local ids, woke, plain, found, ask = {}, 0, {}, false, false
  for i, e in ipairs(ops) do
    local c = ARGV[e]
    if c == 'E' or c == 'e' or c == 'H' then
      -- an H's enqueue part: its arguments 2 further on, its reply apart
      local code, hs, xs = code, hs, xs
      if c == 'H' then e = e + 2; code, hs, xs = ec, eh, ex end
      local now, max, id = tonumber(ARGV[e + 2]), tonumber(ARGV[e + 3]), ARGV[e + 4]
      local k = jkey(id)
      if redis.call('EXISTS', k) == 1 then
        local h = redis.call('HGETALL', k)
        local l = redis.call('LRANGE', lkey(id), 0, -1)
        code[i], hs[i], xs[i] = 0, h, #l > 0 and l or 0
        found = true
      elseif max > 0 and redis.call('ZCARD', WAIT) + redis.call('ZCARD', DELAYED) +
          redis.call('ZCOUNT', ACTIVE, '-inf', '(+inf') >= max then
        code[i] = -18
      else
        local du = tonumber(ARGV[e + 6])
        redis.call('HSET', k, unpack(ARGV, e + 9, e + 1 + tonumber(ARGV[e + 1])))
        if du > now then
          add_delayed(id, du)
          xs[i] = 'delayed'
        elseif capped or ARGV[e + 8] == '1' then
          make_waiting(id, tonumber(ARGV[e + 7]), ARGV[e + 8], true)
          xs[i] = 'waiting'
        else
          plain[#plain + 1] = i
          xs[i] = 'waiting'
        end
        code[i] = 1
        if c == 'E' then ask = true end
        woke = woke + 1
        ids[#ids + 1] = ARGV[e + 5]
        ids[#ids + 1] = id
      end
    end
  end
  if #plain > 0 then
    -- as make_waiting, one order number each
    local last = redis.call('HINCRBY', META, 'seq', I(#plain))
    if last > 536870912 and redis.call('ZCARD', WAIT) == 0 then
      redis.call('HSET', META, 'seq', '0', 'lseq', '0')
      last = redis.call('HINCRBY', META, 'seq', I(#plain))
    end
    local za = {}
    for j, i in ipairs(plain) do
      local e = ops[i]
      if ARGV[e] == 'H' then e = e + 2 end
      za[#za + 1] = I(tonumber(ARGV[e + 7]) * 2147483648 + 1073741824 + last - #plain + j)
      za[#za + 1] = ARGV[e + 4]
    end
    redis.call('ZADD', WAIT, unpack(za))
  end
  if #ids > 0 then redis.call('ZADD', IDS, unpack(ids)) end
  woken = woke
  if (woke > 0 and ask) or found then enq_paused = paused() end
end
-- The note of the jobs the enqueues made runnable, but those the H ops
-- took at once (a job taken is a job taken, whichever it was).
local function announce()
  local n = woken
  for i, f in ipairs(ops) do
    if n <= 0 then break end
    if ARGV[f] == 'H' and hs[i] then n = n - 1 end
  end
  if n == 1 then wake()
  elseif n > 1 then redis.call('PUBLISH', ARGV[2], ARGV[3] .. '\0' .. I(n)) end
end
local function reserve(f)
  local now, lease, tok, lmax, ldur, grouped = rargs(f)
  return reserve_next(tonumber(now), lease, tok, tonumber(lmax), tonumber(ldur), grouped == '1')
end
-- Each op in turn (a limiter, or a finish that makes a job runnable).
local function run_slow()
  for i, f in ipairs(ops) do
    local c = ARGV[f]
    if c == 'C' or c == 'E' or c == 'e' then
      -- counts after the others, enqueues before
    else
      local rc = 1
      if c ~= 'R' and c ~= 'H' then
        local id, tok, kind, now, rv, reason, retry_at = fargs(f)
        rc = finish_job(id, tok, tonumber(kind), tonumber(now), rv, reason, tonumber(retry_at))
        code[i] = rc
      end
      if c ~= 'F' and rc > 0 then
        local r, h, x = reserve(f)
        if r == 1 then hs[i], xs[i] = h, x else xs[i] = h end
      end
    end
  end
end
-- A finish (complete or fail) of the fast way. What it removes from the
-- active set, the ids and the keyspace goes into zact, zids, dels, done
-- at once after; 'gone' (or nil: a batch of one finish) refuses a second
-- finish of one lease in the batch.
local function finish_fast(f, gone, zact, zids, dels)
  local id, tok, kind, now, rv, reason = fargs(f)
  local k = jkey(id)
  local h = redis.call('HMGET', k, 'state', 'leaseToken', kind == '0' and 'roc' or 'rof',
    'attemptsMade')
  if h[1] ~= 'active' or h[2] ~= tok then return -22 end
  if gone then
    if gone[id] then return -22 end
    gone[id] = true
  end
  zact[#zact + 1] = id
  local keep = tonumber(h[3] or '-1') or -1
  if keep == 0 then
    zids[#zids + 1] = id
    dels[#dels + 1] = k
    dels[#dels + 1] = lkey(id)
    return 1
  end
  local attempts = I((tonumber(h[4] or '0') or 0) + 1)
  local state
  if kind == '0' then
    state = 'completed'
    redis.call('HSET', k, 'attemptsMade', attempts, 'state', state,
      'finishedOn', now, 'returnvalue', rv)
  else
    state = 'failed'
    redis.call('HSET', k, 'attemptsMade', attempts, 'state', state,
      'finishedOn', now, 'failedReason', reason)
  end
  add_done(state, id, tonumber(now), keep)
  return 1
end
-- Make waiting job 'id' (just taken from the wait set) active at 'now'
-- under lease 'lease' (its end) and token 'tok', but for the active set.
-- Returns its record before the change and its logs (0 when none).
local function activate(id, now, lease, tok)
  local kk = jkey(id)
  local h = redis.call('HGETALL', kk)
  -- flow jobs keep no logs (Q-20); 'nologs': a plain job without any
  -- (as reserved_reply)
  local nologs, fin = false, false
  for x = 1, #h, 2 do
    local fl = h[x]
    if fl == 'runId' or fl == 'nologs' then nologs = true
    elseif fl == 'finishedOn' then fin = true end
  end
  if fin then
    redis.call('HSET', kk, 'state', 'active', 'processedOn', now,
      'leaseUntil', lease, 'leaseToken', tok, 'finishedOn', '0')
  else
    redis.call('HSET', kk, 'state', 'active', 'processedOn', now,
      'leaseUntil', lease, 'leaseToken', tok)
  end
  if nologs then return h, 0 end
  local l = redis.call('LRANGE', lkey(id), 0, -1)
  return h, #l > 0 and l or 0
end
-- Take waiting job 'id' for op i (its reserve at 'f'): the record before
-- the change and its logs into hs / xs; 'za' gets the active set's
-- score and member.
local function take(i, f, id, za)
  local now, lease, tok = rargs(f)
  za[#za + 1] = lease
  za[#za + 1] = id
  hs[i], xs[i] = activate(id, now, lease, tok)
end
-- A batch of one op, as a lone worker sends them (concurrency 1): the
-- same steps as run_fast, without the batch's tables (measured: 5-15 us
-- of Redis CPU less per call). The reserve of a plain R (y false) or of
-- a Y (y true), both without a limiter: its reply.
local function lone_reserve(y, now, lease, tok)
  local nnow = tonumber(now)
  local is_paused, first = promote(nnow)
  -- (ZRANGE and ZREMRANGEBYRANK: see take_waiting)
  local id = not is_paused and redis.call('ZRANGE', WAIT, '0', '0')[1]
  if id then redis.call('ZREMRANGEBYRANK', WAIT, '0', '0') end
  if not id then
    local x = is_paused and 0 or next_at(first, nnow, 0)
    if y then return { 1, 1, 0, x } end
    return { 1, -3, x }
  end
  local h, x = activate(id, now, lease, tok)
  redis.call('ZADD', ACTIVE, lease, id, '+inf', PIN)
  if y then return { 1, 1, 1, h, x } end
  return { 1, 1, h, x }
end
-- A lone Y: complete the job (as finish_fast), then reserve.
local function lone_y()
  local id, tok, now, rv = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
  local k = jkey(id)
  local h = redis.call('HMGET', k, 'state', 'leaseToken', 'roc', 'attemptsMade')
  if h[1] ~= 'active' or h[2] ~= tok then return { 1, -22 } end
  local keep = tonumber(h[3] or '-1') or -1
  redis.call('ZREM', ACTIVE, id)
  if keep == 0 then
    redis.call('ZREM', IDS, id)
    redis.call('DEL', k, lkey(id))
  else
    redis.call('HSET', k, 'attemptsMade', I((tonumber(h[4] or '0') or 0) + 1),
      'state', 'completed', 'finishedOn', now, 'returnvalue', rv)
    add_done('completed', id, tonumber(now), keep)
  end
  return lone_reserve(true, now, ARGV[10], ARGV[11])
end
-- A lone E (ask: true) or e of a plain job (no maximum, not delayed, not
-- lifo), as enqueues does it; nil for any other.
local function lone_e(ask)
  local e = 5
  if ARGV[e + 3] ~= '0' or ARGV[e + 8] == '1' or
      tonumber(ARGV[e + 6]) > tonumber(ARGV[e + 2]) then return nil end
  local id = ARGV[e + 4]
  local k = jkey(id)
  if redis.call('EXISTS', k) == 1 then
    local h = redis.call('HGETALL', k)
    local l = redis.call('LRANGE', lkey(id), 0, -1)
    return { 1, 0, h, paused() and 1 or 0, #l > 0 and l or 0 }
  end
  redis.call('HSET', k, unpack(ARGV, e + 9, e + 1 + tonumber(ARGV[e + 1])))
  make_waiting(id, tonumber(ARGV[e + 7]), '0', true)
  redis.call('ZADD', IDS, ARGV[e + 5], id)
  wake()
  return { 1, 1, 'waiting', ask and paused() and 1 or 0 }
end
-- A lone H whose job can only be the one it reserves (a new job, neither
-- delayed nor lifo, no maximum, into a queue not paused, with nothing due
-- and nothing waiting): the job goes straight to active, without the
-- wait set, its order counter and its note, and the reply says "the job
-- as you gave it" (2) instead of sending the record back. nil for any
-- other (the general way then does it).
local function lone_h()
  local e = 7     -- e's arguments (after 'H', the lease end and token)
  if ARGV[e + 3] ~= '0' or ARGV[e + 8] == '1' then return nil end
  local now = ARGV[e + 2]
  local nnow = tonumber(now)
  if tonumber(ARGV[e + 6]) > nnow then return nil end
  local m = redis.call('HMGET', META, 'paused', 'due')
  local due = m[2]
  if m[1] == '1' or not due or (due ~= '-' and tonumber(due) <= nnow) then
    return nil
  end
  local id = ARGV[e + 4]
  local k = jkey(id)
  if redis.call('EXISTS', k) == 1 or redis.call('ZCARD', WAIT) > 0 then
    return nil
  end
  local lease, tok = ARGV[6], ARGV[7]
  redis.call('HSET', k, unpack(ARGV, e + 9, e + 1 + tonumber(ARGV[e + 1])))
  redis.call('HSET', k, 'state', 'active', 'processedOn', now,
    'leaseUntil', lease, 'leaseToken', tok)
  redis.call('ZADD', ACTIVE, lease, id, '+inf', PIN)
  redis.call('ZADD', IDS, ARGV[e + 5], id)
  return { 1, 1, 'waiting', 0, 2 }
end
-- The first n waiting jobs, taken off the waiting set (not ZPOPMIN:
-- Redis formats each score it returns with printf's %.17g, which cost
-- more than the second call, measured ~1 us a job more even for one).
local function take_waiting(n)
  local took = redis.call('ZRANGE', WAIT, '0', I(n - 1))
  if #took > 0 then redis.call('ZREMRANGEBYRANK', WAIT, '0', I(#took - 1)) end
  return took
end
-- The leases of za (lease, id, ...) into the active set, with its pin.
local function add_active(za)
  if #za > 0 then
    za[#za + 1] = '+inf'
    za[#za + 1] = PIN
    redis.call('ZADD', ACTIVE, unpack(za))
  end
end
-- The fast way (see above).
local function run_fast(n)
  -- finishes first (complete or fail only: see finish_job)
  local gone = n > 1 and {} or nil
  local zact, zids, dels = {}, {}, {}
  local want, minnow, maxnow = {}, nil, 0
  for i, f in ipairs(ops) do
    local c, rc = ARGV[f], 1
    if FIN[c] then
      rc = finish_fast(f, gone, zact, zids, dels)
      code[i] = rc
    end
    if RES[c] and rc > 0 then
      want[#want + 1] = i
      local now = tonumber((rargs(f)))
      if minnow == nil or now < minnow then minnow = now end
      if now > maxnow then maxnow = now end
    end
  end
  if #zact > 0 then redis.call('ZREM', ACTIVE, unpack(zact)) end
  if #zids > 0 then redis.call('ZREM', IDS, unpack(zids)) end
  if #dels > 0 then redis.call('DEL', unpack(dels)) end
  if #want == 0 then return end
  -- what is due for every reserve (each has its own now)
  local is_paused, first = promote(minnow)
  if not is_paused and first ~= '-' and tonumber(first) <= maxnow then
    -- a delayed job is due for some reserves only: each in turn
    for _, i in ipairs(want) do
      local r, h, x = reserve(ops[i])
      if r == 1 then hs[i], xs[i] = h, x else xs[i] = h end
    end
    return
  end
  -- the first #want waiting jobs
  local took = is_paused and {} or take_waiting(#want)
  local za = {}
  for j, i in ipairs(want) do
    local id = took[j]
    if id then
      take(i, ops[i], id, za)
    else
      xs[i] = is_paused and 0 or next_at(first, tonumber((rargs(ops[i]))), 0)
    end
  end
  add_active(za)
end
-- A batch of Y ops only (busy workers without a limiter: the usual
-- batch at concurrency 10 and up): the steps of run_fast, without its
-- per-op tables, argument lookups and reply loop (measured: 1.5-2 us of
-- Redis CPU less per op at 3 to 30 ops a batch). Its reply is the one
-- batch() would build.
local function run_y(n)
  local zact, zids, dels, fin = {}, {}, {}, {}
  local gone, minnow, maxnow, nres = {}, nil, 0, 0
  local f = 5
  for i = 1, n do
    local id, tok = ARGV[f + 1], ARGV[f + 2]
    local k = B .. ':j:' .. id
    local h = redis.call('HMGET', k, 'state', 'leaseToken', 'roc', 'attemptsMade', 'nologs')
    if h[1] == 'active' and h[2] == tok and not gone[id] then
      gone[id] = true
      zact[#zact + 1] = id
      local now = ARGV[f + 3]
      local keep = tonumber(h[3] or '-1') or -1
      if keep == 0 then
        zids[#zids + 1] = id
        dels[#dels + 1] = k
        -- (a job marked 'nologs' has no log list)
        if h[5] ~= '1' then dels[#dels + 1] = lkey(id) end
      else
        redis.call('HSET', k, 'attemptsMade', I((tonumber(h[4] or '0') or 0) + 1),
          'state', 'completed', 'finishedOn', now, 'returnvalue', ARGV[f + 4])
        add_done('completed', id, tonumber(now), keep)
      end
      local t = tonumber(now)
      if minnow == nil or t < minnow then minnow = t end
      if t > maxnow then maxnow = t end
      nres = nres + 1
      fin[i] = true
    end
    f = f + 7
  end
  if #zact > 0 then redis.call('ZREM', ACTIVE, unpack(zact)) end
  if #zids > 0 then redis.call('ZREM', IDS, unpack(zids)) end
  if #dels > 0 then redis.call('DEL', unpack(dels)) end
  local out, o = { 1 }, 1
  if nres == 0 then
    for _ = 1, n do o = o + 1; out[o] = -22 end
    return out
  end
  local is_paused, first = promote(minnow)
  local each = not is_paused and first ~= '-' and tonumber(first) <= maxnow
  local took, za, j = nil, {}, 0
  if each then
    -- a delayed job is due for some reserves only: each in turn
  else
    took = is_paused and {} or take_waiting(nres)
  end
  f = 5
  for i = 1, n do
    if not fin[i] then
      o = o + 1; out[o] = -22
    elseif each then
      local r, h, x = reserve(f)
      o = o + 1; out[o] = 1
      if r == 1 then
        o = o + 1; out[o] = 1
        o = o + 1; out[o] = h
        o = o + 1; out[o] = x
      else
        o = o + 1; out[o] = 0
        o = o + 1; out[o] = h
      end
    else
      j = j + 1
      local id = took[j]
      o = o + 1; out[o] = 1
      if id then
        local lease = ARGV[f + 5]
        za[#za + 1] = lease
        za[#za + 1] = id
        local h, x = activate(id, ARGV[f + 3], lease, ARGV[f + 6])
        o = o + 1; out[o] = 1
        o = o + 1; out[o] = h
        o = o + 1; out[o] = x
      else
        o = o + 1; out[o] = 0
        o = o + 1; out[o] = is_paused and 0 or next_at(first, tonumber(ARGV[f + 3]), 0)
      end
    end
    f = f + 7
  end
  add_active(za)
  return out
end
local function batch()
  local n = tonumber(ARGV[4])
  if n == 1 then
    local c = ARGV[5]
    if c == 'Y' then return lone_y() end
    if c == 'R' and tonumber(ARGV[9]) <= 0 then
      return lone_reserve(false, ARGV[6], ARGV[7], ARGV[8])
    end
    if c == 'E' or c == 'e' then
      local r = lone_e(c == 'E')
      if r then return r end
    end
    if c == 'H' then
      local r = lone_h()
      if r then return r end
    end
  else
    local y = true
    for a = 5, 5 + 7 * (n - 1), 7 do
      if ARGV[a] ~= 'Y' then y = false; break end
    end
    if y then return run_y(n) end
  end
  local a, fast, enq, capped = 5, true, false, false
  ops, code, hs, xs, enq_paused = {}, {}, {}, {}, nil
  ec, eh, ex, woken = {}, {}, {}, 0
  for i = 1, n do
    local c = ARGV[a]
    ops[i] = a
    if c == 'C' then
      a = a + 1
    elseif c == 'E' or c == 'e' then
      enq = true
      if tonumber(ARGV[a + 3]) > 0 then capped = true end
      a = a + 2 + tonumber(ARGV[a + 1])
    elseif c == 'H' then
      enq = true
      if tonumber(ARGV[a + 5]) > 0 then capped = true end
      a = a + 4 + tonumber(ARGV[a + 3])
    elseif c == 'R' then
      if tonumber(ARGV[a + 4]) > 0 then fast = false end
      a = a + 7
    elseif c == 'Y' then
      a = a + 7
    else
      local kind = ARGV[a + 3]
      if kind ~= '0' and kind ~= '2' then fast = false end
      if c == 'X' then
        if tonumber(ARGV[a + 10]) > 0 then fast = false end
        a = a + 13
      else
        a = a + 8
      end
    end
  end
  if enq then enqueues(capped) end
  if fast then run_fast(n) else run_slow() end
  if enq then announce() end
  local out, o, cn = { 1 }, 1, nil
  for i, f in ipairs(ops) do
    local c = ARGV[f]
    if c == 'E' or c == 'e' or c == 'H' then
      local code, hs, xs = code, hs, xs
      if c == 'H' then code, hs, xs = ec, eh, ex end
      o = o + 1; out[o] = code[i]
      if code[i] == 1 then
        o = o + 1; out[o] = xs[i]
        o = o + 1; out[o] = enq_paused and 1 or 0
      elseif code[i] == 0 then
        o = o + 1; out[o] = hs[i]
        o = o + 1; out[o] = enq_paused and 1 or 0
        o = o + 1; out[o] = xs[i]
      end
    end
    if c == 'C' then
      cn = cn or counts()
      o = o + 1; out[o] = cn
    elseif c == 'E' or c == 'e' then
      -- (above)
    elseif c == 'F' or (c ~= 'R' and c ~= 'H' and code[i] < 0) then
      o = o + 1; out[o] = code[i]
    else
      -- a reserve's part (R, H) or a finish's and reserve's (X, Y)
      local h = hs[i]
      if c ~= 'R' and c ~= 'H' then
        o = o + 1; out[o] = 1
        o = o + 1; out[o] = h and 1 or 0
      else
        o = o + 1; out[o] = h and 1 or -3
      end
      if h then
        o = o + 1; out[o] = h
      end
      o = o + 1; out[o] = xs[i]
    end
  end
  ops, code, hs, xs = nil, nil, nil, nil   -- for the garbage collector
  ec, eh, ex = nil, nil, nil
  return out
end
-- @call
return batch()
