-- Several reserve / finish / finish_reserve calls of one queue, gathered
-- from concurrent threads by the adapter, run in order in one step (one
-- round trip for all). ARGV[4] = number of ops, then per op its letter
-- and arguments (as queue_reserve, queue_finish, queue_finish_reserve):
--   R now lease token lmax ldur grouped             {1, job} | {-3, next_at}
--   F id token kind now rv reason retry_at          {code}
--   X id token kind now rv reason retry_at lease token lmax ldur grouped
--                                                   {-22} | {1, 1, job} | {1, 0, next_at}
-- Reply {1, reply of the first op, ...}.
local n, a, out = tonumber(ARGV[4]), 5, { 1 }
for _ = 1, n do
  local op = ARGV[a]
  if op == 'R' then
    out[#out + 1] = reserve_next(tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]),
      ARGV[a + 3], tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), ARGV[a + 6] == '1')
    a = a + 7
  else
    local now = tonumber(ARGV[a + 4])
    local rc = finish_job(ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3]), now,
      ARGV[a + 5], ARGV[a + 6], tonumber(ARGV[a + 7]))
    if op == 'F' or rc < 0 then
      out[#out + 1] = { rc }
    else
      local r = reserve_next(now, tonumber(ARGV[a + 8]), ARGV[a + 9],
        tonumber(ARGV[a + 10]), tonumber(ARGV[a + 11]), ARGV[a + 12] == '1')
      if r[1] == 1 then out[#out + 1] = { 1, 1, r[2] } else out[#out + 1] = { 1, 0, r[2] } end
    end
    a = a + (op == 'F' and 8 or 13)
  end
end
return out
