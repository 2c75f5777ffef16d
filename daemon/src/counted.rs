//! Slots counted per key with a cap, for bounds such as "at most N connections from one
//! address" and "at most N requests of one API key": [`Counted::take`] counts one in
//! unless the key has its cap, and dropping the returned [`Slot`] counts it out.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// The counts and their cap.
#[derive(Debug)]
pub struct Counted<K: Hash + Eq + Clone> {
    max: usize,
    counts: Mutex<HashMap<K, usize>>,
}

/// One counted slot; dropping it gives it back.
#[derive(Debug)]
pub struct Slot<K: Hash + Eq + Clone> {
    table: Arc<Counted<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Counted<K> {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Counted {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `key`, unless it already holds `max`.
    pub fn take(table: &Arc<Self>, key: &K) -> Option<Slot<K>> {
        let mut counts = table.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(key.clone()).or_insert(0);
        if *n >= table.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            table: Arc::clone(table),
            key: key.clone(),
        })
    }

    /// The slots `key` holds now.
    pub fn held(&self, key: &K) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(key).copied().unwrap_or(0)
    }
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_at_most_its_cap_and_given_back_slots_return() {
        let t = Counted::new(2);
        let first = Counted::take(&t, &"a").unwrap();
        let _second = Counted::take(&t, &"a").unwrap();
        assert!(Counted::take(&t, &"a").is_none());
        assert!(Counted::take(&t, &"b").is_some());
        drop(first);
        assert_eq!(t.held(&"a"), 1);
        assert!(Counted::take(&t, &"a").is_some());
        assert_eq!(t.held(&"b"), 0, "a dropped slot leaves no entry");
    }
}
