-- One finished job folded into its build's aggregates, once per job id: the hour's, the
-- day's and the build's whole life's, so a read merges a few hashes whatever it spans.
-- KEYS[1] the job's marker, KEYS[2..4] the hour's, day's and lifetime's hashes,
-- KEYS[5] the build's index of hours, KEYS[6] its index of days.
-- ARGV[1] marker TTL, ARGV[2] aggregate TTL, ARGV[3] the hour and ARGV[4] the day
-- (epoch seconds), ARGV[5] most reported names per hash, then four counted lists, each
-- its length and then field/value pairs: integer increments, float increments, maxima,
-- and the reported metrics (name/value).
-- Returns 1 when folded in, 0 when this job was folded in before.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local max_names = tonumber(ARGV[5])

local function fold(h)
  local i = 6
  local n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do redis.call('HINCRBY', h, ARGV[i], ARGV[i + 1]); i = i + 2 end
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do redis.call('HINCRBYFLOAT', h, ARGV[i], ARGV[i + 1]); i = i + 2 end
  n = tonumber(ARGV[i]); i = i + 1
  if n > 0 then
    local names, raised = {}, {}
    for k = 1, n do names[k] = ARGV[i + 2 * (k - 1)] end
    local current = redis.call('HMGET', h, unpack(names))
    for k = 1, n do
      local value = ARGV[i + 2 * k - 1]
      if not current[k] or tonumber(current[k]) < tonumber(value) then
        raised[#raised + 1] = names[k]
        raised[#raised + 1] = value
      end
    end
    if #raised > 0 then redis.call('HSET', h, unpack(raised)) end
    i = i + 2 * n
  end
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
end

for k = 2, 4 do fold(KEYS[k]) end
local oldest = tonumber(ARGV[3]) - tonumber(ARGV[2])
for k, at in pairs({[5] = ARGV[3], [6] = ARGV[4]}) do
  redis.call('ZADD', KEYS[k], at, at)
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', oldest)
  redis.call('EXPIRE', KEYS[k], ARGV[2])
end
return 1
