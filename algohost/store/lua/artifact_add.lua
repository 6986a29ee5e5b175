-- Record that an owner holds a blob; charge its size to the owner once.
-- KEYS[1] the owner's record, KEYS[2] the blob's holders set, KEYS[3] usage hash,
-- KEYS[4] the owner's index zset, KEYS[5] unreferenced zset, KEYS[6] the blob's references.
-- ARGV[1] record JSON, ARGV[2] owner, ARGV[3] size, ARGV[4] digest, ARGV[5] now.
-- A blob nobody references yet starts (or restarts) its grace period now, so an upload
-- that dedups onto a blob about to be collected keeps it.
-- Returns 1 when the record is new, 0 when the owner already held the blob.
if redis.call('SCARD', KEYS[6]) == 0 then redis.call('ZADD', KEYS[5], ARGV[5], ARGV[4]) end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('HINCRBY', KEYS[3], ARGV[2], ARGV[3])
  return 1
end
return 0
