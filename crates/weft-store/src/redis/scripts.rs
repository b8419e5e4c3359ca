//! The Lua scripts that make each multi-key write atomic. Redis runs a
//! script alone (no other command interleaves), and the AOF records its
//! effects as one transaction.
//!
//! Conventions: a session's keys and weft's arguments come in the order
//! each script's comment gives; record and event lists are pushed in
//! chunks of 1000 (Lua's `unpack` has a stack limit); `ttl` is in
//! milliseconds, 0 for none. This module knows the key roles, not their
//! names (`keys`), and nothing about records beyond "a string per seq".

use std::sync::LazyLock;

use redis::Script;

/// `create`: KEYS = meta, log, all, project, ids, events, turns;
/// ARGV = meta JSON, score, id, ttl, record lines…
/// Returns 1 when created, 0 when the id exists.
pub(super) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[6], KEYS[7])
for i = 5, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[5], 0, ARGV[3])
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
"#,
    )
});

/// `append`: KEYS = meta, log, all, project, events, turns, lock of the
/// batch's branch (any key when the batch names no turn);
/// ARGV = expected seq, meta JSON, score, id, ttl, turn ("" when the batch
/// names none), branch, the stored meta JSON the new one was folded from,
/// record lines…
/// Returns `{0, new head}`, `{1, actual head}` on a conflict (nothing
/// written), `{2, 0}` when the session does not exist, `{3, 0}` when the
/// batch's turn does not hold its branch's lock (fencing; nothing written),
/// `{4, 0}` when the stored metadata is not the copy the new one was folded
/// from (a stale cached copy; nothing written).
pub(super) static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {2, 0} end
if ARGV[6] ~= '' then
  if redis.call('EXISTS', KEYS[7]) == 0 then return {3, 0} end
  local holder = redis.call('HGET', KEYS[6], ARGV[7])
  if not holder then return {3, 0} end
  local ok, h = pcall(cjson.decode, holder)
  if not ok or h['turn'] ~= ARGV[6] then return {3, 0} end
end
local head = redis.call('LLEN', KEYS[2])
if head ~= tonumber(ARGV[1]) then return {1, head} end
if redis.call('GET', KEYS[1]) ~= ARGV[8] then return {4, 0} end
for i = 9, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[4])
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  for i = 1, 6 do
    if i ~= 3 and i ~= 4 then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
return {0, head + #ARGV - 8}
"#,
    )
});

/// `delete` of one session: KEYS = meta, log, events, turns, all, project,
/// ids; ARGV = id, "1" to refuse an active session, turn-lock key prefix.
/// Returns 0 when deleted, 1 when not found, 2 when refused (active).
pub(super) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local meta = redis.call('GET', KEYS[1])
if not meta then return 1 end
if ARGV[2] == '1' then
  local ok, m = pcall(cjson.decode, meta)
  if ok and m['status'] == 'active' then return 2 end
end
for _, b in ipairs(redis.call('HKEYS', KEYS[4])) do
  redis.call('DEL', ARGV[3] .. b)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
return 0
"#,
    )
});

/// `update_shared_state`: KEYS = state hash; ARGV = "1" to clear, number
/// of deleted keys n, n keys, then key/value JSON pairs. Returns the hash
/// after the change (HGETALL).
pub(super) static SHARED_STATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if ARGV[1] == '1' then redis.call('DEL', KEYS[1]) end
local n = tonumber(ARGV[2])
for i = 3, 2 + n do redis.call('HDEL', KEYS[1], ARGV[i]) end
for i = 3 + n, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return redis.call('HGETALL', KEYS[1])
"#,
    )
});

/// `write_events`: KEYS = events, meta; ARGV = cap, ttl, events…
/// Returns 1, or 0 when the session does not exist.
pub(super) static EVENTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
for i = 3, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"#,
    )
});

/// `try_lock_turn`: KEYS = meta, lock, turns; ARGV = token, lock ttl,
/// branch, holder JSON, session ttl. Returns `{1}` when acquired, `{2,
/// holder JSON or ""}` when busy, `{0}` when the session does not exist.
pub(super) static LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
  local ttl = tonumber(ARGV[5])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
  return {1}
end
return {2, redis.call('HGET', KEYS[3], ARGV[3]) or ''}
"#,
    )
});

/// Renews a held turn lock: KEYS = lock; ARGV = token, ttl. Returns 1
/// while the token still holds it, else 0.
pub(super) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#,
    )
});

/// Releases a turn lock in order: KEYS = lock, turns; ARGV = token,
/// branch, holder JSON. Only the token's holder releases it (and clears its
/// holder entry, also when its lock expired meanwhile and nobody took it);
/// returns 1 when it did.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 1
end
if not cur and redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[3] then
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 1
end
return 0
"#,
    )
});
