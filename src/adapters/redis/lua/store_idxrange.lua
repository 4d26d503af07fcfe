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
for i = 1, #r, 2 do
  out[#out + 1] = r[i]
  out[#out + 1] = r[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], r[i])
end
return out
