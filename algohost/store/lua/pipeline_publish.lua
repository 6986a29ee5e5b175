-- A new version of a pipeline, unless its latest version has the same spec digest.
-- KEYS[1] pipeline hash (latest, created_at), KEYS[2] versions hash, KEYS[3] owner's set.
-- ARGV[1] digest, ARGV[2] the name, ARGV[3] the version record's JSON with "__VERSION__"
-- where its number goes.
-- Returns {version, 1} when created, {version, 0} when the latest already is this spec.
local latest = tonumber(redis.call('HGET', KEYS[1], 'latest') or '0')
if latest > 0 and redis.call('HGET', KEYS[1], 'digest') == ARGV[1] then
  return {latest, 0}
end
local version = latest + 1
redis.call('HSET', KEYS[1], 'latest', version, 'digest', ARGV[1])
redis.call('HSET', KEYS[2], version, (string.gsub(ARGV[3], '"__VERSION__"', version)))
redis.call('SADD', KEYS[3], ARGV[2])
return {version, 1}
