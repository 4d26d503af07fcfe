-- ARGV[4] now, [5] max unfinished, [6] id, [7] timestamp, [8] delayUntil,
-- [9..] field, value pairs of the record.
local id, now = ARGV[6], tonumber(ARGV[4])
local k = jkey(id)
if redis.call('EXISTS', k) == 1 then return { 0, getjob(id) } end
local max = tonumber(ARGV[5])
if max > 0 and redis.call('ZCARD', WAIT) + redis.call('ZCARD', DELAYED) +
    redis.call('ZCARD', ACTIVE) >= max then
  return { -18 }
end
local f = {}
for i = 9, #ARGV do f[#f + 1] = ARGV[i] end
redis.call('HSET', k, unpack(f))
local du = tonumber(ARGV[8])
if du > now then
  redis.call('HSET', k, 'state', 'delayed')
  redis.call('ZADD', DELAYED, I(du), id)
else
  make_waiting(id)
  wake()
end
redis.call('ZADD', IDS, ARGV[7], id)
return { 1, getjob(id) }
