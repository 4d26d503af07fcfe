-- ARGV[4] id, [5] token, [6] progress, [7] has data (0|1), [8] data.
local id = ARGV[4]
if not take_lease(id, ARGV[5]) then return { -22 } end
redis.call('HSET', jkey(id), 'progress', ARGV[6])
if ARGV[7] == '1' then
  redis.call('HSET', jkey(id), 'progressData', ARGV[8])
else
  redis.call('HDEL', jkey(id), 'progressData')
end
return { 1 }
