//! Wire types of the Mostro protocol.
//!
//! These types reproduce, byte for byte, the JSON that the reference
//! `mostro-core` 0.17.3 produces and accepts for the logical message carried
//! by both transports (protocol v1 gift wraps and protocol v2 kind-14 events).
//! The bytes matter: signatures are computed over the re-serialized message,
//! so [`Message::to_json`] is the canonical form used both to sign and to
//! verify.
//!
//! Serialization rules in short:
//!
//! * The top level is a single-key object naming the wrapper ([`Message`]).
//! * [`MessageKind`] writes `version`, `request_id`, `trade_index`, `id`,
//!   `action`, `payload` in that order; `id` is omitted when absent, the other
//!   optional fields are written as `null`; missing keys on input are absent.
//! * [`Payload`] is externally tagged with snake_case names; tuple variants are
//!   JSON arrays.
//! * [`SmallOrder`] rejects unknown keys.
//! * [`CantDoReason`] and [`BuyerMode`] parse unknown strings as `unknown`.

use std::fmt;

/// Generates a fieldless enum whose wire form is a fixed string per variant.
///
/// The generated type gets `ALL`, `as_str`, `Display`, `FromStr`, `Serialize`
/// and `Deserialize`. With a trailing `catch_all Variant`, any unknown string
/// parses as that variant instead of failing.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+
        }
        catch_all $fallback:ident
    ) => {
        wire_enum!(@common $(#[$meta])* $name { $( $(#[$vmeta])* $variant = $wire, )+ });

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(Self::from_wire(s).unwrap_or($name::$fallback))
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str($crate::wire::WireStrVisitor {
                    expecting: stringify!($name),
                    names: $name::NAMES,
                    parse: |s| Some(Self::from_wire(s).unwrap_or($name::$fallback)),
                })
            }
        }
    };
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        wire_enum!(@common $(#[$meta])* $name { $( $(#[$vmeta])* $variant = $wire, )+ });

        impl std::str::FromStr for $name {
            type Err = $crate::wire::ParseWireError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_wire(s).ok_or_else(|| $crate::wire::ParseWireError {
                    type_name: stringify!($name),
                    value: s.to_owned(),
                })
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str($crate::wire::WireStrVisitor {
                    expecting: stringify!($name),
                    names: $name::NAMES,
                    parse: Self::from_wire,
                })
            }
        }
    };
    (
        @common
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The wire spellings, in declaration order.
            const NAMES: &'static [&'static str] = &[ $( $wire, )+ ];

            /// The string this value is written as on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $wire, )+
                }
            }

            /// Exact wire spelling to value, `None` when unknown.
            fn from_wire(s: &str) -> Option<Self> {
                match s {
                    $( $wire => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

mod enums;
mod inbound;
pub mod map;
mod message;
mod order;
mod outbound;
mod payload;

pub use enums::{Action, BuyerMode, CantDoReason, DisputeInitiator, DisputeStatus, Kind, Status};
pub use message::{Message, MessageKind, PROTOCOL_VERSION};
pub use order::SmallOrder;
pub use payload::{
    BondPayoutRequest, BondResolution, CashuLockProof, CashuSignature, PayerDeclaration, Payload,
    PaymentFailedInfo, PaymentHistory, Peer, ReputationExportRequest, RestoreSessionInfo,
    RestoredDisputesInfo, RestoredOrdersInfo, SolverDisputeInfo, UserInfo,
};

/// Error returned when a string is not the wire spelling of a value of a
/// closed enum (for example an unknown [`Action`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseWireError {
    /// Name of the type that was being parsed.
    pub type_name: &'static str,
    /// The string that did not match any value.
    pub value: String,
}

impl fmt::Display for ParseWireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} value {:?}", self.type_name, self.value)
    }
}

impl std::error::Error for ParseWireError {}

/// Serde visitor shared by the string enums generated by `wire_enum!`.
struct WireStrVisitor<T> {
    /// Type name used in error messages.
    expecting: &'static str,
    /// Known spellings, for the "unknown variant" error.
    names: &'static [&'static str],
    /// Spelling to value.
    parse: fn(&str) -> Option<T>,
}

impl<T> serde::de::Visitor<'_> for WireStrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} string", self.expecting)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).ok_or_else(|| E::unknown_variant(v, self.names))
    }
}
