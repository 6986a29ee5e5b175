-- A pipeline run's compare-and-set write: the fields are written only if the run is still
-- at the revision its writer read, and the revision moves on by one.
-- KEYS[1] run hash, KEYS[2] active-runs zset.
-- ARGV[1] the revision read, ARGV[2] run id, ARGV[3] when the run is next due for a
-- check ('' once it is finished: it leaves the zset), then field/value pairs.
-- Returns 1 when written, 0 when another writer moved the run first, -1 with no record.
local current = redis.call('HGET', KEYS[1], 'rev')
if not current then return -1 end
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rev', tostring(tonumber(current) + 1))
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
else
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 1
