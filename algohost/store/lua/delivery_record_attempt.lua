-- Log a webhook attempt; the delivery moves on only if no redelivery started a new round
-- while the attempt was in flight.
-- KEYS[1] delivery hash, KEYS[2] attempts list, KEYS[3] pending index.
-- ARGV[1] attempt JSON, ARGV[2] generation, ARGV[3] retention, ARGV[4] delivery id,
-- ARGV[5] when the next attempt is due ('' for none), then field/value pairs.
-- Returns 1 when the delivery was updated, 0 when a redelivery superseded the attempt.
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[2] then return 0 end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[3], ARGV[4])
else
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
end
return 1
