-- Claim a blob for deletion: only when nothing references it and it has been so since
-- before the cutoff.
-- KEYS[1] the blob's references, KEYS[2] unreferenced zset. ARGV[1] digest, ARGV[2] cutoff.
-- Returns 1 when claimed (it left the unreferenced zset), else 0.
if redis.call('SCARD', KEYS[1]) > 0 then return 0 end
local since = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not since or tonumber(since) > tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
