-- running -> canceled for a batch.
-- KEYS[1] batch hash. ARGV[1] encoded finished_at, ARGV[2] encoded reason, ARGV[3] encoded
-- running status, ARGV[4] encoded canceled status.
-- Returns 1 when canceled, 0 when the batch had already finished.
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'finished_at', ARGV[1], 'reason', ARGV[2])
return 1
