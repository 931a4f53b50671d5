//! What keeps one client from holding a front door (the CIM-XML server, NBD): connections per
//! client address are capped, and an address that keeps failing to
//! authenticate is refused for a while.
//!
//! Both say so in the log once per episode — when an address reaches its
//! cap or gets blocked, and when that ends, with how many attempts were
//! turned away — never once per attempt, so an attack cannot flood the
//! log either. The tables are bounded: entries are kept only for addresses
//! with open connections or recent failures, and at most `MAX_TRACKED`
//! failing addresses are remembered (the oldest is forgotten first).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many failing addresses are remembered at most.
pub const MAX_TRACKED: usize = 4096;

/// The limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections per client address.
    pub per_addr: usize,
    /// Failed authentications from one address, within `window`, that
    /// block it...
    pub failures: u32,
    pub window: Duration,
    /// ...for this long.
    pub block: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_addr: 64,
            failures: 10,
            window: Duration::from_secs(60),
            block: Duration::from_secs(60),
        }
    }
}

#[derive(Default)]
struct Conns {
    open: usize,
    /// Connections refused since the cap was reached (logged when it ends).
    refused: u64,
}

struct Failures {
    count: u32,
    since: Instant,
    blocked_until: Option<Instant>,
    /// Requests refused while blocked.
    refused: u64,
}

#[derive(Default)]
struct Tables {
    conns: HashMap<IpAddr, Conns>,
    failures: HashMap<IpAddr, Failures>,
}

/// Shared by every connection of a server.
pub struct Guard {
    limits: Limits,
    tables: Mutex<Tables>,
}

/// An open connection's place in its address's count; given back on drop.
pub struct Slot {
    guard: Arc<Guard>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.guard.tables.lock().expect("guard lock");
        if let Some(c) = t.conns.get_mut(&self.ip) {
            c.open -= 1;
            if c.open == 0 {
                if c.refused > 0 {
                    tracing::warn!(
                        client = %self.ip,
                        refused = c.refused,
                        "connections from this address are accepted again"
                    );
                }
                t.conns.remove(&self.ip);
            }
        }
    }
}

/// Whether a request may go on.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Blocked after failed logins; try again after this long.
    Blocked(Duration),
}

impl Guard {
    pub fn new(limits: Limits) -> Arc<Guard> {
        Arc::new(Guard {
            limits,
            tables: Mutex::new(Tables::default()),
        })
    }

    /// A slot for a new connection from `ip`, or None when that address
    /// already holds its share.
    pub fn connect(self: &Arc<Guard>, ip: IpAddr) -> Option<Slot> {
        let mut t = self.tables.lock().expect("guard lock");
        let c = t.conns.entry(ip).or_default();
        if c.open >= self.limits.per_addr {
            if c.refused == 0 {
                tracing::warn!(
                    client = %ip,
                    limit = self.limits.per_addr,
                    "refusing further connections from this address: it holds its limit"
                );
            }
            c.refused += 1;
            return None;
        }
        c.open += 1;
        Some(Slot {
            guard: self.clone(),
            ip,
        })
    }

    /// Whether `ip` may try to authenticate now.
    pub fn check(&self, ip: IpAddr) -> Verdict {
        let now = Instant::now();
        let mut t = self.tables.lock().expect("guard lock");
        let Some(f) = t.failures.get_mut(&ip) else {
            return Verdict::Go;
        };
        match f.blocked_until {
            Some(until) if until > now => {
                f.refused += 1;
                Verdict::Blocked(until - now)
            }
            Some(_) => {
                tracing::warn!(
                    client = %ip,
                    refused = f.refused,
                    "authentication block lifted"
                );
                t.failures.remove(&ip);
                Verdict::Go
            }
            None => Verdict::Go,
        }
    }

    /// A failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut t = self.tables.lock().expect("guard lock");
        if !t.failures.contains_key(&ip) && t.failures.len() >= MAX_TRACKED {
            // Forget the entry seen longest ago that is not blocking.
            let oldest = t
                .failures
                .iter()
                .min_by_key(|(_, f)| (f.blocked_until.is_some(), f.since))
                .map(|(ip, _)| *ip);
            if let Some(o) = oldest {
                t.failures.remove(&o);
            }
        }
        let f = t.failures.entry(ip).or_insert(Failures {
            count: 0,
            since: now,
            blocked_until: None,
            refused: 0,
        });
        if now.duration_since(f.since) > self.limits.window {
            f.count = 0;
            f.since = now;
        }
        f.count += 1;
        if f.count == 1 {
            tracing::info!(client = %ip, "authentication failed");
        }
        if f.count >= self.limits.failures && f.blocked_until.is_none() {
            f.blocked_until = Some(now + self.limits.block);
            tracing::warn!(
                client = %ip,
                failures = f.count,
                seconds = self.limits.block.as_secs(),
                "too many failed logins: refusing this address for a while"
            );
        }
    }

    /// A successful authentication clears the address's count.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut t = self.tables.lock().expect("guard lock");
        if t.failures
            .get(&ip)
            .is_some_and(|f| f.blocked_until.is_none())
        {
            t.failures.remove(&ip);
        }
    }

    /// Addresses remembered (for tests).
    pub fn tracked(&self) -> (usize, usize) {
        let t = self.tables.lock().expect("guard lock");
        (t.conns.len(), t.failures.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0000 + n))
    }

    #[test]
    fn an_address_gets_its_share_of_connections_and_no_more() {
        let g = Guard::new(Limits {
            per_addr: 3,
            ..Limits::default()
        });
        let held: Vec<_> = (0..3).map(|_| g.connect(ip(2)).unwrap()).collect();
        assert!(g.connect(ip(2)).is_none());
        // Another address is not affected.
        let other = g.connect(ip(1)).unwrap();
        drop(held);
        assert!(g.connect(ip(2)).is_some());
        drop(other);
        assert_eq!(g.tracked().0, 0, "entries outlived their connections");
    }

    #[test]
    fn failed_logins_block_an_address_for_a_while() {
        let g = Guard::new(Limits {
            failures: 5,
            block: Duration::from_millis(200),
            ..Limits::default()
        });
        for _ in 0..4 {
            assert_eq!(g.check(ip(2)), Verdict::Go);
            g.failed(ip(2));
        }
        // A success before the limit clears the count.
        g.succeeded(ip(2));
        for _ in 0..5 {
            assert_eq!(g.check(ip(2)), Verdict::Go);
            g.failed(ip(2));
        }
        assert!(matches!(g.check(ip(2)), Verdict::Blocked(_)));
        // A success does not lift a block; other addresses go on.
        g.succeeded(ip(2));
        assert!(matches!(g.check(ip(2)), Verdict::Blocked(_)));
        assert_eq!(g.check(ip(1)), Verdict::Go);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(g.check(ip(2)), Verdict::Go);
        assert_eq!(g.tracked().1, 0);
    }

    #[test]
    fn the_failure_table_is_bounded() {
        let g = Guard::new(Limits::default());
        for n in 0..(MAX_TRACKED as u32 + 100) {
            g.failed(ip(n));
        }
        assert_eq!(g.tracked().1, MAX_TRACKED);
    }
}
