//! Interop with the published command-line client: `mostro-cli` 0.16.3 (protocol v2) drives the
//! real `mostrod` binary over the in-process relay, with the LND simulator's ledger standing in
//! for the users' wallets (it pays the hold invoice and issues the buyer's invoices).
//!
//! The client binary comes from `MOSTRO_CLI_BIN`, else `mostro-cli` on `PATH`
//! (`cargo install --locked mostro-cli --version 0.16.3`). Without it the tests print why they
//! did not run and pass, except under `CI`, where `.ci/run` installs it and its absence fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    reason = "test code"
)]

mod support;

use support::*;

/// The client, or why the tests cannot run.
fn cli_bin() -> Option<PathBuf> {
    let found = std::env::var_os("MOSTRO_CLI_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join("mostro-cli"))
                    .find(|p| p.is_file())
            })
        });
    match found {
        Some(p) => {
            let v = Command::new(&p).arg("--version").output().ok()?;
            let v = String::from_utf8_lossy(&v.stdout).trim().to_owned();
            assert_eq!(
                v,
                "mostro-cli 0.16.3",
                "{}: wrong client version",
                p.display()
            );
            Some(p)
        },
        None if std::env::var_os("CI").is_some() => {
            panic!("mostro-cli 0.16.3 not found (MOSTRO_CLI_BIN or PATH); .ci/run installs it")
        },
        None => {
            eprintln!(
                "skipped: mostro-cli 0.16.3 not found (set MOSTRO_CLI_BIN or install it with \
                 `cargo install --locked mostro-cli --version 0.16.3`)"
            );
            None
        },
    }
}

/// One mostro-cli user: its own data directory (mnemonic, trade keys, orders).
struct User {
    bin: PathBuf,
    dir: tempfile::TempDir,
    node: String,
    relay: String,
    admin_nsec: Option<String>,
    name: &'static str,
}

impl User {
    fn new(h: &Harness, bin: &Path, name: &'static str) -> User {
        User {
            bin: bin.to_owned(),
            dir: tempfile::tempdir().unwrap(),
            node: h.node.to_hex(),
            relay: h.relay_url.clone(),
            admin_nsec: None,
            name,
        }
    }

    /// A user whose `adm*` commands sign with `keys` (`ADMIN_NSEC`).
    fn with_admin_key(h: &Harness, bin: &Path, name: &'static str, keys: &Keys) -> User {
        let mut u = User::new(h, bin, name);
        u.admin_nsec = Some(keys.secret_key().to_secret_hex());
        u
    }

    /// Runs one command; returns stdout and stderr together.
    async fn run(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("MOSTRO_PUBKEY", &self.node)
            .env("RELAYS", &self.relay)
            .env("MCLI_DIR", self.dir.path())
            .env_remove("ADMIN_NSEC")
            .stdin(Stdio::null());
        if let Some(k) = &self.admin_nsec {
            cmd.env("ADMIN_NSEC", k);
        }
        // The client waits up to 15 s for a reply by itself.
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{}: mostro-cli {args:?}: {e}", self.name));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("--- {} $ mostro-cli {}\n{text}", self.name, args.join(" "));
        text
    }

    /// Runs a command that must not be refused.
    async fn ok(&self, args: &[&str]) -> String {
        let text = self.run(args).await;
        let lower = text.to_lowercase();
        assert!(
            !lower.contains("cant-do")
                && !lower.contains("cant_do")
                && !lower.contains("error")
                && !lower.contains("failed")
                && !lower.contains("timeout"),
            "{}: mostro-cli {args:?} was refused:\n{text}",
            self.name
        );
        text
    }
}

/// The order id the client printed for a new order.
fn created_id(text: &str) -> String {
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("Order ")
                .and_then(|r| r.strip_suffix(" created"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no order id in:\n{text}"))
}

/// Polls the daemon until order `id` has `status` (or is gone from the open orders when
/// `status` is `None`).
async fn until_status(h: &Harness, id: &str, status: Option<&str>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let open = h.open_orders().await;
        let now = open
            .iter()
            .find(|o| o["id"] == id)
            .and_then(|o| o["status"].as_str().map(str::to_owned));
        if now.as_deref() == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "order {id}: status {now:?}, waited for {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The seller's wallet pays the hold invoice of `amount` sat once the node created it.
async fn seller_pays(h: &Harness, wallet: &str, amount: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let open = h.ledger.holds().into_iter().find(|(_, r)| {
            r.amount == Sats(amount)
                && matches!(r.state, mostro_core::ports::HoldInvoiceState::Open)
        });
        if let Some((_, r)) = open {
            h.ledger.pay_hold(wallet, &r.bolt11).unwrap();
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no open hold invoice of {amount} sat"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn paid_once(h: &Harness, wallet: &str, sats: u64) {
    let ok: Vec<_> = h
        .payouts_to(wallet)
        .into_iter()
        .filter(|(_, s)| matches!(s, AttemptStatus::Succeeded(_)))
        .collect();
    assert_eq!(ok.len(), 1, "{wallet}: {ok:?}");
    assert_eq!(ok[0].0, Sats(sats), "{wallet}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mostro_cli_trades_cancels_and_disputes_against_the_daemon() {
    let Some(bin) = cli_bin() else { return };
    let h = Harness::start("", "", "").await;
    let t0 = Instant::now();

    // Sell trade: neworder, takesell (no invoice), addinvoice, the hold paid, fiatsent, release.
    let seller = User::new(&h, &bin, "seller");
    let buyer = User::new(&h, &bin, "buyer");
    let amount = 80_000u64;
    let id = created_id(
        &seller
            .ok(&[
                "neworder", "-k", "sell", "-a", "80000", "-c", "EUR", "-f", "40", "-m", "SEPA",
            ])
            .await,
    );
    buyer.ok(&["takesell", "-o", &id]).await;
    until_status(&h, &id, Some("waiting-buyer-invoice")).await;
    let inv = invoice(&h.ledger, "cli-buyer", amount - fee(amount)).unwrap();
    buyer.ok(&["addinvoice", "-o", &id, "-i", &inv]).await;
    seller_pays(&h, "cli-seller", amount + fee(amount)).await;
    until_status(&h, &id, Some("active")).await;
    buyer.ok(&["fiatsent", "-o", &id]).await;
    until_status(&h, &id, Some("fiat-sent")).await;
    seller.ok(&["release", "-o", &id]).await;
    until_status(&h, &id, None).await;
    paid_once(&h, "cli-buyer", amount - fee(amount));
    buyer.ok(&["rate", "-o", &id, "-r", "5"]).await;
    seller.ok(&["rate", "-o", &id, "-r", "5"]).await;
    let sell_secs = t0.elapsed().as_secs_f64();

    // Buy trade: the seller takes a buy order (the pay-invoice answer must echo the
    // take-buy's request id, or this client refuses it), pays, the buyer adds its invoice.
    let t1 = Instant::now();
    let buyer2 = User::new(&h, &bin, "buyer2");
    let seller2 = User::new(&h, &bin, "seller2");
    let id = created_id(
        &buyer2
            .ok(&[
                "neworder", "-k", "buy", "-a", "60000", "-c", "EUR", "-f", "30", "-m", "SEPA",
            ])
            .await,
    );
    seller2.ok(&["takebuy", "-o", &id]).await;
    seller_pays(&h, "cli-seller2", 60_000 + fee(60_000)).await;
    until_status(&h, &id, Some("waiting-buyer-invoice")).await;
    let inv = invoice(&h.ledger, "cli-buyer2", 60_000 - fee(60_000)).unwrap();
    buyer2.ok(&["addinvoice", "-o", &id, "-i", &inv]).await;
    until_status(&h, &id, Some("active")).await;
    buyer2.ok(&["fiatsent", "-o", &id]).await;
    until_status(&h, &id, Some("fiat-sent")).await;
    seller2.ok(&["release", "-o", &id]).await;
    until_status(&h, &id, None).await;
    paid_once(&h, "cli-buyer2", 60_000 - fee(60_000));
    let buy_secs = t1.elapsed().as_secs_f64();

    // Cancel of a pending order by its maker.
    let maker = User::new(&h, &bin, "maker");
    let id = created_id(
        &maker
            .ok(&[
                "neworder", "-k", "sell", "-a", "30000", "-c", "EUR", "-f", "15", "-m", "SEPA",
            ])
            .await,
    );
    until_status(&h, &id, Some("pending")).await;
    maker.ok(&["cancel", "-o", &id]).await;
    until_status(&h, &id, None).await;

    // Cooperative cancel of an active trade: both parties cancel; the seller's hold is canceled.
    // (This client has no printer for the cooperative-cancel answers: "Unknown action".)
    let seller4 = User::new(&h, &bin, "seller4");
    let buyer4 = User::new(&h, &bin, "buyer4");
    let id = created_id(
        &seller4
            .ok(&[
                "neworder", "-k", "sell", "-a", "50000", "-c", "EUR", "-f", "25", "-m", "SEPA",
            ])
            .await,
    );
    buyer4.ok(&["takesell", "-o", &id]).await;
    until_status(&h, &id, Some("waiting-buyer-invoice")).await;
    let inv = invoice(&h.ledger, "cli-buyer4", 50_000 - fee(50_000)).unwrap();
    buyer4.ok(&["addinvoice", "-o", &id, "-i", &inv]).await;
    seller_pays(&h, "cli-seller4", 50_000 + fee(50_000)).await;
    until_status(&h, &id, Some("active")).await;
    buyer4.run(&["cancel", "-o", &id]).await;
    seller4.run(&["cancel", "-o", &id]).await;
    until_status(&h, &id, None).await;
    assert_eq!(
        h.ledger.balance("cli-seller4"),
        0,
        "the seller's hold was canceled"
    );
    assert!(h.payouts_to("cli-buyer4").is_empty());

    // A dispute settled by a solver the operator added: the buyer is paid. (With the node's
    // own key as ADMIN_NSEC this client can miss the answers: its reply subscription, author =
    // node and p = node, also matches its own requests and closes after one event; see
    // docs/protocol.md.)
    let t2 = Instant::now();
    let seller3 = User::new(&h, &bin, "seller3");
    let buyer3 = User::new(&h, &bin, "buyer3");
    let operator = User::with_admin_key(&h, &bin, "operator", &h.node_keys);
    let solver_keys = Keys::generate();
    let solver = User::with_admin_key(&h, &bin, "solver", &solver_keys);
    let npub = nostr_sdk::ToBech32::to_bech32(&solver_keys.public_key()).unwrap();
    // Its answer may be missed (above); the solver's commands below prove it was added.
    operator.run(&["admaddsolver", "-n", &npub]).await;
    let id = created_id(
        &seller3
            .ok(&[
                "neworder", "-k", "sell", "-a", "40000", "-c", "EUR", "-f", "20", "-m", "SEPA",
            ])
            .await,
    );
    buyer3.ok(&["takesell", "-o", &id]).await;
    until_status(&h, &id, Some("waiting-buyer-invoice")).await;
    let inv = invoice(&h.ledger, "cli-buyer3", 40_000 - fee(40_000)).unwrap();
    buyer3.ok(&["addinvoice", "-o", &id, "-i", &inv]).await;
    seller_pays(&h, "cli-seller3", 40_000 + fee(40_000)).await;
    until_status(&h, &id, Some("active")).await;
    buyer3.ok(&["fiatsent", "-o", &id]).await;
    until_status(&h, &id, Some("fiat-sent")).await;
    buyer3.ok(&["dispute", "-o", &id]).await;
    until_status(&h, &id, Some("dispute")).await;
    let dispute_id = h
        .open_orders()
        .await
        .into_iter()
        .find(|o| o["id"] == id.as_str())
        .and_then(|o| o["dispute"]["id"].as_str().map(str::to_owned))
        .expect("dispute id");
    solver.ok(&["admtakedispute", "-d", &dispute_id]).await;
    solver.ok(&["admsettle", "-o", &id]).await;
    until_status(&h, &id, None).await;
    paid_once(&h, "cli-buyer3", 40_000 - fee(40_000));
    eprintln!(
        "mostro-cli interop: sell trade {sell_secs:.1} s, buy trade {buy_secs:.1} s, dispute {:.1} s, total {:.1} s",
        t2.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
