-- KEYS[1] K, KEYS[2] {K}:exp; ARGV[1] value, [2] expire_at (0 = never).
-- Redis' own expiry (1 s after expire_at, on Redis' clock) is a backstop;
-- reads compare {K}:exp with the engine's clock.
redis.call('SET', KEYS[1], ARGV[1])
local exp = tonumber(ARGV[2])
if exp > 0 then
  redis.call('SET', KEYS[2], ARGV[2])
  local t = redis.call('TIME')
  local rnow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if exp + 1000 > rnow then
    redis.call('PEXPIREAT', KEYS[1], I(exp + 1000))
    redis.call('PEXPIREAT', KEYS[2], I(exp + 1000))
  end
else
  redis.call('DEL', KEYS[2])
end
return { 1 }
