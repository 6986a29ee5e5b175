-- Renew or release a chunk's lease. The expiry this holder last wrote identifies it:
-- after the lease was reaped or taken over, the old holder can neither renew nor release
-- the new one.
-- KEYS[1] running chunks zset. ARGV: member, the expiry this holder last wrote, the new
-- expiry ('' releases).
-- Returns 1 when renewed or released, 0 when the lease is no longer this holder's.
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not held or tonumber(held) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then return redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
