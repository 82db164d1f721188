//! The price feed against real HTTP servers on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Reply, Server, serve, serve_with, tls_acceptor};
use mostro_core::ports::PriceSource;
use mostro_core::types::Timestamp;
use mostro_price::{
    HttpClient, HttpError, HttpPolicy, PriceFeed, PriceFeedConfig, ProviderConfig, ProviderKind,
};
use mostro_testkit::ManualClock;

const T0: u64 = 1_800_000_000;

fn yadio(usd: f64) -> String {
    format!(
        r#"{{"BTC":{{"USD":{usd},"EUR":{}}},"base":"BTC","timestamp":{}}}"#,
        usd * 0.9,
        T0 * 1000
    )
}

async fn yadio_server(usd: f64) -> Server {
    let body = yadio(usd);
    serve(move |_| Reply::json(body.clone())).await
}

fn provider(kind: ProviderKind, s: &Server) -> ProviderConfig {
    ProviderConfig { kind, url: s.url() }
}

fn config(providers: Vec<ProviderConfig>) -> PriceFeedConfig {
    PriceFeedConfig {
        providers,
        provider_timeout: Duration::from_secs(2),
        allow_insecure_loopback: true,
        ..PriceFeedConfig::default()
    }
}

fn feed(cfg: PriceFeedConfig) -> (PriceFeed, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp(T0 + 10)));
    (PriceFeed::new(cfg, clock.clone()).unwrap(), clock)
}

async fn usd(f: &PriceFeed) -> Option<f64> {
    f.price("USD").await.map(|p| p.fiat_per_btc)
}

#[tokio::test]
async fn three_formats_give_the_median() {
    let y = serve(|t| {
        assert_eq!(t, "/exrates/BTC");
        Reply::json(yadio(97_000.0))
    })
    .await;
    let g = serve(|t| {
        assert!(
            t.starts_with("/api/v3/simple/price?ids=bitcoin&vs_currencies="),
            "{t}"
        );
        Reply::json(r#"{"bitcoin":{"usd":97500,"eur":88000,"last_updated_at":1800000005}}"#)
    })
    .await;
    let b = serve(|t| {
        assert_eq!(t, "/ticker");
        Reply::json(r#"{"USD":{"15m":1,"last":96800.5,"buy":1,"sell":1,"symbol":"USD"},"EUR":{"last":87000}}"#)
    })
    .await;
    let (f, _clock) = feed(config(vec![
        provider(ProviderKind::Yadio, &y),
        provider(ProviderKind::Coingecko, &g),
        provider(ProviderKind::Blockchain, &b),
    ]));
    let r = f.refresh().await;
    assert_eq!((r.asked, r.ok, r.failed), (3, 3, 0), "{r:?}");
    let p = f.price("usd").await.unwrap();
    assert_eq!(p.fiat_per_btc, 97_000.0);
    // Newest quote: CoinGecko's own timestamp T0+5 / Blockchain's fetch time T0+10.
    assert_eq!(p.at, Timestamp(T0 + 10));
    assert_eq!(f.price("EUR").await.unwrap().fiat_per_btc, 87_300.0);
    assert!(f.price("XYZ").await.is_none());
}

#[tokio::test]
async fn provider_timestamp_ages_the_quote() {
    let y = yadio_server(50_000.0).await;
    let (f, _clock) = feed(config(vec![provider(ProviderKind::Yadio, &y)]));
    f.refresh().await;
    // Yadio says its rates are from T0, fetched at T0+10: the older time wins.
    assert_eq!(f.price("USD").await.unwrap().at, Timestamp(T0));
}

#[tokio::test]
async fn outliers_are_dropped_with_three_or_more() {
    let a = yadio_server(100_000.0).await;
    let b = yadio_server(101_000.0).await;
    let c = yadio_server(150_000.0).await;
    let (f, _) = feed(config(vec![
        provider(ProviderKind::Yadio, &a),
        provider(ProviderKind::Yadio, &b),
        provider(ProviderKind::Yadio, &c),
    ]));
    f.refresh().await;
    assert_eq!(usd(&f).await, Some(100_500.0));

    // Two providers: plain median (mean of the two), no outlier rule.
    let (f, _) = feed(config(vec![
        provider(ProviderKind::Yadio, &a),
        provider(ProviderKind::Yadio, &c),
    ]));
    f.refresh().await;
    assert_eq!(usd(&f).await, Some(125_000.0));

    // A wider threshold keeps everyone.
    let mut cfg = config(vec![
        provider(ProviderKind::Yadio, &a),
        provider(ProviderKind::Yadio, &b),
        provider(ProviderKind::Yadio, &c),
    ]);
    cfg.outlier_threshold_pct = 60.0;
    let (f, _) = feed(cfg);
    f.refresh().await;
    assert_eq!(usd(&f).await, Some(101_000.0));
}

#[tokio::test]
async fn total_disagreement_keeps_the_old_price() {
    let a = yadio_server(100.0).await;
    let b = yadio_server(100.0).await;
    let flip = Arc::new(AtomicU32::new(0));
    let fl = flip.clone();
    let c = serve(move |_| {
        Reply::json(yadio(if fl.load(Ordering::SeqCst) == 0 {
            100.0
        } else {
            200.0
        }))
    })
    .await;
    let fl = flip.clone();
    let d = serve(move |_| {
        Reply::json(yadio(if fl.load(Ordering::SeqCst) == 0 {
            100.0
        } else {
            200.0
        }))
    })
    .await;
    let (f, clock) = feed(config(vec![
        provider(ProviderKind::Yadio, &a),
        provider(ProviderKind::Yadio, &b),
        provider(ProviderKind::Yadio, &c),
        provider(ProviderKind::Yadio, &d),
    ]));
    f.refresh().await;
    let before = f.price("USD").await.unwrap();
    assert_eq!(before.fiat_per_btc, 100.0);
    flip.store(1, Ordering::SeqCst);
    clock.advance(300);
    let r = f.refresh().await;
    assert_eq!(r.ok, 4);
    // USD: 100,100,200,200 -> no quote within 5 % of 150: unchanged and ageing.
    assert_eq!(f.price("USD").await.unwrap(), before);
}

#[tokio::test]
async fn malformed_bodies_are_ignored() {
    let good = yadio_server(60_000.0).await;
    let bodies = [
        "not json",
        "",
        "[]",
        r#"{"BTC":[]}"#,
        r#"{"BTC":{}}"#,
        r#"{"BTC":{"USD":0}}"#,
        r#"{"BTC":{"USD":-5}}"#,
        r#"{"BTC":{"USD":"60000"}}"#,
        r#"{"BTC":{"USD":null}}"#,
        r#"{"BTC":{"USD":1e999}}"#,
        r#"{"bitcoin":{"usd":60000}}"#,
        "<html>oops</html>",
        r#"{"BTC":{"USD":60000"#,
    ];
    let mut servers = Vec::new();
    for b in bodies {
        let b = b.to_owned();
        servers.push(serve(move |_| Reply::json(b.clone())).await);
    }
    let mut providers: Vec<ProviderConfig> = servers
        .iter()
        .map(|s| provider(ProviderKind::Yadio, s))
        .collect();
    providers.push(provider(ProviderKind::Yadio, &good));
    let (f, _) = feed(config(providers));
    let r = f.refresh().await;
    assert_eq!((r.ok, r.failed), (1, bodies.len()), "{r:?}");
    assert_eq!(usd(&f).await, Some(60_000.0));
    assert!(f.status().iter().filter(|s| s.last_error.is_some()).count() == bodies.len());

    // Non-finite / non-positive entries next to good ones are skipped, the rest kept.
    let mixed = serve(|_| {
        Reply::json(
            r#"{"BTC":{"USD":61000,"EUR":-1,"ARS":0,"VES":"x","bad!":3},"timestamp":"soon"}"#,
        )
    })
    .await;
    let (f, _) = feed(config(vec![provider(ProviderKind::Yadio, &mixed)]));
    assert_eq!(f.refresh().await.ok, 1);
    assert_eq!(f.prices().len(), 1);
    assert_eq!(usd(&f).await, Some(61_000.0));
}

#[tokio::test]
async fn slow_and_failing_providers() {
    let good = yadio_server(70_000.0).await;
    let slow = serve(|_| Reply::json(yadio(1.0)).delayed(Duration::from_secs(5))).await;
    let broken = serve(|_| Reply::status(500)).await;
    let redirect = serve(|_| Reply::redirect("http://127.0.0.1:1/")).await;
    let mut cfg = config(vec![
        provider(ProviderKind::Yadio, &good),
        provider(ProviderKind::Yadio, &slow),
        provider(ProviderKind::Yadio, &broken),
        provider(ProviderKind::Yadio, &redirect),
        ProviderConfig {
            kind: ProviderKind::Yadio,
            url: "http://127.0.0.1:1".into(), // nothing listens
        },
    ]);
    cfg.provider_timeout = Duration::from_millis(500);
    let (f, _) = feed(cfg);
    let t = Instant::now();
    let r = f.refresh().await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!((r.ok, r.failed), (1, 4), "{r:?}");
    assert_eq!(usd(&f).await, Some(70_000.0));
    let st = f.status();
    assert_eq!(st[1].last_error.as_deref(), Some("timed out"));
    assert_eq!(st[2].last_error.as_deref(), Some("HTTP status 500"));
    assert!(
        st[3].last_error.as_deref().unwrap().contains("redirect"),
        "{st:?}"
    );
    assert!(
        st[4]
            .last_error
            .as_deref()
            .unwrap()
            .contains("not reachable"),
        "{st:?}"
    );
}

#[tokio::test]
async fn failing_provider_backs_off_exponentially_and_recovers() {
    let fail = Arc::new(Mutex::new(true));
    let fl = fail.clone();
    let s = serve(move |_| {
        if *fl.lock().unwrap() {
            Reply::status(503)
        } else {
            // No provider timestamp: the quote is as fresh as the fetch.
            Reply::json(r#"{"BTC":{"USD":80000}}"#)
        }
    })
    .await;
    let (f, clock) = feed(config(vec![provider(ProviderKind::Yadio, &s)]));
    // Ticks: fail(1) -> skip 0; fail(2) -> skip 1; fail(3) -> skip 3; fail(4) -> skip 7 ...
    let mut asked = Vec::new();
    for _ in 0..12 {
        let r = f.refresh().await;
        asked.push(r.asked);
        clock.advance(300);
    }
    assert_eq!(asked, vec![1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0], "{asked:?}");
    assert_eq!(s.requests().len(), 4);
    assert_eq!(f.status()[0].failures, 4);
    // The cap: max_backoff_secs / interval ticks (3600/300 = 12).
    *fail.lock().unwrap() = false;
    for _ in 0..12 {
        if f.refresh().await.ok == 1 {
            break;
        }
    }
    assert_eq!(usd(&f).await, Some(80_000.0));
    assert_eq!(f.status()[0].failures, 0);
    assert_eq!(f.refresh().await.asked, 1);
}

#[tokio::test]
async fn prices_age_when_providers_stop_answering() {
    let fail = Arc::new(Mutex::new(false));
    let fl = fail.clone();
    let s = serve(move |_| {
        if *fl.lock().unwrap() {
            Reply::status(500)
        } else {
            Reply::json(r#"{"USD":{"last":90000}}"#)
        }
    })
    .await;
    let (f, clock) = feed(config(vec![provider(ProviderKind::Blockchain, &s)]));
    f.refresh().await;
    let first = f.price("USD").await.unwrap();
    assert_eq!(first.at, Timestamp(T0 + 10));
    *fail.lock().unwrap() = true;
    for _ in 0..8 {
        clock.advance(300);
        f.refresh().await;
    }
    // Still the old quote with its old time: the engine (max_price_age_secs 1800) now refuses
    // market orders with price_too_stale.
    let p = f.price("USD").await.unwrap();
    assert_eq!(p, first);
    assert!(clock_now(&clock) - p.at.0 > 1800);

    // A provider's old quote stops counting after max_quote_age_secs when others answer.
    let other = serve(|_| Reply::json(r#"{"USD":{"last":95000}}"#)).await;
    let mut cfg = config(vec![
        provider(ProviderKind::Blockchain, &s),
        provider(ProviderKind::Blockchain, &other),
    ]);
    cfg.max_quote_age_secs = 600;
    *fail.lock().unwrap() = false;
    let (f, clock) = feed(cfg);
    f.refresh().await;
    assert_eq!(usd(&f).await, Some(92_500.0));
    *fail.lock().unwrap() = true;
    clock.advance(300);
    f.refresh().await;
    assert_eq!(usd(&f).await, Some(92_500.0));
    clock.advance(301);
    f.refresh().await;
    clock.advance(300);
    f.refresh().await;
    assert_eq!(usd(&f).await, Some(95_000.0));
}

fn clock_now(c: &ManualClock) -> u64 {
    use mostro_core::ports::Clock as _;
    c.now().0
}

#[tokio::test]
async fn accepted_currencies_only() {
    let g = serve(|_| Reply::json(r#"{"bitcoin":{"usd":97000,"eur":88000,"ars":1}}"#)).await;
    let y = serve(|_| Reply::json(r#"{"BTC":{"USD":97100,"EUR":88100,"ARS":2}}"#)).await;
    let mut cfg = config(vec![
        provider(ProviderKind::Coingecko, &g),
        provider(ProviderKind::Yadio, &y),
    ]);
    cfg.currencies = vec!["usd".into(), "EUR".into()];
    let (f, _) = feed(cfg);
    f.refresh().await;
    assert!(
        g.requests()[0].contains("vs_currencies=usd,eur&"),
        "{:?}",
        g.requests()
    );
    assert_eq!(
        f.prices().keys().cloned().collect::<Vec<_>>(),
        vec!["EUR", "USD"]
    );
    assert!(f.price("ARS").await.is_none());
    assert_eq!(f.price("eur").await.unwrap().fiat_per_btc, 88_050.0);
}

#[tokio::test]
async fn oversized_responses_are_refused() {
    let big = format!(r#"{{"BTC":{{"USD":1,"pad":"{}"}}}}"#, "x".repeat(300_000));
    let b2 = big.clone();
    let with_len = serve(move |_| Reply::json(big.clone())).await;
    let no_len = serve(move |_| {
        let mut r = Reply::json(b2.clone());
        r.no_length = true;
        r
    })
    .await;
    let mut cfg = config(vec![
        provider(ProviderKind::Yadio, &with_len),
        provider(ProviderKind::Yadio, &no_len),
    ]);
    cfg.max_response_bytes = 64 * 1024;
    let (f, _) = feed(cfg);
    let r = f.refresh().await;
    assert_eq!(r.failed, 2);
    for s in f.status() {
        assert!(s.last_error.unwrap().contains("larger than"));
    }
}

#[tokio::test]
async fn plain_http_needs_loopback_and_the_test_switch() {
    let clock = Arc::new(ManualClock::new(Timestamp(T0)));
    let mut cfg = PriceFeedConfig {
        providers: vec![ProviderConfig {
            kind: ProviderKind::Yadio,
            url: "http://api.yadio.io".into(),
        }],
        allow_insecure_loopback: true,
        ..PriceFeedConfig::default()
    };
    assert!(PriceFeed::new(cfg.clone(), clock.clone()).is_err());
    cfg.providers[0].url = "http://127.0.0.1:9".into();
    assert!(PriceFeed::new(cfg.clone(), clock.clone()).is_ok());
    cfg.allow_insecure_loopback = false;
    assert!(PriceFeed::new(cfg.clone(), clock.clone()).is_err());
    cfg.providers[0].url = "https://api.yadio.io".into();
    assert!(PriceFeed::new(cfg.clone(), clock.clone()).is_ok());
    cfg.providers[0].url = "ftp://x".into();
    assert!(PriceFeed::new(cfg, clock).is_err());
}

#[tokio::test]
async fn tls_with_a_trusted_root_and_without() {
    let (cert, acceptor) = tls_acceptor();
    let s = serve_with(|_| Reply::json(yadio(99_000.0)), Some(acceptor)).await;
    let url = url::Url::parse(&format!("https://127.0.0.1:{}/exrates/BTC", s.addr.port())).unwrap();
    let trusting = HttpClient::new(HttpPolicy {
        extra_roots: vec![cert],
        ..HttpPolicy::default()
    })
    .unwrap();
    let body = trusting.get(&url).await.unwrap();
    assert!(String::from_utf8(body).unwrap().contains("99000"));
    let strict = HttpClient::new(HttpPolicy::default()).unwrap();
    match strict.get(&url).await {
        Err(HttpError::Unreachable(e)) => assert!(e.contains("TLS"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn run_until_refreshes_at_once_and_stops() {
    let y = yadio_server(42_000.0).await;
    let (f, _) = feed(config(vec![provider(ProviderKind::Yadio, &y)]));
    let f2 = f.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        f2.run_until(async {
            let _ = rx.await;
        })
        .await;
    });
    for _ in 0..100 {
        if usd(&f).await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(usd(&f).await, Some(42_000.0));
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(y.requests().len(), 1);
}

/// Outside quotes (trusted nodes' published rates) enter the median with the providers', the
/// newest per source, the stale ones left out.
#[tokio::test]
async fn outside_quotes_enter_the_median() {
    let y = yadio_server(100_000.0).await;
    let (f, clock) = feed(config(vec![provider(ProviderKind::Yadio, &y)]));
    f.refresh().await;
    assert_eq!(usd(&f).await, Some(100_000.0));
    let quotes = |v: f64| mostro_price::Quotes {
        prices: [("USD".to_owned(), v), ("bad code!".to_owned(), 1.0)]
            .into_iter()
            .collect(),
        provider_time: None,
    };
    // A second source: the median of two.
    assert!(f.set_external("node-a", quotes(102_000.0), Timestamp(T0)) > 0);
    assert_eq!(usd(&f).await, Some(101_000.0));
    assert!(!f.prices().contains_key("bad code!"));
    // Its older rates never replace newer ones; its newer ones do.
    assert_eq!(
        f.set_external("node-a", quotes(200_000.0), Timestamp(T0 - 60)),
        0
    );
    assert_eq!(usd(&f).await, Some(101_000.0));
    f.set_external("node-a", quotes(104_000.0), Timestamp(T0 + 5));
    assert_eq!(usd(&f).await, Some(102_000.0));
    // Sources whose rates are older than the staleness bound do not count.
    clock.advance(PriceFeedConfig::default().max_quote_age_secs + 60);
    use mostro_core::ports::Clock;
    f.set_external("node-b", quotes(90_000.0), clock.now());
    assert_eq!(
        usd(&f).await,
        Some(90_000.0),
        "the provider's and node-a's quotes are stale"
    );
}
