-- Hold a batch chunk. A live lease elsewhere wins (0); an expired one is taken over, so a
-- redelivered message need not wait for the reaper.
-- KEYS[1] running chunks zset, KEYS[2] the batch's chunk attempts hash.
-- ARGV: member, lease expiry, now, "start:stop", retention.
-- Returns the attempt number, or 0.
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if held and tonumber(held) > tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local attempts = redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
redis.call('EXPIRE', KEYS[2], ARGV[5])
return attempts
