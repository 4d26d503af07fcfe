-- ARGV[4] id.
local j = getjob(ARGV[4])
if not j then return { -11 } end
return { 1, j }
