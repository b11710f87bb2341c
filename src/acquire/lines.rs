//! [`Lines`]: the waiters of each key in one process, in order.

use std::fmt;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// A line per key of the waiters in this process, for the algorithms that
/// reserve nothing ahead: only the head tries for a slot, and when it has
/// one (or gives up) the next waiter, and only it, is woken. So waiting
/// costs no timer and no call per waiter, and waiters of one process are
/// served in the order they came. (Tokio's mutex is fair: first come, first
/// served.)
#[derive(Default)]
pub(crate) struct Lines {
    waiting: parking_lot::Mutex<hashbrown::HashMap<String, Line, foldhash::fast::RandomState>>,
}

struct Line {
    turn: Arc<Mutex<()>>,
    /// Waiters in it, the head included: it goes when none are left.
    waiters: usize,
}

/// A waiter's place at the head of its line, which it leaves when dropped.
pub(crate) struct Place<'a> {
    // Dropped first: the turn passes to the next waiter, then the line is
    // left (and forgotten if nobody is in it).
    _turn: OwnedMutexGuard<()>,
    _leave: Leave<'a>,
}

/// Leaves a line when dropped, whether at its head or still waiting.
struct Leave<'a> {
    lines: &'a Lines,
    key: &'a str,
}

impl Lines {
    /// Joins `key`'s line; resolves at its head. Dropping the future leaves
    /// the line.
    pub(crate) async fn join<'a>(&'a self, key: &'a str) -> Place<'a> {
        let turn = {
            let mut waiting = self.waiting.lock();
            // The key is copied only for a new line.
            let line = waiting.entry_ref(key).or_insert_with(|| Line { turn: Arc::default(), waiters: 0 });
            line.waiters += 1;
            Arc::clone(&line.turn)
        };
        let leave = Leave { lines: self, key };
        Place { _turn: turn.lock_owned().await, _leave: leave }
    }

    /// Keys with a line: none once every waiter has left.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.waiting.lock().len()
    }
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut waiting = self.lines.waiting.lock();
        if let Some(line) = waiting.get_mut(self.key) {
            line.waiters -= 1;
            if line.waiters == 0 {
                waiting.remove(self.key);
            }
        }
    }
}

impl fmt::Debug for Lines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lines").field("keys", &self.waiting.lock().len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waiters_reach_the_head_in_the_order_they_joined_and_the_line_goes_with_the_last() {
        let lines = Arc::new(Lines::default());
        let order = Arc::new(StdMutex::new(Vec::new()));
        let first = lines.join("k").await;
        let mut waiters = Vec::new();
        for n in 0..5 {
            let (lines, order) = (Arc::clone(&lines), Arc::clone(&order));
            waiters.push(tokio::spawn(async move {
                let _place = lines.join("k").await;
                order.lock().unwrap().push(n);
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }));
            // Each has joined before the next is spawned.
            tokio::task::yield_now().await;
        }
        assert!(order.lock().unwrap().is_empty());
        drop(first);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
        assert_eq!(lines.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_leaves_the_line() {
        let lines = Lines::default();
        let head = lines.join("k").await;
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(5), lines.join("k")).await;
        assert!(gave_up.is_err());
        drop(head);
        assert_eq!(lines.len(), 0);
        let _again = lines.join("k").await;
        assert_eq!(lines.len(), 1);
    }
}
