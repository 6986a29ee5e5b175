-- One finished job's usage entry, written once per job id, added to the day's totals of
-- the payer (the caller) and the payee (the algorithm's owner).
-- KEYS[1] the entry, KEYS[2] the payer's day, KEYS[3] the payee's day.
-- ARGV[1] entry TTL, ARGV[2] day TTL, ARGV[3] the group (owner/name@version),
-- ARGV[4] the number of counters, then counter/amount pairs, then entry field/value pairs.
-- Returns 1 when written, 0 when the job has an entry already.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = tonumber(ARGV[4])
local i = 5
for _ = 1, n do
  local counter, amount = ARGV[i], ARGV[i + 1]
  redis.call('HINCRBY', KEYS[2], ARGV[3] .. '|' .. counter, amount)
  redis.call('HINCRBY', KEYS[2], '*|' .. counter, amount)
  redis.call('HINCRBY', KEYS[3], ARGV[3] .. '|' .. counter, amount)
  i = i + 2
end
if i < #ARGV then redis.call('HSET', KEYS[1], unpack(ARGV, i)) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 1
