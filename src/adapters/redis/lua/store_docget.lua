-- KEYS[1] {C}:docs, KEYS[2] {C}:revs; ARGV[1] id ("" = every document:
-- reply {1, id, json, rev, ...}).
if ARGV[1] == '' then
  local out = { 1 }
  local h = redis.call('HGETALL', KEYS[1])
  for i = 1, #h, 2 do
    out[#out + 1] = h[i]
    out[#out + 1] = h[i + 1]
    out[#out + 1] = redis.call('HGET', KEYS[2], h[i]) or '1'
  end
  return out
end
local j = redis.call('HGET', KEYS[1], ARGV[1])
if not j then return { -3 } end
return { 1, ARGV[1], j, redis.call('HGET', KEYS[2], ARGV[1]) or '1' }
