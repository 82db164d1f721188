//! The two hold-invoice plugins: detection and their request/result shapes.

use mostro_core::ports::{HoldInvoiceState, LnError, LnErrorKind};
use mostro_core::types::{BlockHeight, PaymentHash};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::rpc::{CallError, Rpc};

/// The hold-invoice plugin found on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldPlugin {
    /// BoltzExchange `hold` (preferred): `holdinvoice(payment_hash, amount)`,
    /// `settleholdinvoice(preimage)`, `cancelholdinvoice(payment_hash)`,
    /// `listholdinvoices([payment_hash] [bolt11])`.
    Boltz,
    /// daywalker90 `holdinvoice`: `holdinvoice`, `holdinvoicesettle`, `holdinvoicecancel`,
    /// `holdinvoicelookup`. It wraps CLN's `invoice`, which takes a preimage rather than a
    /// payment hash, so it cannot create an invoice for a hash chosen by the caller.
    Daywalker,
}

const BOLTZ: [&str; 4] = [
    "holdinvoice",
    "settleholdinvoice",
    "cancelholdinvoice",
    "listholdinvoices",
];
const DAYWALKER: [&str; 4] = [
    "holdinvoice",
    "holdinvoicesettle",
    "holdinvoicecancel",
    "holdinvoicelookup",
];

/// The message when no supported plugin is loaded.
pub(crate) fn missing_plugin_message(socket: &str) -> String {
    format!(
        "no hold-invoice plugin on the CLN node at {socket}: Mostro needs hold invoices. \
         Install the BoltzExchange `hold` plugin (https://github.com/BoltzExchange/hold, \
         preferred) or daywalker90's `holdinvoice` plugin \
         (https://github.com/daywalker90/holdinvoice), load it with `plugin=<path>` (or \
         `important-plugin=`) in the lightningd config, and restart lightningd"
    )
}

/// Finds the plugin from a `help` result (each entry's `command` starts with the name).
pub(crate) fn detect(help: &Value) -> Option<HoldPlugin> {
    let names: Vec<&str> = help
        .get("help")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.get("command").and_then(Value::as_str))
                .filter_map(|c| c.split_whitespace().next())
                .collect()
        })
        .unwrap_or_default();
    let has_all = |set: &[&str]| set.iter().all(|m| names.contains(m));
    if has_all(&BOLTZ) {
        Some(HoldPlugin::Boltz)
    } else if has_all(&DAYWALKER) {
        Some(HoldPlugin::Daywalker)
    } else {
        None
    }
}

/// One entry of `listholdinvoices` (BoltzExchange).
#[derive(Debug, Deserialize)]
pub(crate) struct BoltzEntry {
    /// Renamed from `bolt11` to `invoice` in hold 0.3; accept both.
    #[serde(alias = "bolt11")]
    pub(crate) invoice: String,
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) htlcs: Vec<BoltzHtlc>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BoltzHtlc {
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) cltv_expiry: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct BoltzList {
    holdinvoices: Vec<BoltzEntry>,
}

impl BoltzEntry {
    pub(crate) fn state(&self) -> Result<HoldInvoiceState, LnError> {
        match self.state.as_str() {
            "unpaid" => Ok(HoldInvoiceState::Open),
            "accepted" => Ok(HoldInvoiceState::Accepted {
                htlc_expiry: self
                    .htlcs
                    .iter()
                    .filter(|h| h.state == "accepted")
                    .filter_map(|h| h.cltv_expiry)
                    .min()
                    .map(BlockHeight),
            }),
            "paid" => Ok(HoldInvoiceState::Settled),
            "cancelled" => Ok(HoldInvoiceState::Canceled),
            other => Err(LnError::new(
                LnErrorKind::Other,
                format!("unknown hold invoice state {other:?}"),
            )),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T, LnError> {
    serde_json::from_value(v).map_err(|e| {
        LnError::new(
            LnErrorKind::Other,
            format!("{what}: unexpected result: {e}"),
        )
    })
}

/// The BoltzExchange entry for `hash`, if any.
pub(crate) async fn boltz_entry(
    rpc: &Rpc,
    hash: &PaymentHash,
) -> Result<Option<BoltzEntry>, LnError> {
    let v = rpc
        .call("listholdinvoices", json!({ "payment_hash": hash.to_hex() }))
        .await
        .map_err(|e| e.into_ln("listholdinvoices"))?;
    let list: BoltzList = parse(v, "listholdinvoices")?;
    Ok(list.holdinvoices.into_iter().next())
}

#[derive(Debug, Deserialize)]
struct DaywalkerLookup {
    state: String,
    #[serde(default)]
    htlc_expiry: Option<u32>,
}

/// Current state of a hold invoice.
pub(crate) async fn lookup(
    rpc: &Rpc,
    plugin: HoldPlugin,
    hash: &PaymentHash,
) -> Result<HoldInvoiceState, LnError> {
    match plugin {
        HoldPlugin::Boltz => match boltz_entry(rpc, hash).await? {
            Some(e) => e.state(),
            None => Err(not_found(hash)),
        },
        HoldPlugin::Daywalker => {
            let r = rpc
                .call(
                    "holdinvoicelookup",
                    json!({ "payment_hash": hash.to_hex() }),
                )
                .await;
            let v = match r {
                Ok(v) => v,
                Err(CallError::Rpc { message, .. }) if message.contains("not found") => {
                    return Err(not_found(hash));
                },
                Err(e) => return Err(e.into_ln("holdinvoicelookup")),
            };
            let l: DaywalkerLookup = parse(v, "holdinvoicelookup")?;
            match l.state.as_str() {
                "OPEN" => Ok(HoldInvoiceState::Open),
                "ACCEPTED" => Ok(HoldInvoiceState::Accepted {
                    htlc_expiry: l.htlc_expiry.map(BlockHeight),
                }),
                "SETTLED" => Ok(HoldInvoiceState::Settled),
                "CANCELED" => Ok(HoldInvoiceState::Canceled),
                other => Err(LnError::new(
                    LnErrorKind::Other,
                    format!("unknown hold state {other:?}"),
                )),
            }
        },
    }
}

pub(crate) fn not_found(hash: &PaymentHash) -> LnError {
    LnError::new(
        LnErrorKind::NotFound,
        format!("no hold invoice with payment hash {hash}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_plugins_from_help() {
        let boltz = json!({"help": [
            {"command": "getinfo"},
            {"command": "listholdinvoices [payment_hash] [bolt11]"},
            {"command": "holdinvoice payment_hash amount"},
            {"command": "settleholdinvoice preimage"},
            {"command": "cancelholdinvoice payment_hash"},
        ]});
        assert_eq!(detect(&boltz), Some(HoldPlugin::Boltz));
        let dw = json!({"help": [
            {"command": "holdinvoice amount_msat label description [expiry] cltv"},
            {"command": "holdinvoicesettle payment_hash"},
            {"command": "holdinvoicecancel payment_hash"},
            {"command": "holdinvoicelookup payment_hash"},
        ]});
        assert_eq!(detect(&dw), Some(HoldPlugin::Daywalker));
        assert_eq!(detect(&json!({"help": [{"command": "invoice"}]})), None);
        assert_eq!(detect(&json!({})), None);
    }

    #[test]
    fn boltz_states_and_htlc_expiry() {
        let e: BoltzEntry = serde_json::from_value(json!({
            "payment_hash": "00", "bolt11": "lnbcrt1", "state": "accepted",
            "htlcs": [{"state": "accepted", "cltv_expiry": 250}, {"state": "cancelled", "cltv_expiry": 200}]
        }))
        .unwrap();
        assert_eq!(
            e.state().unwrap(),
            HoldInvoiceState::Accepted {
                htlc_expiry: Some(BlockHeight(250))
            }
        );
        let e: BoltzEntry =
            serde_json::from_value(json!({"invoice": "x", "state": "cancelled"})).unwrap();
        assert_eq!(e.state().unwrap(), HoldInvoiceState::Canceled);
    }
}
