//! The open connections, oldest first, so that a full server can make room. When every
//! connection slot is taken and a new client arrives, the connection that has been idle
//! the longest (no request in flight; one that never sent a request counts as idle since
//! it was accepted, its TLS handshake included) is told to close. Slots held by clients
//! that do nothing are reclaimed at once instead of after their timeouts, and a fresh
//! client waits at most for that close, not behind a queue of idle ones. A server whose
//! connections all have requests in flight evicts nobody: new clients wait in the
//! kernel's accept queue, as before.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::activity::Activity;

struct Entry {
    activity: Arc<Activity>,
    evict: Arc<Notify>,
    evicted: bool,
}

/// The registry.
#[derive(Default)]
pub struct OpenConns {
    next_id: Mutex<u64>,
    conns: Mutex<BTreeMap<u64, Entry>>,
}

impl std::fmt::Debug for OpenConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenConns")
    }
}

/// One registered connection: its activity, and the signal that asks it to close.
/// Dropping it unregisters the connection.
pub struct Registered {
    table: Arc<OpenConns>,
    id: u64,
    pub activity: Arc<Activity>,
    pub evict: Arc<Notify>,
}

impl OpenConns {
    pub fn register(table: &Arc<OpenConns>) -> Registered {
        let id = {
            let mut next = table.next_id.lock().unwrap_or_else(|e| e.into_inner());
            *next += 1;
            *next
        };
        let activity = Activity::new();
        let evict = Arc::new(Notify::new());
        table
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Entry {
                    activity: Arc::clone(&activity),
                    evict: Arc::clone(&evict),
                    evicted: false,
                },
            );
        Registered {
            table: Arc::clone(table),
            id,
            activity,
            evict,
        }
    }

    /// Asks the connection idle the longest to close; false when every connection has a
    /// request in flight (or was asked already).
    pub fn evict_idlest(&self) -> bool {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let idlest = conns
            .iter_mut()
            .filter(|(_, e)| !e.evicted && e.activity.in_flight() == 0)
            .max_by_key(|(_, e)| e.activity.idle_for());
        match idlest {
            Some((_, e)) => {
                e.evicted = true;
                e.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.table
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_idlest_connection_is_asked_to_close_once() {
        let t = Arc::new(OpenConns::default());
        let old = OpenConns::register(&t);
        std::thread::sleep(Duration::from_millis(20));
        let young = OpenConns::register(&t);
        assert!(t.evict_idlest());
        tokio::time::timeout(Duration::from_secs(1), old.evict.notified())
            .await
            .expect("the oldest idle one is told");
        assert!(t.evict_idlest(), "then the next");
        tokio::time::timeout(Duration::from_secs(1), young.evict.notified())
            .await
            .expect("the younger one next");
        assert!(!t.evict_idlest(), "each is asked once");
        drop((old, young));
        assert!(t.conns.lock().unwrap().is_empty());
    }
}
