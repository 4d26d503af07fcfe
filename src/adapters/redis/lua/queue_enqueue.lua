-- ARGV[4] now, [5] max unfinished, [6] id, [7] timestamp, [8] delayUntil,
-- [9] priority, [10] lifo (0|1), [11..] field, value pairs of the record
-- (its state and 'nologs' among them).
-- Reply {1, state, paused} for a new job (the caller has its record),
-- {0, job} for an existing one.
local id, now = ARGV[6], tonumber(ARGV[4])
local k = jkey(id)
if redis.call('EXISTS', k) == 1 then return { 0, getjob(id) } end
local max = tonumber(ARGV[5])
if max > 0 and redis.call('ZCARD', WAIT) + redis.call('ZCARD', DELAYED) +
    redis.call('ZCOUNT', ACTIVE, '-inf', '(+inf') >= max then
  return { -18 }
end
local du = tonumber(ARGV[8])
redis.call('HSET', k, unpack(ARGV, 11))
if du > now then
  add_delayed(id, du)
  wake()   -- waiters keep the time of the next due job: it may be sooner
else
  make_waiting(id, tonumber(ARGV[9]), ARGV[10], true)
  wake()
end
redis.call('ZADD', IDS, ARGV[7], id)
return { 1, du > now and 'delayed' or 'waiting', paused() and 1 or 0 }
