-- A job's compare-and-set status change; waking its waiters in the same script saves
-- a round trip.
-- KEYS[1] job hash, KEYS[2] running zset, KEYS[3] the job's done list, KEYS[4] the
-- channel that API processes' waiters listen on (not a key: named here to keep it in one place).
-- ARGV[1] comma list of encoded allowed statuses, ARGV[2] encoded new status,
-- ARGV[3] job id, ARGV[4] lease expiry or '', ARGV[5] '1' when the new status is
-- terminal, then field/value pairs.
-- Returns 1 when moved, 0 when the job is in another status, -1 when it has no record.
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return -1 end
local ok = false
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == current then ok = true end
end
if not ok then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], unpack(ARGV, 6))
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
else
  redis.call('ZREM', KEYS[2], ARGV[3])
end
if ARGV[5] == '1' then
  redis.call('RPUSH', KEYS[3], '1')
  redis.call('EXPIRE', KEYS[3], 300)
  redis.call('PUBLISH', KEYS[4], ARGV[3])
end
return 1
