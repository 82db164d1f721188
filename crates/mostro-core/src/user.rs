//! Users (reputation and bookkeeping of an identity) and dispute solvers.

use serde::{Deserialize, Serialize};

use crate::types::{PubKey, Timestamp};

/// Reputation and bookkeeping of one identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Identity key.
    pub identity: PubKey,
    /// Highest trade index seen.
    pub last_trade_index: u32,
    /// Ratings received.
    pub reviews: u64,
    /// Sum of ratings received.
    pub rating_sum: u64,
    /// Lowest rating received (0 = none).
    pub min_rating: u8,
    /// Highest rating received.
    pub max_rating: u8,
    /// Latest rating received.
    pub last_rating: u8,
    /// First seen.
    pub created_at: Timestamp,
}

impl User {
    /// Mean rating (0.0 with no reviews).
    #[must_use]
    pub fn rating(&self) -> f64 {
        if self.reviews == 0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let (sum, n) = (self.rating_sum as f64, self.reviews as f64);
        sum / n
    }

    /// Applies an update (the store calls this inside its transaction).
    pub fn apply(&mut self, u: &UserUpdate) {
        match u {
            UserUpdate::TradeIndex { index, .. } => {
                self.last_trade_index = self.last_trade_index.max(*index);
            },
            UserUpdate::Rating { rating, .. } => {
                self.reviews = self.reviews.saturating_add(1);
                self.rating_sum = self.rating_sum.saturating_add(u64::from(*rating));
                self.min_rating = if self.min_rating == 0 {
                    *rating
                } else {
                    self.min_rating.min(*rating)
                };
                self.max_rating = self.max_rating.max(*rating);
                self.last_rating = *rating;
            },
        }
    }
}

/// A registered dispute solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Solver {
    /// Identity key.
    pub identity: PubKey,
    /// `read-write` permission.
    pub write: bool,
}

/// A change to a user record, applied in the same transaction as the order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserUpdate {
    /// Record the highest trade index seen for an identity.
    TradeIndex {
        /// Identity.
        identity: PubKey,
        /// Index.
        index: u32,
    },
    /// A rating received by `identity`.
    Rating {
        /// The rated identity.
        identity: PubKey,
        /// 1-5.
        rating: u8,
        /// When.
        at: Timestamp,
    },
}
