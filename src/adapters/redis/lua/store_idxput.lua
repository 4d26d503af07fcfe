-- KEYS[1] I, KEYS[2] {I}:meta; ARGV[1] member, [2] score, [3] has meta, [4] meta.
-- Reply {1, size of I after the put}.
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return { 1, redis.call('ZCARD', KEYS[1]) }
