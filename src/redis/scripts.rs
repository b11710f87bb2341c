//! Which Lua runs each algorithm, with which configuration in `ARGV`, on
//! which Redis key: the one place that pairs an algorithm with its script.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, RedisError, ServerErrorKind};

use super::reply::{Reply, from_reply};
use crate::algorithm::Limit;
use crate::error::redis_error;
use crate::{Error, Result};

/// A script as Redis runs it: the prelude, the algorithm's files, then a
/// main; with its source kept for the `EVAL` fallback.
#[derive(Debug)]
pub(crate) struct Lua {
    script: redis::Script,
    source: &'static str,
}

impl Lua {
    fn new(source: &'static str) -> Self {
        Self { script: redis::Script::new(source), source }
    }
}

/// The scripts of an algorithm that reserves slots ahead.
#[derive(Debug)]
pub(crate) struct Reserving {
    /// Reserves: the check's arguments, then `max_wait_us`.
    pub(crate) reserve: Lua,
    /// Gives a reservation back: the check's arguments, then `at_us` and
    /// `wait_us` from the reservation's reply; replies 1 if it did, else 0.
    pub(crate) give_back: Lua,
}

/// What a reservation appends to a check's arguments: lua/reserve.lua's
/// `ARGV[#ARGV]` line.
#[cfg(test)]
const RESERVE_ARGS: [&str; 1] = ["max_wait_us"];

/// What a give-back appends to a check's arguments: lua/give_back.lua's
/// `ARGV[#ARGV...]` lines.
#[cfg(test)]
const GIVE_BACK_ARGS: [&str; 2] = ["at_us", "wait_us"];

/// The source of a script made of `lua/prelude.lua`, then `$file`s, then
/// the `$main` files.
macro_rules! script_source {
    ([$($file:literal),*], [$($main:literal),*]) => {
        concat!(
            include_str!("../../lua/prelude.lua"),
            $(include_str!(concat!("../../lua/", $file)),)*
            $(include_str!(concat!("../../lua/", $main)),)*
        )
    };
}

/// `Some` of the reserving scripts of an algorithm marked `reserves` in
/// the registry, or `None`.
macro_rules! reserving {
    (reserves, $($file:literal),*) => {{
        static RESERVING: LazyLock<Reserving> = LazyLock::new(|| Reserving {
            reserve: Lua::new(script_source!([$($file),*], ["reserve.lua", "single.lua"])),
            give_back: Lua::new(script_source!([$($file),*], ["give_back.lua"])),
        });
        Some(&*RESERVING)
    }};
    (, $($file:literal),*) => {
        None
    };
}

/// The registry: for each algorithm, the tag that its Redis keys carry (so
/// that no two algorithms ever share a key), its Lua files, the fields of
/// its configuration it sends as `ARGV[3..]`, in the order of its script's
/// `ARGV[3..]:` line (a test holds the two together), and `reserves` if it
/// reserves slots ahead (a test holds that to the algorithm's reach).
macro_rules! scripts {
    ($($algorithm:ident: $tag:literal, [$($file:literal),*], [$($field:ident),*] $(, $reserves:ident)?;)*) => {
        /// The tag of `limit`'s algorithm in its Redis keys.
        pub(crate) fn tag(limit: &Limit) -> &'static str {
            match limit {
                $(Limit::$algorithm(_) => $tag,)*
            }
        }

        /// The script that decides for `limit`.
        pub(crate) fn script(limit: &Limit) -> &'static Lua {
            match limit {
                $(Limit::$algorithm(_) => {
                    static LUA: LazyLock<Lua> =
                        LazyLock::new(|| Lua::new(script_source!([$($file),*], ["single.lua"])));
                    &LUA
                })*
            }
        }

        /// The scripts that reserve for `limit` and give back, if it reserves.
        pub(crate) fn reserving(limit: &Limit) -> Option<&'static Reserving> {
            match limit {
                $(Limit::$algorithm(_) => reserving!($($reserves)?, $($file),*),)*
            }
        }

        /// `limit`'s configuration, as its script reads it from `ARGV[3]` on.
        pub(crate) fn config(limit: &Limit) -> Vec<u64> {
            match limit {
                $(Limit::$algorithm(algorithm) => vec![$(algorithm.$field),*],)*
            }
        }

        /// The names of the fields [`config`] sends.
        #[cfg(test)]
        fn config_fields(limit: &Limit) -> &'static [&'static str] {
            match limit {
                $(Limit::$algorithm(_) => &[$(stringify!($field)),*],)*
            }
        }

        /// How far ahead `limit`'s algorithm reserves (zero: not at all).
        #[cfg(test)]
        fn reach_us(limit: &Limit) -> u64 {
            match limit {
                $(Limit::$algorithm(algorithm) => crate::algorithm::sealed::Step::reach_us(algorithm),)*
            }
        }

        /// One limit of each algorithm, for the tests.
        #[cfg(test)]
        fn one_of_each() -> Vec<Limit> {
            vec![$(crate::$algorithm::example().into()),*]
        }
    };
}

scripts! {
    FixedWindow: "fw", ["fixed_window.lua"], [amount, period_us];
    SlidingLog: "sl", ["sliding_log.lua"], [amount, period_us];
    TokenBucket: "tb", ["meter.lua", "token_bucket.lua"], [capacity, amount, period_us], reserves;
    LeakyBucket: "lb", ["meter.lua", "leaky_bucket.lua"], [capacity, amount, period_us], reserves;
}

/// The Redis key of `key` for an algorithm tagged `tag`:
/// `<prefix><tag>:{<key>}`.
///
/// Injective: a prefix holds no brace (checked by the builder) and a tag is
/// one of the registry's, so the first `{` ends the tag and the last byte is
/// the closing `}`; whatever lies between is the user key, braces and all.
/// Two algorithms never share a key, since the tag stands just before the
/// `:{`. The braces make the user key the Redis Cluster hash tag (up to its
/// first `}`); each script touches only this key, so it is cluster safe
/// whatever the tag turns out to be.
pub(crate) fn redis_key(prefix: &str, tag: &str, key: &str) -> String {
    let mut redis_key = String::with_capacity(prefix.len() + tag.len() + key.len() + 3);
    redis_key.push_str(prefix);
    redis_key.push_str(tag);
    redis_key.push_str(":{");
    redis_key.push_str(key);
    redis_key.push('}');
    redis_key
}

/// Runs a deciding script (a check or a reservation) on `redis_key`: see [`run`].
pub(crate) async fn decide<C: ConnectionLike>(
    connection: &mut C,
    lua: &Lua,
    redis_key: &str,
    cost: u64,
    now_us: Option<u64>,
    args: [&[u64]; 2],
) -> Result<Reply> {
    from_reply(&run::<_, Vec<u64>>(connection, lua, redis_key, cost, now_us, args).await?)
}

/// Runs `lua` on `redis_key` with `ARGV = [cost, now_us or "", args...]`
/// (the configuration, then what the main appends).
///
/// `EVALSHA` first; redis-rs's `invoke_async` answers `NOSCRIPT` (after a
/// restart or `SCRIPT FLUSH`) with `SCRIPT LOAD` and one more `EVALSHA`,
/// which fails again if another flush lands in between (or, on a cluster,
/// if the load reached other nodes than the key's). So a second `NOSCRIPT`
/// is answered with `EVAL`, which carries the source and caches it on the
/// node that owns the key: no window is left in which a call can fail.
pub(crate) async fn run<C: ConnectionLike, T: redis::FromRedisValue>(
    connection: &mut C,
    lua: &Lua,
    redis_key: &str,
    cost: u64,
    now_us: Option<u64>,
    [config, appended]: [&[u64]; 2],
) -> Result<T> {
    let now = now_us.map(|now_us| now_us.to_string()).unwrap_or_default();
    let reply: Result<T, RedisError> =
        match lua.script.key(redis_key).arg(cost).arg(&now).arg(config).arg(appended).invoke_async(connection).await {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                let mut eval = Cmd::new();
                eval.arg("EVAL").arg(lua.source).arg(1).arg(redis_key).arg(cost).arg(&now).arg(config).arg(appended);
                eval.query_async(connection).await
            }
            reply => reply,
        };
    reply.map_err(|error| script_error(error, &[redis_key]))
}

/// A failed script call as tollgate's error: a key holding what the script
/// cannot read (the script's own `TOLLGATE key <n>: ...` error, or Redis's
/// `WRONGTYPE`) is [`Error::InvalidState`]; anything else is the backend's.
pub(crate) fn script_error(error: RedisError, keys: &[&str]) -> Error {
    match (error.code(), error.detail()) {
        (Some("TOLLGATE"), Some(detail)) => {
            // "key <n>: <why> script: <sha>, on @user_script:<line>."
            let detail = detail.split(" script: ").next().unwrap_or(detail);
            let (index, reason) = detail
                .strip_prefix("key ")
                .and_then(|rest| rest.split_once(": "))
                .and_then(|(index, reason)| Some((index.parse::<usize>().ok()?, reason)))
                .unwrap_or((1, detail));
            let key = keys.get(index.wrapping_sub(1)).unwrap_or(&"?");
            Error::InvalidState { key: (*key).to_owned(), reason: reason.to_owned() }
        }
        (Some("WRONGTYPE"), _) => Error::InvalidState {
            key: keys.join(" "),
            reason: "the key holds another Redis type than this algorithm's state".to_owned(),
        },
        _ => redis_error(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_algorithm_then_the_user_key_in_braces() {
        assert_eq!(redis_key("tollgate:", "tb", "user:42"), "tollgate:tb:{user:42}");
        assert_eq!(redis_key("p:", "fw", "a}{b"), "p:fw:{a}{b}");
        assert_eq!(redis_key("", "sl", ""), "sl:{}");
    }

    #[test]
    fn every_algorithm_has_its_own_tag_and_script_and_every_script_starts_with_the_prelude() {
        let limits = one_of_each();
        for (n, limit) in limits.iter().enumerate() {
            assert!(script(limit).source.starts_with("-- tollgate prelude"));
            assert!(script(limit).source.ends_with(include_str!("../../lua/single.lua")));
            for other in &limits[n + 1..] {
                assert_ne!(tag(limit), tag(other));
                assert_ne!(script(limit).script.get_hash(), script(other).script.get_hash());
            }
        }
    }

    /// Each script's header says what it reads from `ARGV[3]` on, in a line
    /// `-- ARGV[3..]: name name ...`: the registry must send exactly that.
    #[test]
    fn every_script_reads_the_configuration_its_algorithm_sends() {
        for limit in one_of_each() {
            let source = script(&limit).source;
            let declared: Vec<&str> = source
                .lines()
                .filter_map(|line| line.strip_prefix("-- ARGV[3..]:"))
                .flat_map(str::split_whitespace)
                .collect();
            assert_eq!(declared, config_fields(&limit), "{limit:?}");
            assert_eq!(config(&limit).len(), declared.len());
            // ... and reads exactly that many: ARGV[i] to ARGV[i + n - 1].
            let highest = (0..declared.len()).rev().find(|n| source.contains(&format!("ARGV[i + {n}]")));
            let reads = highest.map_or(usize::from(source.contains("ARGV[i]")), |n| n + 1);
            assert_eq!(reads, declared.len(), "{limit:?} reads {reads} ARGV");
        }
    }

    /// An algorithm has reserving scripts if and only if it reserves ahead;
    /// they run its files with lua/reserve.lua (then the check's main) and
    /// lua/give_back.lua; and those read what the backend appends.
    #[test]
    fn the_algorithms_that_reserve_have_reserving_scripts_that_read_what_is_sent() {
        let appended = |main: &str| -> Vec<String> {
            main.lines()
                .filter_map(|line| line.strip_prefix("-- ARGV[#ARGV"))
                .filter_map(|rest| rest.split_once(']'))
                .filter_map(|(_, rest)| rest.split_whitespace().next())
                .map(|name| name.trim_end_matches(':').to_owned())
                .collect()
        };
        assert_eq!(appended(include_str!("../../lua/reserve.lua")), RESERVE_ARGS);
        assert_eq!(appended(include_str!("../../lua/give_back.lua")), GIVE_BACK_ARGS);
        for limit in one_of_each() {
            assert_eq!(reserving(&limit).is_some(), reach_us(&limit) > 0, "{limit:?}");
            if let Some(reserving) = reserving(&limit) {
                let check = script(&limit).source;
                let files = &check[..check.len() - include_str!("../../lua/single.lua").len()];
                assert_eq!(
                    reserving.reserve.source,
                    format!("{files}{}{}", include_str!("../../lua/reserve.lua"), include_str!("../../lua/single.lua"))
                );
                assert_eq!(reserving.give_back.source, format!("{files}{}", include_str!("../../lua/give_back.lua")));
                assert!(files.contains("local function give_back(k, i, at_us, wait_us)"), "{limit:?}");
            }
        }
    }

    #[test]
    fn the_sliding_log_script_forgets_as_many_old_entries_per_write_as_its_step() {
        let forgotten = crate::algorithm::sliding_log::FORGOTTEN_PER_WRITE;
        assert!(
            include_str!("../../lua/sliding_log.lua").contains(&format!("local REMOVED_PER_WRITE = {forgotten}\n"))
        );
    }

    #[test]
    fn errors_other_than_a_state_the_script_cannot_read_are_the_backends() {
        let other = RedisError::from((ErrorKind::Io, "connection reset"));
        assert!(matches!(script_error(other, &["k"]), Error::Backend { backend: "redis", .. }));
    }
}
