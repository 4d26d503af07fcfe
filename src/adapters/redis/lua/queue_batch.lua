-- Several reserve / finish / finish_reserve calls of one queue, gathered
-- from concurrent threads by the adapter, run in one step (one round trip
-- for all). ARGV[4] = number of ops, then per op its letter and arguments:
--   R now lease token lmax ldur grouped             1 job logs | -3 next_at
--   F id token kind now rv reason retry_at          code
--   X id token kind now rv reason retry_at lease token lmax ldur grouped
--                                                   -22 | 1 1 job logs | 1 0 next_at
--   C                                               {as queue_counts}
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
-- other op of the batch.
local n = tonumber(ARGV[4])
-- ops[i]: the index in ARGV of op i's letter
local ops, a, fast = {}, 5, true
for i = 1, n do
  local c = ARGV[a]
  ops[i] = a
  if c == 'C' then
    a = a + 1
  elseif c == 'R' then
    if tonumber(ARGV[a + 4]) > 0 then fast = false end
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
-- where the reserve arguments of the op at 'a' are: now, then lease...
local function rpos(a)
  if ARGV[a] == 'R' then return a + 1, a + 2 end
  return a + 4, a + 8
end
-- per op: its finish's code, the record it reserved, its logs or next_at
local code, hs, xs = {}, {}, {}
local function run_ops()
  local function reserve(a)
    local t, l = rpos(a)
    return reserve_next(tonumber(ARGV[t]), ARGV[l], ARGV[l + 1], tonumber(ARGV[l + 2]),
      tonumber(ARGV[l + 3]), ARGV[l + 4] == '1')
  end
  if not fast then
    for i, f in ipairs(ops) do
      local c = ARGV[f]
      if c == 'C' then
        -- after the others
      else
        local rc = 1
        if c ~= 'R' then
          rc = finish_job(ARGV[f + 1], ARGV[f + 2], tonumber(ARGV[f + 3]), tonumber(ARGV[f + 4]),
            ARGV[f + 5], ARGV[f + 6], tonumber(ARGV[f + 7]))
          code[i] = rc
        end
        if c ~= 'F' and rc > 0 then
          local r, h, x = reserve(f)
          if r == 1 then hs[i], xs[i] = h, x else xs[i] = h end
        end
      end
    end
    return
  end
  -- finishes first (complete or fail only: see finish_job); what they
  -- remove from the active set, the ids and the keyspace, at once after
  -- ('gone': a second finish of one lease in the batch is refused)
  local gone, zact, zids, dels = {}, {}, {}, {}
  local function finish(f)
    local id, kind = ARGV[f + 1], ARGV[f + 3]
    local k = jkey(id)
    local h = redis.call('HMGET', k, 'state', 'leaseToken', kind == '0' and 'roc' or 'rof',
      'attemptsMade')
    if h[1] ~= 'active' or h[2] ~= ARGV[f + 2] or gone[id] then return -22 end
    gone[id] = true
    zact[#zact + 1] = id
    local keep = tonumber(h[3] or '-1') or -1
    if keep == 0 then
      zids[#zids + 1] = id
      dels[#dels + 1] = k
      dels[#dels + 1] = lkey(id)
      return 1
    end
    local attempts = I((tonumber(h[4] or '0') or 0) + 1)
    redis.call('HDEL', k, 'leaseToken', 'leaseUntil')
    local state
    if kind == '0' then
      state = 'completed'
      redis.call('HSET', k, 'attemptsMade', attempts, 'state', state,
        'finishedOn', ARGV[f + 4], 'returnvalue', ARGV[f + 5])
    else
      state = 'failed'
      redis.call('HSET', k, 'attemptsMade', attempts, 'state', state,
        'finishedOn', ARGV[f + 4], 'failedReason', ARGV[f + 6])
    end
    add_done(state, id, tonumber(ARGV[f + 4]), keep)
    return 1
  end
  local want, minnow, maxnow = {}, nil, 0
  for i, f in ipairs(ops) do
    local c, rc = ARGV[f], 1
    if c == 'F' or c == 'X' then
      rc = finish(f)
      code[i] = rc
    end
    if (c == 'R' or c == 'X') and rc > 0 then
      want[#want + 1] = i
      local now = tonumber(ARGV[rpos(f)])
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
  -- the first #want waiting jobs (ZPOPMIN would format every score)
  local took = {}
  if not is_paused then
    took = redis.call('ZRANGE', WAIT, '0', I(#want - 1))
    if #took > 0 then redis.call('ZREMRANGEBYRANK', WAIT, '0', I(#took - 1)) end
  end
  local za = {}
  for j, i in ipairs(want) do
    local f, id = ops[i], took[j]
    local t, l = rpos(f)
    if id then
      local lease = ARGV[l]
      za[#za + 1] = lease
      za[#za + 1] = id
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
        redis.call('HSET', kk, 'state', 'active', 'processedOn', ARGV[t],
          'leaseUntil', lease, 'leaseToken', ARGV[l + 1], 'finishedOn', '0')
      else
        redis.call('HSET', kk, 'state', 'active', 'processedOn', ARGV[t],
          'leaseUntil', lease, 'leaseToken', ARGV[l + 1])
      end
      hs[i] = h
      if nologs then
        xs[i] = 0
      else
        local l = redis.call('LRANGE', lkey(id), 0, -1)
        xs[i] = #l > 0 and l or 0
      end
    else
      xs[i] = is_paused and 0 or next_at(first, tonumber(ARGV[t]), 0)
    end
  end
  if #za > 0 then
    za[#za + 1] = '+inf'
    za[#za + 1] = PIN
    redis.call('ZADD', ACTIVE, unpack(za))
  end
end
run_ops()
local out, o, cn = { 1 }, 1, nil
for i, f in ipairs(ops) do
  local c = ARGV[f]
  if c == 'C' then
    cn = cn or counts()
    o = o + 1; out[o] = cn
  elseif c == 'F' or (c == 'X' and code[i] < 0) then
    o = o + 1; out[o] = code[i]
  else
    local h = hs[i]
    if c == 'X' then
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
return out
