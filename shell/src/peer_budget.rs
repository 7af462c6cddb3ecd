//! The optional handshake budget per client address (`HANDSHAKES_PER_IP_PER_MINUTE`). It is
//! checked before the token, so a flood from one address costs no signature check, no JWKS
//! lookup and no driver time. Behind a proxy, the client's address is read from
//! `X-Forwarded-For`, and only when the connection comes from one of `TRUSTED_PROXIES`; anyone
//! else could write any address there.
//!
//! Admission before authentication is the shell's, like the JWKS refetch gate: it has to come
//! before the token's check, which is the shell's too. The bucket is the core's own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use alice_core::rate_limit::TokenBucket;
use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::clock::Clock;

/// The most addresses tracked at once. Past it, full buckets are forgotten (at most once a
/// second); new addresses beyond it share one bucket until room is made.
const MAX_TRACKED: usize = 100_000;
/// The least time between two sweeps of the table.
const SWEEP_EVERY_MS: u64 = 1_000;

/// The address a connection comes from, as axum's connect info (set by `serve`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

pub struct PeerBudget {
    per_minute: u32,
    trusted: Vec<IpNet>,
    clock: Arc<dyn Clock>,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    buckets: HashMap<IpAddr, TokenBucket>,
    /// For addresses that find the table full.
    overflow: Option<TokenBucket>,
    swept: Option<alice_core::Millis>,
}

impl PeerBudget {
    /// A budget of `per_minute` handshakes per address (bursts as large); `None` when 0 (off).
    pub fn new(per_minute: u32, trusted: Vec<IpNet>, clock: Arc<dyn Clock>) -> Option<PeerBudget> {
        (per_minute > 0).then(|| PeerBudget { per_minute, trusted, clock, table: Mutex::default() })
    }

    /// The client's address: the connection's peer, or, when that peer is a trusted proxy, the
    /// nearest address in `X-Forwarded-For` that is not one.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        // A dual-stack listener sees IPv4 peers as `::ffff:a.b.c.d`.
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
        for hop in hops.iter().rev() {
            match hop.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()) {
                Ok(ip) if self.is_trusted(ip) => continue,
                Ok(ip) => return ip,
                // Unreadable: nothing further left can be trusted either.
                Err(_) => return peer,
            }
        }
        peer
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Takes one handshake from `client`'s budget; `false` when it is spent. An IPv6 client is
    /// metered by its /64, the block one subscriber gets.
    pub fn admit(&self, client: IpAddr) -> bool {
        let key = match client.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            v4 => v4,
        };
        let now = self.clock.now();
        let per_minute = self.per_minute;
        let fresh = || TokenBucket::new(per_minute, 60_000, per_minute, now);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let Table { buckets, overflow, swept } = &mut *table;
        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED {
            if swept.is_none_or(|at| now.since(at) >= SWEEP_EVERY_MS) {
                *swept = Some(now);
                buckets.retain(|_, b| !b.is_full(now));
            }
            if buckets.len() >= MAX_TRACKED {
                return overflow.get_or_insert_with(fresh).take(now).is_ok();
            }
        }
        buckets.entry(key).or_insert_with(fresh).take(now).is_ok()
    }
}

/// Parses `TRUSTED_PROXIES`: addresses or networks (`10.0.0.0/8`), separated by commas.
pub fn parse_trusted(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("TRUSTED_PROXIES: {s:?} is not an address or a network"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alice_core::Millis;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Frozen(AtomicU64);

    impl Clock for Frozen {
        fn now(&self) -> Millis {
            Millis(self.0.load(Ordering::SeqCst))
        }
        fn wall(&self) -> Millis {
            self.now()
        }
    }

    fn budget(per_minute: u32, trusted: &str) -> (PeerBudget, Arc<Frozen>) {
        let clock = Arc::new(Frozen::default());
        (PeerBudget::new(per_minute, parse_trusted(trusted).unwrap(), clock.clone()).unwrap(), clock)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn each_address_has_its_own_budget_refilled_over_a_minute() {
        let (b, clock) = budget(2, "");
        assert!(b.admit(ip("10.0.0.1")) && b.admit(ip("10.0.0.1")));
        assert!(!b.admit(ip("10.0.0.1")));
        assert!(b.admit(ip("10.0.0.2")));
        clock.0.store(30_000, Ordering::SeqCst);
        assert!(b.admit(ip("10.0.0.1")), "one handshake back after half a minute");
        assert!(!b.admit(ip("10.0.0.1")));
    }

    #[test]
    fn forwarded_for_is_read_only_from_a_trusted_proxy() {
        let (b, _) = budget(1, "10.0.0.0/8, 192.168.1.5");
        let headers = forwarded("203.0.113.7, 10.1.2.3");
        assert_eq!(b.client(ip("198.51.100.1"), &headers), ip("198.51.100.1"), "not a proxy of ours");
        assert_eq!(b.client(ip("192.168.1.5"), &headers), ip("203.0.113.7"), "skips trusted hops");
        assert_eq!(b.client(ip("10.9.9.9"), &forwarded("1.2.3.4, 5.6.7.8")), ip("5.6.7.8"), "nearest hop");
        assert_eq!(b.client(ip("10.9.9.9"), &HeaderMap::new()), ip("10.9.9.9"));
        assert_eq!(b.client(ip("10.9.9.9"), &forwarded("junk, 10.0.0.1")), ip("10.9.9.9"));
    }

    #[test]
    fn bad_proxy_lists_are_named() {
        assert!(parse_trusted("10.0.0.1,not-an-ip").unwrap_err().contains("not-an-ip"));
        assert_eq!(parse_trusted(" ").unwrap(), vec![]);
        assert_eq!(parse_trusted("::1").unwrap().len(), 1);
    }

    #[test]
    fn ipv6_is_metered_by_its_block_and_mapped_ipv4_as_ipv4() {
        let (b, _) = budget(1, "10.0.0.0/8");
        assert!(b.admit(ip("2001:db8:1:2::1")));
        assert!(!b.admit(ip("2001:db8:1:2:ffff::9")), "the same /64");
        assert!(b.admit(ip("2001:db8:1:3::1")));
        assert!(b.admit(ip("192.0.2.1")));
        assert!(!b.admit(ip("::ffff:192.0.2.1")));
        assert_eq!(
            b.client(ip("::ffff:10.1.1.1"), &forwarded("203.0.113.5")),
            ip("203.0.113.5"),
            "a mapped proxy"
        );
    }

    #[test]
    fn off_when_zero() {
        assert!(PeerBudget::new(0, vec![], Arc::new(Frozen::default())).is_none());
    }
}
