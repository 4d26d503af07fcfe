-- KEYS[1] I, KEYS[2] {I}:meta; ARGV[1] unless status (comma list, "" =
-- none), [2] n, then n entries: member, score, meta. Each entry: added
-- when absent; else its meta replaced unless the stored status is in the
-- list (IX-3: a terminal status stays). Reply {1, size of I}.
local unless, n = {}, tonumber(ARGV[2])
for s in string.gmatch(ARGV[1], '[^,]+') do unless[string.match(s, '^%s*(.-)%s*$')] = true end
for k = 0, n - 1 do
  local m, sc, meta = ARGV[3 + 3 * k], ARGV[4 + 3 * k], ARGV[5 + 3 * k]
  local put = true
  if redis.call('ZSCORE', KEYS[1], m) then
    if ARGV[1] ~= '' then
      local cur = redis.call('HGET', KEYS[2], m)
      if cur then
        -- the engine's own metadata begins with its status
        local st = string.match(cur, '^{"status":"([^"\\]*)"')
        if not st then
          local ok, d = pcall(cjson.decode, cur)
          if ok and type(d) == 'table' and type(d.status) == 'string' then st = d.status end
        end
        if st and unless[st] then put = false end
      end
    end
  else
    redis.call('ZADD', KEYS[1], sc, m)
  end
  if put then redis.call('HSET', KEYS[2], m, meta) end
end
return { 1, redis.call('ZCARD', KEYS[1]) }
