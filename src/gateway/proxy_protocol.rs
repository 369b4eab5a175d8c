//! PROXY protocol v2 on the public listener: the client address a trusted load balancer
//! names in a binary header before any other byte of the connection (issue 11, item 1;
//! <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt> §2.2).
//!
//! Owns: reading exactly one header from a connection, bounded in size
//! ([`MAX_HEADER_BYTES`]) and failing fast on a wrong first byte, and what the header means
//! for the client's address ([`Source`]); the refusal reasons, a fixed set for the metric
//! `datagate_proxy_protocol_refused_total{reason}`.
//!
//! Does not own: whether the TCP peer may send a header (`[public] trusted_proxies`, checked
//! by the accept loop before a byte is read), the deadline (the listener's handshake
//! deadline, around this read), what the address is used for (connection caps per IP, the
//! open-data limits, `X-Forwarded-For` from a trusted source).
//!
//! The framing read is ours, because it must stop at the header's last byte (TLS or HTTP
//! follows on the same socket and no byte of it may be consumed here) and must refuse an
//! oversized length before reading it; the fields are decoded by the `ppp` crate. TLVs are
//! read as part of the length and never interpreted.

use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature: the header's first 12 bytes.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part: signature, version and command, family and transport, length.
const FIXED_BYTES: usize = 16;

/// The largest header accepted, TLVs included: HAProxy's recommended receive buffer (it
/// holds a v2 header with UNIX addresses and room for TLVs). A larger length is refused
/// before any of it is read.
pub const MAX_HEADER_BYTES: usize = 536;

/// Why a connection's PROXY header was refused; the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The TCP peer is not in `[public] trusted_proxies`: it cannot be the load balancer.
    UntrustedPeer,
    /// The connection began with a PROXY protocol v1 (text) header.
    Version1,
    /// The first bytes are not the v2 signature (no header at all, e.g. plain HTTP or TLS).
    Signature,
    /// The version nibble is not 2.
    Version,
    /// The command is neither LOCAL nor PROXY.
    Command,
    /// The address family or transport is not one the specification assigns.
    AddressFamily,
    /// The length exceeds [`MAX_HEADER_BYTES`] or cannot hold the family's addresses.
    Length,
    /// The connection ended before the header did.
    Truncated,
    /// The header was not complete within the handshake deadline.
    Timeout,
    /// The socket failed while the header was read.
    Io,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UntrustedPeer => "untrusted_peer",
            Refusal::Version1 => "version_1",
            Refusal::Signature => "signature",
            Refusal::Version => "version",
            Refusal::Command => "command",
            Refusal::AddressFamily => "address_family",
            Refusal::Length => "length",
            Refusal::Truncated => "truncated",
            Refusal::Timeout => "timeout",
            Refusal::Io => "io",
        }
    }

    /// Counts the refusal.
    pub fn count(self) {
        metrics::counter!("datagate_proxy_protocol_refused_total", "reason" => self.as_str())
            .increment(1);
    }
}

/// What a valid header says about the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `PROXY` over TCP (IPv4 or IPv6): the client's address and port.
    Client(SocketAddr),
    /// `LOCAL` (the balancer's own connection, e.g. a health check), or `PROXY` with an
    /// unspecified or UNIX family or a transport other than TCP: the TCP peer is the client,
    /// as the specification says for LOCAL and UNSPEC.
    Peer,
}

impl Source {
    /// The client's address: the header's source, or `peer`.
    pub fn client(self, peer: SocketAddr) -> SocketAddr {
        match self {
            Source::Client(address) => address,
            Source::Peer => peer,
        }
    }
}

/// Reads one v2 header from the start of `stream`, and not one byte more. The caller bounds
/// it in time.
pub async fn read_header<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Source, Refusal> {
    let mut header = [0u8; MAX_HEADER_BYTES];
    // The fixed part, checked against the signature as bytes arrive, so a client speaking
    // HTTP or TLS directly is refused on its first bytes rather than at the deadline.
    let mut filled = 0;
    while filled < FIXED_BYTES {
        let read = stream
            .read(&mut header[filled..FIXED_BYTES])
            .await
            .map_err(|_| Refusal::Io)?;
        if read == 0 {
            return Err(Refusal::Truncated);
        }
        filled += read;
        let known = &header[..filled];
        if SIGNATURE.starts_with(&known[..filled.min(SIGNATURE.len())]) {
            continue;
        }
        // Not v2. A v1 header ("PROXY TCP4 …") is named apart, as a balancer configured for
        // the wrong version is a likely mistake; six bytes tell it from a request.
        const V1: &[u8] = b"PROXY ";
        if known.starts_with(V1) {
            return Err(Refusal::Version1);
        }
        if !V1.starts_with(known) {
            return Err(Refusal::Signature);
        }
    }
    let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if header[12] >> 4 != 2 {
        return Err(Refusal::Version);
    }
    if FIXED_BYTES + length > MAX_HEADER_BYTES {
        return Err(Refusal::Length);
    }
    let total = FIXED_BYTES + length;
    stream
        .read_exact(&mut header[FIXED_BYTES..total])
        .await
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::UnexpectedEof => Refusal::Truncated,
            _ => Refusal::Io,
        })?;
    decode(&header[..total])
}

/// The meaning of a complete header (`bytes` holds exactly its fixed part and `length`).
fn decode(bytes: &[u8]) -> Result<Source, Refusal> {
    use ppp::v2::{Addresses, Command, Header, ParseError, Protocol};
    let header = Header::try_from(bytes).map_err(|error| match error {
        ParseError::Prefix => Refusal::Signature,
        ParseError::Version(_) => Refusal::Version,
        ParseError::Command(_) => Refusal::Command,
        ParseError::AddressFamily(_) | ParseError::Protocol(_) => Refusal::AddressFamily,
        ParseError::Incomplete(_)
        | ParseError::Partial(..)
        | ParseError::InvalidAddresses(..)
        | ParseError::InvalidTLV(..)
        | ParseError::Leftovers(_) => Refusal::Length,
    })?;
    Ok(match (header.command, header.protocol, header.addresses) {
        (Command::Proxy, Protocol::Stream, Addresses::IPv4(v4)) => {
            Source::Client(SocketAddr::from((v4.source_address, v4.source_port)))
        }
        (Command::Proxy, Protocol::Stream, Addresses::IPv6(v6)) => {
            Source::Client(SocketAddr::from((v6.source_address, v6.source_port)))
        }
        _ => Source::Peer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header written byte by byte from the specification's layout (not by `ppp`, so the
    /// tests do not share a misreading with the decoder).
    fn header(version_command: u8, family_transport: u8, payload: &[u8]) -> Vec<u8> {
        let mut bytes = SIGNATURE.to_vec();
        bytes.push(version_command);
        bytes.push(family_transport);
        let length = u16::try_from(payload.len()).expect("a test payload fits");
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    fn ipv4_payload() -> Vec<u8> {
        // 203.0.113.7:40000 → 192.0.2.1:443
        let mut payload = vec![203, 0, 113, 7, 192, 0, 2, 1];
        payload.extend_from_slice(&40000u16.to_be_bytes());
        payload.extend_from_slice(&443u16.to_be_bytes());
        payload
    }

    async fn read(bytes: &[u8]) -> Result<Source, Refusal> {
        let mut stream = bytes;
        read_header(&mut stream).await
    }

    #[tokio::test]
    async fn a_proxy_header_over_tcp4_names_the_client() {
        let source = read(&header(0x21, 0x11, &ipv4_payload())).await;
        assert_eq!(
            source,
            Ok(Source::Client("203.0.113.7:40000".parse().expect("addr")))
        );
    }

    #[tokio::test]
    async fn a_proxy_header_over_tcp6_names_the_client() {
        let mut payload = "2001:db8:1:2::9"
            .parse::<std::net::Ipv6Addr>()
            .expect("v6")
            .octets()
            .to_vec();
        payload.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .expect("v6")
                .octets(),
        );
        payload.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
        let source = read(&header(0x21, 0x21, &payload)).await;
        assert_eq!(
            source,
            Ok(Source::Client(
                "[2001:db8:1:2::9]:40000".parse().expect("addr")
            ))
        );
    }

    #[tokio::test]
    async fn local_unspec_unix_and_udp_headers_leave_the_peer_as_the_client() {
        assert_eq!(read(&header(0x20, 0x00, &[])).await, Ok(Source::Peer));
        assert_eq!(
            read(&header(0x20, 0x11, &ipv4_payload())).await,
            Ok(Source::Peer),
            "LOCAL ignores the addresses it carries"
        );
        assert_eq!(read(&header(0x21, 0x00, &[])).await, Ok(Source::Peer));
        assert_eq!(read(&header(0x21, 0x31, &[0; 216])).await, Ok(Source::Peer));
        assert_eq!(
            read(&header(0x21, 0x12, &ipv4_payload())).await,
            Ok(Source::Peer)
        );
    }

    #[tokio::test]
    async fn tlvs_are_skipped_and_nothing_after_the_header_is_read() {
        let mut payload = ipv4_payload();
        // PP2_TYPE_ALPN "h2", then a NOOP of 3 bytes.
        payload.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x03, 0, 0, 0]);
        let mut bytes = header(0x21, 0x11, &payload);
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut stream = bytes.as_slice();
        let source = read_header(&mut stream).await;
        assert_eq!(
            source,
            Ok(Source::Client("203.0.113.7:40000".parse().expect("addr")))
        );
        assert_eq!(stream, b"GET / HTTP/1.1\r\n", "the request is left unread");
    }

    #[tokio::test]
    async fn a_connection_without_a_header_is_refused_on_its_first_bytes() {
        assert_eq!(
            read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await,
            Err(Refusal::Signature)
        );
        // A TLS ClientHello begins with 0x16 0x03.
        assert_eq!(read(&[0x16, 0x03, 0x01]).await, Err(Refusal::Signature));
        let mut bad = header(0x21, 0x11, &ipv4_payload());
        bad[11] = b'X';
        assert_eq!(read(&bad).await, Err(Refusal::Signature));
    }

    #[tokio::test]
    async fn a_version_1_text_header_is_named_as_such() {
        assert_eq!(
            read(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n").await,
            Err(Refusal::Version1)
        );
    }

    #[tokio::test]
    async fn wrong_version_command_family_or_transport_is_refused() {
        let payload = ipv4_payload();
        assert_eq!(
            read(&header(0x11, 0x11, &payload)).await,
            Err(Refusal::Version)
        );
        assert_eq!(
            read(&header(0x31, 0x11, &payload)).await,
            Err(Refusal::Version)
        );
        assert_eq!(
            read(&header(0x22, 0x11, &payload)).await,
            Err(Refusal::Command)
        );
        assert_eq!(
            read(&header(0x21, 0x41, &payload)).await,
            Err(Refusal::AddressFamily)
        );
        assert_eq!(
            read(&header(0x21, 0x13, &payload)).await,
            Err(Refusal::AddressFamily)
        );
    }

    #[tokio::test]
    async fn a_length_too_short_for_the_addresses_is_refused() {
        assert_eq!(
            read(&header(0x21, 0x11, &[203, 0, 113, 7])).await,
            Err(Refusal::Length)
        );
        assert_eq!(
            read(&header(0x21, 0x21, &ipv4_payload())).await,
            Err(Refusal::Length),
            "12 bytes cannot hold two IPv6 addresses"
        );
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_it_is_read() {
        let mut bytes = header(0x21, 0x11, &ipv4_payload());
        bytes[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        // Only the fixed part is there: the refusal cannot have waited for the rest.
        assert_eq!(read(&bytes[..16]).await, Err(Refusal::Length));
        let largest = header(0x21, 0x11, &[0; MAX_HEADER_BYTES - 16]);
        assert!(read(&largest).await.is_ok(), "the cap itself is accepted");
        let over = header(0x21, 0x11, &[0; MAX_HEADER_BYTES - 15]);
        assert_eq!(read(&over).await, Err(Refusal::Length));
    }

    #[tokio::test]
    async fn a_truncated_header_is_refused() {
        let bytes = header(0x21, 0x11, &ipv4_payload());
        for cut in [0, 5, 12, 15, 16, bytes.len() - 1] {
            assert_eq!(read(&bytes[..cut]).await, Err(Refusal::Truncated), "{cut}");
        }
    }

    #[test]
    fn refusal_labels_are_distinct() {
        let all = [
            Refusal::UntrustedPeer,
            Refusal::Version1,
            Refusal::Signature,
            Refusal::Version,
            Refusal::Command,
            Refusal::AddressFamily,
            Refusal::Length,
            Refusal::Truncated,
            Refusal::Timeout,
            Refusal::Io,
        ];
        let labels: std::collections::BTreeSet<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), all.len());
    }
}
