//! Connection accounting of a listener: in all, per IP, per client certificate.
//!
//! Owns the counts and the guards that release them. Every accepted socket
//! takes a place in the total and in its IP's count **before** the TLS
//! handshake (so a flood of handshakes from one address, even with a
//! certificate from the trusted CA that is not registered, is bounded), and,
//! once the handshake tells who it is, a place in its certificate's count.
//! Over any cap the connection is closed at once and counted in
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
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerIp => "max_connections_per_ip",
            Refusal::PerCertificate => "max_connections_per_certificate",
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

/// The open connections of one listener.
#[derive(Debug)]
pub struct Connections {
    total: Counter<()>,
    per_ip: Counter<IpAddr>,
    per_certificate: Counter<String>,
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
        })
    }

    /// Takes a place for a socket just accepted from `ip`.
    pub fn accept(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Result<Slot, Refusal> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 002 Điều 26 khoản 2: connections are capped in total, per IP and per certificate.
    #[test]
    fn caps_total_per_ip_and_per_certificate_and_frees_on_drop() {
        let connections = Connections::new();
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.3".parse().expect("ip");
        let one = connections.accept(a, 3, 2).expect("room");
        let two = connections.accept(a, 3, 2).expect("room");
        assert_eq!(
            connections.accept(a, 3, 2).expect_err("per ip"),
            Refusal::PerIp
        );
        let mut three = connections.accept(b, 3, 2).expect("another ip has room");
        assert_eq!(
            connections.accept(b, 3, 2).expect_err("total"),
            Refusal::Total
        );
        assert_eq!(connections.open(), 3);
        three.identify("fp", 1).expect("first for the certificate");
        drop(one);
        let mut four = connections.accept(b, 3, 2).expect("freed");
        assert_eq!(
            four.identify("fp", 1).expect_err("per certificate"),
            Refusal::PerCertificate
        );
        drop((two, three, four));
        assert_eq!(connections.open(), 0);
    }
}
