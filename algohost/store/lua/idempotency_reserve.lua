-- Reserve an idempotency key for a record about to be made, or say what it already names.
-- KEYS[1]: the reservation. ARGV: fingerprint, new id, now (s), ttl (s),
-- the records' key prefix, in-flight grace (s).
-- Returns {state, id}: 'new' (reserved for ARGV[2]); 'replay' (the same request, its
-- record exists); 'mismatch' (another request used the key); 'in_flight' (reserved a
-- moment ago and its record not written yet). A reservation whose record was never
-- written (the API died between the two) is taken over once the grace has passed.
local current = redis.call('GET', KEYS[1])
if current then
  local fp, id, at = string.match(current, '^(%S+) (%S+) (%S+)$')
  if fp ~= ARGV[1] then
    return {'mismatch', id or ''}
  end
  if redis.call('EXISTS', ARGV[5] .. id) == 1 then
    return {'replay', id}
  end
  if tonumber(ARGV[3]) - tonumber(at) < tonumber(ARGV[6]) then
    return {'in_flight', id}
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3], 'EX', ARGV[4])
return {'new', ARGV[2]}
