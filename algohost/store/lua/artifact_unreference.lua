-- Drop one reference to a blob; the last one gone starts its grace period.
-- KEYS[1] the blob's references, KEYS[2] unreferenced zset.
-- ARGV[1] digest, ARGV[2] the reference, ARGV[3] now.
redis.call('SREM', KEYS[1], ARGV[2])
if redis.call('SCARD', KEYS[1]) == 0 then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) end
return 1
