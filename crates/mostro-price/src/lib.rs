//! Outside-world lookups for Mostro that are plain HTTPS:
//!
//! * [`PriceFeed`]: a [`mostro_core::ports::PriceSource`] that polls several BTC price
//!   providers (Yadio, CoinGecko, Blockchain.info formats), takes a per-currency median with
//!   outlier rejection and stamps each price with the time of its newest quote, so the engine's
//!   `max_price_age_secs` refuses market orders on stale data (`price_too_stale`).
//! * [`LnurlResolver`]: Lightning address / LNURL-pay resolution into a BOLT11 invoice for an
//!   exact amount, with SSRF protections (no private hosts, no redirects, size and time caps).
//!
//! Both use one strict HTTP/1.1 client ([`HttpClient`]: hyper 1 + tokio-rustls with the ring
//! provider and the Mozilla roots). TLS is required except for loopback IPs when a test setting
//! (`allow_insecure_loopback`) allows plain HTTP.
#![warn(missing_docs)]

pub mod feed;
pub mod http;
pub mod lnurl;

pub use feed::{
    PriceFeed, PriceFeedConfig, ProviderConfig, ProviderError, ProviderKind, ProviderStatus,
    Quotes, RefreshReport,
};
pub use http::{HttpClient, HttpError, HttpPolicy, is_public_ip};
pub use lnurl::{
    LnurlConfig, LnurlResolver, PayDocument, ResolveError, ResolvedInvoice, is_lnurl_destination,
    pay_url,
};
