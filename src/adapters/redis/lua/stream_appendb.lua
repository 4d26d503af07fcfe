-- Appends of several callers (stream.c, submit) in one call. KEYS[i] the
-- run stream of op i (of any run: a batch assumes one Redis node, not a
-- Cluster). ARGV[1] live channel, [2] the live channel of the events that
-- are not flow.* ones, [3] the number of ops; then per op: the stream's
-- name as the engine gave it (for notes), now, expected version (-1 any),
-- n, and n events of 8 fields each (as stream_appendn).
-- Each op in turn as stream_appendn does it alone: its expected version
-- checked (a conflict refuses that op only), its events appended all or
-- none with E-2 ids, their notes published. Reply: one element per op,
-- {1, new length, id...} or {-6, length}, or an error (its key holds
-- another kind of value: checked first, so that op appends nothing).
local out, b = {}, 4
for i = 1, tonumber(ARGV[3]) do
  local S, n, exp = KEYS[i], tonumber(ARGV[b + 3]), tonumber(ARGV[b + 2])
  local len = redis.pcall('XLEN', S)
  if type(len) ~= 'number' then
    out[i] = len
  elseif exp >= 0 and len ~= exp then
    out[i] = { -6, len }
  else
    out[i] = add_events(S, ARGV[b], b + 1, len, n, b + 4, ARGV[1], ARGV[2])
  end
  b = b + 4 + 8 * n
end
return out
