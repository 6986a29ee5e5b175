-- Take an overdue delivery for one sweep: one due before the cutoff is made due again
-- later and its (generation, attempts) returned, so concurrent sweeps send it once; one no
-- longer pending leaves the index.
-- KEYS[1] pending index, KEYS[2] delivery hash.
-- ARGV[1] delivery id, ARGV[2] cutoff, ARGV[3] when it is due again, ARGV[4] encoded
-- pending state.
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return false end
if redis.call('HGET', KEYS[2], 'state') ~= ARGV[4] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return false
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return redis.call('HMGET', KEYS[2], 'generation', 'attempts')
