-- ARGV[4] now, [5] lease ms, [6] token, [7] limiter max, [8] limiter
-- duration ms, [9] grouped (0|1). Reply {1, job} or {-3, next_at}.
return reserve_next(tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6],
  tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9] == '1')
