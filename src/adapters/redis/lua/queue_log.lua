-- ARGV[4] id, [5] entry JSON, [6] keep (<= 0: all).
local id, keep = ARGV[4], tonumber(ARGV[6])
if redis.call('EXISTS', jkey(id)) == 0 then return { -11 } end
redis.call('HDEL', jkey(id), 'nologs')
redis.call('RPUSH', lkey(id), ARGV[5])
if keep > 0 then redis.call('LTRIM', lkey(id), -keep, -1) end
return { 1 }
