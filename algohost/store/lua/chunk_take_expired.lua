-- Take an expired chunk lease off the set, for one reaper only.
-- KEYS[1] running chunks zset, KEYS[2] the batch's chunk attempts hash.
-- ARGV: member, now, "start:stop".
-- Returns the chunk's attempts so far, or -1 when it was renewed, taken over or reaped
-- meanwhile.
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not held or tonumber(held) > tonumber(ARGV[2]) then return -1 end
redis.call('ZREM', KEYS[1], ARGV[1])
return tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
