//! Range orders: the child order published after a partial take.

use crate::order::{Order, Party, Status};
use crate::types::Sats;

use super::{Effect, Env, Notice, Notify, Transition, UserUpdate};

pub(super) fn make_child(t: &mut Transition, env: &Env<'_>) {
    let o = &t.order;
    let (Some(min), Some(max), Some(next)) = (o.min_amount, o.max_amount, o.next_trade) else {
        return;
    };
    let Some(rest) = max.checked_sub(o.fiat_amount) else {
        return;
    };
    if rest < min || rest <= 0 {
        return;
    }
    let (cmin, cmax, cfiat) = if rest == min {
        (None, None, rest)
    } else {
        (Some(min), Some(rest), 0)
    };
    let identity = if o.maker.is_full_privacy() {
        next.trade_key
    } else {
        o.maker.identity
    };
    let child = Order {
        id: env.derive_id(b"child"),
        version: 0,
        kind: o.kind,
        status: Status::Pending,
        fiat_code: o.fiat_code.clone(),
        fiat_amount: cfiat,
        min_amount: cmin,
        max_amount: cmax,
        amount: Sats::ZERO,
        premium: o.premium,
        price_from_api: true,
        payment_method: o.payment_method.clone(),
        fee: Sats::ZERO,
        created_at: env.now,
        expires_at: o
            .expires_at
            .max(env.now.plus(env.policy.pending_expiration_secs)),
        taken_at: None,
        maker: Party {
            trade_key: next.trade_key,
            identity,
            trade_index: next.trade_index,
            protocol: o.maker.protocol,
        },
        taker: None,
        buyer_invoice: None,
        buyer_address: None,
        hold: None,
        payout: None,
        cancel_initiator: None,
        dispute: None,
        buyer_rated: false,
        seller_rated: false,
        next_trade: None,
        range_parent: Some(o.id),
        abandoned_holds: Vec::new(),
        deadline: None,
        dev_fee: None,
    };
    let mut child = child;
    child.deadline = Some(child.expires_at);
    let cid = child.id;
    let maker = child.maker.clone();
    if !maker.is_full_privacy() {
        t.users.push(UserUpdate::TradeIndex {
            identity: maker.identity,
            index: next.trade_index,
        });
    }
    t.effects.push(Effect::Notify(Notify {
        to: maker.trade_key,
        protocol: maker.protocol,
        request_id: None,
        order_id: Some(cid),
        trade_index: Some(next.trade_index),
        notice: Notice::NewOrder(Box::new(child.clone())),
    }));
    t.effects.push(Effect::PublishOrder { order_id: cid });
    t.child = Some(child);
}
