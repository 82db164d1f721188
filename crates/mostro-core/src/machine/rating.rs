//! Rating the counterparty after a successful trade.

use crate::order::{Role, Status};

use super::{Effect, Env, Notice, Reject, Transition};

pub(super) fn rate(
    t: &mut Transition,
    role: Option<Role>,
    r: u8,
    rid: Option<u64>,
    env: &Env<'_>,
) -> Result<(), Reject> {
    if !(1..=5).contains(&r) {
        return Err(Reject::InvalidRating);
    }
    let Some(role) = role else {
        return Err(Reject::InvalidPubkey);
    };
    let o = &t.order;
    let allowed = match role {
        Role::Buyer => o.status == Status::Success,
        Role::Seller => matches!(o.status, Status::Success | Status::SettledHoldInvoice),
    };
    if !allowed {
        return Err(Reject::InvalidOrderStatus);
    }
    let already = match role {
        Role::Buyer => o.buyer_rated,
        Role::Seller => o.seller_rated,
    };
    if already {
        // Each side rates once; a repeat is ignored (as the reference does).
        return Ok(());
    }
    let Some(rated) = o.party(role.other()).cloned() else {
        return Ok(());
    };
    match role {
        Role::Buyer => t.order.buyer_rated = true,
        Role::Seller => t.order.seller_rated = true,
    }
    if rated.is_full_privacy() {
        // Full-privacy users carry no reputation; nothing to record or acknowledge.
        return Ok(());
    }
    t.users.push(crate::machine::UserUpdate::Rating {
        identity: rated.identity,
        rating: r,
        at: env.now,
    });
    t.tell_role(role, rid, Notice::RateReceived(r));
    t.effects.push(Effect::PublishRating {
        order_id: t.order.id,
        identity: rated.identity,
        trade_key: rated.trade_key,
    });
    Ok(())
}
