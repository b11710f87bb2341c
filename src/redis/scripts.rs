//! Which Lua runs each algorithm, with which configuration in `ARGV`, on
//! which Redis key: the one place that pairs an algorithm with its script.
//! A composite's script is built here too, of the same modules.

use std::sync::{Arc, LazyLock};

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, RedisError, ServerErrorKind};

use super::reply::{Reply, decisions_from_reply, from_reply, integers};
use crate::algorithm::{Configuration, Limit, Parts};
use crate::error::redis_error;
use crate::{Decision, Error, Result};

/// A script as Redis runs it: the prelude, the algorithm's files, then a
/// main; with its source kept for the `EVAL` fallback.
#[derive(Debug)]
pub(crate) struct Lua {
    script: redis::Script,
    source: String,
}

impl Lua {
    fn new(source: String) -> Self {
        Self { script: redis::Script::new(&source), source }
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
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

const PRELUDE: &str = include_str!("../../lua/prelude.lua");
const SINGLE: &str = include_str!("../../lua/single.lua");
const RESERVE: &str = include_str!("../../lua/reserve.lua");
const GIVE_BACK: &str = include_str!("../../lua/give_back.lua");

/// The first line of every algorithm's `decide`, and the line that ends it
/// (the first `end` at the start of a line after it: the files indent what
/// is inside a function).
const DECIDE: &str = "local function decide(k, write)\n";
const END: &str = "\nend\n";

/// `file` with its `decide` cut out, and the body of that `decide`
/// (`None` if the file has none).
fn cut_decide(file: &str) -> (String, Option<&str>) {
    let Some(start) = file.find(DECIDE) else { return (file.to_owned(), None) };
    let body_start = start + DECIDE.len();
    let body_end = body_start + file[body_start..].find(END).expect("decide ends with an `end` line") + 1;
    let rest = &file[body_end + END.len() - 1..];
    (format!("{}{}", &file[..start], rest), Some(&file[body_start..body_end]))
}

/// The script of one algorithm on one key: the prelude, the algorithm's
/// `files` with their `decide` cut out, the `mains`, then, if `decides`, the
/// body of `decide` ([`inlined`]) in a `do ... end` block at the top of the
/// chunk, where lua/single.lua has set its arguments; and of all that, only the
/// functions the script uses ([`without_unused_functions`]). Redis runs the
/// whole chunk on every call, and a function made (with every local it
/// captures) and called costs it as much as several lines of arithmetic
/// (docs/redis.md, "What a decision costs Redis"). The composite script
/// calls each `decide` as a function.
fn single_source(files: &[&str], mains: &[&str], decides: bool) -> String {
    let mut source = String::from(PRELUDE);
    let mut decide = None;
    for file in files {
        let (rest, body) = cut_decide(file);
        source.push_str(&rest);
        decide = decide.or(body);
    }
    for main in mains {
        source.push_str(main);
    }
    if decides {
        source.push_str("do\n");
        // The functions written in place are defined in the prelude (write_state) or the files.
        let defined = format!("{PRELUDE}{}", files.concat());
        source.push_str(&inlined(decide.expect("an algorithm's files define decide"), &defined));
        source.push_str("end\n");
    }
    without_unused_functions(source)
}

/// The functions that a single script has in place of their calls in its
/// `decide` (the prelude's write of a state string; lua/meter.lua's, the
/// buckets' hot path; lua/sliding_log.lua's and the TTL's, the log's;
/// lua/compact.lua's), rather than make and call them on every decision.
const INLINED: [&str; 14] = [
    "write_state",
    "read_meter",
    "reservable",
    "meter_state",
    "admitted",
    "ttl_ms",
    "decimal",
    "counts",
    "entry",
    "admitted_since",
    "member",
    "commit",
    "read_compact",
    "compact_text",
];

/// `body` with each call of an [`INLINED`] function that `files` defines
/// replaced by the function's body, in a `do ... end` block that first
/// binds its parameters to the arguments (those that differ), until none is
/// left. A call is a line of its own: `return f(...)`, which the body's own
/// returns then end; `[local] a, b = f(...)`, for a function that returns
/// once, at its end, whose values the block hands out through
/// `f_1, ...` (the body's own locals may have the names of `a, b`); or
/// `f(...)`, for a function that returns nothing.
fn inlined(body: &str, files: &str) -> String {
    let mut body = body.to_owned();
    'inlining: loop {
        for line in body.lines() {
            let code = line.trim_start();
            let indent = &line[..line.len() - code.len()];
            // `return f(...)`, `[local] a, b = f(...)`, or `f(...)`, a call whose values are dropped.
            let (targets, call) = match code.strip_prefix("return ") {
                Some(call) => (None, call),
                None => match code.split_once(" = ") {
                    Some((targets, call)) => (Some(targets), call),
                    None => (None, code),
                },
            };
            let Some((name, arguments)) = call.strip_suffix(')').and_then(|call| call.split_once('(')) else {
                continue;
            };
            if !INLINED.contains(&name) {
                continue;
            }
            let definition = format!("local function {name}(");
            let start = files.find(&definition).unwrap_or_else(|| panic!("{name} is defined")) + definition.len();
            let (parameters, rest) = files[start..].split_once(")\n").expect("a definition's first line");
            let function_body = &rest[..rest.find(END).expect("a function ends with an `end` line") + 1];
            let mut block = format!("{indent}do\n");
            // A parameter the body assigns to is rebound even to a variable of its name, which the caller may read after.
            let assigned = |parameter: &str| {
                function_body.lines().filter_map(|line| line.trim_start().split_once(" = ")).any(|(names, _)| {
                    names.split(", ").all(is_identifier) && names.split(", ").any(|name| name == parameter)
                })
            };
            let rebound: Vec<(&str, &str)> = parameters
                .split(", ")
                .zip(arguments.split(", "))
                .filter(|&(parameter, argument)| parameter != argument || assigned(parameter))
                .collect();
            assert_eq!(parameters.split(", ").count(), arguments.split(", ").count(), "{line}");
            if !rebound.is_empty() {
                let (names, values): (Vec<&str>, Vec<&str>) = rebound.into_iter().unzip();
                block += &format!("{indent}  local {} = {}\n", names.join(", "), values.join(", "));
            }
            let returns = function_body.lines().any(|line| line.trim_start().starts_with("return"));
            let dropped = targets.is_none() && !code.starts_with("return ");
            assert!(!(dropped && returns), "{name} returns values that its call drops: {line}");
            let mut replacement = String::new();
            match targets {
                None => {
                    for line in function_body.lines() {
                        block += &format!("{}{line}\n", if line.is_empty() { "" } else { indent });
                    }
                    block += &format!("{indent}end\n");
                }
                Some(targets) => {
                    let (lines, last) = function_body.trim_end().rsplit_once('\n').expect("a body and its return");
                    let values = last.trim_start().strip_prefix("return ").expect("returns once, at its end");
                    assert!(!lines.lines().any(|line| line.trim_start().starts_with("return")), "{name} returns early");
                    let count = targets.trim_start_matches("local ").split(", ").count();
                    // Named for the function: a call inlined in its body hands out values of its own.
                    let results: Vec<String> = (1..=count).map(|n| format!("{name}_{n}")).collect();
                    replacement += &format!("{indent}local {}\n", results.join(", "));
                    for line in lines.lines() {
                        block += &format!("{}{line}\n", if line.is_empty() { "" } else { indent });
                    }
                    block += &format!("{indent}  {} = {values}\n{indent}end\n", results.join(", "));
                    block += &format!("{indent}{targets} = {}\n", results.join(", "));
                }
            }
            replacement += &block;
            let at = body.find(&format!("{line}\n")).expect("the line is in the body");
            body.replace_range(at..at + line.len() + 1, &replacement);
            continue 'inlining;
        }
        return body;
    }
}

/// `source` without the top-level functions it never names outside their
/// own definition (`local function f(...)` to the next `end` at the start of
/// a line, or an alias `local f = g`), until every one left is used:
/// comments do not count as a use. A check never gives back, so its script
/// makes no give-back functions; a give-back never decides.
fn without_unused_functions(mut source: String) -> String {
    'removing: loop {
        // Comments blanked, so that offsets stay those of `source`.
        let code: String = source
            .split_inclusive('\n')
            .map(|line| match line.find("--") {
                Some(at) => {
                    format!("{}{}", &line[..at], " ".repeat(line[at..].trim_end_matches('\n').len()))
                        + if line.ends_with('\n') { "\n" } else { "" }
                }
                None => line.to_owned(),
            })
            .collect();
        for (name, range) in definitions(&code) {
            if uses(&code, name) == 1 {
                source.replace_range(range, "");
                continue 'removing;
            }
        }
        return source;
    }
}

/// The top-level definitions of functions in `code`: each one's name, and
/// the bytes of its definition, lines and all.
fn definitions(code: &str) -> Vec<(&str, std::ops::Range<usize>)> {
    let mut found = Vec::new();
    let mut at = 0;
    for line in code.split_inclusive('\n') {
        let start = at;
        at += line.len();
        if let Some(rest) = line.strip_prefix("local function ") {
            let name = &rest[..rest.find('(').unwrap_or(0)];
            if let Some(end) = code[start..].find(END) {
                found.push((name, start..start + end + END.len()));
            }
        } else if let Some((name, alias)) =
            line.strip_prefix("local ").and_then(|rest| rest.trim_end().split_once(" = "))
            && is_identifier(name)
            && is_identifier(alias)
        {
            found.push((name, start..at));
        }
    }
    found
}

fn is_identifier(word: &str) -> bool {
    !word.is_empty()
        && !word.starts_with(|c: char| c.is_ascii_digit())
        && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// How many times `code` names `name` (as a whole identifier).
fn uses(code: &str, name: &str) -> usize {
    let identifier = |c: char| c.is_ascii_alphanumeric() || c == '_';
    code.match_indices(name)
        .filter(|&(at, _)| !code[..at].ends_with(identifier) && !code[at + name.len()..].starts_with(identifier))
        .count()
}

/// An algorithm's Lua files, from the registry's list.
macro_rules! files {
    ($($file:literal),*) => {
        [$(include_str!(concat!("../../lua/", $file))),*]
    };
}

/// `Some` of the reserving scripts of an algorithm marked `reserves` in
/// the registry, or `None`.
macro_rules! reserving {
    (reserves, $($file:literal),*) => {{
        static RESERVING: LazyLock<Reserving> = LazyLock::new(|| Reserving {
            reserve: Lua::new(single_source(&files!($($file),*), &[RESERVE, SINGLE], true)),
            give_back: Lua::new(single_source(&files!($($file),*), &[GIVE_BACK], false)),
        });
        Some(&*RESERVING)
    }};
    (, $($file:literal),*) => {
        None
    };
}

/// The registry: for each algorithm, the tag that its Redis keys carry (so
/// that no two algorithms ever share a key), its Lua files, the fields of
/// its configuration it sends after the request ([`packed`]), in the order of its
/// script's `CONFIG:` line (a test holds the two together), and `reserves` if it
/// reserves slots ahead (a test holds that to the algorithm's reach).
///
/// The composite script is the prelude, then each algorithm's files in a
/// `do ... end` block that files its `decide` and `commit` as
/// `modules[n]` (n: its place in this list, from 1), then
/// `lua/composite.lua`.
macro_rules! scripts {
    ($($algorithm:ident: $tag:literal, [$($file:literal),*], [$($field:ident),*] $(+ $layout:ident)? $(, $reserves:ident)?;)*) => {
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
                        LazyLock::new(|| Lua::new(single_source(&files!($($file),*), &[SINGLE], true)));
                    &LUA
                })*
            }
        }

        /// The script that decides for several limits at once, all or nothing.
        pub(crate) fn composite_script() -> &'static Lua {
            static LUA: LazyLock<Lua> = LazyLock::new(|| {
                Lua::new(String::from(concat!(
                    include_str!("../../lua/prelude.lua"),
                    "local modules = {}\n",
                    $(
                        "do\n",
                        $(include_str!(concat!("../../lua/", $file)),)*
                        "modules[#modules + 1] = {decide = decide, commit = commit}\nend\n",
                    )*
                    include_str!("../../lua/composite.lua")
                )))
            });
            &LUA
        }

        /// The number of `limit`'s module in the composite script.
        fn module(limit: &Limit) -> u64 {
            #[allow(dead_code)]
            enum Module {
                $($algorithm,)*
            }
            match limit {
                $(Limit::$algorithm(_) => Module::$algorithm as u64 + 1,)*
            }
        }

        /// The scripts that reserve for `limit` and give back, if it reserves.
        pub(crate) fn reserving(limit: &Limit) -> Option<&'static Reserving> {
            match limit {
                $(Limit::$algorithm(_) => reserving!($($reserves)?, $($file),*),)*
            }
        }

        /// `limit`'s configuration, the fields its script reads after the
        /// request: then, for an algorithm with a compact layout, whether to
        /// write it.
        pub(crate) fn config(limit: &Limit, layout: Layout) -> Vec<u64> {
            match limit {
                $(Limit::$algorithm(algorithm) => vec![$(algorithm.$field,)* $(layout_field!($layout, layout))?],)*
            }
        }

        /// `limit`'s Lua files, as the registry lists them.
        #[cfg(test)]
        fn files(limit: &Limit) -> &'static [&'static str] {
            match limit {
                $(Limit::$algorithm(_) => &files!($($file),*),)*
            }
        }

        /// The names of the fields [`config`] sends.
        #[cfg(test)]
        fn config_fields(limit: &Limit) -> &'static [&'static str] {
            match limit {
                $(Limit::$algorithm(_) => &[$(stringify!($field),)* $(stringify!($layout))?],)*
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

/// Which of its layouts a script writes, where its algorithm has two (the
/// counters': lua/fixed_window.lua, lua/sliding_window.lua). Every script
/// reads both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Layout {
    /// The layout every version reads.
    #[default]
    Standard,
    /// The smaller one, which versions before it cannot read.
    Compact,
}

/// The field that tells a script to write its compact layout.
macro_rules! layout_field {
    (compact, $layout:expr) => {
        u64::from($layout == Layout::Compact)
    };
}

scripts! {
    FixedWindow: "fw", ["compact.lua", "fixed_window.lua"], [amount, period_us] + compact;
    SlidingLog: "sl", ["exact.lua", "sliding_log.lua"], [amount, period_us];
    TokenBucket: "tb", ["exact.lua", "meter.lua", "token_bucket.lua"], [capacity, amount, period_us], reserves;
    LeakyBucket: "lb", ["exact.lua", "meter.lua", "leaky_bucket.lua"], [capacity, amount, period_us], reserves;
    SlidingWindow: "sw", ["exact.lua", "compact.lua", "sliding_window.lua"], [amount, period_us] + compact;
}

/// Where a limit keeps a user key's state: its name in a composite (none
/// for a plain algorithm), and its algorithm's tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyPart {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) tag: &'static str,
}

impl KeyPart {
    /// The Redis key of user key `key` under `prefix`.
    pub(crate) fn redis_key(&self, prefix: &str, key: &str) -> String {
        redis_key(prefix, self.name.as_deref(), self.tag, key)
    }
}

/// The Redis key of `key` for an algorithm tagged `tag`:
/// `<prefix><tag>:{<key>}`, or `<prefix><name>:<tag>:{<key>}` for the limit
/// named `name` of a composite.
///
/// Injective: a prefix and a name hold no brace (the builder and the
/// composite check), and a tag is one of the registry's, with no `:`, so the
/// first `{` ends the tag, the tag is what stands between it and the `:`
/// before, and the last byte is the closing `}`; whatever lies between the
/// braces is the user key, braces and all. Two algorithms never share a
/// key, since the tag stands just before the `:{`; a name's limits of one
/// algorithm do, whichever plan they are in. The braces make the user key
/// the Redis Cluster hash tag (up to its first `}`), the same for each of a
/// composite's keys: a script touches only keys of one slot, so it is
/// cluster safe whatever the tag turns out to be.
pub(crate) fn redis_key(prefix: &str, name: Option<&str>, tag: &str, key: &str) -> String {
    let name_len = name.map_or(0, |name| name.len() + 1);
    let mut redis_key = String::with_capacity(prefix.len() + name_len + tag.len() + key.len() + 3);
    redis_key.push_str(prefix);
    if let Some(name) = name {
        redis_key.push_str(name);
        redis_key.push(':');
    }
    redis_key.push_str(tag);
    redis_key.push_str(":{");
    redis_key.push_str(key);
    redis_key.push('}');
    redis_key
}

/// One configuration ready to run: its script, what it sends after `cost`
/// and `now`, and its keys.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) lua: &'static Lua,
    /// What follows the request's cost and clock in `ARGV[1]`: a plain
    /// algorithm's configuration, packed (zeros for a composite).
    pub(crate) config: Vec<u8>,
    /// `ARGV[2..]`, as sent.
    pub(crate) args: Vec<Vec<u8>>,
    /// `KEYS`, in order: one per limit.
    pub(crate) keys: Vec<KeyPart>,
}

/// How `configuration` runs on Redis. One plain algorithm: its own script on
/// its one key, as a lone limiter of it, with its configuration in the
/// request's argument (one argument fewer for Redis to make: lua/prelude.lua
/// says why). Named limits: the composite script,
/// whose `ARGV[2..]` is, for each limit `k`, its module's number and the
/// index in ARGV of its configuration, then the configurations, one
/// argument each.
pub(crate) fn prepare(configuration: &Configuration<'_>, layout: Layout) -> Prepared {
    match configuration.parts {
        Parts::One(limit) => Prepared {
            lua: script(&limit),
            config: packed(&config(&limit, layout)),
            args: Vec::new(),
            keys: vec![KeyPart { name: None, tag: tag(&limit) }],
        },
        Parts::Several(named) => {
            let mut args = Vec::with_capacity(3 * named.len());
            // ARGV[1], then two per limit: the first configuration is ARGV[2 + 2n], one argument each.
            let first = 2 + 2 * named.len();
            for (n, limit) in named.iter().map(|named| &named.limit).enumerate() {
                args.extend([module(limit), (first + n) as u64].map(|number| number.to_string().into_bytes()));
            }
            args.extend(named.iter().map(|named| packed(&config(&named.limit, layout))));
            let keys =
                named.iter().map(|named| KeyPart { name: Some(Arc::clone(&named.name)), tag: tag(&named.limit) });
            Prepared { lua: composite_script(), config: packed(&[]), args, keys: keys.collect() }
        }
    }
}

impl Prepared {
    /// The request for `cost` units at `now_us` (client-time mode) or on the
    /// server's clock, with this configuration.
    pub(crate) fn request(&self, cost: u64, now_us: Option<u64>) -> Request<'_> {
        Request { cost, now_us, config: &self.config }
    }
}

/// How many fields every configuration is sent as: the most any algorithm
/// has, zeros after an algorithm's own.
const CONFIG_FIELDS: usize = 3;

/// A configuration as a script reads it: its fields, then zeros, to
/// [`CONFIG_FIELDS`], as unsigned 64-bit big-endian integers. The prelude
/// unpacks them with the request, into `config_1` .. `config_3`, in one
/// `struct_unpack`; lua/prelude.lua says why.
pub(crate) fn packed(config: &[u64]) -> Vec<u8> {
    assert!(config.len() <= CONFIG_FIELDS, "a configuration has at most {CONFIG_FIELDS} fields");
    let mut bytes: Vec<u8> = config.iter().flat_map(|field| field.to_be_bytes()).collect();
    bytes.resize(8 * CONFIG_FIELDS, 0);
    bytes
}

/// Runs `lua` on `keys` with `ARGV = [request, args...]` (see [`run`]): each
/// key's limit's decision, in order.
pub(crate) async fn invoke<C: ConnectionLike>(
    connection: &mut C,
    lua: &Lua,
    keys: &[String],
    request: Request<'_>,
    args: &[Vec<u8>],
) -> Result<(Vec<Decision>, u64)> {
    let reply: Vec<u8> = run(connection, lua, keys, request, args, &[]).await?;
    decisions_from_reply(&integers(&reply)?, keys.len())
}

/// Runs a deciding script of one key (a check or a reservation): see [`run`].
pub(crate) async fn decide<C: ConnectionLike>(
    connection: &mut C,
    lua: &Lua,
    redis_key: &str,
    request: Request<'_>,
    args: &[Vec<u8>],
    appended: &[u64],
) -> Result<Reply> {
    let keys = [redis_key.to_owned()];
    from_reply(&integers(&run::<_, Vec<u8>>(connection, lua, &keys, request, args, appended).await?)?)
}

/// What a script call sends in `ARGV[1]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    /// Units asked for.
    pub(crate) cost: u64,
    /// The client clock's time, µs since the epoch, in client-time mode.
    pub(crate) now_us: Option<u64>,
    /// A plain algorithm's configuration, packed ([`Prepared::config`]).
    pub(crate) config: &'a [u8],
}

impl Request<'_> {
    /// The request as `ARGV[1]`: `cost`, then the clock, `now_us` or
    /// `u64::MAX` for the server's, as unsigned 64-bit big-endian integers;
    /// then the configuration.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16 + self.config.len());
        bytes.extend(self.cost.to_be_bytes());
        bytes.extend(self.now_us.unwrap_or(u64::MAX).to_be_bytes());
        bytes.extend(self.config);
        bytes
    }
}

/// Runs `lua` on `keys` with `ARGV = [request, args..., appended...]`: the
/// request ([`Request::bytes`]); then a composite's configurations; then,
/// in decimal, what the main appends (lua/prelude.lua says why the numbers
/// are packed).
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
    keys: &[String],
    request: Request<'_>,
    args: &[Vec<u8>],
    appended: &[u64],
) -> Result<T> {
    let request = request.bytes();
    let mut invocation = lua.script.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    invocation.arg(&request).arg(args).arg(appended);
    let reply: Result<T, RedisError> = match invocation.invoke_async(connection).await {
        Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            let mut eval = Cmd::new();
            eval.arg("EVAL").arg(&lua.source).arg(keys.len()).arg(keys).arg(&request).arg(args).arg(appended);
            eval.query_async(connection).await
        }
        reply => reply,
    };
    reply.map_err(|error| script_error(error, &keys.iter().map(String::as_str).collect::<Vec<_>>()))
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
    fn keys_carry_the_limits_name_the_algorithm_then_the_user_key_in_braces() {
        assert_eq!(redis_key("tollgate:", None, "tb", "user:42"), "tollgate:tb:{user:42}");
        assert_eq!(redis_key("p:", None, "fw", "a}{b"), "p:fw:{a}{b}");
        assert_eq!(redis_key("", None, "sl", ""), "sl:{}");
        assert_eq!(redis_key("api:", Some("per-day"), "fw", "u"), "api:per-day:fw:{u}");
        assert_eq!(redis_key("", Some("a:b"), "tb", ":"), "a:b:tb:{:}");
    }

    #[test]
    fn the_composite_script_files_every_module_in_registry_order_and_points_each_limit_at_its_configuration() {
        let source = composite_script().source();
        assert!(source.starts_with("-- tollgate prelude"));
        assert!(source.ends_with(include_str!("../../lua/composite.lua")));
        let limits = one_of_each();
        assert_eq!(source.matches("modules[#modules + 1] = {decide = decide, commit = commit}").count(), limits.len());
        for (n, limit) in limits.iter().enumerate() {
            assert_eq!(module(limit), n as u64 + 1);
            // Each module's files, whole and in order, within its block.
            let block = source.split("\ndo\n").nth(n + 1).unwrap();
            assert!(block.contains(&files(limit).concat()), "{limit:?}");
            assert!(block.contains(DECIDE), "{limit:?}");
        }
        let named: Vec<_> = limits
            .iter()
            .enumerate()
            .map(|(n, limit)| crate::algorithm::Named::new(format!("l{n}").into(), *limit))
            .collect();
        for layout in [Layout::Standard, Layout::Compact] {
            let prepared = prepare(&Configuration { plan: None, limit: 1, parts: Parts::Several(&named) }, layout);
            // ARGV[n] is args[n - 2]: ARGV[1] is the request.
            let first = 2 + 2 * limits.len();
            for (k, limit) in limits.iter().enumerate() {
                let decimal = |number: usize| number.to_string().into_bytes();
                assert_eq!(prepared.args[2 * k], decimal(module(limit) as usize));
                assert_eq!(prepared.args[2 * k + 1], decimal(first + k));
                assert_eq!(prepared.args[first + k - 2], packed(&config(limit, layout)));
            }
            assert_eq!(prepared.args.len(), first + limits.len() - 2);
        }
    }

    #[test]
    fn every_algorithm_has_its_own_tag_and_script_and_every_script_starts_with_the_prelude() {
        let limits = one_of_each();
        for (n, limit) in limits.iter().enumerate() {
            assert!(script(limit).source().starts_with("-- tollgate prelude"));
            for other in &limits[n + 1..] {
                assert_ne!(tag(limit), tag(other));
                assert_ne!(script(limit).script.get_hash(), script(other).script.get_hash());
            }
        }
    }

    /// A script of one algorithm is the prelude, its files without their
    /// `decide`, lua/single.lua, then that `decide`'s body in a block: the
    /// same lines, but run once at the top of the chunk, with the meter's
    /// functions, the sliding log's and the prelude's write written in place
    /// of their calls; and it makes no function at all.
    #[test]
    fn a_single_script_runs_the_body_of_its_algorithms_decide_in_place_and_makes_only_the_functions_it_uses() {
        assert!(SINGLE.contains("local k, write = 1, true\n"));
        for limit in one_of_each() {
            let source = script(&limit).source();
            let whole = format!("{PRELUDE}{}", files(&limit).concat());
            let start = whole.find(DECIDE).unwrap();
            assert_eq!(whole.matches(DECIDE).count(), 1, "{limit:?}: one decide");
            let end = start + whole[start..].find(END).unwrap() + END.len();
            let body = &whole[start + DECIDE.len()..end - END.len() + 1];
            assert!(source.starts_with("-- tollgate prelude"), "{limit:?}");
            assert!(source.ends_with(&format!("{SINGLE}do\n{}end\n", inlined(body, &whole))), "{limit:?}");
            for name in INLINED {
                assert!(!source.contains(&format!("{name}(")), "{limit:?}: {name} is called");
            }
            // The body ends as decide does, with a return: a block's last statement.
            assert!(body.trim_end().lines().last().unwrap().trim_start().starts_with("return "), "{limit:?}");
            assert!(!source.contains(DECIDE) && !source.contains("local function give_back"), "{limit:?}");
            for (name, _) in definitions(source) {
                assert!(uses(source, name) > 1, "{limit:?}: {name} is not used");
            }
            // Every state is read and written without a function made for it.
            let functions =
                definitions(source).into_iter().filter(|(_, at)| source[at.clone()].starts_with("local function"));
            assert_eq!(functions.map(|(name, _)| name).collect::<Vec<_>>(), [] as [&str; 0], "{limit:?}");
        }
    }

    #[test]
    fn an_inlined_function_is_its_body_in_a_block_that_binds_its_parameters_to_the_arguments() {
        let files = "local function reservable(mark, amount)\n  local room = MAX_EXACT - mark\n  return mark + room\nend\n\
                     local function admitted(k, tag, after)\n  if after > 0 then\n    tag = 'T'\n  end\n  return tag, k\nend\n\
                     local function commit(k, most)\n  redis_call('SET', KEYS[k], most)\nend\n";
        let body =
            "  local most = 1\n  most = reservable(full, amount)\n  commit(k, most)\n  return admitted(k, tag, most)\n";
        // `amount` and `k` are bound to themselves, and not assigned to: left as they are. `tag` is assigned
        // to, and so rebound. A value is handed out through `reservable_1`; a call on a line of its own is its
        // body; a tail call's returns are the body's.
        assert_eq!(
            inlined(body, files),
            "  local most = 1\n  local reservable_1\n  do\n    local mark = full\n    local room = MAX_EXACT - mark\n    \
             reservable_1 = mark + room\n  end\n  most = reservable_1\n  do\n    redis_call('SET', KEYS[k], most)\n  end\n  \
             do\n    local tag, after = tag, most\n    if after > 0 then\n      tag = 'T'\n    end\n    return tag, k\n  end\n"
        );
    }

    /// A call inlined in the body of another hands its values out through
    /// names of its own function's, which the outer block's values do not
    /// shadow.
    #[test]
    fn a_call_inlined_inside_another_keeps_the_outer_values() {
        let files = "local function reservable(mark)\n  local next = mark + 1\n  return next\nend\n\
                     local function admitted(k, tag)\n  local room = reservable(tag)\n  return room, k\nend\n";
        let body = "  local room, key = admitted(k, 1)\n  return room\n";
        assert_eq!(
            inlined(body, files),
            "  local admitted_1, admitted_2\n  do\n    local tag = 1\n    local reservable_1\n    do\n      \
             local mark = tag\n      local next = mark + 1\n      reservable_1 = next\n    end\n    local room = reservable_1\n    \
             admitted_1, admitted_2 = room, k\n  end\n  local room, key = admitted_1, admitted_2\n  return room\n"
        );
    }

    /// A function that returns values cannot be written in place of a call
    /// that drops them: its `return` would end the script.
    #[test]
    #[should_panic(expected = "returns values that its call drops")]
    fn a_call_that_drops_what_its_function_returns_is_not_inlined() {
        let files = "local function reservable(mark)\n  return mark\nend\n";
        inlined("  reservable(full)\n  return 1\n", files);
    }

    #[test]
    fn unused_functions_go_and_used_ones_stay() {
        let source = "local function a(x)\n  return b(x)\nend\nlocal function b(x)\n  return x\nend\n\
                      local function c()\n  return a(1) -- b(2)\nend\nlocal d = c\nlocal function e()\nend\nreturn e()\n";
        // d is never used, then c (only d named it), then a, then b (a comment does not count); e is called.
        assert_eq!(without_unused_functions(source.to_owned()), "local function e()\nend\nreturn e()\n");
        assert_eq!(uses("ab a_b a b.a (a)", "a"), 3);
    }

    /// Each script's header says what its configuration is, in a line
    /// `-- CONFIG: name name ...`: the registry must send exactly that,
    /// packed, after the request, and the script unpack exactly that many
    /// fields from where the request ends.
    #[test]
    fn every_script_reads_the_configuration_its_algorithm_sends() {
        for limit in one_of_each() {
            let source = script(&limit).source();
            let declared: Vec<&str> = source
                .lines()
                .filter_map(|line| line.strip_prefix("-- CONFIG:"))
                .flat_map(str::split_whitespace)
                .collect();
            assert_eq!(declared, config_fields(&limit), "{limit:?}");
            for layout in [Layout::Standard, Layout::Compact] {
                assert_eq!(config(&limit, layout).len(), declared.len());
                let prepared = prepare(&Configuration { plan: None, limit: 1, parts: Parts::One(limit) }, layout);
                assert_eq!(prepared.config, packed(&config(&limit, layout)), "{limit:?}");
                assert!(prepared.args.is_empty(), "{limit:?}");
                assert_eq!(
                    &prepared.config[..8 * declared.len()],
                    &config(&limit, layout).iter().flat_map(|field| field.to_be_bytes()).collect::<Vec<u8>>()[..],
                    "{limit:?}"
                );
                assert!(prepared.config[8 * declared.len()..].iter().all(|&byte| byte == 0), "{limit:?}");
            }
            // The layout is the `compact` field, 1 for the compact one, and nothing else.
            let (standard, compact) = (config(&limit, Layout::Standard), config(&limit, Layout::Compact));
            match declared.iter().position(|&field| field == "compact") {
                Some(at) => assert_eq!((standard[at], compact[at]), (0, 1), "{limit:?}"),
                None => assert_eq!(standard, compact, "{limit:?}"),
            }
            // ... and takes that many of the prelude's fields, in order, wherever it reads its configuration.
            let fields: Vec<String> = (1..=declared.len()).map(|n| format!("config_{n}")).collect();
            let read = format!("local {} = {}\n", declared.join(", "), fields.join(", "));
            let whole = files(&limit).concat();
            assert_eq!(whole.matches("config_").count(), whole.matches(&read).count() * declared.len(), "{limit:?}");
            assert!(source.contains(&read), "{limit:?}");
            assert!(!whole.contains("ARGV"), "{limit:?}: the prelude reads the arguments");
        }
    }

    /// The request is the cost and the clock, the server's as `u64::MAX`,
    /// then the configuration; the prelude reads the two numbers, knows
    /// the server's clock, and tells the script where the configuration
    /// starts; a composite's configurations start their own arguments.
    #[test]
    fn the_request_is_the_cost_and_the_clock_then_a_plain_algorithms_configuration() {
        let config = packed(&[7, 8]);
        let request = Request { cost: 3, now_us: None, config: &config };
        assert_eq!(request.bytes(), [&3_u64.to_be_bytes()[..], &u64::MAX.to_be_bytes(), &config].concat());
        let request = Request { cost: 0, now_us: Some(1 << 53), config: &config };
        assert_eq!(request.bytes(), [&0_u64.to_be_bytes()[..], &(1_u64 << 53).to_be_bytes(), &config].concat());
        assert!(PRELUDE.contains(&format!("local SERVER_CLOCK = {}\n", u64::MAX)));
        let fields = (1..=CONFIG_FIELDS).map(|n| format!(", config_{n}")).collect::<String>();
        let unpack = format!("cost, clock{fields} = struct_unpack('>{}', ARGV[1])\n", "I8".repeat(2 + CONFIG_FIELDS));
        assert!(PRELUDE.contains(&unpack), "{unpack}");
        let composite = include_str!("../../lua/composite.lua");
        assert!(composite.contains(&format!(
            "  {} = struct_unpack('>{}', ARGV[i])\n",
            &fields[2..],
            "I8".repeat(CONFIG_FIELDS)
        )));
        let prepared =
            prepare(&Configuration { plan: None, limit: 1, parts: Parts::One(one_of_each()[0]) }, Layout::default());
        assert_eq!(prepared.config.len(), 8 * CONFIG_FIELDS);
    }

    #[test]
    fn a_configuration_is_packed_as_big_endian_unsigned_64_bit_integers() {
        assert_eq!(packed(&[1, 1 << 53]), [0, 0, 0, 0, 0, 0, 0, 1, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(packed(&[]), [0; 24]);
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
                // The check's script with lua/reserve.lua before lua/single.lua.
                let check = script(&limit).source();
                let (files, decide) = check.split_at(check.find(SINGLE).unwrap());
                assert_eq!(reserving.reserve.source(), format!("{files}{RESERVE}{decide}"));
                let give_back = reserving.give_back.source();
                assert!(give_back.starts_with("-- tollgate prelude") && give_back.ends_with(GIVE_BACK), "{limit:?}");
                assert!(give_back.contains("local function give_back(k, at_us, wait_us)"), "{limit:?}");
                assert!(!give_back.contains(DECIDE), "{limit:?}");
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
