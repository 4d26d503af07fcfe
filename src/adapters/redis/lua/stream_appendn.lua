-- KEYS[1] the run stream. ARGV[1] now, [2] expected version (-1 any),
-- [3] live channel, [4] the live channel of the events that are not
-- flow.* ones, [5] the stream's name as the engine gave it (for notes),
-- [6] n, then n events of 8 fields each: type, runId, flowName,
-- stepName, stepId, attempt, has data (0|1), data.
-- The n events appended in order as stream_append appends one (ids,
-- notes); all or none. Reply {1, new length, id...} or {-6, length}.
local S, exp = KEYS[1], tonumber(ARGV[2])
local len = redis.call('XLEN', S)
if exp >= 0 and len ~= exp then return { -6, len } end
return add_events(S, ARGV[5], 1, len, tonumber(ARGV[6]), 7, ARGV[3], ARGV[4])
