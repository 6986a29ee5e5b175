-- Store a chunk's results that are not stored yet and count them; finish the batch when
-- every input has one. Idempotent: a chunk that runs twice never counts twice.
-- With metering, the inputs newly stored that ran (the worker measured them) are folded in
-- the same call into the usage ledger (the payer's and payee's day totals and the batch's
-- entry) and the build's metrics (hour, day, life), so the ledger counts each input once.
-- The caller sends the flush's sums; only when some input was stored before (a chunk run
-- again) are the sums made again here from the new inputs' own figures.
-- KEYS[1] batch hash, KEYS[2] results hash, KEYS[3] counts hash; with metering KEYS[4]
-- the payer's day, KEYS[5] the payee's day, KEYS[6] the batch's usage entry, KEYS[7..9]
-- the build's hour, day and life metrics, KEYS[10] its hours index, KEYS[11] its days.
-- ARGV[1] encoded finished_at, ARGV[2] encoded running status, ARGV[3] encoded completed
-- status, ARGV[4] comma list of the item statuses counted (the counts hash's fields),
-- ARGV[5] the stride: 3 without metering, 4 with. With metering ARGV[6] usage TTL,
-- ARGV[7] entry TTL, ARGV[8] metrics TTL, ARGV[9] the hour and ARGV[10] the day (epoch
-- seconds), ARGV[11] the group (owner/name@version), ARGV[12] royalty per call, ARGV[13]
-- how many entry field/value pairs follow, then the flush's sums: calls, compute_us,
-- memory_mib_ms, run_ms sum, run_ms max, peak sum, peak max ('' for none), and a count
-- of metric fields and their field/increment pairs. Then per input: index, status,
-- encoded result and, with metering, its figures: '' when it did not run, else
-- "compute_us memory_mib_ms run_bucket run_ms peak_bucket peak" ('-' for no bucket).
-- Returns 1 when this call finished the batch.
local stride = tonumber(ARGV[5])
local first = 6
local calls, compute, memory, rsum, rmax, msum, mmax = 0, 0, 0, 0, nil, 0, nil
local ints = {}
if stride > 3 then
  local a = 14 + 2 * tonumber(ARGV[13])
  calls, compute, memory = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  rsum, rmax = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  msum, mmax = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local n = tonumber(ARGV[a + 7])
  for j = a + 8, a + 7 + 2 * n, 2 do ints[ARGV[j]] = tonumber(ARGV[j + 1]) end
  first = a + 8 + 2 * n
end
local added, skipped, ran = 0, false, {}
for i = first, #ARGV, stride do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 2]) == 1 then
    redis.call('HINCRBY', KEYS[3], ARGV[i + 1], 1)
    added = added + 1
    if stride > 3 and ARGV[i + 3] ~= '' then ran[#ran + 1] = i end
  elseif stride > 3 and ARGV[i + 3] ~= '' then
    skipped = true
  end
end
if skipped then  -- the sums sent count inputs stored before: make them from the new ones
  calls, compute, memory, rsum, rmax, msum, mmax, ints = #ran, 0, 0, 0, nil, 0, nil, {}
  local function inc(name) ints[name] = (ints[name] or 0) + 1 end
  for _, i in ipairs(ran) do
    local f = {}
    for word in string.gmatch(ARGV[i + 3], '%S+') do f[#f + 1] = word end
    compute, memory = compute + tonumber(f[1]), memory + tonumber(f[2])
    inc('s:' .. ARGV[i + 1])
    if f[3] ~= '-' then
      local v = tonumber(f[4])
      inc('r:' .. f[3]); inc('r#'); rsum = rsum + v
      if not rmax or v > rmax then rmax = v end
    end
    if f[5] ~= '-' then
      local v = tonumber(f[6])
      inc('m:' .. f[5]); inc('m#'); msum = msum + v
      if not mmax or v > mmax then mmax = v end
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
