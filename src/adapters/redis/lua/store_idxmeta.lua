-- KEYS[1] I, KEYS[2] {I}:meta; ARGV[1] member, [2] meta, [3] unless
-- status (comma list, "" = none). IX-3: a terminal status stays.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return { -3 } end
if ARGV[3] ~= '' then
  local cur = redis.call('HGET', KEYS[2], ARGV[1])
  if cur then
    local ok, m = pcall(cjson.decode, cur)
    if ok and type(m) == 'table' and type(m.status) == 'string' then
      for s in string.gmatch(ARGV[3], '[^,]+') do
        if string.match(s, '^%s*(.-)%s*$') == m.status then return { -6 } end
      end
    end
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return { 1 }
