//! The reply of every script, read once: `allowed, limit, remaining,
//! retry_after_us, reset_after_us, wait_us, decided_at_us`, integers,
//! durations in µs, `decided_at_us` the time the script decided at (µs since
//! the epoch), as one string of seven unsigned 64-bit big-endian integers
//! (a string costs Redis less to answer than an array). A composite's
//! script replies those seven for each of its limits, in the order of its
//! keys.

use crate::{Decision, Error, Result};

/// The reply's fields, in order: what the prelude's `REPLY:` line says.
#[cfg(test)]
pub(crate) const FIELDS: [&str; 7] =
    ["allowed", "limit", "remaining", "retry_after_us", "reset_after_us", "wait_us", "decided_at_us"];

/// A script's reply: its decision, and the time it decided at (the
/// server's `TIME`, or the client's time it was sent; for the buckets, held
/// at the newest time in the key's state), so that a reservation's slot is
/// `decided_at_us` plus the decision's wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) decision: Decision,
    pub(crate) decided_at_us: u64,
}

/// The reply a script answered, or why it is not one: an allowed request
/// has no retry-after, a denied one has one and no wait, and no count
/// exceeds the limit.
pub(crate) fn from_reply(reply: &[u64]) -> Result<Reply> {
    let decision = match *reply {
        [1, limit, remaining, 0, reset_after_us, wait_us, _] if remaining <= limit => {
            Decision::allowed(limit, remaining, reset_after_us, wait_us)
        }
        [0, limit, remaining, retry_after_us, reset_after_us, 0, _] if retry_after_us > 0 && remaining <= limit => {
            Decision::denied(limit, remaining, retry_after_us, reset_after_us)
        }
        _ => return Err(Error::UnexpectedReply(format!("a rate limit script answered {reply:?}"))),
    };
    Ok(Reply { decision, decided_at_us: reply[6] })
}

/// The integers of a script's reply string: 8 bytes each, big-endian.
pub(crate) fn integers(reply: &[u8]) -> Result<Vec<u64>> {
    if !reply.len().is_multiple_of(8) {
        return Err(Error::UnexpectedReply(format!("a script answered {} bytes: {reply:?}", reply.len())));
    }
    Ok(reply.chunks_exact(8).map(|bytes| u64::from_be_bytes(bytes.try_into().expect("8 bytes"))).collect())
}

/// Each limit's decision in the reply of a script on `limits` keys (the
/// fields of [`from_reply`] for each, in the order of the keys), and the
/// time the script decided at: the latest of the limits'.
pub(crate) fn decisions_from_reply(reply: &[u64], limits: usize) -> Result<(Vec<Decision>, u64)> {
    if reply.len() != FIELD_COUNT * limits || limits == 0 {
        return Err(Error::UnexpectedReply(format!("a script on {limits} keys answered {reply:?}")));
    }
    let mut decided_at_us = 0;
    let decisions = reply
        .chunks_exact(FIELD_COUNT)
        .map(|fields| {
            let Reply { decision, decided_at_us: at_us } = from_reply(fields)?;
            decided_at_us = decided_at_us.max(at_us);
            Ok(decision)
        })
        .collect::<Result<Vec<Decision>>>()?;
    Ok((decisions, decided_at_us))
}

/// How many fields a limit's reply has.
const FIELD_COUNT: usize = 7;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prelude_documents_the_reply_this_reads() {
        let prelude = include_str!("../../lua/prelude.lua");
        let documented: Vec<&str> = prelude
            .lines()
            .filter_map(|line| line.strip_prefix("-- REPLY:"))
            .flat_map(str::split_whitespace)
            .take_while(|word| !word.starts_with('('))
            .collect();
        assert_eq!(documented, FIELDS);
        // As many 64-bit big-endian integers.
        assert!(prelude.contains(&format!("local REPLY = '>{}'\n", "I8".repeat(FIELD_COUNT))));
        assert_eq!(FIELDS.len(), FIELD_COUNT);
    }

    /// Every reply the scripts build, `struct_pack(REPLY, ...)`: the seven
    /// fields, an admission with no retry-after, a denial with no wait.
    #[test]
    fn every_script_builds_its_replies_field_by_field_as_the_prelude_says() {
        let scripts = [
            include_str!("../../lua/fixed_window.lua"),
            include_str!("../../lua/sliding_log.lua"),
            include_str!("../../lua/token_bucket.lua"),
            include_str!("../../lua/leaky_bucket.lua"),
            include_str!("../../lua/sliding_window.lua"),
        ];
        let mut replies = 0;
        for script in scripts {
            for (at, _) in script.match_indices("struct_pack(REPLY, ") {
                // The arguments, to the closing parenthesis, split at the commas outside parentheses.
                let mut depth = 0;
                let mut fields = vec![String::new()];
                for c in script[at + "struct_pack(REPLY, ".len()..].chars() {
                    match c {
                        '(' => depth += 1,
                        ')' if depth == 0 => break,
                        ')' => depth -= 1,
                        ',' if depth == 0 => {
                            fields.push(String::new());
                            continue;
                        }
                        _ => {}
                    }
                    fields.last_mut().unwrap().push(c);
                }
                let fields: Vec<String> = fields.iter().map(|field| field.split_whitespace().collect()).collect();
                assert_eq!(fields.len(), FIELD_COUNT, "{fields:?}");
                match fields[0].as_str() {
                    "1" => assert_eq!(fields[3], "0", "an admission's retry_after: {fields:?}"),
                    "0" => assert_eq!(fields[5], "0", "a denial's wait: {fields:?}"),
                    _ => panic!("allowed is 1 or 0: {fields:?}"),
                }
                replies += 1;
            }
        }
        assert!(replies >= 2 * scripts.len(), "{replies}");
    }

    #[test]
    fn the_composite_script_documents_and_builds_its_reply_of_each_limits_fields_in_key_order() {
        let composite = include_str!("../../lua/composite.lua");
        let documented = composite.lines().find_map(|line| line.strip_prefix("-- COMPOSITE REPLY:")).unwrap();
        assert!(documented.contains("the prelude's REPLY for each limit, in the order of KEYS"), "{documented}");
        // Each limit's reply string, limit by limit.
        assert!(
            composite.contains(
                "for k = 1, limits do\n  replies[k] = decided[k].result[1]\nend\nreturn table.concat(replies)"
            )
        );
        let denied = [0, 10, 0, 7, 100, 0, 5];
        let allowed = [1, 5, 4, 0, 9, 0, 5];
        let reply: Vec<u64> = denied.iter().chain(&allowed).copied().collect();
        let (decisions, decided_at_us) = decisions_from_reply(&reply, 2).unwrap();
        assert_eq!(decisions, [Decision::denied(10, 0, 7, 100), Decision::allowed(5, 4, 9, 0)]);
        assert_eq!(decided_at_us, 5);
        assert!(decisions_from_reply(&reply, 1).is_err());
        assert!(decisions_from_reply(&reply[..13], 2).is_err());
    }

    #[test]
    fn a_reply_string_is_read_as_big_endian_64_bit_integers() {
        let mut bytes = Vec::new();
        for n in [1_u64, 10, 9, 0, 100, 5, (1 << 53) - 1] {
            bytes.extend_from_slice(&n.to_be_bytes());
        }
        assert_eq!(integers(&bytes).unwrap(), [1, 10, 9, 0, 100, 5, (1 << 53) - 1]);
        assert_eq!(integers(&[]).unwrap(), []);
        for length in [1, 7, 9, 55] {
            assert!(matches!(integers(&bytes[..length]), Err(Error::UnexpectedReply(_))), "{length}");
        }
    }

    #[test]
    fn replies_become_decisions_and_nonsense_is_an_error() {
        let allowed = from_reply(&[1, 10, 9, 0, 100, 5, 77]).unwrap();
        assert_eq!(allowed, Reply { decision: Decision::allowed(10, 9, 100, 5), decided_at_us: 77 });
        let denied = from_reply(&[0, 10, 0, 7, 100, 0, 78]).unwrap();
        assert_eq!(denied, Reply { decision: Decision::denied(10, 0, 7, 100), decided_at_us: 78 });
        for nonsense in [
            &[][..],
            &[1, 10, 9, 0, 100, 5],
            &[1, 10, 9, 3, 100, 0, 1],
            &[0, 10, 0, 0, 100, 0, 1],
            &[2, 1, 1, 1, 1, 1, 1],
            &[1; 8],
            &[1, 10, 11, 0, 0, 0, 1],
        ] {
            assert!(matches!(from_reply(nonsense), Err(Error::UnexpectedReply(_))), "{nonsense:?}");
        }
    }
}
