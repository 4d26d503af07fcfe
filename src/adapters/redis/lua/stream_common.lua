-- Prelude of the stream scripts. An event's eight fields stand in ARGV
-- from index b on: type, runId, flowName, stepName, stepId, attempt, has
-- data (0|1), data; ARGV[t] is now, the event's ts.
-- XADD of the event at b to stream S under id spec 'id' with 'call'
-- (redis.call, or redis.pcall to try an id Redis may refuse).
local function xadd(call, S, id, b, t)
  if ARGV[b + 6] == '1' then
    return call('XADD', S, id, 'type', ARGV[b], 'runId', ARGV[b + 1],
      'flowName', ARGV[b + 2], 'stepName', ARGV[b + 3], 'stepId', ARGV[b + 4],
      'attempt', ARGV[b + 5], 'ts', ARGV[t], 'data', ARGV[b + 7])
  end
  return call('XADD', S, id, 'type', ARGV[b], 'runId', ARGV[b + 1],
    'flowName', ARGV[b + 2], 'stepName', ARGV[b + 3], 'stepId', ARGV[b + 4],
    'attempt', ARGV[b + 5], 'ts', ARGV[t])
end
-- The live note of the event at b (ts ARGV[t]), appended to the stream
-- named 'name' (as the engine gave it) with id 'id', published on channel
-- ch: length-prefixed fields (redis/stream.c).
local function ns(s) return #s .. ':' .. s end
local function note(ch, name, id, b, t)
  redis.call('PUBLISH', ch, ns('e') .. ns(name) .. ns(id) .. ns(ARGV[t]) ..
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
-- The n events at ARGV[b], ARGV[b + 8], ... (ts ARGV[t]) appended in
-- order to stream S of length len, all or none, then their notes
-- published in the same order: flow.* events on channel 'live', the
-- others on 'steps' while someone listens there (asked once). The id of
-- each is <ms>-<seq> with ms = max(now, last ms) (E-2). Returns
-- {1, len + n, id...}. (stream_appendn, stream_appendb)
local function add_events(S, name, t, len, n, b, live, steps)
  local now = tonumber(ARGV[t])
  local out = { 1, len + n }
  -- "<now>-*" first (Redis picks the sequence; refused when the stream's
  -- last id is ahead of now, a clock behind an earlier append): once one
  -- is in, the others of the same ms cannot be refused
  local first
  if now > 0 then
    local r = xadd(redis.pcall, S, ARGV[t] .. '-*', b, t)
    if type(r) == 'string' then first = r end
  end
  if first then
    out[3] = first
    for k = 1, n - 1 do
      out[3 + k] = xadd(redis.call, S, ARGV[t] .. '-*', b + 8 * k, t)
    end
  else
    -- ids first (E-2: ms = max(now, last ms), seq grows), so that no XADD
    -- can be refused halfway
    local ms, seq = now, -1
    if len > 0 then
      local last = redis.call('XREVRANGE', S, '+', '-', 'COUNT', 1)
      local lid = last[1][1]
      local d = string.find(lid, '-', 1, true)
      local lms, lseq = tonumber(string.sub(lid, 1, d - 1)), tonumber(string.sub(lid, d + 1))
      if lms >= ms then ms = lms; seq = lseq end
    end
    if ms <= 0 and seq < 1 then ms = 0; seq = 0 end
    for k = 0, n - 1 do
      seq = seq + 1
      local id = string.format('%d-%d', ms, seq)
      xadd(redis.call, S, id, b + 8 * k, t)
      out[3 + k] = id
    end
  end
  local steps_on = nil
  for k = 0, n - 1 do
    local e = b + 8 * k
    local ch = live
    if string.sub(ARGV[e], 1, 5) ~= 'flow.' then
      if steps_on == nil then steps_on = listening(steps) end
      ch = steps_on and steps or nil
    end
    if ch then note(ch, name, out[3 + k], e, t) end
  end
  return out
end
