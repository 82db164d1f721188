//! One complete sell trade through the engine, on the test kit's in-memory Lightning node,
//! store and clock, printing each step in plain words.
//!
//! Run: `cargo run -p mostro-examples --example sell_trade`

use futures::executor::block_on;
use mostro_core::engine::{Action, Outcome};
use mostro_core::machine::Notice;
use mostro_core::order::Status;
use mostro_testkit::scenario::sell_order;
use mostro_testkit::{TestBed, Trader};

fn say(step: &str) {
    // The example's whole purpose is to print.
    #[allow(clippy::print_stdout, reason = "example output")]
    {
        println!("{step}");
    }
}

fn main() -> Result<(), String> {
    block_on(run())
}

async fn run() -> Result<(), String> {
    let bed = TestBed::new();
    let seller = Trader::new("alice");
    let buyer = Trader::new("bob");

    let id = bed.new_order(&seller, sell_order(100_000, 50)).await;
    let o = bed.order(id).await;
    say(&format!(
        "1. Alice publishes order {id}: sells {} for {} {} via {} (fee {} per side)",
        o.amount, o.fiat_amount, o.fiat_code, o.payment_method, o.fee
    ));

    expect(
        bed.send(
            &buyer,
            Some(id),
            Action::TakeSell {
                fiat_amount: None,
                invoice: None,
            },
        )
        .await,
    )?;
    let o = bed.order(id).await;
    say(&format!("2. Bob takes it; the order is now {}", o.status));

    let payout = o
        .amount
        .checked_sub(o.fee)
        .ok_or("fee larger than amount")?;
    let invoice = bed.invoice(&buyer, payout);
    expect(
        bed.send(&buyer, Some(id), Action::AddInvoice(invoice))
            .await,
    )?;
    let o = bed.order(id).await;
    let hold = o.hold.as_ref().ok_or("no hold invoice")?;
    say(&format!(
        "3. Bob gives a {payout} invoice; the node creates a {} hold invoice for Alice ({})",
        hold.amount, o.status
    ));

    if !bed.seller_pays(&seller, id).await {
        return Err("Alice could not pay the hold invoice".into());
    }
    let o = bed.order(id).await;
    say(&format!(
        "4. Alice pays the hold invoice: her sats are locked, the order is {} and both got each \
         other's trade keys",
        o.status
    ));

    expect(
        bed.send(&buyer, Some(id), Action::FiatSent { next_trade: None })
            .await,
    )?;
    say(&format!(
        "5. Bob sends the euros and says so: {}",
        bed.order(id).await.status
    ));

    expect(
        bed.send(&seller, Some(id), Action::Release { next_trade: None })
            .await,
    )?;
    let o = bed.order(id).await;
    say(&format!(
        "6. Alice sees the euros and releases: the hold invoice is settled ({:?})",
        o.hold.as_ref().map(|h| h.state)
    ));
    let paid = bed
        .inbox(&buyer.trade_key)
        .iter()
        .any(|n| matches!(n, Notice::PurchaseCompleted));
    say(&format!(
        "7. Bob is paid {} sats (purchase completed: {paid}); the order is {}",
        bed.ledger.balance("bob"),
        o.status
    ));
    if o.status != Status::Success || !paid {
        return Err(format!("trade did not complete: {}", o.status));
    }

    expect(bed.send(&buyer, Some(id), Action::RateUser(5)).await)?;
    expect(bed.send(&seller, Some(id), Action::RateUser(5)).await)?;
    say("8. Both rate each other 5/5. Done.");
    Ok(())
}

fn expect(out: Outcome) -> Result<(), String> {
    match out {
        Outcome::Applied(_) => Ok(()),
        other => Err(format!("refused: {other:?}")),
    }
}
