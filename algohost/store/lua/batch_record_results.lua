-- Store a chunk's results that are not stored yet and count them; finish the batch when
-- every input has one. Idempotent: a chunk that runs twice never counts twice.
-- With metering, the inputs newly stored that ran (the worker measured them) are folded in
-- the same call into the usage ledger (the payer's and payee's day totals and the batch's
-- entry) and the build's metrics (hour, day, life), so the ledger counts each input once.
-- KEYS[1] batch hash, KEYS[2] results hash, KEYS[3] counts hash; with metering KEYS[4]
-- the payer's day, KEYS[5] the payee's day, KEYS[6] the batch's usage entry, KEYS[7..9]
-- the build's hour, day and life metrics, KEYS[10] its hours index, KEYS[11] its days.
-- ARGV[1] encoded finished_at, ARGV[2] encoded running status, ARGV[3] encoded completed
-- status, ARGV[4] comma list of the item statuses counted (the counts hash's fields),
-- ARGV[5] the stride: 3 without metering, 10 with. With metering ARGV[6] usage TTL,
-- ARGV[7] entry TTL, ARGV[8] metrics TTL, ARGV[9] the hour and ARGV[10] the day (epoch
-- seconds), ARGV[11] the group (owner/name@version), ARGV[12] royalty per call, ARGV[13]
-- how many entry field/value pairs follow. Then per input: index, status, encoded result
-- and, with metering: ran (1/0), compute_us, memory_mib_ms, run_ms bucket ('' for none),
-- run_ms, peak memory bucket ('' for none), peak memory bytes.
-- Returns 1 when this call finished the batch.
local stride = tonumber(ARGV[5])
local first = 6
if stride > 3 then first = 14 + 2 * tonumber(ARGV[13]) end
local added = 0
local calls, compute, memory = 0, 0, 0
local ints, rsum, rmax, msum, mmax = {}, 0, nil, 0, nil
local function inc(name) ints[name] = (ints[name] or 0) + 1 end
for i = first, #ARGV, stride do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 2]) == 1 then
    redis.call('HINCRBY', KEYS[3], ARGV[i + 1], 1)
    added = added + 1
    if stride > 3 and ARGV[i + 3] == '1' then
      calls = calls + 1
      compute = compute + tonumber(ARGV[i + 4])
      memory = memory + tonumber(ARGV[i + 5])
      inc('s:' .. ARGV[i + 1])
      if ARGV[i + 6] ~= '' then
        local v = tonumber(ARGV[i + 7])
        inc('r:' .. ARGV[i + 6]); inc('r#'); rsum = rsum + v
        if not rmax or v > rmax then rmax = v end
      end
      if ARGV[i + 8] ~= '' then
        local v = tonumber(ARGV[i + 9])
        inc('m:' .. ARGV[i + 8]); inc('m#'); msum = msum + v
        if not mmax or v > mmax then mmax = v end
      end
    end
  end
end
if calls > 0 then
  local group = ARGV[11]
  local amounts = {calls = calls, compute_us = compute, memory_mib_ms = memory,
                   royalty_micros = calls * tonumber(ARGV[12])}
  for counter, amount in pairs(amounts) do
    local text = string.format('%d', amount)
    redis.call('HINCRBY', KEYS[4], group .. '|' .. counter, text)
    redis.call('HINCRBY', KEYS[4], '*|' .. counter, text)
    redis.call('HINCRBY', KEYS[5], group .. '|' .. counter, text)
    redis.call('HINCRBY', KEYS[6], counter, text)
  end
  for j = 14, 13 + 2 * tonumber(ARGV[13]), 2 do
    redis.call('HSET', KEYS[6], ARGV[j], ARGV[j + 1])
  end
  redis.call('EXPIRE', KEYS[4], ARGV[6])
  redis.call('EXPIRE', KEYS[5], ARGV[6])
  redis.call('EXPIRE', KEYS[6], ARGV[7])
  ints['calls'] = calls
  for k = 7, 9 do
    local h = KEYS[k]
    for name, n in pairs(ints) do redis.call('HINCRBY', h, name, n) end
    if rmax then
      redis.call('HINCRBYFLOAT', h, 'r+', string.format('%.17g', rsum))
      local current = redis.call('HGET', h, 'r^')
      if not current or tonumber(current) < rmax then
        redis.call('HSET', h, 'r^', string.format('%.17g', rmax))
      end
    end
    if mmax then
      redis.call('HINCRBYFLOAT', h, 'm+', string.format('%.17g', msum))
      local current = redis.call('HGET', h, 'm^')
      if not current or tonumber(current) < mmax then
        redis.call('HSET', h, 'm^', string.format('%.17g', mmax))
      end
    end
    redis.call('EXPIRE', h, ARGV[8])
  end
  local oldest = tonumber(ARGV[9]) - tonumber(ARGV[8])
  for k, at in pairs({[10] = ARGV[9], [11] = ARGV[10]}) do
    redis.call('ZADD', KEYS[k], at, at)
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', oldest)
    redis.call('EXPIRE', KEYS[k], ARGV[8])
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
