-- ARGV[4] id, [5] token, [6] until.
local id = ARGV[4]
if not take_lease(id, ARGV[5]) then return { -22 } end
redis.call('HSET', jkey(id), 'leaseUntil', ARGV[6])
redis.call('ZADD', ACTIVE, ARGV[6], id)
return { 1 }
