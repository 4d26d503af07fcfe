-- Reply {1, waiting, delayed, active, completed, failed, paused}.
local w = redis.call('ZCARD', WAIT)
local p = 0
if paused() then p = w; w = 0 end
return { 1, w, redis.call('ZCARD', DELAYED), redis.call('ZCARD', ACTIVE),
  redis.call('ZCARD', DONE.completed), redis.call('ZCARD', DONE.failed), p }
