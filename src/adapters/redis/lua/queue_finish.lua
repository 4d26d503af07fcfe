-- ARGV[4] id, [5] token, [6] kind (0 complete, 1 retry, 2 fail,
-- 3 release), [7] now, [8] returnvalue, [9] failed reason, [10] retry_at.
return { finish_job(ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]),
  ARGV[8], ARGV[9], tonumber(ARGV[10])) }
