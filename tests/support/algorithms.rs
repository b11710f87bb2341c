//! Every algorithm, once. Each suite, bench and example that covers "every
//! algorithm" expands this list, so that a new algorithm is one line here
//! (and its model and [`Spec`](super::models::Spec) in `models.rs`):
//! forgetting a suite is not possible.
//!
//! `for_each_algorithm!(callback, args...)` calls
//! `callback!(name, Type, args...)` for each algorithm, `name` being the
//! algorithm's snake_case name (fit for a test or a module) and `Type` its
//! type in `tollgate`.

macro_rules! for_each_algorithm {
    ($callback:ident $(, $arg:tt)*) => {
        $callback!(fixed_window, FixedWindow $(, $arg)*);
        $callback!(sliding_log, SlidingLog $(, $arg)*);
        $callback!(token_bucket, TokenBucket $(, $arg)*);
        $callback!(leaky_bucket, LeakyBucket $(, $arg)*);
        $callback!(sliding_window, SlidingWindow $(, $arg)*);
    };
}
#[allow(unused_imports)]
pub(crate) use for_each_algorithm;

/// For [`for_each_algorithm!`]: `awaited!(name, Type, function,
/// args...)` awaits `function::<tollgate::Type>(args...)`.
macro_rules! awaited {
    ($name:ident, $algorithm:ident, $function:ident $(, $arg:expr)*) => {
        $function::<tollgate::$algorithm>($($arg),*).await
    };
}
#[allow(unused_imports)]
pub(crate) use awaited;

/// For [`for_each_algorithm!`]: `collected!(name, Type, list, function,
/// args...)` pushes `function::<tollgate::Type>(args...).await` onto `list`
/// (an argument of more than one token goes in parentheses: `(&deployment)`).
macro_rules! collected {
    ($name:ident, $algorithm:ident, $list:ident, $function:ident $(, $arg:expr)*) => {
        $list.push($function::<tollgate::$algorithm>($($arg),*).await)
    };
}
#[allow(unused_imports)]
pub(crate) use collected;
