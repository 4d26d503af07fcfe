-- Prelude of the stream scripts. An event's eight fields stand in ARGV
-- from index b on: type, runId, flowName, stepName, stepId, attempt, has
-- data (0|1), data; ARGV[1] is now, the event's ts.
-- XADD of the event at b to stream S under id spec 'id' with 'call'
-- (redis.call, or redis.pcall to try an id Redis may refuse).
local function xadd(call, S, id, b)
  if ARGV[b + 6] == '1' then
    return call('XADD', S, id, 'type', ARGV[b], 'runId', ARGV[b + 1],
      'flowName', ARGV[b + 2], 'stepName', ARGV[b + 3], 'stepId', ARGV[b + 4],
      'attempt', ARGV[b + 5], 'ts', ARGV[1], 'data', ARGV[b + 7])
  end
  return call('XADD', S, id, 'type', ARGV[b], 'runId', ARGV[b + 1],
    'flowName', ARGV[b + 2], 'stepName', ARGV[b + 3], 'stepId', ARGV[b + 4],
    'attempt', ARGV[b + 5], 'ts', ARGV[1])
end
-- The live note of the event at b, appended to the stream named 'name'
-- (as the engine gave it) with id 'id', published on channel ch:
-- length-prefixed fields (redis/stream.c).
local function ns(s) return #s .. ':' .. s end
local function note(ch, name, id, b)
  redis.call('PUBLISH', ch, ns('e') .. ns(name) .. ns(id) .. ns(ARGV[1]) ..
    ns(ARGV[b]) .. ns(ARGV[b + 1]) .. ns(ARGV[b + 2]) .. ns(ARGV[b + 3]) ..
    ns(ARGV[b + 4]) .. ns(ARGV[b + 5]) .. ns(ARGV[b + 6]) .. ns(ARGV[b + 7]))
end
-- Whether anyone subscribes to channel ch (the live channel of the events
-- that are not flow.* ones). PUBSUB NUMSUB is a call per append (~2 us of
-- Redis CPU); as functions (FUNCTIONS) the answer is kept in the
-- library's memory and asked again after 256 appends on ch. A
-- subscription of nvent tells at once, after its SUBSCRIBE
-- (stream_listen), so it hears every event appended after its subscribe()
-- returned; only a listener that does not tell (another version of
-- nvent, with its own library) may miss up to 256 appends at first.
local listen, asked, nlisten = {}, {}, 0
-- Keep v for ch, asked 0 times since (at most 256 channels kept).
local function keep_listen(ch, v)
  if listen[ch] == nil then
    if nlisten >= 256 then listen, asked, nlisten = {}, {}, 0 end
    nlisten = nlisten + 1
  end
  listen[ch], asked[ch] = v, 0
end
local function listening(ch)
  if not FUNCTIONS then return redis.call('PUBSUB', 'NUMSUB', ch)[2] > 0 end
  if listen[ch] == nil or asked[ch] >= 256 then
    keep_listen(ch, redis.call('PUBSUB', 'NUMSUB', ch)[2] > 0)
  end
  asked[ch] = asked[ch] + 1
  return listen[ch]
end
local function heard(ch)
  keep_listen(ch, true)
end
