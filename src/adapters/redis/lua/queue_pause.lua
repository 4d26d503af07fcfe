-- ARGV[4] paused (0|1).
redis.call('HSET', META, 'paused', ARGV[4])
if ARGV[4] == '0' then wake() end
return { 1 }
