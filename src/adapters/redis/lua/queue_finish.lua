-- ARGV[4] id, [5] token, [6] kind (0 complete, 1 retry, 2 fail,
-- 3 release), [7] now, [8] returnvalue, [9] failed reason, [10] retry_at.
local id, kind, now = ARGV[4], tonumber(ARGV[6]), tonumber(ARGV[7])
if not take_lease(id, ARGV[5]) then return { -22 } end
local k = jkey(id)
redis.call('ZREM', ACTIVE, id)
redis.call('HDEL', k, 'leaseToken', 'leaseUntil')
if kind == 3 then
  make_waiting(id)
  wake()
  return { 1 }
end
redis.call('HINCRBY', k, 'attemptsMade', 1)
if kind == 0 then
  finalize('completed', id, now, 'returnvalue', ARGV[8])
elseif kind == 1 then
  redis.call('HSET', k, 'failedReason', ARGV[9])
  local at = tonumber(ARGV[10])
  if at > now then
    redis.call('HSET', k, 'state', 'delayed', 'delayUntil', I(at))
    redis.call('ZADD', DELAYED, I(at), id)
    wake()
  else
    make_waiting(id)
    wake()
  end
else
  finalize('failed', id, now, 'failedReason', ARGV[9])
end
return { 1 }
