//! Assets: one register per asset, holding its contract's name, its current state and the signed
//! request that produced that state. A transition is proposed as the register's next value;
//! every member re-runs the contract's guard and effect on the previous state and votes only if
//! it computes exactly the proposed state.

use crate::machine::{Contract, ContractError, State, TransitionContext};
use beaufort_core::types::View;
use beaufort_crypto::hash::Digest;
use beaufort_crypto::user::{verify_user_signature, UserPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Prefix of asset keys.
pub const ASSET_PREFIX: &str = "asset/";

/// Longest asset id.
pub const MAX_ASSET_ID_LEN: usize = 64;

/// The value of `asset/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetRecord {
    /// The contract governing the asset (fixed at creation).
    pub contract: String,
    /// The state the last transition produced.
    pub state: State,
    /// The last transition.
    pub transition: String,
    /// Its input.
    pub input: Json,
    /// The end user who asked for it.
    pub actor: UserPublicKey,
    /// The actor's P-256 signature over [`transition_challenge`], in hex.
    pub signature: String,
}

/// Why a proposed asset value is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// The asset id is not `[a-z0-9-]{1,64}`.
    #[error("asset ids are 1 to {MAX_ASSET_ID_LEN} of a-z, 0-9 and -")]
    BadId,
    /// The actor's signature does not verify.
    #[error("the signature does not match the request and the actor's key")]
    BadSignature,
    /// The contract refused or failed.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// The proposed value is not what the contract computes, or changes the contract.
    #[error("inconsistent transition: {0}")]
    Inconsistent(String),
}

/// Checks an asset id.
pub fn check_asset_id(id: &str) -> Result<(), AssetError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ASSET_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AssetError::BadId)
    }
}

/// What the actor signs to ask for a transition. It names the network, the asset, the view of
/// the asset's current value (so a signed request is good for one step only and cannot be
/// replayed later or on another asset), the contract, the transition, the actor and the input in
/// canonical JSON (keys sorted).
pub fn transition_challenge(
    network: &Digest,
    asset_id: &str,
    previous_view: Option<View>,
    contract: &str,
    transition: &str,
    actor: &UserPublicKey,
    input: &Json,
) -> Vec<u8> {
    let previous = previous_view.map_or_else(|| "none".to_owned(), |v| format!("view {v}"));
    format!(
        "beaufort asset transition v1\nnetwork {}\nasset {asset_id}\nprevious {previous}\ncontract {contract}\ntransition {transition}\nactor {}\ninput {}\n",
        network.to_hex(),
        hex::encode(actor.as_bytes()),
        canonical_json(input)
    )
    .into_bytes()
}

/// JSON with object keys in sorted order and no whitespace: one byte string per value.
pub fn canonical_json(value: &Json) -> String {
    // serde_json's map is a BTreeMap (the `preserve_order` feature is off), so serialization
    // already sorts keys; sort explicitly anyway so this stays canonical if that ever changes.
    fn sorted(value: &Json) -> Json {
        match value {
            Json::Object(map) => {
                let mut entries: Vec<(&String, &Json)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Json::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Json::Array(items) => Json::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// The asset's next record if `contract` allows `transition` from `old` (the current record and
/// its view, or `None` to create the asset). Used by the member that proposes it.
pub fn next_record(
    contract: &dyn Contract,
    asset_id: &str,
    old: Option<(&AssetRecord, View)>,
    transition: &str,
    input: Json,
    actor: UserPublicKey,
    signature: String,
) -> Result<AssetRecord, AssetError> {
    check_asset_id(asset_id)?;
    let start = State::start();
    let current = old.map_or(&start, |(record, _)| &record.state);
    let ctx = TransitionContext {
        actor: hex::encode(actor.as_bytes()),
        asset: asset_id.to_owned(),
        view: old.map(|(_, view)| view),
    };
    let state = contract.apply(current, transition, &input, &ctx)?;
    Ok(AssetRecord {
        contract: contract.name().to_owned(),
        state,
        transition: transition.to_owned(),
        input,
        actor,
        signature,
    })
}

/// Checks a proposed next record: same contract as before, a valid signature by the actor over
/// this exact step, and a state equal to what the contract computes. Every member runs this
/// before voting.
pub fn check_record(
    network: &Digest,
    contract: &dyn Contract,
    asset_id: &str,
    old: Option<(&AssetRecord, View)>,
    new: &AssetRecord,
) -> Result<(), AssetError> {
    if let Some((previous, _)) = old {
        if previous.contract != new.contract {
            return Err(AssetError::Inconsistent(
                "an asset's contract never changes".into(),
            ));
        }
    }
    if new.contract != contract.name() {
        return Err(AssetError::Inconsistent("wrong contract".into()));
    }
    let challenge = transition_challenge(
        network,
        asset_id,
        old.map(|(_, view)| view),
        &new.contract,
        &new.transition,
        &new.actor,
        &new.input,
    );
    let signature = hex::decode(&new.signature).map_err(|_| AssetError::BadSignature)?;
    verify_user_signature(&new.actor, &challenge, &signature)
        .map_err(|_| AssetError::BadSignature)?;
    let expected = next_record(
        contract,
        asset_id,
        old,
        &new.transition,
        new.input.clone(),
        new.actor,
        new.signature.clone(),
    )?;
    if expected != *new {
        return Err(AssetError::Inconsistent(
            "the proposed state is not what the contract computes".into(),
        ));
    }
    Ok(())
}
