//! Admission: the rules about the sender and the request that do not depend on one order's
//! state, plus the read-only queries. The engine gathers the [`Facts`] these rules need from its
//! ports (solver registration, user record, the caller's open orders, a decoded invoice) and
//! calls these pure functions; it decides nothing itself.
//!
//! Rules here, in the order they apply to a request:
//! 1. maintenance mode refuses every request that opens a trade ([`admit`]);
//! 2. authority: the node's key is the admin, a registered solver is a solver ([`admit`]);
//! 3. trade index (protocol §2): a reputation-mode request that opens a trade carries an index
//!    above the identity's last one, which the commit then records ([`admit`]);
//! 4. payout destinations: a Lightning address needs a resolver, an invoice must decode on the
//!    node's network and not be expired ([`classify_destination`], [`check_decoded_invoice`]);
//! 5. a `next_trade` key must be a curve point ([`check_next_trade`]);
//! 6. pending duty: a reputation-mode taker with a trade waiting on them takes no other
//!    ([`check_no_pending_duty`]);
//! 7. solver registration is for the admin only, with a curve-point key ([`add_solver`]);
//! 8. the queries' limits and answers ([`check_orders_query`], [`orders_reply`],
//!    [`restore_reply`], [`last_trade_index_reply`], [`user_info_reply`]).

use crate::order::{NextTrade, Order, PayoutInvoice, Protocol, Role, Status};
use crate::policy::Policy;
use crate::types::{DecodedInvoice, Network, OrderId, PubKey, Timestamp};
use crate::user::{Solver, User};

use super::{Authority, Caller, Notice, Reject, UserUpdate};

/// The most orders a restore-session reply carries (the most recent first): a NIP-44 message
/// holds at most 64 KiB, and a restored order takes about 150 bytes.
pub const MAX_RESTORE: usize = 200;

/// The longest payout destination string accepted.
pub const MAX_DESTINATION_LEN: usize = 4096;

/// What the engine looked up about the sender of a request.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The trade key that sent the request.
    pub sender: PubKey,
    /// The identity key (equals `sender` in full privacy).
    pub identity: PubKey,
    /// Protocol the request arrived in.
    pub protocol: Protocol,
    /// The trade index the request carried, as received.
    pub trade_index: Option<i64>,
    /// Whether the request opens a trade (new order, take).
    pub opens_trade: bool,
    /// The node's own key: its holder is the admin.
    pub node_key: PubKey,
    /// The solver registration of `identity`, if any.
    pub solver: Option<&'a Solver>,
    /// The user record of `identity`; looked up when [`needs_user`] says so, `None` otherwise
    /// or when there is none.
    pub user: Option<&'a User>,
}

/// Whether [`admit`] needs the identity's user record (reputation mode, opening a trade).
#[must_use]
pub fn needs_user(opens_trade: bool, identity: &PubKey, sender: &PubKey) -> bool {
    opens_trade && identity != sender
}

/// An admitted request: who is asking, and the user record changes its commit makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The caller, with its authority.
    pub caller: Caller,
    /// The trade-index record of a reputation-mode request that opens a trade.
    pub users: Vec<UserUpdate>,
}

/// Rules 1 to 3: maintenance, authority, trade index.
///
/// # Errors
/// [`Reject::MaintenanceMode`], [`Reject::InvalidTradeIndex`].
pub fn admit(f: &Facts<'_>, policy: &Policy) -> Result<Admitted, Reject> {
    if policy.maintenance && f.opens_trade {
        return Err(Reject::MaintenanceMode);
    }
    let authority = if f.identity == f.node_key {
        Authority::Admin
    } else if let Some(s) = f.solver {
        Authority::Solver { write: s.write }
    } else {
        Authority::User
    };
    let full_privacy = f.identity == f.sender;
    let trade_index = match f.trade_index {
        Some(i) => u32::try_from(i).map_err(|_| Reject::InvalidTradeIndex)?,
        None => 0,
    };
    let mut users = Vec::new();
    if f.opens_trade && !full_privacy {
        if trade_index == 0 {
            return Err(Reject::InvalidTradeIndex);
        }
        if f.user.is_some_and(|u| trade_index <= u.last_trade_index) {
            return Err(Reject::InvalidTradeIndex);
        }
        users.push(UserUpdate::TradeIndex {
            identity: f.identity,
            index: trade_index,
        });
    }
    Ok(Admitted {
        caller: Caller {
            trade_key: f.sender,
            identity: f.identity,
            trade_index: if full_privacy { 0 } else { trade_index },
            protocol: f.protocol,
            authority,
        },
        users,
    })
}

/// What a payout destination string is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestinationKind {
    /// A Lightning address or LNURL, resolved into an invoice at payout time.
    Address,
    /// A BOLT11 invoice, to be decoded by the node and checked with
    /// [`check_decoded_invoice`].
    Invoice,
}

/// Rule 4, first half: what the (trimmed) destination is and whether it may be used.
///
/// # Errors
/// [`Reject::InvalidInvoice`]: empty, too long, or an address without a resolver.
pub fn classify_destination(s: &str, has_resolver: bool) -> Result<DestinationKind, Reject> {
    if s.is_empty() || s.len() > MAX_DESTINATION_LEN {
        return Err(Reject::InvalidInvoice);
    }
    if is_ln_address(s) {
        return if has_resolver {
            Ok(DestinationKind::Address)
        } else {
            Err(Reject::InvalidInvoice)
        };
    }
    Ok(DestinationKind::Invoice)
}

/// Rule 4, second half: an invoice the node decoded is on our network and not expired.
///
/// # Errors
/// [`Reject::InvalidInvoice`].
pub fn check_decoded_invoice(
    bolt11: &str,
    d: &DecodedInvoice,
    network: Network,
    now: Timestamp,
) -> Result<PayoutInvoice, Reject> {
    if d.network != network || d.expires_at <= now {
        return Err(Reject::InvalidInvoice);
    }
    Ok(PayoutInvoice {
        bolt11: bolt11.to_owned(),
        hash: d.hash,
        amount: d.amount,
        expires_at: d.expires_at,
        min_final_cltv: d.min_final_cltv,
    })
}

/// A Lightning address (`user@domain.tld`) or an LNURL string.
#[must_use]
pub fn is_ln_address(s: &str) -> bool {
    if s.len() > 5 && s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("lnurl")) {
        return true;
    }
    let Some((user, domain)) = s.split_once('@') else {
        return false;
    };
    !user.is_empty()
        && domain.contains('.')
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
}

/// Rule 5: the next trade key the node will write to is a curve point.
///
/// # Errors
/// [`Reject::InvalidPubkey`].
pub fn check_next_trade(n: Option<NextTrade>) -> Result<Option<NextTrade>, Reject> {
    match n {
        Some(k) if !k.trade_key.is_on_curve() => Err(Reject::InvalidPubkey),
        n => Ok(n),
    }
}

/// Whether [`check_no_pending_duty`] needs the caller's open orders (a reputation-mode take).
#[must_use]
pub fn needs_open_orders(caller: &Caller) -> bool {
    caller.identity != caller.trade_key
}

/// Rule 6 (`pending_order_exists`): a reputation-mode taker who already has a trade waiting on
/// them in the role they would take here (a buyer invoice to give, a hold invoice to pay) may
/// not take another order. `open_of_caller` are the caller's open orders.
///
/// # Errors
/// [`Reject::PendingOrderExists`].
pub fn check_no_pending_duty(
    caller: &Caller,
    order: &Order,
    open_of_caller: &[Order],
) -> Result<(), Reject> {
    if !needs_open_orders(caller) {
        return Ok(());
    }
    let role = order.kind.maker_role().other();
    let waiting = match role {
        Role::Buyer => Status::WaitingBuyerInvoice,
        Role::Seller => Status::WaitingPayment,
    };
    let busy = open_of_caller.iter().any(|o| {
        o.status == waiting && o.party(role).is_some_and(|p| p.identity == caller.identity)
    });
    if busy {
        Err(Reject::PendingOrderExists)
    } else {
        Ok(())
    }
}

/// Rule 7: only the admin registers solvers, and only with a key the node can write to.
///
/// # Errors
/// [`Reject::NotAuthorized`], [`Reject::InvalidPubkey`].
pub fn add_solver(caller: &Caller, solver: &Solver) -> Result<Notice, Reject> {
    if caller.authority != Authority::Admin {
        return Err(Reject::NotAuthorized);
    }
    if !solver.identity.is_on_curve() {
        return Err(Reject::InvalidPubkey);
    }
    Ok(Notice::AdminAddSolver)
}

/// Rule 8, `orders`: at least one id, at most `policy.max_orders_per_response`.
///
/// # Errors
/// [`Reject::InvalidParameters`], [`Reject::TooManyRequests`].
pub fn check_orders_query(ids: &[OrderId], policy: &Policy) -> Result<(), Reject> {
    if ids.is_empty() {
        return Err(Reject::InvalidParameters);
    }
    if ids.len() > usize::try_from(policy.max_orders_per_response).unwrap_or(0) {
        return Err(Reject::TooManyRequests);
    }
    Ok(())
}

/// Rule 8, `orders`: the loaded orders the identity takes part in.
///
/// # Errors
/// [`Reject::NotFound`] when none is.
pub fn orders_reply(identity: &PubKey, loaded: Vec<Order>) -> Result<Notice, Reject> {
    let found: Vec<Order> = loaded
        .into_iter()
        .filter(|o| o.identities().any(|i| i == identity))
        .collect();
    if found.is_empty() {
        return Err(Reject::NotFound);
    }
    Ok(Notice::Orders(found))
}

/// Rule 8, `restore-session`: the identity's open orders, most recent first, at most
/// [`MAX_RESTORE`].
#[must_use]
pub fn restore_reply(identity: PubKey, mut orders: Vec<Order>) -> Notice {
    orders.sort_by_key(|o| std::cmp::Reverse(o.created_at));
    orders.truncate(MAX_RESTORE);
    Notice::RestoreSession { identity, orders }
}

/// Rule 8, `last-trade-index`.
///
/// # Errors
/// [`Reject::NotFound`] without a record, [`Reject::InvalidTradeIndex`] when it holds none.
pub fn last_trade_index_reply(user: Option<&User>) -> Result<Notice, Reject> {
    let Some(u) = user else {
        return Err(Reject::NotFound);
    };
    if u.last_trade_index == 0 {
        return Err(Reject::InvalidTradeIndex);
    }
    Ok(Notice::LastTradeIndex(u.last_trade_index))
}

/// Rule 8, `user-info`: reputation mode only.
///
/// # Errors
/// [`Reject::ReputationIdentityRequired`] in full privacy.
pub fn user_info_reply(caller: &Caller, user: Option<User>) -> Result<Notice, Reject> {
    if caller.identity == caller.trade_key {
        return Err(Reject::ReputationIdentityRequired);
    }
    Ok(Notice::UserInfo(user.unwrap_or_default()))
}
