-- KEYS[1] the run stream. ARGV[1] now, [2] expected version (-1 any),
-- [3] live channel, [4] the live channel of the events that are not
-- flow.* ones, [5] the stream's name as the engine gave it (for notes),
-- [6] n, then n events of 8 fields each: type, runId, flowName,
-- stepName, stepId, attempt, has data (0|1), data.
-- The n events appended in order as stream_append appends one (ids,
-- notes); all or none. Reply {1, new length, id...} or {-6, length}.
local S, now, exp, n = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[6])
local len = redis.call('XLEN', S)
if exp >= 0 and len ~= exp then return { -6, len } end
-- XADD of event k (0-based) with id spec 'id' (pcall when 'try')
local function add(k, id, try)
  return xadd(try and redis.pcall or redis.call, S, id, 7 + 8 * k)
end
local out = { 1, len + n }
-- "<now>-*" first (Redis picks the sequence; refused when the stream's
-- last id is ahead of now, a clock behind an earlier append): once one
-- is in, the others of the same ms cannot be refused
local first
if now > 0 then
  local r = add(0, ARGV[1] .. '-*', true)
  if type(r) == 'string' then first = r end
end
if first then
  out[3] = first
  for k = 1, n - 1 do out[3 + k] = add(k, ARGV[1] .. '-*') end
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
    add(k, id)
    out[3 + k] = id
  end
end
local steps_on = nil
for k = 0, n - 1 do
  local b = 7 + 8 * k
  local ch = ARGV[3]
  if string.sub(ARGV[b], 1, 5) ~= 'flow.' then
    if steps_on == nil then steps_on = listening(ARGV[4]) end
    ch = steps_on and ARGV[4] or nil
  end
  if ch then note(ch, ARGV[5], out[3 + k], b) end
end
return out
