//! Header values, made cheaply: they are on every response.
//!
//! The layer's own work is small next to writing five header values, so
//! how they are made decides what it costs (see docs/middleware.md):
//!
//! - a value that changes per response ([`Text`]) is written on the stack
//!   (numbers by `itoa`) and copied once into a value of exactly its
//!   length: one allocation, where `format!` took two and the formatting
//!   machinery; one too long for the stack ([`Value`]) is written into a
//!   buffer of exactly its length, which becomes the value without a copy;
//! - a number below 10 000 ([`number`]) is a slice of a table built at
//!   compile time: no allocation;
//! - a value that is the same on every response of a layer (its
//!   `RateLimit-Policy`) is made once and kept for the life of the process
//!   ([`intern`]), up to a bound.
//!
//! The last two are `'static` values rather than shared ones on purpose:
//! cloning a shared value bumps a reference count that every core would
//! then pass around, once per response.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use http::HeaderValue;

/// A header value being written into a buffer of exactly its length.
pub(crate) struct Value {
    bytes: Vec<u8>,
    /// The length announced, which the writes must add up to.
    len: usize,
}

impl Value {
    /// A value of `len` bytes: the writes that follow must add up to it.
    pub(crate) fn with_len(len: usize) -> Self {
        Self { bytes: Vec::with_capacity(len), len }
    }

    /// The text written so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The value. The callers write digits, ASCII punctuation and checked
    /// policy names, which always make a valid one, so the empty fallback is
    /// never taken.
    pub(crate) fn finish(self) -> HeaderValue {
        debug_assert_eq!(self.bytes.len(), self.len, "a header value's length was miscounted");
        HeaderValue::try_from(self.bytes).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// The longest value a [`Text`] holds: a `RateLimit` of a few items.
pub(crate) const TEXT: usize = 128;

/// A header value written on the stack, then copied once into a value of
/// exactly its length: one allocation, and no growing buffer to check on
/// each write. Its writer says beforehand that it fits ([`TEXT`] bytes).
pub(crate) struct Text {
    bytes: [u8; TEXT],
    len: usize,
}

impl Text {
    pub(crate) fn new() -> Self {
        Self { bytes: [0; TEXT], len: 0 }
    }

    /// The value. As for [`Value::finish`], never the empty fallback.
    pub(crate) fn finish(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.bytes[..self.len]).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// What a header value is written into: a [`Text`] on the stack, or a
/// [`Value`] of an announced length.
pub(crate) trait Write {
    fn push(&mut self, bytes: &[u8]);

    /// `value` in decimal ([`decimal_len`] long).
    fn decimal(&mut self, value: u64) {
        self.push(itoa::Buffer::new().format(value).as_bytes());
    }
}

impl Write for Value {
    fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
}

impl Write for Text {
    fn push(&mut self, more: &[u8]) {
        let end = self.len + more.len();
        debug_assert!(end <= TEXT, "a header value was longer than its writer said");
        if let Some(room) = self.bytes.get_mut(self.len..end) {
            room.copy_from_slice(more);
            self.len = end;
        }
    }
}

/// How many digits `value` has in decimal.
pub(crate) const fn decimal_len(value: u64) -> usize {
    match value.checked_ilog10() {
        Some(log) => log as usize + 1,
        None => 1,
    }
}

/// Numbers below this come from [`SMALL_NUMBERS`]: every `Retry-After` and
/// `X-RateLimit-Reset` under 2 h 46 min, and the `X-RateLimit-Limit` and
/// `-Remaining` of every limit below 10 000.
const SMALL: u64 = 10_000;

/// `0123456789101112...9999`: each number below [`SMALL`], back to back.
/// Checked to be UTF-8 at compile time, so slicing it costs nothing at run
/// time.
static SMALL_NUMBERS: &str = match std::str::from_utf8(&small_numbers()) {
    Ok(numbers) => numbers,
    Err(_) => panic!("ASCII digits are UTF-8"),
};
const SMALL_NUMBERS_LEN: usize = 10 + 90 * 2 + 900 * 3 + 9000 * 4;

const fn small_numbers() -> [u8; SMALL_NUMBERS_LEN] {
    let mut table = [0; SMALL_NUMBERS_LEN];
    let (mut value, mut at) = (0, 0);
    while value < SMALL {
        let len = decimal_len(value);
        let (mut rest, mut index) = (value, len);
        while index > 0 {
            index -= 1;
            table[at + index] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        at += len;
        value += 1;
    }
    table
}

/// A number as a header value: from the table when small, else written.
pub(crate) fn number(value: u64) -> HeaderValue {
    if value < SMALL {
        let len = decimal_len(value);
        // Where the numbers of `len` digits start, and `value`'s place among them.
        let start = match len {
            1 => value,
            2 => 10 + (value - 10) * 2,
            3 => 190 + (value - 100) * 3,
            _ => 2890 + (value - 1000) * 4,
        } as usize;
        if let Some(digits) = SMALL_NUMBERS.get(start..start + len) {
            return HeaderValue::from_static(digits);
        }
    }
    // Copied once into a value of its exact length: `HeaderValue::from(u64)`
    // allocates twice. Digits are always valid: never the fallback.
    HeaderValue::from_bytes(itoa::Buffer::new().format(value).as_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Bytes kept by [`intern`] so far, process-wide.
static INTERNED: AtomicUsize = AtomicUsize::new(0);

/// The most [`intern`] keeps, process-wide: thousands of layers' worth. A
/// process that makes layers by the million (a test suite) runs out and
/// then writes those values per response, as it would without the bound.
const INTERNED_MAX: usize = 64 * 1024;

/// `text` as a value that lives as long as the process and costs nothing to
/// clone; once [`INTERNED_MAX`] is used up, as an ordinary value. For the
/// values that are the same on every response of a layer.
pub(crate) fn intern(text: Value) -> HeaderValue {
    let len = text.as_bytes().len();
    if HeaderValue::from_bytes(text.as_bytes()).is_err() {
        return text.finish();
    }
    if INTERNED.fetch_add(len, Relaxed) + len > INTERNED_MAX {
        INTERNED.fetch_sub(len, Relaxed);
        return text.finish();
    }
    let text: &'static [u8] = Vec::leak(text.bytes);
    // Checked just above: valid, so `from_static` does not panic.
    match std::str::from_utf8(text) {
        Ok(text) => HeaderValue::from_static(text),
        Err(_) => HeaderValue::from_static(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_decimal_in_the_table_and_out_of_it() {
        let edges = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 1001, 9998, 9999, 10_000, 999_999, u64::MAX];
        for value in edges.into_iter().chain(0..SMALL) {
            assert_eq!(number(value), value.to_string().as_str(), "{value}");
            assert_eq!(decimal_len(value), value.to_string().len());
        }
    }

    #[test]
    fn written_values_have_exactly_their_length() {
        let mut value = Value::with_len(7 + decimal_len(12_345));
        value.push(b"\"api\";q");
        value.decimal(12_345);
        assert_eq!(value.finish(), "\"api\";q12345");
    }

    #[test]
    fn text_values_read_as_written_up_to_their_room() {
        let mut text = Text::new();
        text.push(b"\"api\";r=");
        text.decimal(u64::MAX);
        text.push(b";t=");
        text.decimal(0);
        assert_eq!(text.finish(), format!("\"api\";r={};t=0", u64::MAX).as_str());
        for value in [0, 1, 9, 10, 99, 100, 101, 999, 1000, 12_345, 999_999, u64::MAX] {
            let mut text = Text::new();
            text.decimal(value);
            assert_eq!(text.finish(), value.to_string().as_str(), "{value}");
        }
        let mut full = Text::new();
        full.push(&[b'x'; TEXT]);
        assert_eq!(full.finish(), "x".repeat(TEXT).as_str());
    }

    #[test]
    fn interned_values_read_as_written() {
        let mut text = Value::with_len(8);
        text.push(b"\"api\";q=");
        assert_eq!(intern(text), "\"api\";q=");
    }
}
