//! The result of one step and the helpers the step functions use to build it.

use crate::order::{HoldState, Order, Party, Role};
use crate::types::PubKey;

use super::{Effect, Notice, Notify, UserUpdate};

/// The result of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The order after the step.
    pub order: Order,
    /// A new range child order, if the step created one.
    pub child: Option<Order>,
    /// Effects to commit and run.
    pub effects: Vec<Effect>,
    /// User record changes.
    pub users: Vec<UserUpdate>,
}

impl Transition {
    pub(super) fn new(order: Order) -> Self {
        Transition {
            order,
            child: None,
            effects: Vec::new(),
            users: Vec::new(),
        }
    }

    /// Whether the step changed nothing and asks for nothing.
    #[must_use]
    pub fn is_noop(&self, before: &Order) -> bool {
        self.effects.is_empty()
            && self.users.is_empty()
            && self.child.is_none()
            && &self.order == before
    }

    pub(super) fn tell(&mut self, party: &Party, request_id: Option<u64>, notice: Notice) {
        let order_id = Some(self.order.id);
        self.effects.push(Effect::Notify(Notify {
            to: party.trade_key,
            protocol: party.protocol,
            request_id,
            order_id,
            trade_index: None,
            notice,
        }));
    }

    pub(super) fn tell_role(&mut self, role: Role, request_id: Option<u64>, notice: Notice) {
        if let Some(p) = self.order.party(role).cloned() {
            self.tell(&p, request_id, notice);
        }
    }

    /// Both parties; the one who sent the request gets its request id (the direct answer).
    pub(super) fn tell_both_answering(
        &mut self,
        notice: &Notice,
        caller: &PubKey,
        rid: Option<u64>,
    ) {
        for role in [Role::Seller, Role::Buyer] {
            if let Some(p) = self.order.party(role).cloned() {
                let r = if &p.trade_key == caller { rid } else { None };
                self.tell(&p, r, notice.clone());
            }
        }
    }

    pub(super) fn tell_both(&mut self, notice: &Notice) {
        self.tell_role(Role::Seller, None, notice.clone());
        self.tell_role(Role::Buyer, None, notice.clone());
    }

    pub(super) fn publish(&mut self) {
        self.effects.push(Effect::PublishOrder {
            order_id: self.order.id,
        });
    }

    pub(super) fn publish_dispute(&mut self) {
        self.effects.push(Effect::PublishDispute {
            order_id: self.order.id,
        });
    }

    pub(super) fn snapshot(&self) -> Box<Order> {
        Box::new(self.order.clone())
    }

    /// Cancels the hold invoice if one may exist and is not final.
    pub(super) fn cancel_hold(&mut self) {
        if let Some(h) = &mut self.order.hold {
            match h.state {
                HoldState::Requested | HoldState::Open | HoldState::Accepted => {
                    h.state = HoldState::Canceled;
                    let hash = h.hash;
                    self.effects.push(Effect::CancelHold {
                        order_id: self.order.id,
                        hash,
                    });
                },
                HoldState::Settling | HoldState::Settled | HoldState::Canceled => {},
            }
        }
    }
}
