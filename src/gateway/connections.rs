//! Connection accounting of a listener: in all, per IP, per client certificate.
//!
//! Owns the counts and the guards that release them. Every accepted socket
//! takes a place in the total and in its IP's count **before** the TLS
//! handshake (so a flood of handshakes from one address, even with a
//! certificate from the trusted CA that is not registered, is bounded), and,
//! once the handshake tells who it is, a place in its certificate's count.
//! New connections per IP are also rate-limited (GCRA, governor), so a peer that
//! opens and drops connections in a loop cannot spend the node's CPU on TLS
//! handshakes. Over any cap the connection is closed at once and counted in
//! `datagate_connections_refused_total{reason}`. The caps come from the
//! current limits, so a reload changes them.
//!
//! Does not own: timeouts (the accept loop in `server.rs`), or what happens on
//! the connection.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds `max_connections` already.
    Total,
    /// The peer's IP holds `max_connections_per_ip` already.
    PerIp,
    /// The peer's certificate holds `max_connections_per_certificate` already.
    PerCertificate,
    /// The peer's IP opens connections faster than `max_new_connections_per_ip_per_second`.
    RatePerIp,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
            Refusal::PerCertificate => "max_connections_per_certificate",
            Refusal::RatePerIp => "max_new_connections_per_ip_per_second",
        }
    }
}

#[derive(Debug)]
struct Counter<K: Hash + Eq> {
    counts: Mutex<HashMap<K, usize>>,
}

impl<K: Hash + Eq + Clone> Counter<K> {
    fn new() -> Self {
        Counter {
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, key: &K, cap: usize) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= cap {
            return false;
        }
        *count += 1;
        true
    }

    fn give_back(&self, key: &K) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(key);
            }
        }
    }
}

type IpRateLimiter = governor::RateLimiter<
    IpAddr,
    governor::state::keyed::DefaultKeyedStateStore<IpAddr>,
    governor::clock::DefaultClock,
>;

/// The per-IP rate of new connections, rebuilt when a reload changes it.
struct NewConnectionRate {
    per_second: u32,
    limiter: IpRateLimiter,
    accepted_since_cleanup: u32,
}

impl std::fmt::Debug for NewConnectionRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewConnectionRate")
            .field("per_second", &self.per_second)
            .finish_non_exhaustive()
    }
}

/// The open connections of one listener.
#[derive(Debug)]
pub struct Connections {
    total: Counter<()>,
    per_ip: Counter<IpAddr>,
    per_certificate: Counter<String>,
    rate: Mutex<Option<NewConnectionRate>>,
}

/// A connection's places; dropping it (when the connection ends) frees them.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    ip: IpAddr,
    certificate: Option<String>,
}

impl Connections {
    /// No connections yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Connections {
            total: Counter::new(),
            per_ip: Counter::new(),
            per_certificate: Counter::new(),
            rate: Mutex::new(None),
        })
    }

    /// Whether `ip` may open one more connection now, at `per_second` (burst: as many).
    fn within_rate(&self, ip: IpAddr, per_second: u32) -> bool {
        let Some(rate) = std::num::NonZeroU32::new(per_second) else {
            return true;
        };
        let mut guard = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        let state = match &mut *guard {
            Some(state) if state.per_second == per_second => state,
            slot => slot.insert(NewConnectionRate {
                per_second,
                limiter: governor::RateLimiter::keyed(governor::Quota::per_second(rate)),
                accepted_since_cleanup: 0,
            }),
        };
        // Forget addresses whose allowance is full again, so the map stays as small as
        // the set of recently active peers.
        state.accepted_since_cleanup += 1;
        if state.accepted_since_cleanup >= 4_096 {
            state.accepted_since_cleanup = 0;
            state.limiter.retain_recent();
        }
        state.limiter.check_key(&ip).is_ok()
    }

    /// Takes a place for a socket just accepted from `ip`.
    pub fn accept(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
        new_per_ip_per_second: u32,
    ) -> Result<Slot, Refusal> {
        if !self.within_rate(ip, new_per_ip_per_second) {
            return Err(Refusal::RatePerIp);
        }
        if !self.total.take(&(), max_total) {
            return Err(Refusal::Total);
        }
        if !self.per_ip.take(&ip, max_per_ip) {
            self.total.give_back(&());
            return Err(Refusal::PerIp);
        }
        Ok(Slot {
            connections: self.clone(),
            ip,
            certificate: None,
        })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.total
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&())
            .copied()
            .unwrap_or(0)
    }
}

impl Slot {
    /// Takes a place for the certificate the handshake presented.
    pub fn identify(
        &mut self,
        fingerprint: &str,
        max_per_certificate: usize,
    ) -> Result<(), Refusal> {
        let key = fingerprint.to_owned();
        if !self
            .connections
            .per_certificate
            .take(&key, max_per_certificate)
        {
            return Err(Refusal::PerCertificate);
        }
        self.certificate = Some(key);
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(certificate) = &self.certificate {
            self.connections.per_certificate.give_back(certificate);
        }
        self.connections.per_ip.give_back(&self.ip);
        self.connections.total.give_back(&());
    }
}

/// Descriptors kept back from the consumer listener for everything else: the ops
/// listener and its clients, backend connections, the journal, logs.
pub const RESERVED_DESCRIPTORS: u64 = 1_024;

/// Raises the process's open-file limit (soft, up to the hard limit) so that
/// `max_connections` plus [`RESERVED_DESCRIPTORS`] fit, and returns how many
/// consumer connections the descriptors allow: the listener's effective cap is
/// the smaller of this and `max_connections`, so the ops listener always has
/// descriptors left, whatever a flood does.
pub fn connection_ceiling(max_connections: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let wanted = max_connections as u64 + RESERVED_DESCRIPTORS;
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let mut effective = soft;
    if soft < wanted {
        let raised = wanted.min(hard);
        match setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(raised),
                maximum: limit.maximum,
            },
        ) {
            Ok(()) => effective = raised,
            Err(error) => tracing::warn!(error = %error, "cannot raise the open-file limit"),
        }
    }
    let ceiling =
        usize::try_from(effective.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX);
    if ceiling < max_connections {
        tracing::warn!(
            max_connections,
            ceiling,
            open_file_limit = effective,
            "the open-file limit allows fewer connections than max_connections; \
             the consumer listener is capped lower so the ops listener keeps descriptors"
        );
    }
    ceiling.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 002 Điều 26 khoản 2: connections are capped in total, per IP and per certificate.
    #[test]
    fn new_connections_per_ip_are_rate_limited_per_address() {
        let connections = Connections::new();
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.3".parse().expect("ip");
        let mut kept = Vec::new();
        for _ in 0..5 {
            kept.push(
                connections
                    .accept(a, 100, 100, 5)
                    .expect("within the burst"),
            );
        }
        assert_eq!(
            connections
                .accept(a, 100, 100, 5)
                .expect_err("over the rate"),
            Refusal::RatePerIp
        );
        kept.push(connections.accept(b, 100, 100, 5).expect("another address"));
        // Zero switches the rate off.
        kept.push(connections.accept(a, 100, 100, 0).expect("no rate"));
    }

    #[test]
    fn descriptor_ceiling_leaves_the_reserve() {
        let ceiling = connection_ceiling(100);
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        assert!(ceiling as u64 + RESERVED_DESCRIPTORS <= soft.max(RESERVED_DESCRIPTORS + 1));
        assert!(ceiling >= 1);
    }

    #[test]
    fn caps_total_per_ip_and_per_certificate_and_frees_on_drop() {
        let connections = Connections::new();
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.3".parse().expect("ip");
        let one = connections.accept(a, 3, 2, 0).expect("room");
        let two = connections.accept(a, 3, 2, 0).expect("room");
        assert_eq!(
            connections.accept(a, 3, 2, 0).expect_err("per ip"),
            Refusal::PerIp
        );
        let mut three = connections.accept(b, 3, 2, 0).expect("another ip has room");
        assert_eq!(
            connections.accept(b, 3, 2, 0).expect_err("total"),
            Refusal::Total
        );
        assert_eq!(connections.open(), 3);
        three.identify("fp", 1).expect("first for the certificate");
        drop(one);
        let mut four = connections.accept(b, 3, 2, 0).expect("freed");
        assert_eq!(
            four.identify("fp", 1).expect_err("per certificate"),
            Refusal::PerCertificate
        );
        drop((two, three, four));
        assert_eq!(connections.open(), 0);
    }
}
