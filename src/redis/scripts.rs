//! The Lua scripts, the Redis key of a user key, and one script call.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, RedisError, Script, ServerErrorKind};

use crate::error::redis_error;
use crate::{Decision, Error, Result};

/// Builds each algorithm's script: the shared prelude, then its own body.
macro_rules! script {
    ($name:ident, $file:literal) => {
        #[doc = concat!("The script of `lua/", $file, "`, after `lua/prelude.lua`.")]
        pub(crate) fn $name() -> &'static Script {
            static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(source!($file)));
            &SCRIPT
        }
    };
}

macro_rules! source {
    ($file:literal) => {
        concat!(include_str!("../../lua/prelude.lua"), include_str!(concat!("../../lua/", $file)))
    };
}

script!(fixed_window, "fixed_window.lua");
script!(sliding_log, "sliding_log.lua");
script!(token_bucket, "token_bucket.lua");
script!(leaky_bucket, "leaky_bucket.lua");

/// The source of a script, found by its hash, for the `EVAL` fallback.
fn source_of(script: &Script) -> &'static str {
    [
        (fixed_window(), source!("fixed_window.lua")),
        (sliding_log(), source!("sliding_log.lua")),
        (token_bucket(), source!("token_bucket.lua")),
        (leaky_bucket(), source!("leaky_bucket.lua")),
    ]
    .into_iter()
    .find(|(known, _)| known.get_hash() == script.get_hash())
    .map(|(_, source)| source)
    .expect("every script comes from this module")
}

/// The Redis key of `key`: `<prefix>{<key>}`.
///
/// Injective: a prefix holds no brace (checked by the builder), so the first
/// `{` ends the prefix and the last byte is the closing `}`; whatever lies
/// between is the user key, braces and all. The braces make the user key the
/// Redis Cluster hash tag (up to its first `}`); each script touches only
/// this one key, so it is cluster safe whatever the tag turns out to be.
pub(crate) fn redis_key(prefix: &str, key: &str) -> String {
    let mut redis_key = String::with_capacity(prefix.len() + key.len() + 2);
    redis_key.push_str(prefix);
    redis_key.push('{');
    redis_key.push_str(key);
    redis_key.push('}');
    redis_key
}

/// Runs `script` on `key` with `ARGV = [cost, now_us or "", config...]`.
///
/// `EVALSHA` first; redis-rs's `invoke_async` answers `NOSCRIPT` (after a
/// restart or `SCRIPT FLUSH`) with `SCRIPT LOAD` and one more `EVALSHA`,
/// which fails again if another flush lands in between (or, on a cluster,
/// if the load reached other nodes than the key's). So a second `NOSCRIPT`
/// is answered with `EVAL`, which carries the source and caches it on the
/// node that owns the key: no window is left in which a call can fail.
pub(crate) async fn invoke<C: ConnectionLike>(
    connection: &mut C,
    script: &Script,
    key: &str,
    cost: u64,
    now_us: Option<u64>,
    config: &[u64],
) -> Result<Decision> {
    let now = now_us.map(|now_us| now_us.to_string()).unwrap_or_default();
    let reply: Result<Vec<u64>, RedisError> =
        match script.key(key).arg(cost).arg(&now).arg(config).invoke_async(connection).await {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                let mut eval = Cmd::new();
                eval.arg("EVAL").arg(source_of(script)).arg(1).arg(key).arg(cost).arg(&now).arg(config);
                eval.query_async(connection).await
            }
            reply => reply,
        };
    decision_from_reply(&reply.map_err(redis_error)?)
}

/// Reads a script's reply: `{allowed, limit, remaining, retry_after_us,
/// reset_after_us, wait_us}`.
fn decision_from_reply(reply: &[u64]) -> Result<Decision> {
    match *reply {
        [1, limit, remaining, 0, reset_after_us, wait_us] => {
            Ok(Decision::allowed(limit, remaining, reset_after_us, wait_us))
        }
        [0, limit, remaining, retry_after_us, reset_after_us, 0] if retry_after_us > 0 => {
            Ok(Decision::denied(limit, remaining, retry_after_us, reset_after_us))
        }
        _ => Err(Error::UnexpectedReply(format!("a rate limit script answered {reply:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hash_tagged_and_keep_the_user_key_whole() {
        assert_eq!(redis_key("tollgate:", "user:42"), "tollgate:{user:42}");
        assert_eq!(redis_key("p:", "a}{b"), "p:{a}{b}");
        assert_eq!(redis_key("", ""), "{}");
    }

    #[test]
    fn every_script_is_the_prelude_then_its_body_and_all_differ() {
        let scripts = [fixed_window(), sliding_log(), token_bucket(), leaky_bucket()];
        for (n, script) in scripts.iter().enumerate() {
            assert!(source_of(script).starts_with("-- tollgate prelude"));
            for other in &scripts[n + 1..] {
                assert_ne!(script.get_hash(), other.get_hash());
            }
        }
    }

    #[test]
    fn replies_become_decisions_and_nonsense_is_an_error() {
        let allowed = decision_from_reply(&[1, 10, 9, 0, 100, 5]).unwrap();
        assert_eq!(allowed, Decision::allowed(10, 9, 100, 5));
        let denied = decision_from_reply(&[0, 10, 0, 7, 100, 0]).unwrap();
        assert_eq!(denied, Decision::denied(10, 0, 7, 100));
        for nonsense in [&[][..], &[1, 10, 9, 3, 100, 0], &[0, 10, 0, 0, 100, 0], &[2, 1, 1, 1, 1, 1], &[1; 7]] {
            assert!(matches!(decision_from_reply(nonsense), Err(Error::UnexpectedReply(_))), "{nonsense:?}");
        }
    }
}
