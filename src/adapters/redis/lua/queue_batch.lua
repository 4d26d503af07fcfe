-- Several reserve / finish / finish_reserve calls of one queue, gathered
-- from concurrent threads by the adapter, run in one step (one round trip
-- for all). ARGV[4] = number of ops, then per op its letter and arguments:
--   R now lease token lmax ldur grouped             {1, job} | {-3, next_at}
--   F id token kind now rv reason retry_at          {code}
--   X id token kind now rv reason retry_at lease token lmax ldur grouped
--                                                   {-22} | {1, 1, job} | {1, 0, next_at}
--   C                                               as queue_counts
-- ('lease' is the new lease's end, leaseUntil; X: finish, then when it
-- succeeded reserve.) Reply {1, reply of the first op, ...}. The ops are
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
local out = { 1 }
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
      elseif c == 'R' then
        out[i + 1] = reserve(f)
      else
        local rc = finish_job(ARGV[f + 1], ARGV[f + 2], tonumber(ARGV[f + 3]), tonumber(ARGV[f + 4]),
          ARGV[f + 5], ARGV[f + 6], tonumber(ARGV[f + 7]))
        if c == 'F' or rc < 0 then
          out[i + 1] = { rc }
        else
          local r = reserve(f)
          if r[1] == 1 then out[i + 1] = { 1, 1, r[2] } else out[i + 1] = { 1, 0, r[2] } end
        end
      end
    end
    return out
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
      if c == 'F' or rc < 0 then out[i + 1] = { rc } end
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
  if #want == 0 then return out end
  -- what is due for every reserve (each has its own now)
  local is_paused, first = promote(minnow)
  if not is_paused and first ~= '-' and tonumber(first) <= maxnow then
    -- a delayed job is due for some reserves only: each in turn
    for _, i in ipairs(want) do
      local f = ops[i]
      local r = reserve(f)
      if ARGV[f] == 'R' then out[i + 1] = r
      elseif r[1] == 1 then out[i + 1] = { 1, 1, r[2] }
      else out[i + 1] = { 1, 0, r[2] } end
    end
    return out
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
      local job = { h, 0, nologs and {} or redis.call('LRANGE', lkey(id), 0, -1) }
      if ARGV[f] == 'R' then out[i + 1] = { 1, job } else out[i + 1] = { 1, 1, job } end
    else
      local nx = is_paused and 0 or next_at(first, tonumber(ARGV[t]), 0)
      if ARGV[f] == 'R' then out[i + 1] = { -3, nx } else out[i + 1] = { 1, 0, nx } end
    end
  end
  if #za > 0 then redis.call('ZADD', ACTIVE, unpack(za)) end
  return out
end
run_ops()
local cn
for i, f in ipairs(ops) do
  if ARGV[f] == 'C' then
    cn = cn or counts()
    out[i + 1] = cn
  end
end
return out
