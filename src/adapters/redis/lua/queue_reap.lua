-- ARGV[4] now, [5] max stalled. Reply {1, {failed(0|1), job}...}.
local now, max = tonumber(ARGV[4]), tonumber(ARGV[5])
local out, woke = { 1 }, false
for _, id in ipairs(redis.call('ZRANGEBYSCORE', ACTIVE, '-inf', '(' .. I(now))) do
  local k = jkey(id)
  redis.call('ZREM', ACTIVE, id)
  local sc = redis.call('HINCRBY', k, 'stalledCount', '1')
  if sc > max then
    redis.call('HSET', k, 'failedReason', 'job stalled more than allowable limit',
      'state', 'failed', 'finishedOn', I(now))
    local j = getjob(id)
    finalize('failed', id, now, 'stalledCount', sc)
    out[#out + 1] = { 1, j }
  else
    make_waiting(id)
    woke = true
    out[#out + 1] = { 0, getjob(id) }
  end
end
if woke then wake() end
return out
