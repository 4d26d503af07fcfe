-- KEYS[1] I, KEYS[2] {I}:meta; ARGV[1] member ("" with ARGV[2] = 1: drop all).
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return { 1, redis.call('ZCARD', KEYS[1]) }
