-- Several reserve / finish / finish_reserve calls of one queue, gathered
-- from concurrent threads by the adapter, run in one step (one round trip
-- for all). ARGV[4] = number of ops, then per op its letter and arguments:
--   R now lease token lmax ldur grouped             {1, job} | {-3, next_at}
--   F id token kind now rv reason retry_at          {code}
--   X id token kind now rv reason retry_at lease token lmax ldur grouped
--                                                   {-22} | {1, 1, job} | {1, 0, next_at}
--   C                                               as queue_counts
-- (X: finish, then when it succeeded reserve.) Reply {1, reply of the
-- first op, ...}. The ops are concurrent calls: any order that keeps each
-- X's finish before its reserve is theirs, and gives each reserve what is
-- due at its own now. When no op has a limiter and no finish makes a job
-- runnable again (retry, release), every finish runs first and the
-- reserves then share one promotion (at the earliest now), one ZPOPMIN and
-- one ZADD, unless a delayed job comes due between the earliest and the
-- latest now (then each reserve runs in turn); otherwise each op runs in
-- turn. Counts are taken once, after every other op of the batch.
local n = tonumber(ARGV[4])
local ops, a, fast = {}, 5, true
for i = 1, n do
  local c = ARGV[a]
  local op = { c = c, at = a }
  if c == 'C' then
    a = a + 1
  elseif c == 'R' then
    op.now, op.lease, op.tok = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3]
    op.lmax, op.ldur, op.grouped = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), ARGV[a + 6] == '1'
    a = a + 7
  else
    local kind = tonumber(ARGV[a + 3])
    if kind ~= 0 and kind ~= 2 then fast = false end
    op.now = tonumber(ARGV[a + 4])
    if c == 'X' then
      op.lease, op.tok = tonumber(ARGV[a + 8]), ARGV[a + 9]
      op.lmax, op.ldur, op.grouped = tonumber(ARGV[a + 10]), tonumber(ARGV[a + 11]), ARGV[a + 12] == '1'
      a = a + 13
    else
      a = a + 8
    end
  end
  if op.lmax and op.lmax > 0 then fast = false end
  ops[i] = op
end
local out = { 1 }
local function run_ops()
  local function finish(op)
    local f = op.at
    return finish_job(ARGV[f + 1], ARGV[f + 2], tonumber(ARGV[f + 3]), tonumber(ARGV[f + 4]),
      ARGV[f + 5], ARGV[f + 6], tonumber(ARGV[f + 7]))
  end
  if not fast then
    for i, op in ipairs(ops) do
      if op.c == 'C' then
        -- after the others
      elseif op.c == 'R' then
        out[i + 1] = reserve_next(op.now, op.lease, op.tok, op.lmax, op.ldur, op.grouped)
      else
        local rc = finish(op)
        if op.c == 'F' or rc < 0 then
          out[i + 1] = { rc }
        else
          local r = reserve_next(op.now, op.lease, op.tok, op.lmax, op.ldur, op.grouped)
          if r[1] == 1 then out[i + 1] = { 1, 1, r[2] } else out[i + 1] = { 1, 0, r[2] } end
        end
      end
    end
    return out
  end
  -- finishes first
  local want, minnow, maxnow = {}, nil, 0
  for i, op in ipairs(ops) do
    local rc = 1
    if op.c == 'F' or op.c == 'X' then
      rc = finish(op)
      if op.c == 'F' or rc < 0 then out[i + 1] = { rc } end
    end
    if (op.c == 'R' or op.c == 'X') and rc > 0 then
      want[#want + 1] = i
      if minnow == nil or op.now < minnow then minnow = op.now end
      if op.now > maxnow then maxnow = op.now end
    end
  end
  if #want == 0 then return out end
  -- what is due for every reserve (each has its own now)
  local is_paused, first = promote(minnow)
  if not is_paused and first ~= '-' and tonumber(first) <= maxnow then
    -- a delayed job is due for some reserves only: each in turn
    for _, i in ipairs(want) do
      local op = ops[i]
      local r = reserve_next(op.now, op.lease, op.tok, op.lmax, op.ldur, op.grouped)
      if op.c == 'R' then out[i + 1] = r
      elseif r[1] == 1 then out[i + 1] = { 1, 1, r[2] }
      else out[i + 1] = { 1, 0, r[2] } end
    end
    return out
  end
  local popped = {}
  if not is_paused then popped = redis.call('ZPOPMIN', WAIT, I(#want)) end
  local za = {}
  for j, i in ipairs(want) do
    local op, id = ops[i], popped[2 * j - 1]
    if id then
      local lease = I(op.now + op.lease)
      za[#za + 1] = lease
      za[#za + 1] = id
      local kk = jkey(id)
      local h = redis.call('HGETALL', kk)
      redis.call('HSET', kk, 'state', 'active', 'processedOn', ARGV[op.at + (op.c == 'R' and 1 or 4)],
        'leaseUntil', lease, 'leaseToken', op.tok, 'finishedOn', '0')
      local job = reserved_reply(id, h)
      if op.c == 'R' then out[i + 1] = { 1, job } else out[i + 1] = { 1, 1, job } end
    else
      local nx = is_paused and 0 or next_at(first, op.now, 0)
      if op.c == 'R' then out[i + 1] = { -3, nx } else out[i + 1] = { 1, 0, nx } end
    end
  end
  if #za > 0 then redis.call('ZADD', ACTIVE, unpack(za)) end
  return out
end
run_ops()
local cn
for i, op in ipairs(ops) do
  if op.c == 'C' then
    cn = cn or counts()
    out[i + 1] = cn
  end
end
return out
