-- ARGV[4] id. A failed job becomes waiting (Q-17).
local id = ARGV[4]
local st = redis.call('HGET', jkey(id), 'state')
if not st then return { -11 } end
if st ~= 'failed' then return { -16 } end
redis.call('ZREM', DONE.failed, id)
make_waiting(id)
wake()
return { 1, getjob(id) }
