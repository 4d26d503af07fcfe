-- ARGV[4] id. Reply {1, job as it was}.
local id = ARGV[4]
local st = redis.call('HGET', jkey(id), 'state')
if not st then return { -11 } end
if st == 'active' then return { -15 } end
local j = getjob(id)
drop(id, false)
return { 1, j }
