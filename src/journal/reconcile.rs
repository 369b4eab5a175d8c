//! Reconciliation (đối chiếu) of two nodes' journals of the same period: the consumer
//! gateway's and the provider gateway's (or a hub's) exports, matched by `X-Road-Id`.
//!
//! Each side verifies first (a bundle that does not verify is not evidence). Then only
//! federated legs are compared (`consumer`, `hub`, `provider`; a `local` exchange has no
//! counterpart), and a consumer-side record with no signature never left its node (it
//! was refused on the owner's published copy), so it expects none either. Keyed digests
//! differ between nodes by design; the signature digests do not: both sides hash the same
//! `sig1`.

use super::bundle::{Bundle, BundleError, verify_bundle};
use std::collections::BTreeMap;

/// One exchange as one side recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    /// `consumer`, `hub` or `provider`.
    pub leg: String,
    /// The status it answered.
    pub status: String,
    /// SHA-256 of the leg's `sig1`, if the exchange crossed gateways.
    pub signature_digest: Option<String>,
}

/// What reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Exchanges both sides recorded, with matching status and signature.
    pub matched: Vec<String>,
    /// Exchanges only the first side recorded.
    pub only_in_a: Vec<(String, Leg)>,
    /// Exchanges only the second side recorded.
    pub only_in_b: Vec<(String, Leg)>,
    /// Exchanges whose statuses differ.
    pub status_mismatches: Vec<(String, Leg, Leg)>,
    /// Exchanges whose signature digests differ (one side did not see what the other sent).
    pub signature_mismatches: Vec<(String, Leg, Leg)>,
}

impl Report {
    /// Whether the two sides agree on every exchange.
    pub fn is_clean(&self) -> bool {
        self.only_in_a.is_empty()
            && self.only_in_b.is_empty()
            && self.status_mismatches.is_empty()
            && self.signature_mismatches.is_empty()
    }
}

/// The federated legs of a bundle, by `X-Road-Id`.
fn legs(bundle: &Bundle) -> BTreeMap<String, Leg> {
    let value =
        |values: &BTreeMap<String, Option<String>>, name: &str| values.get(name).cloned().flatten();
    bundle
        .records
        .iter()
        .filter_map(|record| {
            let leg = value(&record.values, "leg")?;
            let signature_digest = value(&record.values, "signature_digest");
            // A local exchange, an answer from the node's cache, a query of the node's own
            // admin API, or a consumer-side refusal before anything was sent: no
            // counterpart on another node.
            if leg == "local"
                || leg == "cache"
                || leg == "admin"
                || (leg == "consumer" && signature_digest.is_none())
            {
                return None;
            }
            Some((
                value(&record.values, "message_id")?,
                Leg {
                    leg,
                    status: value(&record.values, "status").unwrap_or_default(),
                    signature_digest,
                },
            ))
        })
        .collect()
}

/// Verifies both bundles, then compares them (see the module doc).
pub fn reconcile(a: &[u8], b: &[u8]) -> Result<Report, (char, BundleError)> {
    verify_bundle(a).map_err(|error| ('A', error))?;
    verify_bundle(b).map_err(|error| ('B', error))?;
    let parse = |bytes: &[u8]| serde_json::from_slice::<Bundle>(bytes);
    let (Ok(a), Ok(b)) = (parse(a), parse(b)) else {
        return Err((
            'A',
            BundleError::Malformed("unreadable after verification".into()),
        ));
    };
    let (a, mut b) = (legs(&a), legs(&b));
    let mut report = Report::default();
    for (id, left) in a {
        match b.remove(&id) {
            None => report.only_in_a.push((id, left)),
            Some(right) if left.signature_digest != right.signature_digest => {
                report.signature_mismatches.push((id, left, right));
            }
            Some(right) if left.status != right.status => {
                report.status_mismatches.push((id, left, right));
            }
            Some(_) => report.matched.push(id),
        }
    }
    report.only_in_b = b.into_iter().collect();
    Ok(report)
}
