-- Claim a queued job in one round trip.
-- KEYS[1] job hash, KEYS[2] running zset.
-- ARGV[1] job id, ARGV[2] lease expiry, ARGV[3] started_at and ARGV[4] worker (both
-- JSON-encoded), ARGV[5] the encoded status it must be in (queued), ARGV[6] the encoded
-- status it moves to (running).
-- Returns {claimed 0|1, flat HGETALL of the record after}.
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {0, {}} end
if current ~= ARGV[5] then return {0, redis.call('HGETALL', KEYS[1])} end
redis.call('HSET', KEYS[1], 'status', ARGV[6], 'started_at', ARGV[3], 'worker', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return {1, redis.call('HGETALL', KEYS[1])}
