-- Take one of an owner's webhook slots: at most ARGV[3] of the owner's attempts are under
-- way at once. Slots of attempts whose worker died expire; one already held counts once.
-- KEYS[1] the owner's busy set.
-- ARGV[1] slot, ARGV[2] now, ARGV[3] limit, ARGV[4] hold until, ARGV[5] retention.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
