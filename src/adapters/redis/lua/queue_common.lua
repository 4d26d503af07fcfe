-- Prelude of every queue script. Key layout of queue Q with prefix P, all
-- under the hash tag {P:q:Q} (one Redis Cluster slot):
--   B:meta       hash  paused (0|1), seq / lseq (wait order counters), fseq
--   B:wait       zset  waiting jobs, score priority*2^31 + 2^30 + seq
--                      (lifo jobs take -lseq: ahead of their priority)
--   B:delayed    zset  delayed jobs by delayUntil
--   B:active     zset  active jobs by leaseUntil
--   B:completed  zset  completed jobs by finishedOn*4096 + finish seq % 4096
--   B:failed     zset  failed jobs, the same (retention order, Q-10)
--   B:ids        zset  every job by timestamp (listing)
--   B:j:<id>     hash  the job record (fields as in redis/queue.c)
--   B:l:<id>     list  the job's log entries (JSON texts)
--   B:lim[...]   zset  limiter activations by time (sliding window)
-- Every change that may make a job runnable sooner than the reply of an
-- empty reserve said (enqueue, delayed enqueue, retry, release, resume,
-- reap) publishes the queue name on the wake channel: instances cache
-- empty reserves until such a note (redis/queue.c).
-- KEYS[1] = B:meta routes the call; ARGV[1] = B, ARGV[2] = the wake
-- channel, ARGV[3] = the queue name. Replies: {code, ...}, code < 0 an
-- NV_E* code. Layout version 1.
local B = ARGV[1]
local META, WAIT, DELAYED, ACTIVE = B .. ':meta', B .. ':wait', B .. ':delayed', B .. ':active'
local DONE = { completed = B .. ':completed', failed = B .. ':failed' }
local IDS = B .. ':ids'
local function I(x) return string.format('%.0f', x) end
local function jkey(id) return B .. ':j:' .. id end
local function lkey(id) return B .. ':l:' .. id end
local function paused() return redis.call('HGET', META, 'paused') == '1' end
local function wake() redis.call('PUBLISH', ARGV[2], ARGV[3]) end
local function make_waiting(id, prio, lifo)
  local k = jkey(id)
  if prio == nil then
    local f = redis.call('HMGET', k, 'priority', 'lifo')
    prio, lifo = tonumber(f[1] or '0') or 0, f[2]
  end
  if redis.call('ZCARD', WAIT) == 0 then
    redis.call('HSET', META, 'seq', 0, 'lseq', 0)
  end
  local n
  if lifo == '1' then
    n = -redis.call('HINCRBY', META, 'lseq', 1)
  else
    n = redis.call('HINCRBY', META, 'seq', 1)
  end
  redis.call('ZADD', WAIT, I(prio * 2147483648 + 1073741824 + n), id)
  redis.call('HSET', k, 'state', 'waiting')
end
local function getjob(id)
  local h = redis.call('HGETALL', jkey(id))
  if #h == 0 then return false end
  return { h, paused() and 1 or 0, redis.call('LRANGE', lkey(id), 0, -1) }
end
-- Delete a job record; 'set' (optional) is the one state set holding it.
local function drop(id, set)
  if set then
    redis.call('ZREM', set, id)
  else
    redis.call('ZREM', WAIT, id)
    redis.call('ZREM', DELAYED, id)
    redis.call('ZREM', ACTIVE, id)
    redis.call('ZREM', DONE.completed, id)
    redis.call('ZREM', DONE.failed, id)
  end
  redis.call('ZREM', IDS, id)
  redis.call('DEL', jkey(id), lkey(id))
end
-- Move a job into a final state set and apply its retention (Q-10):
-- true (0) removes the job; N keeps the newest N of its final state.
local function finalize(state, id, now, field, value)
  local k = jkey(id)
  local keep = tonumber(redis.call('HGET', k, state == 'completed' and 'roc' or 'rof') or '-1') or -1
  if keep == 0 then
    drop(id, ACTIVE)
    return
  end
  redis.call('HSET', k, 'state', state, 'finishedOn', I(now), field, value)
  local set = DONE[state]
  -- newest last: finishedOn, then the finishing order within one ms
  local seq = redis.call('HINCRBY', META, 'fseq', 1) % 4096
  redis.call('ZADD', set, I(now * 4096 + seq), id)
  if keep > 0 then
    local n = redis.call('ZCARD', set)
    if n > keep then
      for _, o in ipairs(redis.call('ZRANGE', set, 0, n - keep - 1)) do drop(o, set) end
    end
  end
end
local function take_lease(id, token)
  local h = redis.call('HMGET', jkey(id), 'state', 'leaseToken')
  if h[1] ~= 'active' or h[2] ~= token then return false end
  return true
end
