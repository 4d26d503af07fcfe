-- finish then, when it succeeded, reserve, in one step. ARGV[4..10] as
-- queue_finish, [11] lease ms, [12] token of the new lease, [13] limiter
-- max, [14] limiter duration ms, [15] grouped (0|1). Reply {-22}, or
-- {1, 1, job} (as queue_reserve), or {1, 0, next_at}.
local now = tonumber(ARGV[7])
local rc = finish_job(ARGV[4], ARGV[5], tonumber(ARGV[6]), now, ARGV[8],
  ARGV[9], tonumber(ARGV[10]))
if rc < 0 then return { rc } end
local r = reserve_next(now, tonumber(ARGV[11]), ARGV[12], tonumber(ARGV[13]),
  tonumber(ARGV[14]), ARGV[15] == '1')
if r[1] == 1 then return { 1, 1, r[2] } end
return { 1, 0, r[2] }
