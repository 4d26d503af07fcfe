-- ARGV[4] state mask, [5] offset, [6] limit (< 0: all).
-- Reply {1, total, job...}: newest first by timestamp, ties id descending.
local mask, off, lim = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local p = paused()
local function want(s) return bit.band(mask, bit.lshift(1, s)) ~= 0 end
local sets = {}
if (p and want(5)) or (not p and want(0)) then sets[#sets + 1] = WAIT end
if want(1) then sets[#sets + 1] = DELAYED end
if want(2) then sets[#sets + 1] = ACTIVE end
if want(3) then sets[#sets + 1] = DONE.completed end
if want(4) then sets[#sets + 1] = DONE.failed end
local out, total = { 1, 0 }, 0
if lim == 0 then lim = 0 end
if #sets == 5 then
  total = redis.call('ZCARD', IDS)
  if lim ~= 0 then
    local stop = -1
    if lim > 0 then stop = off + lim - 1 end
    for _, id in ipairs(redis.call('ZREVRANGE', IDS, off, stop)) do
      out[#out + 1] = getjob(id)
    end
  end
else
  local all = {}
  for _, s in ipairs(sets) do
    -- (finite scores: not the active set's PIN)
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', s, '-inf', '(+inf')) do
      all[#all + 1] = { id, tonumber(redis.call('HGET', jkey(id), 'timestamp') or '0') }
    end
  end
  table.sort(all, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    return a[1] > b[1]
  end)
  total = #all
  local last = total
  if lim >= 0 and off + lim < last then last = off + lim end
  for i = off + 1, last do out[#out + 1] = getjob(all[i][1]) end
end
out[2] = total
return out
