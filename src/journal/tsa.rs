//! RFC 3161 time-stamps of journal seals: the request to a Time-Stamp Authority, the
//! client that sends it, and the verifier of the token it answers.
//!
//! Owns: the DER `TimeStampReq` for a SHA-256 digest ([`request_der`]); one exchange
//! with a TSA over HTTP ([`stamp`]: `application/timestamp-query`, a capped read of the
//! answer, the PKI status, and a structural check that the token is for this digest and
//! this nonce); and the full check of a stored token ([`verify_token`]): the CMS
//! signature, the ESS signing-certificate attribute, the signer's chain up to the given
//! roots with the `timeStamping` purpose, then the message imprint. Does not own: which
//! TSA is configured, its URL and trust roots, the HTTP client's deadlines and TLS (the
//! caller's `reqwest::Client`), what is stamped (a seal's digest), or where tokens are
//! stored.
//!
//! Time: a token's chain is checked as of its own `genTime`, not as of now, so a seal
//! stamped while the TSA's certificate was valid still verifies after that certificate
//! expires (and no wall clock is read). Revocation is not checked: no CRL or OCSP.

use cms::cert::x509::ext::Extensions;
use cms::cert::x509::ext::pkix::name::GeneralName;
use cms::cert::x509::spki::{AlgorithmIdentifier, AlgorithmIdentifierOwned};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier, SignerInfo};
use der::asn1::{Any, BitString, Int, ObjectIdentifier, OctetString, SetOfVec, Uint};
use der::{
    Decode, DecodeValue, Encode, EncodeValue, FixedTag, Header, Length, Reader, Sequence, Tag,
    Writer,
};
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509, X509PurposeId};
use time::OffsetDateTime;
use time::macros::format_description;
use x509_tsp::{Accuracy, MessageImprint, TimeStampReq, TspVersion};

/// Media type of a request (RFC 3161 §3.4).
pub const QUERY_MEDIA_TYPE: &str = "application/timestamp-query";
/// Media type of an answer (RFC 3161 §3.4).
pub const REPLY_MEDIA_TYPE: &str = "application/timestamp-reply";
/// Largest answer read from a TSA: a token carries one signature and a short chain.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// id-sha256, id-sha384, id-sha512 (RFC 5754 §2).
const ID_SHA_256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA_384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA_512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
/// id-signedData (RFC 5652 §5.1).
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// id-ct-TSTInfo (RFC 3161 §2.4.2).
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
/// `CMS_CADES` of OpenSSL 3 (`openssl/cms.h`), which the `openssl` crate does not name:
/// `CMS_verify` then requires the ESS signing-certificate attribute (v1 or v2) and checks
/// that it names the certificate that signed, as RFC 3161 §2.4.1 and RFC 5035 ask.
const CMS_CADES: u32 = 0x10_0000;

/// What failed, for a TSA exchange or a token. Messages name the step, never a URL's
/// credentials or the data stamped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsaError {
    /// The TSA could not be reached, answered an HTTP error, or answered too much.
    #[error("time-stamp authority transport: {0}")]
    Transport(String),
    /// The TSA answered with a PKI status other than granted (0) or grantedWithMods (1).
    #[error(
        "time-stamp authority refused the request: PKIStatus {status}, failInfo bits {fail_info:#x}"
    )]
    Refused {
        /// The PKIStatus (2 rejection, 3 waiting, 4–6 revocation notices).
        status: u8,
        /// The PKIFailureInfo bits, 0 when absent (bit 0 badAlg, 2 badRequest, 5
        /// badDataFormat, 14 timeNotAvailable, 15 unacceptedPolicy, 25 systemFailure…).
        fail_info: u32,
    },
    /// The answer or the token is not the DER structure RFC 3161 describes.
    #[error("malformed time-stamp: {0}")]
    Malformed(String),
    /// The CMS signature over the token's content does not verify.
    #[error("time-stamp signature does not verify: {0}")]
    Signature(String),
    /// The signer's certificate does not chain to a trust root for time-stamping, or its
    /// ESS signing-certificate attribute is missing or names another certificate.
    #[error("time-stamp signer not trusted: {0}")]
    Untrusted(String),
    /// The token is for another digest, or not for a SHA-256 one.
    #[error("time-stamp message imprint: {0}")]
    Imprint(&'static str),
    /// The token's nonce is missing or not the request's.
    #[error("time-stamp nonce missing or not the request's")]
    Nonce,
}

/// The DER `TimeStampReq` (RFC 3161 §2.4.1) for a SHA-256 digest: version 1, the imprint
/// with `id-sha256` and NULL parameters, the nonce, `certReq` true (the token then carries
/// the TSA's certificate, which [`verify_token`] needs), no policy, no extensions.
pub fn request_der(digest: &[u8; 32], nonce: u64) -> Vec<u8> {
    TimeStampReq {
        version: TspVersion::V1,
        message_imprint: sha256_imprint(digest),
        req_policy: None,
        nonce: Some(nonce_int(nonce)),
        cert_req: true,
        extensions: None,
    }
    .to_der()
    .expect("a TimeStampReq of this fixed shape always encodes")
}

/// Sends the request for `digest` to the TSA at `url` and returns the DER of the
/// time-stamp token it grants (a CMS `ContentInfo`, RFC 3161 §2.4.2), after checking that
/// it is for this digest and carries this nonce. The signature and the TSA's chain are
/// not checked here: that is [`verify_token`], with the configured roots. The deadline is
/// the client's.
pub async fn stamp(
    client: &reqwest::Client,
    url: &str,
    digest: &[u8; 32],
    nonce: u64,
) -> Result<Vec<u8>, TsaError> {
    let mut response = client
        .post(url)
        .header(http::header::CONTENT_TYPE, QUERY_MEDIA_TYPE)
        .header(http::header::ACCEPT, REPLY_MEDIA_TYPE)
        .body(request_der(digest, nonce))
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(TsaError::Transport(format!(
            "HTTP status {}",
            status.as_u16()
        )));
    }
    let body = read_capped(&mut response, MAX_REPLY_BYTES).await?;
    let token = granted_token(&body)?;
    let parsed = parse_token(&token)?;
    check_imprint(&parsed.tst_info.message_imprint, digest)?;
    if parsed.tst_info.nonce != Some(nonce_int(nonce)) {
        return Err(TsaError::Nonce);
    }
    Ok(token)
}

/// Verifies a stored token for `digest` and returns its `genTime`: the CMS signature over
/// the TSTInfo, the ESS signing-certificate attribute, the signer's certificate (carried in
/// the token) chaining to one of `trust_roots_der` (DER certificates) with the
/// `timeStamping` purpose (extended key usage `timeStamping` only, critical) as of the
/// token's `genTime`, then the message imprint: SHA-256 and equal to `digest`.
pub fn verify_token(
    token_der: &[u8],
    digest: &[u8; 32],
    trust_roots_der: &[Vec<u8>],
) -> Result<OffsetDateTime, TsaError> {
    let parsed = parse_token(token_der)?;
    let gen_time = parsed.tst_info.gen_time.0;

    let mut param = X509VerifyParam::new().map_err(|e| TsaError::Untrusted(reasons(&e)))?;
    param
        .set_purpose(X509PurposeId::TIMESTAMP_SIGN)
        .map_err(|e| TsaError::Untrusted(reasons(&e)))?;
    // The chain as of genTime (see the module's docs), through OpenSSL's `time_t`.
    #[allow(
        clippy::useless_conversion,
        reason = "time_t is i64 here, but narrower on some 32-bit targets"
    )]
    let at = gen_time
        .unix_timestamp()
        .try_into()
        .map_err(|_| TsaError::Malformed("genTime out of range".into()))?;
    param.set_time(at);
    let mut store = X509StoreBuilder::new().map_err(|e| TsaError::Untrusted(reasons(&e)))?;
    if trust_roots_der.is_empty() {
        return Err(TsaError::Untrusted("no trust roots given".into()));
    }
    for (index, root) in trust_roots_der.iter().enumerate() {
        let root = X509::from_der(root).map_err(|_| {
            TsaError::Untrusted(format!("trust root {index} is not a DER certificate"))
        })?;
        store
            .add_cert(root)
            .map_err(|e| TsaError::Untrusted(reasons(&e)))?;
    }
    store
        .set_param(&param)
        .map_err(|e| TsaError::Untrusted(reasons(&e)))?;
    let store = store.build();

    let mut cms = CmsContentInfo::from_der(token_der)
        .map_err(|e| TsaError::Malformed(format!("CMS: {}", reasons(&e))))?;
    // First the signature alone (the signer's certificate is looked up in the token's
    // certificates), so that a broken signature and an untrusted signer are told apart.
    let mut content = Vec::new();
    cms.verify(
        None,
        None,
        None,
        Some(&mut content),
        CMSOptions::NO_SIGNER_CERT_VERIFY,
    )
    .map_err(|e| TsaError::Signature(reasons(&e)))?;
    cms.verify(
        None,
        Some(&store),
        None,
        None,
        CMSOptions::from_bits_retain(CMS_CADES),
    )
    .map_err(|e| TsaError::Untrusted(reasons(&e)))?;
    // OpenSSL verified these bytes; they must be the ones parsed above.
    if content != parsed.tst_info_der {
        return Err(TsaError::Signature(
            "the signed content is not the token's TSTInfo".into(),
        ));
    }
    check_imprint(&parsed.tst_info.message_imprint, digest)?;
    Ok(gen_time)
}

/// The digest a token is for and its `genTime`, read without any signature check (for
/// listing and matching stored tokens; [`verify_token`] is the check).
pub fn token_digest_and_time(token_der: &[u8]) -> Result<([u8; 32], OffsetDateTime), TsaError> {
    let parsed = parse_token(token_der)?;
    let imprint = &parsed.tst_info.message_imprint;
    check_sha256(imprint)?;
    let digest = <[u8; 32]>::try_from(imprint.hashed_message.as_bytes())
        .map_err(|_| TsaError::Imprint("not a 32-byte SHA-256 hash"))?;
    Ok((digest, parsed.tst_info.gen_time.0))
}

/// The imprint of a SHA-256 digest, parameters NULL (as `openssl ts` writes them).
fn sha256_imprint(digest: &[u8; 32]) -> MessageImprint {
    MessageImprint {
        hash_algorithm: AlgorithmIdentifier {
            oid: ID_SHA_256,
            parameters: Some(Any::null()),
        },
        hashed_message: OctetString::new(digest.to_vec())
            .expect("32 bytes always make an OCTET STRING"),
    }
}

/// A nonce as a positive INTEGER.
fn nonce_int(nonce: u64) -> Int {
    Int::from(Uint::new(&nonce.to_be_bytes()).expect("8 bytes always make an INTEGER"))
}

fn check_sha256(imprint: &MessageImprint) -> Result<(), TsaError> {
    let algorithm = &imprint.hash_algorithm;
    let null_or_absent = algorithm.parameters.as_ref().is_none_or(Any::is_null);
    if algorithm.oid != ID_SHA_256 || !null_or_absent {
        return Err(TsaError::Imprint("hash algorithm is not SHA-256"));
    }
    Ok(())
}

fn check_imprint(imprint: &MessageImprint, digest: &[u8; 32]) -> Result<(), TsaError> {
    check_sha256(imprint)?;
    if imprint.hashed_message.as_bytes() != digest {
        return Err(TsaError::Imprint("the token is for another digest"));
    }
    Ok(())
}

/// A transport error with its causes, without the URL (it may carry credentials).
fn transport(error: reqwest::Error) -> TsaError {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    TsaError::Transport(message)
}

/// Reads a response body, refusing more than `limit` bytes (never an unbounded read).
async fn read_capped(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, TsaError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > limit {
            return Err(TsaError::Transport(format!(
                "answer larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The token of a `TimeStampResp` whose status grants it (RFC 3161 §2.4.2), re-encoded
/// as DER (the signature covers the TSTInfo, which is carried unchanged).
fn granted_token(body: &[u8]) -> Result<Vec<u8>, TsaError> {
    let response = TimeStampResp::from_der(body)
        .map_err(|e| TsaError::Malformed(format!("TimeStampResp: {e}")))?;
    let status = response.status.status;
    if status > 1 {
        // failInfo is a named BIT STRING: bit n (from the first octet's top bit) is value n.
        let fail_info = response.status.fail_info.map_or(0, |bits| {
            bits.bits()
                .take(32)
                .enumerate()
                .filter(|(_, on)| *on)
                .fold(0u32, |mask, (n, _)| mask | 1 << n)
        });
        return Err(TsaError::Refused { status, fail_info });
    }
    response
        .time_stamp_token
        .ok_or_else(|| TsaError::Malformed("status granted but no token".into()))?
        .to_der()
        .map_err(|e| TsaError::Malformed(format!("token: {e}")))
}

/// `TimeStampResp` (RFC 3161 §2.4.2). Not `x509_tsp::TimeStampResp`: its `failInfo` (from
/// `cmpv2` 0.2) declares the failure bits as values 0–26 of a 16-bit set, so a refusal
/// with `systemFailure` or `timeNotAvailable` fails to decode or loses its bits.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TimeStampResp {
    status: PkiStatusInfo,
    #[asn1(optional = "true")]
    time_stamp_token: Option<ContentInfo>,
}

/// `PKIStatusInfo` (RFC 3161 §2.4.2, RFC 4210 §5.2.3).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct PkiStatusInfo {
    /// PKIStatus: 0 granted, 1 grantedWithMods, 2 rejection, 3 waiting, 4–6 revocation.
    status: u8,
    /// PKIFreeText: the TSA's words, not shown (they are the TSA's, not ours).
    #[asn1(optional = "true")]
    status_string: Option<Vec<String>>,
    #[asn1(optional = "true")]
    fail_info: Option<BitString>,
}

/// A token taken apart (no signature checked).
struct ParsedToken {
    /// The encapsulated content's bytes: the DER TSTInfo.
    tst_info_der: Vec<u8>,
    tst_info: TstInfo,
}

/// Takes a token apart: a ContentInfo holding SignedData (version 3, RFC 5652 §5.1, since
/// its content is not id-data) with exactly one signer (RFC 3161 §2.4.2), whose
/// encapsulated content is a TSTInfo.
fn parse_token(token_der: &[u8]) -> Result<ParsedToken, TsaError> {
    let malformed = |what: &str, e: der::Error| TsaError::Malformed(format!("{what}: {e}"));
    let content_info = ContentInfo::from_der(token_der).map_err(|e| malformed("ContentInfo", e))?;
    if content_info.content_type != ID_SIGNED_DATA {
        return Err(TsaError::Malformed("the token is not SignedData".into()));
    }
    let signed: SignedData = content_info
        .content
        .decode_as()
        .map_err(|e| malformed("SignedData", e))?;
    if signed.version != CmsVersion::V3 {
        return Err(TsaError::Malformed("SignedData version is not 3".into()));
    }
    if signed.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err(TsaError::Malformed(
            "the signed content is not a TSTInfo".into(),
        ));
    }
    let [signer] = signed.signer_infos.as_slice() else {
        return Err(TsaError::Malformed("not exactly one signer".into()));
    };
    check_signer(signer, &signed.digest_algorithms)?;
    let tst_info_der = signed
        .encap_content_info
        .econtent
        .ok_or_else(|| TsaError::Malformed("no TSTInfo".into()))?
        .decode_as::<OctetString>()
        .map_err(|e| malformed("eContent", e))?
        .into_bytes();
    let tst_info = TstInfo::from_der(&tst_info_der).map_err(|e| malformed("TSTInfo", e))?;
    Ok(ParsedToken {
        tst_info_der,
        tst_info,
    })
}

/// The fields of the SignerInfo and SignedData that the signature does not cover and
/// OpenSSL does not read (it takes the digest's OID and the key, nothing else), held to
/// RFC 5652 and RFC 5754/5758 so that none of their bytes can change unnoticed: the
/// version matches the signer identifier (§5.3); the digest is SHA-256, -384 or -512 with
/// NULL or absent parameters and is listed in `digestAlgorithms`, whose entries have NULL
/// or absent parameters; the signature algorithm is one of [`SIGNATURE_ALGORITHMS`], with
/// the parameters it takes and, when it names a hash, the digest's. (Certificates the
/// token carries but the chain does not use, such as a second copy of the signer's, are
/// not looked at.)
fn check_signer(
    signer: &SignerInfo,
    digest_algorithms: &SetOfVec<AlgorithmIdentifierOwned>,
) -> Result<(), TsaError> {
    let malformed = |what: &str| Err(TsaError::Malformed(what.into()));
    let version_fits = match signer.sid {
        SignerIdentifier::IssuerAndSerialNumber(_) => signer.version == CmsVersion::V1,
        SignerIdentifier::SubjectKeyIdentifier(_) => signer.version == CmsVersion::V3,
    };
    if !version_fits {
        return malformed("SignerInfo version does not match its signer identifier");
    }
    let null_or_absent =
        |a: &AlgorithmIdentifierOwned| a.parameters.as_ref().is_none_or(Any::is_null);
    let digest = &signer.digest_alg;
    if ![ID_SHA_256, ID_SHA_384, ID_SHA_512].contains(&digest.oid) || !null_or_absent(digest) {
        return malformed("the signer's digest is not SHA-256, -384 or -512");
    }
    if !digest_algorithms.iter().all(null_or_absent)
        || !digest_algorithms.iter().any(|a| a.oid == digest.oid)
    {
        return malformed("digestAlgorithms does not list the signer's digest");
    }
    let signature = &signer.signature_algorithm;
    let Some((_, hash, parameters)) = SIGNATURE_ALGORITHMS
        .iter()
        .find(|(oid, _, _)| *oid == signature.oid)
    else {
        return malformed("unsupported signature algorithm");
    };
    if hash.is_some_and(|hash| hash != digest.oid) {
        return malformed("the signature algorithm's hash is not the signer's digest");
    }
    let parameters_fit = match parameters {
        Parameters::Absent => signature.parameters.is_none(),
        Parameters::NullOrAbsent => null_or_absent(signature),
        Parameters::Required => signature.parameters.is_some(),
    };
    if !parameters_fit {
        return malformed("signature algorithm parameters");
    }
    Ok(())
}

/// What a signature algorithm takes as parameters.
enum Parameters {
    /// None (ECDSA, RFC 5758 §3.2; EdDSA, RFC 8419 §2.3).
    Absent,
    /// NULL, or none (RSA PKCS #1 v1.5, RFC 4055 §5).
    NullOrAbsent,
    /// Some, which OpenSSL reads (RSASSA-PSS, RFC 4056).
    Required,
}

/// The signature algorithms a token may be signed with: OID, the hash it names (if it
/// names one), its parameters. No SHA-1.
const SIGNATURE_ALGORITHMS: [(ObjectIdentifier, Option<ObjectIdentifier>, Parameters); 10] = [
    (
        oid("1.2.840.10045.4.3.2"),
        Some(ID_SHA_256),
        Parameters::Absent,
    ),
    (
        oid("1.2.840.10045.4.3.3"),
        Some(ID_SHA_384),
        Parameters::Absent,
    ),
    (
        oid("1.2.840.10045.4.3.4"),
        Some(ID_SHA_512),
        Parameters::Absent,
    ),
    (
        oid("1.2.840.113549.1.1.11"),
        Some(ID_SHA_256),
        Parameters::NullOrAbsent,
    ),
    (
        oid("1.2.840.113549.1.1.12"),
        Some(ID_SHA_384),
        Parameters::NullOrAbsent,
    ),
    (
        oid("1.2.840.113549.1.1.13"),
        Some(ID_SHA_512),
        Parameters::NullOrAbsent,
    ),
    // rsaEncryption: PKCS #1 v1.5 with the signer's digest (RFC 3370 §3.2).
    (oid("1.2.840.113549.1.1.1"), None, Parameters::NullOrAbsent),
    (oid("1.2.840.113549.1.1.10"), None, Parameters::Required),
    (oid("1.3.101.112"), None, Parameters::Absent),
    (oid("1.3.101.113"), None, Parameters::Absent),
];

const fn oid(dotted: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(dotted)
}

/// `SignedData` (RFC 5652 §5.1) as far as a token's reader needs it. Not
/// `cms::signed_data::SignedData`: that one refuses a certificate set holding the same
/// certificate twice, which `openssl ts` writes when its `certs` file repeats the signer
/// certificate it adds for `certReq`. The certificates and CRLs are left to OpenSSL.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SignedData {
    version: CmsVersion,
    digest_algorithms: SetOfVec<AlgorithmIdentifierOwned>,
    encap_content_info: EncapsulatedContentInfo,
    #[asn1(
        context_specific = "0",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    certificates: Option<Vec<Any>>,
    #[asn1(
        context_specific = "1",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    crls: Option<Vec<Any>>,
    signer_infos: SetOfVec<SignerInfo>,
}

/// `TSTInfo` (RFC 3161 §2.4.2). `x509_tsp::TstInfo` with one difference: its `genTime`
/// may carry fractional seconds, which RFC 3161 allows and many TSAs write, and which
/// `der`'s `GeneralizedTime` (RFC 5280's profile) refuses.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TstInfo {
    version: TspVersion,
    policy: ObjectIdentifier,
    message_imprint: MessageImprint,
    serial_number: Int,
    gen_time: GenTime,
    #[asn1(optional = "true")]
    accuracy: Option<Accuracy>,
    #[asn1(default = "Default::default")]
    ordering: bool,
    #[asn1(optional = "true")]
    nonce: Option<Int>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    tsa: Option<GeneralName>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    extensions: Option<Extensions>,
}

/// `genTime`: `YYYYMMDDhhmmss[.s…]Z`, UTC, up to nanoseconds (RFC 3161 §2.4.2).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
struct GenTime(OffsetDateTime);

impl GenTime {
    fn text(&self) -> der::Result<String> {
        let whole = self
            .0
            .format(format_description!(
                "[year][month][day][hour][minute][second]"
            ))
            .map_err(|_| Self::TAG.value_error())?;
        let nanos = self.0.nanosecond();
        Ok(if nanos == 0 {
            format!("{whole}Z")
        } else {
            let fraction = format!("{nanos:09}");
            format!("{whole}.{}Z", fraction.trim_end_matches('0'))
        })
    }
}

impl FixedTag for GenTime {
    const TAG: Tag = Tag::GeneralizedTime;
}

impl<'a> DecodeValue<'a> for GenTime {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        let bytes = reader.read_vec(header.length)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| Self::TAG.value_error())?;
        // The fraction, if any, has 1 to 9 digits; `time` reads it as `subsecond`.
        time::PrimitiveDateTime::parse(
            text,
            format_description!(
                "[year][month][day][hour][minute][second][optional [.[subsecond]]]Z"
            ),
        )
        .map(|t| GenTime(t.assume_utc()))
        .map_err(|_| Self::TAG.value_error())
    }
}

impl EncodeValue for GenTime {
    fn value_len(&self) -> der::Result<Length> {
        Length::try_from(self.text()?.len())
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        writer.write(self.text()?.as_bytes())
    }
}

/// OpenSSL's reasons, without file names or the library's internals.
fn reasons(stack: &openssl::error::ErrorStack) -> String {
    let list: Vec<String> = stack
        .errors()
        .iter()
        .map(|e| match (e.reason(), e.data()) {
            (Some(reason), Some(data)) => format!("{reason} ({data})"),
            (Some(reason), None) => reason.to_owned(),
            (None, _) => format!("code {:#x}", e.code()),
        })
        .collect();
    if list.is_empty() {
        "no reason given".into()
    } else {
        list.join("; ")
    }
}
