-- Give a key back when its request failed before making anything worth replaying:
-- only if it still names ARGV[1], so a later reservation is never dropped.
local current = redis.call('GET', KEYS[1])
if current and string.match(current, '^%S+ (%S+) ') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
