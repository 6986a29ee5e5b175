-- Store a chunk's results that are not stored yet and count them; finish the batch when
-- every input has one. Idempotent: a chunk that runs twice never counts twice.
-- KEYS[1] batch hash, KEYS[2] results hash, KEYS[3] counts hash.
-- ARGV[1] encoded finished_at, ARGV[2] encoded running status, ARGV[3] encoded completed
-- status, ARGV[4] comma list of the item statuses counted (the counts hash's fields),
-- then (index, status, encoded result) triples.
-- Returns 1 when this call finished the batch.
local added = 0
for i = 5, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 2]) == 1 then
    redis.call('HINCRBY', KEYS[3], ARGV[i + 1], 1)
    added = added + 1
  end
end
local ttl = redis.call('TTL', KEYS[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
local done = 0
for status in string.gmatch(ARGV[4], '[^,]+') do
  done = done + tonumber(redis.call('HGET', KEYS[3], status) or '0')
end
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
if added > 0 and done >= total and redis.call('HGET', KEYS[1], 'status') == ARGV[2] then
  redis.call('HSET', KEYS[1], 'status', ARGV[3], 'finished_at', ARGV[1])
  return 1
end
return 0
