-- One finished job folded into its build's hourly aggregate, once per job id.
-- KEYS[1] the job's marker, KEYS[2] the hour's hash, KEYS[3] the build's index of hours.
-- ARGV[1] marker TTL, ARGV[2] aggregate TTL, ARGV[3] the hour (epoch seconds),
-- ARGV[4] most reported names per hour, then three counted lists, each its length and
-- then field/value pairs: integer increments, float increments, maxima; then the
-- reported metrics as a counted list of name/value pairs.
-- Returns 1 when folded in, 0 when this job was folded in before.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local h = KEYS[2]
local i = 5
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HINCRBY', h, ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HINCRBYFLOAT', h, ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local current = redis.call('HGET', h, ARGV[i])
  if not current or tonumber(current) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', h, ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
local max_names = tonumber(ARGV[4])
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local name, text = ARGV[i], ARGV[i + 1]
  local value = tonumber(text)
  i = i + 2
  local known = redis.call('HEXISTS', h, 'c:' .. name .. ':n') == 1
  if known or tonumber(redis.call('HGET', h, 'c#') or '0') < max_names then
    if not known then
      redis.call('HINCRBY', h, 'c#', 1)
      redis.call('HSET', h, 'c:' .. name .. ':min', text, 'c:' .. name .. ':max', text)
    end
    redis.call('HINCRBY', h, 'c:' .. name .. ':n', 1)
    redis.call('HINCRBYFLOAT', h, 'c:' .. name .. ':sum', text)
    if value < tonumber(redis.call('HGET', h, 'c:' .. name .. ':min')) then
      redis.call('HSET', h, 'c:' .. name .. ':min', text)
    end
    if value > tonumber(redis.call('HGET', h, 'c:' .. name .. ':max')) then
      redis.call('HSET', h, 'c:' .. name .. ':max', text)
    end
  end
end
redis.call('EXPIRE', h, ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 1
