//! Lightning address (LUD-16) and bech32 LNURL-pay (LUD-01/06, LUD-17 `lnurlp://`) resolution
//! into a BOLT11 invoice for an exact amount.

use std::str::FromStr as _;
use std::time::Duration;

use bitcoin::hashes::Hash as _;
use lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescriptionRef};
use mostro_core::ports::DecodedInvoice;
use mostro_core::types::Sats;
use rustls::pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};
use url::{Host, Url};

use crate::http::{HttpClient, HttpError, HttpPolicy};

/// Settings of an [`LnurlResolver`].
#[derive(Clone, Debug)]
pub struct LnurlConfig {
    /// Limit on DNS + TCP connect + TLS handshake of each request.
    pub connect_timeout: Duration,
    /// Limit on each request and on the whole resolution.
    pub total_timeout: Duration,
    /// Largest accepted response, bytes (pay document and callback answer).
    pub max_response_bytes: usize,
    /// Refuse invoices whose description hash is not `sha256(metadata)` (LUD-06). Off by
    /// default because many services still put a plain description in the invoice; the result
    /// reports the check either way.
    pub require_description_hash: bool,
    /// Tests only: allow plain `http://` to loopback IPs and loopback addresses. Never in
    /// production: non-public addresses are otherwise always refused.
    pub allow_insecure_loopback: bool,
    /// Extra trusted root certificates (tests, private CAs).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for LnurlConfig {
    fn default() -> Self {
        LnurlConfig {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(20),
            max_response_bytes: 64 * 1024,
            require_description_hash: false,
            allow_insecure_loopback: false,
            extra_roots: Vec::new(),
        }
    }
}

/// Why a destination could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Not a Lightning address / LNURL, a bad bech32 string, or a URL that is not allowed
    /// (plain http, credentials, unsupported scheme).
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// DNS, TCP or TLS failure.
    #[error("not reachable: {0}")]
    NotReachable(String),
    /// The service answered with a non-success HTTP status.
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    /// A host resolved to a non-public address (SSRF protection).
    #[error("private address refused: {0}")]
    PrivateAddress(String),
    /// The service answered with a redirect; redirects are not followed.
    #[error("redirect refused: {0}")]
    Redirect(String),
    /// A response was larger than allowed.
    #[error("response too large (over {0} bytes)")]
    TooLarge(usize),
    /// A time limit was reached.
    #[error("timed out")]
    Timeout,
    /// The pay document or callback answer is not valid LNURL-pay (or reports `status: ERROR`).
    #[error("bad LNURL-pay document: {0}")]
    BadDocument(String),
    /// The amount is outside `[minSendable, maxSendable]`.
    #[error("amount {msat} msat outside [{min}, {max}]")]
    AmountOutOfRange {
        /// Requested, msat.
        msat: u64,
        /// `minSendable`.
        min: u64,
        /// `maxSendable`.
        max: u64,
    },
    /// `pr` is not a valid BOLT11 invoice.
    #[error("bad invoice: {0}")]
    BadInvoice(String),
    /// `pr` is for another amount (or amountless).
    #[error("invoice amount {got:?} differs from the requested {expected:?}")]
    WrongInvoiceAmount {
        /// Requested.
        expected: Sats,
        /// In the invoice.
        got: Option<Sats>,
    },
    /// `require_description_hash` is set and the invoice does not commit to the metadata.
    #[error("invoice description hash does not match the pay document's metadata")]
    DescriptionHashMismatch,
}

impl ResolveError {
    /// Whether retrying later may succeed (network trouble, server errors, rate limits), as
    /// opposed to a destination that is wrong for good.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            ResolveError::NotReachable(_) | ResolveError::Timeout => true,
            ResolveError::HttpStatus(s) => *s >= 500 || *s == 429 || *s == 408,
            _ => false,
        }
    }
}

impl From<HttpError> for ResolveError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::InvalidUrl(s) => ResolveError::InvalidAddress(s),
            HttpError::InsecureScheme(s) => {
                ResolveError::InvalidAddress(format!("TLS required: {s}"))
            },
            HttpError::PrivateAddress(s) => ResolveError::PrivateAddress(s),
            HttpError::Unreachable(s) | HttpError::Protocol(s) => ResolveError::NotReachable(s),
            HttpError::Timeout => ResolveError::Timeout,
            HttpError::TooLarge(n) => ResolveError::TooLarge(n),
            HttpError::Redirect(s) => ResolveError::Redirect(s),
            HttpError::Status(s) => ResolveError::HttpStatus(s),
        }
    }
}

/// A resolved payout invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedInvoice {
    /// The BOLT11 string (`pr`).
    pub bolt11: String,
    /// It decoded and signature-checked; `invoice.amount == Some(requested)` is guaranteed.
    /// The caller still checks `network`, `expires_at` and `min_final_cltv` (§14.4).
    pub invoice: DecodedInvoice,
    /// The invoice's description hash, if it has one.
    pub description_hash: Option<[u8; 32]>,
    /// Whether the description hash equals `sha256(metadata)` of the pay document (LUD-06).
    pub metadata_hash_ok: bool,
    /// The pay document URL that was used.
    pub pay_url: String,
}

/// Whether `s` looks like something [`LnurlResolver::resolve`] handles (a Lightning address,
/// a bech32 LNURL or an `lnurlp://` URL), as opposed to a BOLT11 invoice.
#[must_use]
pub fn is_lnurl_destination(s: &str) -> bool {
    let s = strip_lightning_prefix(s.trim());
    let lower = s.to_ascii_lowercase();
    s.contains('@') || lower.starts_with("lnurl1") || lower.starts_with("lnurlp://")
}

fn strip_lightning_prefix(s: &str) -> &str {
    match s.get(..10) {
        Some(p) if p.eq_ignore_ascii_case("lightning:") => s.get(10..).unwrap_or(""),
        _ => s,
    }
}

fn bad_addr(msg: impl Into<String>) -> ResolveError {
    ResolveError::InvalidAddress(msg.into())
}

fn is_loopback_host(h: Option<Host<&str>>) -> bool {
    match h {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// The pay-document URL of a destination (no network access).
///
/// # Errors
/// `InvalidAddress`.
pub fn pay_url(destination: &str, allow_insecure_loopback: bool) -> Result<Url, ResolveError> {
    let s = strip_lightning_prefix(destination.trim());
    if s.is_empty() || s.len() > 2000 {
        return Err(bad_addr("empty or too long"));
    }
    if let Some((user, domain)) = s.split_once('@') {
        let user = user.to_ascii_lowercase();
        if user.is_empty()
            || user.len() > 256
            || !user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
        {
            return Err(bad_addr(format!("bad user part in {s}")));
        }
        if domain.is_empty()
            || !domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        {
            return Err(bad_addr(format!("bad domain in {s}")));
        }
        let url = Url::parse(&format!("https://{domain}/.well-known/lnurlp/{user}"))
            .map_err(|e| bad_addr(format!("bad domain in {s}: {e}")))?;
        if url.host_str().is_some_and(|h| h.ends_with(".onion")) {
            return Err(bad_addr("onion services are not supported"));
        }
        if allow_insecure_loopback && is_loopback_host(url.host()) {
            return Url::parse(&format!("http://{domain}/.well-known/lnurlp/{user}"))
                .map_err(|e| bad_addr(e.to_string()));
        }
        return Ok(url);
    }
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("lnurlp://") {
        let rest = s.get("lnurlp://".len()..).unwrap_or("");
        let url = Url::parse(&format!("https://{rest}")).map_err(|e| bad_addr(e.to_string()))?;
        if allow_insecure_loopback && is_loopback_host(url.host()) {
            return Url::parse(&format!("http://{rest}")).map_err(|e| bad_addr(e.to_string()));
        }
        return Ok(url);
    }
    if lower.starts_with("lnurl1") {
        let (hrp, data) =
            bech32::decode(s).map_err(|e| bad_addr(format!("bad bech32 LNURL: {e}")))?;
        if !hrp.as_str().eq_ignore_ascii_case("lnurl") {
            return Err(bad_addr("bech32 prefix is not lnurl"));
        }
        let text =
            String::from_utf8(data).map_err(|_| bad_addr("LNURL does not hold UTF-8 text"))?;
        let url = Url::parse(&text).map_err(|e| bad_addr(format!("LNURL holds no URL: {e}")))?;
        return Ok(url);
    }
    Err(bad_addr(
        "not a Lightning address (user@domain) or LNURL (lnurl1...)",
    ))
}

fn json_u64(v: &serde_json::Value, key: &str) -> Result<u64, ResolveError> {
    let f = v
        .get(key)
        .ok_or_else(|| ResolveError::BadDocument(format!("no {key}")))?;
    if let Some(n) = f.as_u64() {
        return Ok(n);
    }
    match f.as_f64() {
        Some(x) if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 1.8e19 => {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "checked integral, non-negative and in range"
            )]
            let n = x as u64;
            Ok(n)
        },
        _ => Err(ResolveError::BadDocument(format!(
            "{key} is not a whole number"
        ))),
    }
}

fn parse_json(body: &[u8]) -> Result<serde_json::Value, ResolveError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ResolveError::BadDocument(format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(ResolveError::BadDocument("not a JSON object".into()));
    }
    if v.get("status")
        .and_then(|s| s.as_str())
        .is_some_and(|s| s.eq_ignore_ascii_case("ERROR"))
    {
        let reason: String = v
            .get("reason")
            .and_then(|r| r.as_str())
            .unwrap_or("no reason")
            .chars()
            .take(200)
            .collect();
        return Err(ResolveError::BadDocument(format!(
            "service error: {reason}"
        )));
    }
    Ok(v)
}

/// `callback` with `amount=<msat>` added, keeping its other query parameters (an existing
/// `amount` is replaced).
///
/// # Errors
/// `BadDocument` when the callback is not a URL.
pub fn callback_url(callback: &str, msat: u64) -> Result<Url, ResolveError> {
    let mut url = Url::parse(callback)
        .map_err(|e| ResolveError::BadDocument(format!("bad callback URL: {e}")))?;
    let mut parts: Vec<String> = url
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some("amount"))
        .map(str::to_owned)
        .collect();
    parts.push(format!("amount={msat}"));
    url.set_query(Some(&parts.join("&")));
    url.set_fragment(None);
    Ok(url)
}

/// Resolves Lightning addresses and LNURL-pay links into invoices.
///
/// Every request: HTTPS only, no redirects, hosts resolving to non-public addresses refused,
/// connect and total time limits, a response size cap (64 KiB by default).
///
/// Wiring: the engine's payout path calls [`LnurlResolver::resolve`] with the payout amount
/// (`amount - fee`), then applies the §14.4 checks it applies to a plain BOLT11
/// (`invoice.network`, `invoice.expires_at`, `invoice.min_final_cltv`) and pays `bolt11`.
/// [`ResolveError::is_transient`] separates "retry later" from "ask for a new invoice".
#[derive(Clone, Debug)]
pub struct LnurlResolver {
    cfg: LnurlConfig,
    http: HttpClient,
}

impl LnurlResolver {
    /// A resolver with `cfg`.
    ///
    /// # Errors
    /// A TLS setup failure (bad extra root).
    pub fn new(cfg: LnurlConfig) -> Result<Self, ResolveError> {
        let http = HttpClient::new(HttpPolicy {
            connect_timeout: cfg.connect_timeout,
            total_timeout: cfg.total_timeout,
            max_body_bytes: cfg.max_response_bytes,
            refuse_private: true,
            allow_insecure_loopback: cfg.allow_insecure_loopback,
            extra_roots: cfg.extra_roots.clone(),
        })?;
        Ok(LnurlResolver { cfg, http })
    }

    /// Resolves `destination` (`user@domain`, `lnurl1...`, `lnurlp://...`, optionally prefixed
    /// with `lightning:`) into an invoice for exactly `amount`.
    ///
    /// # Errors
    /// See [`ResolveError`].
    pub async fn resolve(
        &self,
        destination: &str,
        amount: Sats,
    ) -> Result<ResolvedInvoice, ResolveError> {
        tokio::time::timeout(
            self.cfg.total_timeout,
            self.resolve_inner(destination, amount),
        )
        .await
        .map_err(|_| ResolveError::Timeout)?
    }

    /// Fetches and checks only the pay document (`tag == payRequest`, sane bounds); used to
    /// validate a destination when it is given (§14.4), before the amount is final.
    ///
    /// # Errors
    /// See [`ResolveError`].
    pub async fn check(&self, destination: &str) -> Result<PayDocument, ResolveError> {
        tokio::time::timeout(self.cfg.total_timeout, async {
            let url = pay_url(destination, self.cfg.allow_insecure_loopback)?;
            self.pay_document(&url).await
        })
        .await
        .map_err(|_| ResolveError::Timeout)?
    }

    async fn pay_document(&self, url: &Url) -> Result<PayDocument, ResolveError> {
        let body = self.http.get(url).await?;
        let doc = parse_json(&body)?;
        if doc.get("tag").and_then(|t| t.as_str()) != Some("payRequest") {
            return Err(ResolveError::BadDocument("tag is not payRequest".into()));
        }
        let callback = doc
            .get("callback")
            .and_then(|c| c.as_str())
            .ok_or_else(|| ResolveError::BadDocument("no callback".into()))?
            .to_owned();
        let min = json_u64(&doc, "minSendable")?;
        let max = json_u64(&doc, "maxSendable")?;
        if min == 0 || min > max {
            return Err(ResolveError::BadDocument(format!(
                "bad bounds minSendable {min} maxSendable {max}"
            )));
        }
        let metadata = doc
            .get("metadata")
            .and_then(|m| m.as_str())
            .map(str::to_owned);
        Ok(PayDocument {
            callback,
            min_sendable_msat: min,
            max_sendable_msat: max,
            metadata,
        })
    }

    async fn resolve_inner(
        &self,
        destination: &str,
        amount: Sats,
    ) -> Result<ResolvedInvoice, ResolveError> {
        let url = pay_url(destination, self.cfg.allow_insecure_loopback)?;
        let doc = self.pay_document(&url).await?;
        let msat = amount
            .to_msats()
            .ok_or(ResolveError::AmountOutOfRange {
                msat: u64::MAX,
                min: doc.min_sendable_msat,
                max: doc.max_sendable_msat,
            })?
            .0;
        if msat < doc.min_sendable_msat || msat > doc.max_sendable_msat {
            return Err(ResolveError::AmountOutOfRange {
                msat,
                min: doc.min_sendable_msat,
                max: doc.max_sendable_msat,
            });
        }
        let cb = callback_url(&doc.callback, msat)?;
        let body = self.http.get(&cb).await?;
        let answer = parse_json(&body)?;
        let pr = answer
            .get("pr")
            .and_then(|p| p.as_str())
            .ok_or_else(|| ResolveError::BadDocument("callback answer has no pr".into()))?
            .trim()
            .to_owned();
        let invoice =
            mostro_bolt11::decode(&pr).map_err(|e| ResolveError::BadInvoice(e.to_string()))?;
        if invoice.amount != Some(amount) {
            return Err(ResolveError::WrongInvoiceAmount {
                expected: amount,
                got: invoice.amount,
            });
        }
        let description_hash =
            Bolt11Invoice::from_str(&pr)
                .ok()
                .and_then(|inv| match inv.description() {
                    Bolt11InvoiceDescriptionRef::Hash(h) => Some(h.0.to_byte_array()),
                    Bolt11InvoiceDescriptionRef::Direct(_) => None,
                });
        let metadata_hash_ok = match (&doc.metadata, description_hash) {
            (Some(m), Some(h)) => <[u8; 32]>::from(Sha256::digest(m.as_bytes())) == h,
            _ => false,
        };
        if self.cfg.require_description_hash && !metadata_hash_ok {
            return Err(ResolveError::DescriptionHashMismatch);
        }
        Ok(ResolvedInvoice {
            bolt11: pr,
            invoice,
            description_hash,
            metadata_hash_ok,
            pay_url: url.to_string(),
        })
    }
}

/// The engine's payout port (`mostro_core::ports::PayoutResolver`): the BOLT11 string only; the
/// engine decodes and checks it itself. `transient` follows [`ResolveError::is_transient`].
#[async_trait::async_trait]
impl mostro_core::ports::PayoutResolver for LnurlResolver {
    async fn resolve(
        &self,
        destination: &str,
        amount: Sats,
    ) -> Result<String, mostro_core::ports::ResolveError> {
        LnurlResolver::resolve(self, destination, amount)
            .await
            .map(|r| r.bolt11)
            .map_err(|e| mostro_core::ports::ResolveError {
                transient: e.is_transient(),
                message: e.to_string(),
            })
    }
}

/// The parts of an LNURL-pay document the resolver uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayDocument {
    /// Callback URL.
    pub callback: String,
    /// `minSendable`, msat.
    pub min_sendable_msat: u64,
    /// `maxSendable`, msat.
    pub max_sendable_msat: u64,
    /// `metadata` (a JSON string), if present.
    pub metadata: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(
            pay_url("Alice@Example.com", false).unwrap().as_str(),
            "https://example.com/.well-known/lnurlp/alice"
        );
        assert_eq!(
            pay_url("lightning:bob@pay.example.org", false)
                .unwrap()
                .as_str(),
            "https://pay.example.org/.well-known/lnurlp/bob"
        );
        assert_eq!(
            pay_url("a@127.0.0.1:8080", true).unwrap().as_str(),
            "http://127.0.0.1:8080/.well-known/lnurlp/a"
        );
        assert_eq!(
            pay_url("a@127.0.0.1:8080", false).unwrap().scheme(),
            "https"
        );
        for bad in [
            "",
            "@x.com",
            "a@",
            "a b@x.com",
            "a@x.com/evil",
            "a@x.com?q",
            "a@user:pw@x.com",
            "a@x.onion",
            "lnbc1xyz",
            "lnurl1xyz",
        ] {
            assert!(
                matches!(pay_url(bad, false), Err(ResolveError::InvalidAddress(_))),
                "{bad}"
            );
        }
        // LUD-01 example.
        let l = "LNURL1DP68GURN8GHJ7UM9WFMXJCM99E3K7MF0V9CXJ0M385EKVCENXC6R2C35XVUKXEFCV5MKVV34X5EKZD3EV56NYD3HXQURZEPEXEJXXEPNXSCRVWFNV9NXZCN9XQ6XYEFHVGCXXCMYXYMNSERXFQ5FNS";
        assert_eq!(
            pay_url(l, false).unwrap().as_str(),
            "https://service.com/api?q=3fc3645b439ce8e7f2553a69e5267081d96dcd340693afabe04be7b0ccd178df"
        );
        assert!(is_lnurl_destination(l));
        assert!(is_lnurl_destination("a@b.c"));
        assert!(!is_lnurl_destination("lnbcrt1..."));
    }

    #[test]
    fn callback_keeps_query() {
        assert_eq!(
            callback_url("https://x.com/cb?k1=abc&amount=5&x=%20y", 21000)
                .unwrap()
                .as_str(),
            "https://x.com/cb?k1=abc&x=%20y&amount=21000"
        );
        assert_eq!(
            callback_url("https://x.com/cb", 1000).unwrap().as_str(),
            "https://x.com/cb?amount=1000"
        );
    }

    #[test]
    fn transient_errors() {
        assert!(ResolveError::Timeout.is_transient());
        assert!(ResolveError::HttpStatus(503).is_transient());
        assert!(!ResolveError::HttpStatus(404).is_transient());
        assert!(!ResolveError::BadDocument(String::new()).is_transient());
    }
}
