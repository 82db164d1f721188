//! Disputes: opened by a party or the node, taken and resolved by a solver or the admin.

use crate::order::{Dispute, DisputeStatus, Order, Role, Status};
use crate::types::BlockHeight;

use super::escrow::start_settle;
use super::{Authority, Caller, Env, Notice, Reject, Transition};

pub(super) fn open_dispute(t: &mut Transition, initiator: Role, rid: Option<u64>, env: &Env<'_>) {
    let id = env.derive_id(b"dispute");
    let prev = t.order.status;
    t.order.dispute = Some(Dispute {
        id,
        status: DisputeStatus::Initiated,
        initiator,
        previous_status: prev,
        solver: None,
        solver_write: false,
        taken_by_admin: false,
        created_at: env.now,
        taken_at: None,
        expiry_warned: false,
        solver_party: None,
    });
    t.order.status = Status::Dispute;
    t.order.deadline = None;
    t.tell_role(
        initiator,
        rid,
        Notice::DisputeInitiatedByYou { dispute_id: id },
    );
    t.tell_role(
        initiator.other(),
        None,
        Notice::DisputeInitiatedByPeer { dispute_id: id },
    );
    t.publish_dispute();
}

/// Tells both parties the dispute just opened on the buyer's behalf was the node's doing.
pub(super) fn opened_by_node(t: &mut Transition, expiry: Option<BlockHeight>) {
    if let Some(d) = &t.order.dispute {
        let dispute_id = d.id;
        t.tell_both(&Notice::DisputeOpenedByNode { dispute_id, expiry });
    }
}

pub(super) fn admin_take(
    t: &mut Transition,
    caller: &Caller,
    rid: Option<u64>,
    env: &Env<'_>,
) -> Result<(), Reject> {
    let is_admin = caller.authority == Authority::Admin;
    let write = match caller.authority {
        Authority::Admin => true,
        Authority::Solver { write } => write,
        Authority::User => return Err(Reject::NotAuthorized),
    };
    if is_party(&t.order, caller) {
        // A buyer or seller never judges their own trade.
        return Err(Reject::NotAuthorized);
    }
    let Some(d) = &t.order.dispute else {
        return Err(Reject::NotFound);
    };
    if !d.status.is_open() {
        return Err(Reject::InvalidDisputeStatus);
    }
    let allowed = match d.solver {
        None => true,
        Some(s) if s == caller.identity => true,
        Some(_) => is_admin || (write && !d.solver_write && !d.taken_by_admin),
    };
    if !allowed {
        return Err(Reject::InvalidPubkey);
    }
    let id = d.id;
    if let Some(d) = &mut t.order.dispute {
        d.status = DisputeStatus::InProgress;
        d.solver = Some(caller.identity);
        d.solver_write = write;
        d.taken_by_admin = is_admin;
        d.taken_at = Some(env.now);
        d.solver_party = Some(caller.party());
    }
    let snap = t.snapshot();
    let solver_party = caller.party();
    t.tell(
        &solver_party,
        rid,
        Notice::AdminTookDisputeSolver {
            dispute_id: id,
            order: snap,
        },
    );
    t.tell_both(&Notice::AdminTookDisputePeer {
        solver: caller.identity,
    });
    t.publish_dispute();
    Ok(())
}

/// Whether the caller is the buyer or the seller of the order (by trade key or identity).
pub(super) fn is_party(o: &Order, caller: &Caller) -> bool {
    o.trade_keys()
        .any(|k| *k == caller.trade_key || *k == caller.identity)
        || o.identities().any(|i| *i == caller.identity)
}

pub(super) fn admin_resolve(
    t: &mut Transition,
    caller: &Caller,
    rid: Option<u64>,
    settle: bool,
) -> Result<(), Reject> {
    let o = &t.order;
    let admin = caller.authority == Authority::Admin;
    if caller.authority == Authority::User || is_party(o, caller) {
        return Err(Reject::NotAuthorized);
    }
    // The operator may cancel an order that was never taken.
    if !settle && admin && o.status == Status::Pending {
        t.order.status = Status::CanceledByAdmin;
        t.order.deadline = None;
        let m = t.order.maker.clone();
        t.tell(&m, None, Notice::AdminCanceled);
        t.tell(&caller.party(), rid, Notice::AdminCanceled);
        t.publish();
        return Ok(());
    }
    if o.status == Status::CooperativelyCanceled {
        t.tell(&caller.party(), rid, Notice::CooperativeCancelAccepted);
        return Ok(());
    }
    if o.status != Status::Dispute {
        return Err(Reject::NotAllowedByStatus);
    }
    let Some(d) = &o.dispute else {
        return Err(Reject::NotAllowedByStatus);
    };
    if d.solver != Some(caller.identity) {
        return Err(if d.taken_by_admin {
            Reject::DisputeTakenByAdmin
        } else {
            Reject::IsNotYourDispute
        });
    }
    let write = match caller.authority {
        Authority::Admin => true,
        Authority::Solver { write } => write,
        Authority::User => false,
    };
    if !write {
        return Err(Reject::NotAuthorized);
    }
    if settle {
        start_settle(t, None)?;
        if let Some(d) = &mut t.order.dispute {
            d.status = DisputeStatus::Settled;
        }
        t.tell(&caller.party(), rid, Notice::AdminSettled);
        t.tell_both(&Notice::AdminSettled);
    } else {
        t.cancel_hold();
        t.order.status = Status::CanceledByAdmin;
        t.order.deadline = None;
        if let Some(d) = &mut t.order.dispute {
            d.status = DisputeStatus::SellerRefunded;
        }
        t.tell(&caller.party(), rid, Notice::AdminCanceled);
        t.tell_both(&Notice::AdminCanceled);
        t.publish();
    }
    t.publish_dispute();
    Ok(())
}
