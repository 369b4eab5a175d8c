//! Connection accounting of a listener: in all, per IP, per client certificate.
//!
//! Owns the counts and the guards that release them. Every accepted socket
//! takes a place in the total and in its IP's count **before** the TLS
//! handshake (so a flood of handshakes from one address, even with a
//! certificate from the trusted CA that is not registered, is bounded), and,
//! once the handshake tells who it is, a place in its certificate's count.
//! New connections per IP are also rate-limited (GCRA, governor), so a peer that
//! opens and drops connections in a loop cannot spend the node's CPU on TLS
//! handshakes. On a listener behind a trusted load balancer speaking the PROXY protocol,
//! the per-IP places are the client's the header names, taken once it is read: the
//! balancer's one address would otherwise cap every client together. Over any cap the
//! connection is closed at once and counted in
//! `datagate_connections_refused_total{reason}`. The caps come from the
//! current limits, so a reload changes them.
//!
//! Does not own: timeouts (the accept loop in `server.rs`), or what happens on
//! the connection.

use crate::config::Limits;
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
    /// `max_pending_handshakes` connections have not finished their handshake yet.
    PendingHandshakes,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
            Refusal::PerCertificate => "max_connections_per_certificate",
            Refusal::RatePerIp => "max_new_connections_per_ip_per_second",
            Refusal::PendingHandshakes => "max_pending_handshakes",
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

    fn count(&self) -> usize
    where
        K: Default,
    {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&K::default())
            .copied()
            .unwrap_or(0)
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
    pending: Counter<()>,
    rate: Mutex<Option<NewConnectionRate>>,
}

/// A connection's places; dropping it (when the connection ends) frees them.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    /// The per-IP place taken (absent until a relayed connection's client is known).
    ip: Option<IpAddr>,
    certificate: Option<String>,
    pending: bool,
}

/// The address a per-IP cap counts: an IPv4 address (also when it reaches a dual-stack
/// listener as `::ffff:a.b.c.d`), or an IPv6 address's /64, the block one site gets, so
/// one site cannot dodge the caps by using many addresses of its own block.
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

impl Connections {
    /// No connections yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Connections {
            total: Counter::new(),
            per_ip: Counter::new(),
            per_certificate: Counter::new(),
            pending: Counter::new(),
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

    /// Takes a place for a socket just accepted from `ip`, under the current limits;
    /// `ceiling` is what the descriptors allow ([`connection_ceiling`]).
    pub fn accept(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: &Limits,
        ceiling: usize,
    ) -> Result<Slot, Refusal> {
        let ip = peer_key(ip);
        if !self.within_rate(ip, limits.max_new_connections_per_ip_per_second) {
            return Err(Refusal::RatePerIp);
        }
        let mut slot = self.accept_relayed(limits, ceiling)?;
        if !self.per_ip.take(&ip, limits.max_connections_per_ip) {
            // Dropping the slot gives back its pending and total places.
            return Err(Refusal::PerIp);
        }
        slot.ip = Some(ip);
        Ok(slot)
    }

    /// Takes a place for a socket from a trusted load balancer that will name the client in
    /// a PROXY header: in the total and the pending handshakes now, in the client's per-IP
    /// count and rate once the header is read ([`Slot::attribute`]). The balancer's own
    /// address is not counted per IP: every client behind it shares it.
    pub fn accept_relayed(
        self: &Arc<Self>,
        limits: &Limits,
        ceiling: usize,
    ) -> Result<Slot, Refusal> {
        if !self.pending.take(&(), limits.max_pending_handshakes) {
            return Err(Refusal::PendingHandshakes);
        }
        if !self.total.take(&(), limits.max_connections.min(ceiling)) {
            self.pending.give_back(&());
            return Err(Refusal::Total);
        }
        Ok(Slot {
            connections: self.clone(),
            ip: None,
            certificate: None,
            pending: true,
        })
    }

    /// Connections whose handshake is not over yet.
    pub fn pending(&self) -> usize {
        self.pending.count()
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.total.count()
    }
}

impl Slot {
    /// How long this connection's handshake may take: the configured deadline, or at
    /// most one second while more than half of `max_pending_handshakes` are taken, so
    /// sockets that never speak TLS cannot hold the pending places for long.
    pub fn handshake_deadline(&self, limits: &Limits) -> std::time::Duration {
        if self.connections.pending() * 2 > limits.max_pending_handshakes {
            limits
                .handshake_timeout
                .min(std::time::Duration::from_secs(1))
        } else {
            limits.handshake_timeout
        }
    }

    /// The handshake is over: the connection leaves the pending count.
    pub fn handshake_done(&mut self) {
        if std::mem::take(&mut self.pending) {
            self.connections.pending.give_back(&());
        }
    }

    /// Takes the per-IP places (new-connection rate, open connections) of the client a
    /// relayed connection's PROXY header named; a slot that holds one already keeps it.
    pub fn attribute(&mut self, client: IpAddr, limits: &Limits) -> Result<(), Refusal> {
        if self.ip.is_some() {
            return Ok(());
        }
        let ip = peer_key(client);
        if !self
            .connections
            .within_rate(ip, limits.max_new_connections_per_ip_per_second)
        {
            return Err(Refusal::RatePerIp);
        }
        if !self
            .connections
            .per_ip
            .take(&ip, limits.max_connections_per_ip)
        {
            return Err(Refusal::PerIp);
        }
        self.ip = Some(ip);
        Ok(())
    }

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
        self.handshake_done();
        if let Some(certificate) = &self.certificate {
            self.connections.per_certificate.give_back(certificate);
        }
        if let Some(ip) = &self.ip {
            self.connections.per_ip.give_back(ip);
        }
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

    fn limits(total: usize, per_ip: usize, rate: u32, pending: usize) -> Limits {
        let raw = crate::config::raw::RawLimits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            max_new_connections_per_ip_per_second: rate,
            max_pending_handshakes: pending,
            ..Default::default()
        };
        let mut errors = Vec::new();
        let limits = Limits::build(&raw, std::path::Path::new("t"), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        limits
    }

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
                    .accept(a, &limits(100, 100, 5, 100), usize::MAX)
                    .expect("within the burst"),
            );
        }
        assert_eq!(
            connections
                .accept(a, &limits(100, 100, 5, 100), usize::MAX)
                .expect_err("over the rate"),
            Refusal::RatePerIp
        );
        kept.push(
            connections
                .accept(b, &limits(100, 100, 5, 100), usize::MAX)
                .expect("another address"),
        );
        // Zero switches the rate off.
        kept.push(
            connections
                .accept(a, &limits(100, 100, 0, 100), usize::MAX)
                .expect("no rate"),
        );
    }

    #[test]
    fn sockets_that_never_finish_a_handshake_are_capped_apart() {
        let connections = Connections::new();
        let limits = limits(100, 100, 0, 2);
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let mut first = connections.accept(a, &limits, usize::MAX).expect("room");
        let _second = connections.accept(a, &limits, usize::MAX).expect("room");
        assert_eq!(
            connections
                .accept(a, &limits, usize::MAX)
                .expect_err("pending full"),
            Refusal::PendingHandshakes
        );
        // More than half pending: a short handshake deadline.
        assert!(first.handshake_deadline(&limits) <= std::time::Duration::from_secs(1));
        first.handshake_done();
        let _third = connections
            .accept(a, &limits, usize::MAX)
            .expect("a place freed");
        assert_eq!(connections.open(), 3);
    }

    /// Issue 11 item 1: behind a PROXY-protocol load balancer the per-IP caps count the
    /// client the header names, not the balancer every client shares.
    #[test]
    fn relayed_connections_are_counted_per_ip_of_the_client_the_header_names() {
        let connections = Connections::new();
        let limits = limits(100, 2, 0, 100);
        let balancer: IpAddr = "10.0.0.5".parse().expect("ip");
        let client: IpAddr = "203.0.113.7".parse().expect("ip");
        let mut held = Vec::new();
        for i in 0..4u8 {
            let mut slot = connections
                .accept_relayed(&limits, usize::MAX)
                .expect("the balancer is not capped per IP");
            slot.attribute(IpAddr::from([198, 51, 100, i]), &limits)
                .expect("each client its own count");
            held.push(slot);
        }
        for _ in 0..2 {
            let mut slot = connections
                .accept_relayed(&limits, usize::MAX)
                .expect("room");
            slot.attribute(client, &limits)
                .expect("within the client's cap");
            held.push(slot);
        }
        let mut third = connections
            .accept_relayed(&limits, usize::MAX)
            .expect("room");
        assert_eq!(
            third
                .attribute(client, &limits)
                .expect_err("the client's cap"),
            Refusal::PerIp
        );
        drop(third);
        assert_eq!(
            connections.open(),
            6,
            "a refused slot gives its places back"
        );
        // A LOCAL header (the balancer's own health check) counts the balancer.
        let mut local = connections
            .accept_relayed(&limits, usize::MAX)
            .expect("room");
        local
            .attribute(balancer, &limits)
            .expect("the balancer itself");
        drop(held);
        drop(local);
        assert_eq!(connections.open(), 0);
        let _again = connections
            .accept(client, &limits, usize::MAX)
            .expect("the client's places were given back");
    }

    #[test]
    fn ipv6_peers_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let two: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(peer_key(one), peer_key(two));
        assert_ne!(peer_key(one), peer_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(peer_key(mapped), "192.0.2.7".parse::<IpAddr>().expect("ip"));
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
        let one = connections
            .accept(a, &limits(3, 2, 0, 100), usize::MAX)
            .expect("room");
        let two = connections
            .accept(a, &limits(3, 2, 0, 100), usize::MAX)
            .expect("room");
        assert_eq!(
            connections
                .accept(a, &limits(3, 2, 0, 100), usize::MAX)
                .expect_err("per ip"),
            Refusal::PerIp
        );
        let mut three = connections
            .accept(b, &limits(3, 2, 0, 100), usize::MAX)
            .expect("another ip has room");
        assert_eq!(
            connections
                .accept(b, &limits(3, 2, 0, 100), usize::MAX)
                .expect_err("total"),
            Refusal::Total
        );
        assert_eq!(connections.open(), 3);
        three.identify("fp", 1).expect("first for the certificate");
        drop(one);
        let mut four = connections
            .accept(b, &limits(3, 2, 0, 100), usize::MAX)
            .expect("freed");
        assert_eq!(
            four.identify("fp", 1).expect_err("per certificate"),
            Refusal::PerCertificate
        );
        drop((two, three, four));
        assert_eq!(connections.open(), 0);
    }
}
