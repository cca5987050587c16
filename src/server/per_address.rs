//! One address may not fill the server: `--max-per-address N` caps the
//! clients joined from one IP address. Taken by a handler thread at join,
//! given back when its connection ends.
//!
//! Off by default: a lab behind NAT, or a class on one machine, is many
//! people at one address. An instructor on an open network can set it so
//! that one classmate's script cannot take every place of `--max-clients`.
//! It counts exact addresses: over IPv6, where one host may use many
//! addresses of its network, it limits less than it seems.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Clients joined per address, and the cap.
pub(crate) struct PerAddress {
    limit: Option<usize>,
    joined: Mutex<HashMap<IpAddr, usize>>,
}

/// One joined client's place at its address; dropping it gives it back.
pub(crate) struct Place {
    owner: Arc<PerAddress>,
    address: IpAddr,
}

impl PerAddress {
    /// At most `limit` joined clients per address (`None`: no cap).
    pub(crate) fn new(limit: Option<usize>) -> PerAddress {
        PerAddress { limit, joined: Mutex::default() }
    }

    /// Takes a place at `address`, if one is free. `Ok(None)`: no cap to count
    /// against. `Err(limit)`: `address` holds `limit` places already.
    pub(crate) fn take(self: &Arc<Self>, address: IpAddr) -> Result<Option<Place>, usize> {
        let Some(limit) = self.limit else { return Ok(None) };
        let mut joined = self.lock();
        let count = joined.entry(address).or_default();
        if *count >= limit {
            return Err(limit);
        }
        *count += 1;
        Ok(Some(Place { owner: Arc::clone(self), address }))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.joined.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut joined = self.owner.lock();
        if let Some(count) = joined.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                joined.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_places_and_gets_them_back() {
        let places = Arc::new(PerAddress::new(Some(2)));
        let (here, there): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = places.take(here).unwrap();
        let _second = places.take(here).unwrap();
        assert_eq!(places.take(here).err(), Some(2));
        assert!(places.take(there).is_ok(), "another address is not delayed");
        drop(first);
        assert!(places.take(here).is_ok(), "a place given back is free again");
        assert!(Arc::new(PerAddress::new(None)).take(here).unwrap().is_none());
    }
}
