//! Lightning address / LNURL-pay resolution against real HTTP servers on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::secp256k1::SecretKey;
use common::{Reply, Server, serve, serve_with, tls_acceptor};
use mostro_bolt11::InvoiceSpec;
use mostro_core::ports::Network;
use mostro_core::types::{PaymentHash, Sats, Timestamp};
use mostro_price::{LnurlConfig, LnurlResolver, ResolveError};

const META: &str = r#"[["text/plain","pay alice"]]"#;

fn invoice(amount: Option<Sats>) -> String {
    let key = SecretKey::from_slice(&[7u8; 32]).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    mostro_bolt11::sign(
        &key,
        &InvoiceSpec {
            network: Network::Regtest,
            hash: PaymentHash([5; 32]),
            amount,
            memo: "alice",
            created_at: Timestamp(now),
            expiry_secs: 3600,
            cltv_delta: 144,
        },
    )
    .unwrap()
}

fn msat_param(target: &str) -> u64 {
    target
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("amount="))
        .unwrap()
        .parse()
        .unwrap()
}

/// How the test service answers the callback.
#[derive(Clone, Copy)]
enum Cb {
    Exact,
    PlusOne,
    Amountless,
    Garbage,
    Error,
}

/// An LNURL-pay service: `/.well-known/lnurlp/alice` and `/cb?k1=abc`.
async fn service(min: u64, max: u64, cb: Cb) -> Server {
    let me: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let me2 = me.clone();
    let s = serve(move |t| {
        let base = me2.get().cloned().unwrap_or_default();
        if t.starts_with("/.well-known/lnurlp/alice") || t == "/lnurlp/alice" {
            return Reply::json(
                serde_json::json!({
                    "tag": "payRequest",
                    "callback": format!("{base}/cb?k1=abc"),
                    "minSendable": min,
                    "maxSendable": max,
                    "metadata": META,
                })
                .to_string(),
            );
        }
        if t.starts_with("/cb?") {
            let sats = msat_param(t) / 1000;
            let pr = match cb {
                Cb::Exact => invoice(Some(Sats(sats))),
                Cb::PlusOne => invoice(Some(Sats(sats + 1))),
                Cb::Amountless => invoice(None),
                Cb::Garbage => "lnbcrt1notaninvoice".to_owned(),
                Cb::Error => {
                    return Reply::json(r#"{"status":"ERROR","reason":"user blocked"}"#);
                },
            };
            return Reply::json(serde_json::json!({ "pr": pr, "routes": [] }).to_string());
        }
        Reply::status(404)
    })
    .await;
    me.set(s.url()).unwrap();
    s
}

fn resolver() -> LnurlResolver {
    LnurlResolver::new(LnurlConfig {
        allow_insecure_loopback: true,
        total_timeout: Duration::from_secs(2),
        ..LnurlConfig::default()
    })
    .unwrap()
}

fn addr(s: &Server) -> String {
    format!("alice@{}", s.addr)
}

#[tokio::test]
async fn lightning_address_resolves_to_an_exact_invoice() {
    let s = service(1_000, 100_000_000_000, Cb::Exact).await;
    let r = resolver().resolve(&addr(&s), Sats(21_000)).await.unwrap();
    assert_eq!(r.invoice.amount, Some(Sats(21_000)));
    assert_eq!(r.invoice.network, Network::Regtest);
    assert_eq!(r.invoice.hash, PaymentHash([5; 32]));
    assert!(r.bolt11.starts_with("lnbcrt"));
    // The invoice carries a plain description, not sha256(metadata).
    assert!(!r.metadata_hash_ok);
    assert_eq!(r.description_hash, None);
    let reqs = s.requests();
    assert_eq!(reqs[0], "/.well-known/lnurlp/alice");
    // Existing callback query parameters are kept.
    assert_eq!(reqs[1], "/cb?k1=abc&amount=21000000");
    // `check` only reads the pay document.
    let doc = resolver()
        .check(&format!("lightning:{}", addr(&s)))
        .await
        .unwrap();
    assert_eq!(
        (doc.min_sendable_msat, doc.metadata.as_deref()),
        (1_000, Some(META))
    );
}

#[tokio::test]
async fn bech32_lnurl_and_lnurlp_scheme() {
    let s = service(1_000, 1_000_000_000, Cb::Exact).await;
    let url = format!("{}/lnurlp/alice", s.url());
    let hrp = bech32::Hrp::parse("lnurl").unwrap();
    let lnurl = bech32::encode::<bech32::Bech32>(hrp, url.as_bytes())
        .unwrap()
        .to_uppercase();
    let r = resolver().resolve(&lnurl, Sats(5_000)).await.unwrap();
    assert_eq!(r.invoice.amount, Some(Sats(5_000)));
    assert_eq!(r.pay_url, url);
    let r = resolver()
        .resolve(&format!("lnurlp://{}/lnurlp/alice", s.addr), Sats(6_000))
        .await
        .unwrap();
    assert_eq!(r.invoice.amount, Some(Sats(6_000)));
}

#[tokio::test]
async fn bad_bech32_lnurl_is_an_invalid_address() {
    let hrp = bech32::Hrp::parse("lnurl").unwrap();
    let good = bech32::encode::<bech32::Bech32>(hrp, b"https://service.com/x").unwrap();
    // Flip one character: checksum fails.
    let mut bad: Vec<char> = good.chars().collect();
    let i = bad.len() - 3;
    bad[i] = if bad[i] == 'q' { 'p' } else { 'q' };
    let bad: String = bad.into_iter().collect();
    let not_utf8 = bech32::encode::<bech32::Bech32>(hrp, &[0xff, 0xfe, 0x00]).unwrap();
    let wrong_hrp =
        bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("lnurx").unwrap(), b"https://a.b")
            .unwrap();
    for d in [
        bad.as_str(),
        "lnurl1",
        "lnurl1qqqqqq",
        not_utf8.as_str(),
        wrong_hrp.as_str(),
        "alice",
        "lnbcrt10n1xyz",
    ] {
        match resolver().resolve(d, Sats(1000)).await {
            Err(ResolveError::InvalidAddress(_)) => {},
            other => panic!("{d}: {other:?}"),
        }
    }
    // A bech32 LNURL that hides plain http to a public host: TLS required.
    let plain = bech32::encode::<bech32::Bech32>(hrp, b"http://service.com/x").unwrap();
    match resolver().resolve(&plain, Sats(1000)).await {
        Err(ResolveError::InvalidAddress(e)) => assert!(e.contains("TLS"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn wrong_amount_and_bad_invoices_are_refused() {
    let s = service(1_000, 1_000_000_000, Cb::PlusOne).await;
    assert_eq!(
        resolver().resolve(&addr(&s), Sats(1_000)).await,
        Err(ResolveError::WrongInvoiceAmount {
            expected: Sats(1_000),
            got: Some(Sats(1_001))
        })
    );
    let s = service(1_000, 1_000_000_000, Cb::Amountless).await;
    assert_eq!(
        resolver().resolve(&addr(&s), Sats(1_000)).await,
        Err(ResolveError::WrongInvoiceAmount {
            expected: Sats(1_000),
            got: None
        })
    );
    let s = service(1_000, 1_000_000_000, Cb::Garbage).await;
    assert!(matches!(
        resolver().resolve(&addr(&s), Sats(1_000)).await,
        Err(ResolveError::BadInvoice(_))
    ));
    let s = service(1_000, 1_000_000_000, Cb::Error).await;
    match resolver().resolve(&addr(&s), Sats(1_000)).await {
        Err(ResolveError::BadDocument(e)) => assert!(e.contains("user blocked"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn amount_outside_min_max() {
    let s = service(10_000_000, 20_000_000, Cb::Exact).await;
    assert_eq!(
        resolver().resolve(&addr(&s), Sats(9_999)).await,
        Err(ResolveError::AmountOutOfRange {
            msat: 9_999_000,
            min: 10_000_000,
            max: 20_000_000
        })
    );
    assert!(matches!(
        resolver().resolve(&addr(&s), Sats(20_001)).await,
        Err(ResolveError::AmountOutOfRange { .. })
    ));
    // The edges are inside.
    assert!(resolver().resolve(&addr(&s), Sats(10_000)).await.is_ok());
    assert!(resolver().resolve(&addr(&s), Sats(20_000)).await.is_ok());
    // No callback was made for the refused amounts.
    assert_eq!(
        s.requests().iter().filter(|r| r.starts_with("/cb")).count(),
        2
    );
}

#[tokio::test]
async fn bad_documents() {
    let docs = [
        r#"{"tag":"withdrawRequest","callback":"http://127.0.0.1:1/cb","minSendable":1,"maxSendable":2}"#,
        r#"{"callback":"http://127.0.0.1:1/cb","minSendable":1,"maxSendable":2}"#,
        r#"{"tag":"payRequest","minSendable":1,"maxSendable":2}"#,
        r#"{"tag":"payRequest","callback":"http://127.0.0.1:1/cb","minSendable":5,"maxSendable":2}"#,
        r#"{"tag":"payRequest","callback":"http://127.0.0.1:1/cb","minSendable":-1,"maxSendable":2}"#,
        r#"{"tag":"payRequest","callback":"http://127.0.0.1:1/cb","minSendable":"1","maxSendable":2}"#,
        r#"{"status":"ERROR","reason":"no such user"}"#,
        r#"[1,2]"#,
        "not json",
    ];
    for d in docs {
        let body = d.to_owned();
        let s = serve(move |_| Reply::json(body.clone())).await;
        match resolver().resolve(&addr(&s), Sats(1)).await {
            Err(ResolveError::BadDocument(_)) => {},
            other => panic!("{d}: {other:?}"),
        }
    }
    let s = serve(|_| Reply::status(404)).await;
    let e = resolver().resolve(&addr(&s), Sats(1)).await.unwrap_err();
    assert_eq!(e, ResolveError::HttpStatus(404));
    assert!(!e.is_transient());
    let s = serve(|_| Reply::status(503)).await;
    assert!(
        resolver()
            .resolve(&addr(&s), Sats(1))
            .await
            .unwrap_err()
            .is_transient()
    );
}

#[tokio::test]
async fn redirects_are_never_followed() {
    for to in [
        "http://10.0.0.1/.well-known/lnurlp/alice",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let target = to.to_owned();
        let s = serve(move |_| Reply::redirect(&target)).await;
        match resolver().resolve(&addr(&s), Sats(1_000)).await {
            Err(ResolveError::Redirect(loc)) => assert_eq!(loc, to),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.requests().len(), 1);
    }
}

#[tokio::test]
async fn private_hosts_are_refused() {
    // Straight to private addresses (refused before any connection).
    for d in [
        "alice@10.0.0.1",
        "alice@192.168.1.10:8443",
        "alice@169.254.169.254",
        "alice@[fd00::1]",
        "alice@[::ffff:10.0.0.1]",
        "alice@0.0.0.0",
    ] {
        match resolver().resolve(d, Sats(1_000)).await {
            Err(ResolveError::PrivateAddress(_)) => {},
            other => panic!("{d}: {other:?}"),
        }
    }
    // A public-looking pay document whose callback points at a private host.
    let s = serve(|t| {
        if t.starts_with("/.well-known") {
            Reply::json(r#"{"tag":"payRequest","callback":"https://10.1.2.3/cb","minSendable":1000,"maxSendable":100000000,"metadata":"[]"}"#)
        } else {
            Reply::status(404)
        }
    })
    .await;
    match resolver().resolve(&addr(&s), Sats(1_000)).await {
        Err(ResolveError::PrivateAddress(a)) => assert!(a.contains("10.1.2.3"), "{a}"),
        other => panic!("{other:?}"),
    }
    // Without the test switch loopback itself is private (and plain http is refused).
    let strict = LnurlResolver::new(LnurlConfig::default()).unwrap();
    match strict.resolve(&addr(&s), Sats(1_000)).await {
        Err(ResolveError::PrivateAddress(a)) => assert!(a.contains("127.0.0.1"), "{a}"),
        other => panic!("{other:?}"),
    }
    let plain = bech32::encode::<bech32::Bech32>(
        bech32::Hrp::parse("lnurl").unwrap(),
        format!("{}/x", s.url()).as_bytes(),
    )
    .unwrap();
    assert!(matches!(
        strict.resolve(&plain, Sats(1_000)).await,
        Err(ResolveError::InvalidAddress(_))
    ));
    // A host name that resolves to loopback is refused too.
    match strict
        .resolve(&format!("alice@localhost:{}", s.addr.port()), Sats(1_000))
        .await
    {
        Err(ResolveError::PrivateAddress(_)) => {},
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn oversized_slow_and_unreachable() {
    let big = format!(r#"{{"tag":"payRequest","pad":"{}"}}"#, "x".repeat(100_000));
    let b2 = big.clone();
    let s = serve(move |_| Reply::json(big.clone())).await;
    assert_eq!(
        resolver().resolve(&addr(&s), Sats(1)).await,
        Err(ResolveError::TooLarge(64 * 1024))
    );
    let s = serve(move |_| {
        let mut r = Reply::json(b2.clone());
        r.no_length = true;
        r
    })
    .await;
    assert_eq!(
        resolver().resolve(&addr(&s), Sats(1)).await,
        Err(ResolveError::TooLarge(64 * 1024))
    );
    let s = serve(|_| Reply::json("{}").delayed(Duration::from_secs(10))).await;
    let t = std::time::Instant::now();
    assert_eq!(
        resolver().resolve(&addr(&s), Sats(1)).await,
        Err(ResolveError::Timeout)
    );
    assert!(t.elapsed() < Duration::from_secs(4));
    let e = resolver()
        .resolve("alice@127.0.0.1:1", Sats(1))
        .await
        .unwrap_err();
    assert!(matches!(e, ResolveError::NotReachable(_)), "{e:?}");
    assert!(e.is_transient());
}

#[tokio::test]
async fn description_hash_requirement() {
    let s = service(1_000, 1_000_000_000, Cb::Exact).await;
    let r = LnurlResolver::new(LnurlConfig {
        allow_insecure_loopback: true,
        require_description_hash: true,
        ..LnurlConfig::default()
    })
    .unwrap();
    assert_eq!(
        r.resolve(&addr(&s), Sats(1_000)).await,
        Err(ResolveError::DescriptionHashMismatch)
    );
}

#[tokio::test]
async fn over_tls() {
    let (cert, acceptor) = tls_acceptor();
    let me: Arc<OnceLock<u16>> = Arc::new(OnceLock::new());
    let me2 = me.clone();
    let s = serve_with(
        move |t| {
            let port = me2.get().copied().unwrap_or(0);
            if t.starts_with("/.well-known") {
                Reply::json(format!(r#"{{"tag":"payRequest","callback":"https://127.0.0.1:{port}/cb","minSendable":1000,"maxSendable":100000000,"metadata":"[]"}}"#))
            } else {
                Reply::json(serde_json::json!({ "pr": invoice(Some(Sats(msat_param(t) / 1000))) }).to_string())
            }
        },
        Some(acceptor),
    )
    .await;
    me.set(s.addr.port()).unwrap();
    // https to loopback: allowed only by the test switch; the certificate must be trusted.
    let r = LnurlResolver::new(LnurlConfig {
        allow_insecure_loopback: true,
        extra_roots: vec![cert],
        ..LnurlConfig::default()
    })
    .unwrap();
    let lnurlp = format!(
        "lnurlp://127.0.0.1:{}/.well-known/lnurlp/alice",
        s.addr.port()
    );
    // lnurlp:// maps to http for loopback in test mode; use the https pay URL via bech32 instead.
    let https = bech32::encode::<bech32::Bech32>(
        bech32::Hrp::parse("lnurl").unwrap(),
        format!(
            "https://127.0.0.1:{}/.well-known/lnurlp/alice",
            s.addr.port()
        )
        .as_bytes(),
    )
    .unwrap();
    let got = r.resolve(&https, Sats(2_000)).await.unwrap();
    assert_eq!(got.invoice.amount, Some(Sats(2_000)));
    assert!(matches!(
        r.resolve(&lnurlp, Sats(2_000)).await,
        Err(ResolveError::NotReachable(_))
    ));
}

#[tokio::test]
async fn as_the_engine_payout_port() {
    use mostro_core::ports::PayoutResolver;
    let s = service(1_000, 1_000_000_000, Cb::Exact).await;
    let r: Arc<dyn PayoutResolver> = Arc::new(resolver());
    let pr = r.resolve(&addr(&s), Sats(3_000)).await.unwrap();
    assert_eq!(
        mostro_bolt11::decode(&pr).unwrap().amount,
        Some(Sats(3_000))
    );
    let e = r
        .resolve("alice@127.0.0.1:1", Sats(3_000))
        .await
        .unwrap_err();
    assert!(e.transient, "{e:?}");
    let e = r.resolve("alice@10.0.0.1", Sats(3_000)).await.unwrap_err();
    assert!(!e.transient && e.message.contains("private"), "{e:?}");
}
