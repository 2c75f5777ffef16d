//! Open connections counted by client address, so one address cannot take every
//! connection slot: past `max_connections_per_address` a new connection from it is
//! closed at once, before its TLS handshake.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The counts; shared by the accept loop and the connections' guards.
#[derive(Debug, Default)]
pub struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it uncounts it.
#[derive(Debug)]
pub struct AddressSlot {
    table: Arc<PerAddress>,
    addr: IpAddr,
}

impl PerAddress {
    /// Counts a new connection from `addr`, unless it already has `max` open.
    pub fn try_open(table: &Arc<PerAddress>, addr: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut open = table.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(addr).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: Arc::clone(table),
            addr,
        })
    }

    #[cfg(test)]
    fn count(&self, addr: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&addr).copied().unwrap_or(0)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_its_share_and_closed_slots_come_back() {
        let t = Arc::new(PerAddress::default());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = PerAddress::try_open(&t, a, 2).unwrap();
        let _second = PerAddress::try_open(&t, a, 2).unwrap();
        assert!(PerAddress::try_open(&t, a, 2).is_none());
        assert!(PerAddress::try_open(&t, b, 2).is_some());
        drop(first);
        assert_eq!(t.count(a), 1);
        assert!(PerAddress::try_open(&t, a, 2).is_some());
    }
}
