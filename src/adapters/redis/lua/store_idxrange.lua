-- KEYS[1] I, KEYS[2] {I}:meta; ARGV[1] desc (0|1), [2] offset, [3] limit
-- (< 0: all). Reply {1, total, member, score, meta|nil, ...}.
local off, lim = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = { 1, redis.call('ZCARD', KEYS[1]) }
if lim == 0 then return out end
local stop = -1
if lim > 0 then stop = off + lim - 1 end
local cmd = 'ZRANGE'
if ARGV[1] == '1' then cmd = 'ZREVRANGE' end
local r = redis.call(cmd, KEYS[1], off, stop, 'WITHSCORES')
-- metadata fetched with HMGET, 500 members at a time
for c = 1, #r, 1000 do
  local m = {}
  for i = c, math.min(#r, c + 999), 2 do m[#m + 1] = r[i] end
  local meta = redis.call('HMGET', KEYS[2], unpack(m))
  for j = 1, #m do
    out[#out + 1] = m[j]
    out[#out + 1] = r[c + 2 * (j - 1) + 1]
    out[#out + 1] = meta[j]
  end
end
return out
