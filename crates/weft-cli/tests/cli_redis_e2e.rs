//! End to end: `weft run` and `weft session list` on the redis store,
//! chosen through agentkernel's variables (`AK_SESSION__TYPE=redis`,
//! `AK_SESSION__REDIS__URL`) and through `--store redis --store-url`,
//! against a `redis-server` this test starts on a free loopback port (AOF,
//! `appendfsync always`, a temporary directory) and kills at the end. The
//! session must land in that Redis (checked with `redis-cli`) and nowhere
//! under the weft home. A machine without `redis-server` fails this test,
//! saying what to install.
#![cfg(feature = "redis")]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// A redis-server child, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    /// A durable server: AOF with `appendfsync always`.
    fn start() -> Self {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// A server with the persistence settings `persistence`.
    fn start_with(persistence: &[&str]) -> Self {
        let binary = "/usr/bin/redis-server";
        assert!(
            std::path::Path::new(binary).exists(),
            "{binary} is missing: this test needs a local redis-server (apt-get install redis-server)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(persistence)
            .args(["--save", ""])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while server.cli(&["PING"]).trim() != "PONG" {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "redis-server did not answer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `redis-cli -p PORT args…`'s stdout.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli (apt-get install redis-tools)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

fn ak(env: &Env, redis: &RedisServer, args: &[&str]) -> std::process::Output {
    env.command(args)
        .env("AK_SESSION__TYPE", "redis")
        .env("AK_SESSION__REDIS__URL", redis.url())
        .output()
        .expect("run weft")
}

#[test]
fn agentkernel_variables_store_the_session_in_redis() {
    let redis = RedisServer::start();
    let env = Env::new();
    let script = env.script("s.json", SCRIPT);
    let out = ak(
        &env,
        &redis,
        &[
            "run",
            "--provider",
            "scripted",
            "--script",
            script.to_str().unwrap(),
            "hi",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "weft run failed: {stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Hello from the script"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("appendfsync"),
        "a durable server gets no durability warning: {stderr}"
    );

    // The session is in Redis…
    let ids = redis.cli(&["ZRANGE", "weft:sessions", "0", "-1"]);
    let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(ids.len(), 1, "one session indexed: {ids:?}");
    let id = ids[0];
    let len: u64 = redis
        .cli(&["LLEN", &format!("weft:s:{id}:log")])
        .trim()
        .parse()
        .expect("LLEN");
    assert!(len >= 3, "created, the prompt and the reply: {len}");
    assert_eq!(
        redis.cli(&["EXISTS", &format!("weft:s:{id}:meta")]).trim(),
        "1"
    );
    assert_eq!(
        redis.cli(&["HLEN", &format!("weft:s:{id}:turns")]).trim(),
        "0",
        "the turn lock was released before weft exited"
    );
    // agentkernel's default TTL (7 days) through agentkernel's variables.
    let ttl: i64 = redis
        .cli(&["TTL", &format!("weft:s:{id}:meta")])
        .trim()
        .parse()
        .expect("TTL");
    assert!(
        (7 * 24 * 3600 - 600..=7 * 24 * 3600).contains(&ttl),
        "sessions stored through AK_SESSION__TYPE=redis expire after 7 days: {ttl}"
    );
    // …and not under the weft home.
    assert!(
        !walk(env.home.path())
            .iter()
            .any(|p| p.ends_with("log.jsonl")),
        "nothing written to the fs store"
    );

    // `weft session list` through the same variables finds it; the fs
    // store of the same home does not.
    let out = ak(&env, &redis, &["session", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");
    let listed: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(listed, [id]);
    let fs: Value = env.json(&["session", "list", "--json"]);
    assert_eq!(fs.as_array().map(Vec::len), Some(0), "{fs}");

    // The flags choose the same store.
    let url = redis.url();
    let flags: Value = env.json(&[
        "session",
        "list",
        "--json",
        "--store",
        "redis",
        "--store-url",
        &url,
    ]);
    assert_eq!(flags.as_array().map(Vec::len), Some(1), "{flags}");

    // weft's own `--store redis` sets no TTL by default.
    let out = env
        .command(&[
            "--store",
            "redis",
            "--store-url",
            &url,
            "run",
            "--provider",
            "scripted",
            "--script",
            script.to_str().unwrap(),
            "hi",
        ])
        .output()
        .expect("run weft");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = redis.cli(&["ZRANGE", "weft:sessions", "0", "-1"]);
    let own = ids
        .lines()
        .find(|l| !l.is_empty() && *l != id)
        .expect("the second session");
    assert_eq!(
        redis.cli(&["TTL", &format!("weft:s:{own}:meta")]).trim(),
        "-1",
        "weft's own redis store keeps sessions without a TTL"
    );
}

/// The stock Debian settings (no AOF): one warning line naming the fix.
#[test]
fn a_server_that_does_not_fsync_gets_one_warning() {
    let redis = RedisServer::start_with(&["--appendonly", "no"]);
    let env = Env::new();
    let out = ak(&env, &redis, &["session", "list", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("appendonly no").count(), 1, "{stderr}");
    assert!(
        stderr.contains("appendfsync always"),
        "the fix is named: {stderr}"
    );
}

#[test]
fn a_redis_store_without_a_url_is_a_clear_error() {
    let env = Env::new();
    let err = env.fails(&["session", "list", "--store", "redis"]);
    assert!(err.contains("--store-url"), "{err}");
}
