-- ARGV[4] now, [5] lease ms, [6] token, [7] limiter max, [8] limiter
-- duration ms, [9] grouped (0|1). Reply {1, job} or {-3, next_at}.
local now = tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', I(now), 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', DELAYED, id)
  make_waiting(id)
end
if #due > 1 then wake() end
local function next_delayed()
  if #due == 1000 then return now end
  local d = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
  if #d > 0 then return tonumber(d[2]) end
  return 0
end
if paused() then return { -3, 0 } end
local lmax, ldur, grouped = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9] == '1'
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
  pick = redis.call('ZRANGE', WAIT, 0, 0)[1]
elseif not grouped then
  if redis.call('ZCARD', WAIT) > 0 then
    local t = window(limkey(nil))
    if t == 0 then pick = redis.call('ZRANGE', WAIT, 0, 0)[1] else nxt = t end
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
if not pick then
  local d = next_delayed()
  if d > 0 and (nxt == 0 or d < nxt) then nxt = d end
  return { -3, I(nxt) }
end
local k = jkey(pick)
local lease = now + tonumber(ARGV[5])
redis.call('ZREM', WAIT, pick)
redis.call('ZADD', ACTIVE, I(lease), pick)
redis.call('HSET', k, 'state', 'active', 'processedOn', I(now),
  'leaseUntil', I(lease), 'leaseToken', ARGV[6])
redis.call('HDEL', k, 'finishedOn')
if lmax > 0 then
  local lk = limkey(pickg)
  redis.call('ZADD', lk, I(now), ARGV[6])
  redis.call('PEXPIRE', lk, I(ldur + 60000))
end
return { 1, getjob(pick) }
