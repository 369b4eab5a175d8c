//! Time-stamping seals as they are made: after a batch commits, its seal's digest goes to
//! a stamper task that asks the configured TSA ([`super::tsa::stamp`]), verifies the token
//! against the configured roots, and hands it back; the writer attaches it to the seal
//! between batches (the single writer stays the only one writing).
//!
//! A TSA that is slow or down never slows exchanges: requests are dropped when the
//! stamper's queue is full, and failures are counted
//! (`datagate_journal_seal_stamp_failures_total`); the seal stays valid, only unstamped.
//!
//! Owns: the two channels and the stamper task. Does not own: the TSA protocol
//! ([`super::tsa`]) or storing tokens (each store's `attach`).

use tokio::sync::mpsc;

/// Seals waiting for a token, at most.
const QUEUE: usize = 1024;

/// A seal to stamp: where its batch starts and the SHA-256 of its signed payload.
#[derive(Debug, Clone, Copy)]
pub struct StampRequest {
    /// The batch's first sequence number (the seal's key within its chain).
    pub first_seq: i64,
    /// SHA-256 of the seal payload.
    pub digest: [u8; 32],
}

/// A verified token for a seal.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// The batch's first sequence number.
    pub first_seq: i64,
    /// The RFC 3161 token, base64 DER.
    pub token: String,
}

/// The writer's end of the stamper.
#[derive(Debug)]
pub struct Stamper {
    requests: mpsc::Sender<StampRequest>,
    results: mpsc::Receiver<Stamped>,
}

impl Stamper {
    /// Starts the stamper task for the TSA at `url`, whose tokens must chain to `roots`.
    pub fn spawn(client: reqwest::Client, url: String, roots: Vec<Vec<u8>>) -> Stamper {
        let (requests, mut incoming) = mpsc::channel::<StampRequest>(QUEUE);
        let (done, results) = mpsc::channel::<Stamped>(QUEUE);
        tokio::spawn(async move {
            while let Some(request) = incoming.recv().await {
                let mut nonce = [0u8; 8];
                if aws_lc_rs::rand::fill(&mut nonce).is_err() {
                    continue;
                }
                let stamped =
                    super::tsa::stamp(&client, &url, &request.digest, u64::from_be_bytes(nonce))
                        .await
                        .and_then(|token| {
                            super::tsa::verify_token(&token, &request.digest, &roots).map(|_| token)
                        });
                match stamped {
                    Ok(token) => {
                        use base64::Engine as _;
                        let token = base64::engine::general_purpose::STANDARD.encode(token);
                        metrics::counter!("datagate_journal_seals_stamped_total").increment(1);
                        if done
                            .send(Stamped {
                                first_seq: request.first_seq,
                                token,
                            })
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(error) => {
                        metrics::counter!("datagate_journal_seal_stamp_failures_total")
                            .increment(1);
                        tracing::warn!(error = %error, "a journal seal could not be time-stamped");
                    }
                }
            }
        });
        Stamper { requests, results }
    }

    /// Asks for a token over a new seal; dropped (and counted) when the queue is full.
    pub fn request(&self, request: StampRequest) {
        if self.requests.try_send(request).is_err() {
            metrics::counter!("datagate_journal_seal_stamp_failures_total").increment(1);
        }
    }

    /// The tokens ready to attach.
    pub fn ready(&mut self) -> Vec<Stamped> {
        let mut out = Vec::new();
        while let Ok(stamped) = self.results.try_recv() {
            out.push(stamped);
        }
        out
    }
}

/// Reads the TSA's trust roots (PEM certificates) as DER.
pub fn load_roots(path: &std::path::Path) -> Result<Vec<Vec<u8>>, super::JournalError> {
    let pem = std::fs::read(path)
        .map_err(|e| super::JournalError::Store(format!("{}: {e}", path.display())))?;
    let roots = openssl::x509::X509::stack_from_pem(&pem).map_err(|_| {
        super::JournalError::Store(format!("{}: not PEM certificates", path.display()))
    })?;
    roots
        .iter()
        .map(|cert| {
            cert.to_der()
                .map_err(|_| super::JournalError::Store("a TSA root does not encode".into()))
        })
        .collect()
}
