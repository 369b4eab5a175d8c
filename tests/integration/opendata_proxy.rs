//! PROXY protocol v2 on the public listener (issue 11, item 1) over real sockets: a trusted
//! load balancer names each client in a binary header before TLS and HTTP, and the open-data
//! limits (000 Điều 8 k6: open data for everyone, fairly shared) count that client; anything
//! else on such a listener is closed without a byte of HTTP.
//!
//! The headers are written byte by byte from the specification's layout here, not with the
//! crate the node decodes them with, so a misreading is not shared.

use crate::support::*;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 `PROXY` header over TCP from `source` (IPv4 or IPv6), to port 443.
fn proxy_header(source: SocketAddr) -> Vec<u8> {
    let mut bytes = SIGNATURE.to_vec();
    bytes.push(0x21);
    let (family, mut addresses) = match source.ip() {
        IpAddr::V4(v4) => (0x11, [v4.octets().to_vec(), vec![192, 0, 2, 1]].concat()),
        IpAddr::V6(v6) => (
            0x21,
            [
                v6.octets().to_vec(),
                [0x20, 0x01, 0x0d, 0xb8].into(),
                vec![0; 12],
            ]
            .concat(),
        ),
    };
    addresses.extend_from_slice(&source.port().to_be_bytes());
    addresses.extend_from_slice(&443u16.to_be_bytes());
    bytes.push(family);
    bytes.extend_from_slice(&u16::try_from(addresses.len()).unwrap().to_be_bytes());
    bytes.extend_from_slice(&addresses);
    bytes
}

/// A v2 `LOCAL` header (the balancer's own connection, e.g. a health check).
fn local_header() -> Vec<u8> {
    let mut bytes = SIGNATURE.to_vec();
    bytes.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    bytes
}

fn source(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

const PATH: &str = "/api/3/action/package_list";

fn request() -> String {
    format!("GET {PATH} HTTP/1.1\r\nHost: data.test\r\nConnection: close\r\n\r\n")
}

/// Reads until the node closes; `None` when it closed without answering.
async fn answer_of<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<RawAnswer> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the node answers or closes within 10 s");
    // A reset (the node closed with our bytes unread) is a close too.
    (read.is_ok() && !answer.is_empty()).then(|| RawAnswer::parse(&answer))
}

/// Sends `prefix` then a request on a fresh plain connection; the status, or `None` when
/// the node closed the connection without answering.
async fn status_after(node: &TestNode, prefix: &[u8]) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(node.public.expect("public listener"))
        .await
        .expect("connect");
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(request().as_bytes());
    // The node may close before reading it all: a failed write is a refusal too.
    if stream.write_all(&bytes).await.is_err() {
        return None;
    }
    answer_of(&mut stream).await.map(|answer| answer.status)
}

async fn status_from(node: &TestNode, client: &str) -> Option<u16> {
    status_after(node, &proxy_header(source(client))).await
}

/// A node whose public listener expects PROXY headers from 127.0.0.1 (the tests' balancer),
/// with a general limit of `burst` requests per client.
async fn node_behind_balancer(pki: &TestPki, extra: &str) -> TestNode {
    NodeBuilder::standard(pki, "http://127.0.0.1:9")
        .public(&format!(
            "trusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = true\nper_second = 1\nburst = 2\n{extra}"
        ))
        .limit("handshake_timeout_ms = 1000")
        .start()
        .await
}

async fn metrics(node: &TestNode) -> String {
    reqwest::get(node.ops_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// Issue 11 item 1, 000 Điều 8 k6: behind a PROXY-protocol balancer the limits count the
/// client its header names: two clients have two budgets, one client is limited, and an
/// IPv6 client is counted per /64.
#[tokio::test]
async fn limits_count_the_client_a_trusted_balancers_header_names() {
    init();
    let pki = TestPki::new();
    let node = node_behind_balancer(&pki, "").await;

    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(status_from(&node, "203.0.113.1:40001").await);
    }
    assert_eq!(
        first,
        [Some(200), Some(200), Some(429)],
        "one client, one budget"
    );
    assert_eq!(
        status_from(&node, "203.0.113.2:40001").await,
        Some(200),
        "another client behind the same balancer has its own budget"
    );

    let mut block = Vec::new();
    for host in [
        "[2001:db8:1:2::1]:5",
        "[2001:db8:1:2::2]:5",
        "[2001:db8:1:2:ffff::3]:5",
    ] {
        block.push(status_from(&node, host).await);
    }
    assert_eq!(
        block,
        [Some(200), Some(200), Some(429)],
        "one IPv6 /64 is one client"
    );
    assert_eq!(
        status_from(&node, "[2001:db8:1:3::1]:5").await,
        Some(200),
        "the next /64 is another client"
    );
}

/// Issue 11 item 1: a `LOCAL` header (the balancer's own health check) is the balancer
/// itself: its budget is the TCP peer's, the one a `PROXY` header naming that address shares.
#[tokio::test]
async fn a_local_header_counts_the_balancer_itself() {
    init();
    let pki = TestPki::new();
    let node = node_behind_balancer(&pki, "").await;
    assert_eq!(status_after(&node, &local_header()).await, Some(200));
    assert_eq!(status_after(&node, &local_header()).await, Some(200));
    assert_eq!(
        status_from(&node, "127.0.0.1:1").await,
        Some(429),
        "LOCAL counted the peer, 127.0.0.1"
    );
    assert_eq!(status_from(&node, "198.51.100.4:1").await, Some(200));
}

/// Issue 11 item 1: `X-Forwarded-For` is believed only when the header's source is itself a
/// trusted proxy (a layer-7 proxy behind the balancer); a client the balancer names cannot
/// buy budgets with a forged hop.
#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_source() {
    init();
    let pki = TestPki::new();
    let node = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .public(
            "trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\nproxy_protocol = true\n\
             per_second = 1\nburst = 2",
        )
        .start()
        .await;
    let with_hop = |client: &'static str, hop: &'static str| {
        let node = &node;
        async move {
            let mut stream = tokio::net::TcpStream::connect(node.public.expect("public"))
                .await
                .expect("connect");
            let mut bytes = proxy_header(source(client));
            bytes.extend_from_slice(
                format!(
                    "GET {PATH} HTTP/1.1\r\nHost: data.test\r\nX-Forwarded-For: {hop}\r\n\
                     Connection: close\r\n\r\n"
                )
                .as_bytes(),
            );
            stream.write_all(&bytes).await.expect("write");
            answer_of(&mut stream).await.map(|answer| answer.status)
        }
    };
    let mut forged = Vec::new();
    for hop in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        forged.push(with_hop("203.0.113.5:1", hop).await);
    }
    assert_eq!(
        forged,
        [Some(200), Some(200), Some(429)],
        "a client's own hops are not believed"
    );
    for hop in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        assert_eq!(
            with_hop("10.1.1.1:1", hop).await,
            Some(200),
            "behind a trusted layer-7 proxy each forwarded client has its own budget"
        );
    }
}

/// Issue 11 item 1: on a PROXY-protocol listener a connection without a valid v2 header is
/// closed before any HTTP (no header, a v1 text header, a bad signature, a truncated
/// header, an oversized length, a header that stalls), each counted by reason; the listener
/// keeps serving the next good connection.
#[tokio::test]
async fn connections_without_a_valid_header_are_closed_and_the_next_is_served() {
    init();
    let pki = TestPki::new();
    let node = node_behind_balancer(&pki, "").await;
    let good = proxy_header(source("203.0.113.50:1"));

    assert_eq!(
        status_after(&node, b"").await,
        None,
        "no header: plain HTTP"
    );
    assert_eq!(
        status_after(&node, b"PROXY TCP4 203.0.113.9 192.0.2.1 5 443\r\n").await,
        None,
        "a v1 text header"
    );
    let mut bad_signature = good.clone();
    bad_signature[6] = b'X';
    assert_eq!(
        status_after(&node, &bad_signature).await,
        None,
        "bad signature"
    );
    let mut oversized = good.clone();
    oversized[14..16].copy_from_slice(&2048u16.to_be_bytes());
    assert_eq!(
        status_after(&node, &oversized).await,
        None,
        "oversized length"
    );
    let mut bad_version = good.clone();
    bad_version[12] = 0x11;
    assert_eq!(
        status_after(&node, &bad_version).await,
        None,
        "version 1 binary"
    );

    // Truncated: part of the header, then the client's end of the stream.
    let mut stream = tokio::net::TcpStream::connect(node.public.expect("public"))
        .await
        .expect("connect");
    stream.write_all(&good[..20]).await.expect("write");
    stream.shutdown().await.expect("half-close");
    assert!(answer_of(&mut stream).await.is_none(), "truncated header");

    // Stalled: part of the header, then silence; closed at the handshake deadline (1 s).
    let mut stream = tokio::net::TcpStream::connect(node.public.expect("public"))
        .await
        .expect("connect");
    stream.write_all(&good[..10]).await.expect("write");
    let started = std::time::Instant::now();
    assert!(answer_of(&mut stream).await.is_none(), "stalled header");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed at the handshake deadline, not held: {:?}",
        started.elapsed()
    );

    assert_eq!(
        status_after(&node, &good).await,
        Some(200),
        "the listener still serves"
    );
    let text = metrics(&node).await;
    for reason in [
        "signature",
        "version_1",
        "version",
        "length",
        "truncated",
        "timeout",
    ] {
        assert!(
            text.contains(&format!(
                "datagate_proxy_protocol_refused_total{{reason=\"{reason}\"}}"
            )),
            "no {reason} refusal counted:\n{text}"
        );
    }
}

/// Issue 11 item 1: a peer outside `trusted_proxies` cannot be the balancer: even a valid
/// header from it is not believed, and the connection is closed at accept.
#[tokio::test]
async fn a_peer_outside_trusted_proxies_is_closed_even_with_a_valid_header() {
    init();
    let pki = TestPki::new();
    let node = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .public("trusted_proxies = [\"10.0.0.0/8\"]\nproxy_protocol = true")
        .start()
        .await;
    assert_eq!(status_from(&node, "203.0.113.1:1").await, None);
    assert_eq!(status_after(&node, b"").await, None);
    assert!(
        metrics(&node)
            .await
            .contains("datagate_proxy_protocol_refused_total{reason=\"untrusted_peer\"}")
    );
}

/// Issue 11 item 1: with `tls = true` the PROXY header comes first, in clear, and the TLS
/// handshake follows on the same connection; a ClientHello without the header is closed.
#[tokio::test]
async fn with_tls_the_header_precedes_the_handshake() {
    init();
    let pki = TestPki::new();
    let node = node_behind_balancer(&pki, "tls = true").await;
    let connector =
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(node.tls_client_config(None)));
    let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let over_tls = |prefix: Vec<u8>| {
        let connector = connector.clone();
        let name = name.clone();
        let address = node.public.expect("public");
        async move {
            let mut tcp = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            tcp.write_all(&prefix).await.expect("write header");
            let mut tls = connector.connect(name, tcp).await.ok()?;
            tls.write_all(request().as_bytes()).await.ok()?;
            answer_of(&mut tls).await.map(|answer| answer.status)
        }
    };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(over_tls(proxy_header(source("203.0.113.70:1"))).await);
    }
    assert_eq!(
        statuses,
        [Some(200), Some(200), Some(429)],
        "the header's client is counted over TLS too"
    );
    assert_eq!(
        over_tls(proxy_header(source("203.0.113.71:1"))).await,
        Some(200)
    );
    assert_eq!(
        over_tls(Vec::new()).await,
        None,
        "a ClientHello without a header"
    );
}

/// Issue 11 item 1: `check` refuses `proxy_protocol` without `trusted_proxies` (believing
/// anyone's header, or no one's, is never what was meant), naming the path.
#[test]
fn check_refuses_proxy_protocol_without_trusted_proxies() {
    init();
    let pki = TestPki::new();
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .public("proxy_protocol = true")
        .write();
    let output = written.check();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("public.proxy_protocol: needs public.trusted_proxies"),
        "{stderr}"
    );
}
