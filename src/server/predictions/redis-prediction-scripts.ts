/**
 * The Lua scripts of RedisPredictionStore: each transition of a prediction's hash checks and moves its
 * status in one step on the Redis server, so two replicas can never both start, finish or adopt it.
 */

/** KEYS: hash. ARGV: at. starting → processing; 1 when it moved. */
export const START = `
if redis.call('HGET', KEYS[1], 'status') ~= 'starting' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'processing', 'started_at', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'runs', 1)
return 1`;

/** KEYS: hash. ARGV: log line. processing → starting. */
export const REQUEUE = `
if redis.call('HGET', KEYS[1], 'status') ~= 'processing' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'starting', 'started_at', '', 'logs', (redis.call('HGET', KEYS[1], 'logs') or '') .. ARGV[1])
return 1`;

/** KEYS: hash. ARGV: text. Appends to the logs of a prediction that exists (never recreates an expired one). */
export const APPEND_LOG = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'logs', (redis.call('HGET', KEYS[1], 'logs') or '') .. ARGV[1])
return 1`;

/**
 * KEYS: hash, pending set, done zset. ARGV: status, at, output, error, log, onlyIfQueued, ttlMs, id.
 * A pending prediction becomes final and expires after ttlMs; 1 when this call moved it.
 */
export const FINISH = `
local s = redis.call('HGET', KEYS[1], 'status')
if s ~= 'starting' and (s ~= 'processing' or ARGV[6] == '1') then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'completed_at', ARGV[2], 'output', ARGV[3], 'error', ARGV[4], 'logs', (redis.call('HGET', KEYS[1], 'logs') or '') .. ARGV[5])
redis.call('SREM', KEYS[2], ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[8])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 1`;

/**
 * KEYS: hash, the old owner's lease. ARGV: old owner, new owner, log line. Takes over a pending prediction
 * whose owner's lease is gone: 0 not taken, 1 taken (queued), 2 taken and sent back to the queue (it was running).
 */
export const ADOPT = `
local s = redis.call('HGET', KEYS[1], 'status')
if (s ~= 'starting' and s ~= 'processing') or redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
if s == 'starting' then return 1 end
redis.call('HSET', KEYS[1], 'status', 'starting', 'started_at', '', 'logs', (redis.call('HGET', KEYS[1], 'logs') or '') .. ARGV[3])
return 2`;
