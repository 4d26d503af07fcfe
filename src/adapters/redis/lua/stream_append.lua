-- KEYS[1] the run stream (a Redis stream, E-7). ARGV[1] now, [2] expected
-- version (-1 any), [3] live channel, [4] type, [5] runId, [6] flowName,
-- [7] stepName, [8] stepId, [9] attempt, [10] has data (0|1), [11] data,
-- [12] the stream's name as the engine gave it (for notes), [13] the live
-- channel of the events that are not flow.* ones.
-- The id is <ms>-<seq> with ms = max(now, last ms) (E-2); the event is
-- published in the same script, so notifications follow append order:
-- flow.* events on the live channel (with the messages: every
-- subscription listens there), the others on ARGV[13], and only while
-- someone listens there (a subscription of flow events only does not:
-- each PUBLISH costs the server a message per subscriber). Reply
-- {1, id, new length} or {-6, length}.
-- Entry fields: type runId flowName stepName stepId attempt ts [data].
local S, now, exp = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local len = redis.call('XLEN', S)
if exp >= 0 and len ~= exp then return { -6, len } end
local id
if now > 0 then
  -- "<now>-*": Redis picks the sequence; refused when the stream's last
  -- id is ahead of now (a clock behind an earlier append)
  local r = xadd(redis.pcall, S, ARGV[1] .. '-*', 4, 1)
  if type(r) == 'string' then id = r end
end
if not id then
  local ms, seq = now, 0
  local last = redis.call('XREVRANGE', S, '+', '-', 'COUNT', 1)
  if #last > 0 then
    local lid = last[1][1]
    local d = string.find(lid, '-', 1, true)
    local lms, lseq = tonumber(string.sub(lid, 1, d - 1)), tonumber(string.sub(lid, d + 1))
    if lms >= ms then ms = lms; seq = lseq + 1 end
  end
  if ms <= 0 and seq == 0 then ms = 0; seq = 1 end
  id = string.format('%d-%d', ms, seq)
  xadd(redis.call, S, id, 4, 1)
end
local ch = ARGV[3]
if string.sub(ARGV[4], 1, 5) ~= 'flow.' then
  ch = ARGV[13]
  if not listening(ch) then ch = nil end
end
if ch then note(ch, ARGV[12], id, 4, 1) end
return { 1, id, len + 1 }
