//! Contract routes: list contracts, propose and endorse a script contract (operator), read
//! assets, get the bytes to sign for a transition and submit a signed transition.

use super::kv::{wait_for, Outcome, PendingBody};
use super::{ApiError, ApiJson, ErrorBody};
use crate::{NodeError, NodeHandle};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use beaufort_contracts::asset::{
    check_asset_id, check_record, next_record, transition_challenge, AssetError, AssetRecord,
    ASSET_PREFIX,
};
use beaufort_contracts::install::{ContractPackage, CONTRACT_PREFIX};
use beaufort_contracts::registry::Origin;
use beaufort_contracts::{Contract, ContractError, State as MachineState, TransitionSpec};
use beaufort_core::state::Certified;
use beaufort_core::types::{Key, MemberIndex, Value, View};
use beaufort_crypto::user::{verify_user_signature, UserPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json_;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// How often an endorsement is retried when another member's endorsement wins the same view.
const ENDORSE_ATTEMPTS: usize = 8;

/// A contract as the API lists it.
#[derive(Serialize, ToSchema)]
pub(super) struct ContractView {
    /// Its name.
    name: String,
    /// `builtin`, `installed`, or `pending` (proposed, waiting for endorsements).
    status: String,
    /// Its transitions (none while pending).
    #[schema(schema_with = super::schema::transitions)]
    transitions: Vec<TransitionSpec>,
    /// Members that endorsed it (none for a builtin).
    #[schema(value_type = Vec<u16>)]
    endorsements: Vec<MemberIndex>,
    /// Endorsements needed to install it (0 for a builtin).
    needed: usize,
}

/// A proposed contract's endorsements, after a proposal or an endorsement.
#[derive(Serialize, ToSchema)]
pub(super) struct ContractSummary {
    /// Its name.
    name: String,
    /// `installed` once a quorum endorsed it, else `pending`.
    status: &'static str,
    /// Members that endorsed it.
    #[schema(value_type = Vec<u16>)]
    endorsements: Vec<MemberIndex>,
    /// Endorsements needed to install it.
    needed: usize,
}

fn contract_error(error: ContractError) -> ApiError {
    ApiError(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
}

fn asset_error(error: AssetError) -> ApiError {
    match error {
        AssetError::BadSignature => ApiError(StatusCode::FORBIDDEN, error.to_string()),
        AssetError::BadId => ApiError(StatusCode::BAD_REQUEST, error.to_string()),
        AssetError::Contract(_) | AssetError::Inconsistent(_) => {
            ApiError(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
        }
    }
}

fn encode(record: &impl Serialize) -> Result<Value, ApiError> {
    let bytes = serde_json::to_vec(record)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Value::data(bytes).map_err(|e| ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))
}

fn key(prefix: &str, name: &str) -> Result<Key, ApiError> {
    Key::new(format!("{prefix}{name}").into_bytes())
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))
}

fn parse<T: serde::de::DeserializeOwned>(certified: &Certified) -> Option<T> {
    serde_json::from_slice(certified.value.as_data()?).ok()
}

/// Compiled-in, installed and pending contracts with their transitions and endorsements.
#[utoipa::path(get, path = "/v1/contracts", operation_id = "listContracts", tag = "contracts",
    responses(
        (status = 200, description = "The contracts", body = Vec<ContractView>),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn list_contracts(
    State(node): State<NodeHandle>,
) -> Result<Json<Vec<ContractView>>, ApiError> {
    let needed = node.membership().quorum();
    let mut views: Vec<ContractView> = node
        .apps()
        .registry()
        .list()
        .into_iter()
        .filter(|(origin, _)| *origin == Origin::Builtin)
        .map(|(_, c)| ContractView {
            name: c.name().to_owned(),
            status: "builtin".into(),
            transitions: c.transitions().to_vec(),
            endorsements: Vec::new(),
            needed: 0,
        })
        .collect();
    for (_, certified) in node
        .list(CONTRACT_PREFIX.to_owned(), crate::runtime::MAX_LIST)
        .await?
    {
        let Some(package) = parse::<ContractPackage>(&certified) else {
            continue;
        };
        let contract = node.apps().registry().get(&package.name);
        views.push(ContractView {
            status: if contract.is_some() {
                "installed"
            } else {
                "pending"
            }
            .into(),
            transitions: contract
                .map(|c| c.transitions().to_vec())
                .unwrap_or_default(),
            endorsements: package.endorsements.iter().map(|e| e.member).collect(),
            needed,
            name: package.name,
        });
    }
    Ok(Json(views))
}

/// Body of a contract proposal.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ProposeBody {
    /// The contract's name.
    name: String,
    /// Its Rhai source.
    source: String,
}

/// Propose a Rhai contract, endorsed by this member (operator); installed at a quorum of
/// endorsements.
#[utoipa::path(post, path = "/v1/contracts", operation_id = "proposeContract", tag = "contracts",
    security(("bearer" = [])),
    request_body = ProposeBody,
    responses(
        (status = 200, description = "Proposed", body = ContractSummary),
        (status = 202, description = "Not committed within 30 s; it may still commit", body = PendingBody),
        (status = 400, description = "The body is not the documented JSON or the name is too long", body = ErrorBody),
        (status = 401, description = "No or a wrong operator token", body = ErrorBody),
        (status = 409, description = "A contract of that name was already proposed", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as application/json", body = ErrorBody),
        (status = 422, description = "The script does not compile or is not a valid contract", body = ErrorBody),
        (status = 429, description = "Too many writes are waiting", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn propose_contract(
    State(node): State<NodeHandle>,
    ApiJson(body): ApiJson<ProposeBody>,
) -> Response {
    let network = node.membership().network_id();
    let package =
        match ContractPackage::propose(&network, &body.name, &body.source, node.statement_signer())
        {
            Ok(p) => p,
            Err(e) => return contract_error(e).into_response(),
        };
    let (key, value) = match (key(CONTRACT_PREFIX, &body.name), encode(&package)) {
        (Ok(k), Ok(v)) => (k, v),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    match node.get(key.clone()).await {
        Ok(Some(_)) => {
            return ApiError(
                StatusCode::CONFLICT,
                format!("contract {} was already proposed", body.name),
            )
            .into_response()
        }
        Ok(None) => {}
        Err(e) => return ApiError::from(e).into_response(),
    }
    match wait_for(&node, key, value, None).await {
        Outcome::Committed(_) => Json(ContractSummary {
            name: package.name,
            status: "pending",
            endorsements: vec![node.config().node.index],
            needed: node.membership().quorum(),
        })
        .into_response(),
        Outcome::Pending(response) => response,
        Outcome::Failed(NodeError::Lost(_)) => ApiError(
            StatusCode::CONFLICT,
            format!("contract {} was proposed concurrently", body.name),
        )
        .into_response(),
        Outcome::Failed(e) => ApiError::from(e).into_response(),
    }
}

/// Add this member's endorsement to a proposed contract (operator); installed at a quorum.
#[utoipa::path(post, path = "/v1/contracts/{name}/endorse", operation_id = "endorseContract", tag = "contracts",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The contract's name")),
    responses(
        (status = 200, description = "Endorsed", body = ContractSummary),
        (status = 202, description = "Not committed within 30 s; it may still commit", body = PendingBody),
        (status = 400, description = "The name is too long", body = ErrorBody),
        (status = 401, description = "No or a wrong operator token", body = ErrorBody),
        (status = 404, description = "No contract of that name was proposed", body = ErrorBody),
        (status = 409, description = "Too many concurrent endorsements", body = ErrorBody),
        (status = 429, description = "Too many writes are waiting", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn endorse_contract(
    State(node): State<NodeHandle>,
    Path(name): Path<String>,
) -> Response {
    let key = match key(CONTRACT_PREFIX, &name) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let network = node.membership().network_id();
    for _ in 0..ENDORSE_ATTEMPTS {
        let package = match node.get(key.clone()).await {
            Ok(Some(c)) => match parse::<ContractPackage>(&c) {
                Some(p) => p,
                None => {
                    return ApiError(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "unreadable package".into(),
                    )
                    .into_response()
                }
            },
            Ok(None) => {
                return ApiError(
                    StatusCode::NOT_FOUND,
                    format!("no contract {name} was proposed"),
                )
                .into_response()
            }
            Err(e) => return ApiError::from(e).into_response(),
        };
        let me = node.config().node.index;
        let summary = |p: &ContractPackage| {
            Json(ContractSummary {
                name: p.name.clone(),
                status: if p.is_installed(node.membership()) {
                    "installed"
                } else {
                    "pending"
                },
                endorsements: p.endorsements.iter().map(|e| e.member).collect(),
                needed: node.membership().quorum(),
            })
        };
        if package.endorsed_by(me) {
            return summary(&package).into_response();
        }
        let mut endorsed = package.clone();
        endorsed.endorse(&network, node.statement_signer());
        let value = match encode(&endorsed) {
            Ok(v) => v,
            Err(e) => return e.into_response(),
        };
        match wait_for(&node, key.clone(), value, None).await {
            Outcome::Committed(c) => {
                return match parse::<ContractPackage>(&c) {
                    Some(p) => summary(&p).into_response(),
                    None => ApiError(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "unreadable package".into(),
                    )
                    .into_response(),
                }
            }
            Outcome::Pending(response) => return response,
            // Another member's endorsement won this view: endorse the new value.
            Outcome::Failed(NodeError::Lost(_)) | Outcome::Failed(NodeError::Rejected(_)) => {
                continue
            }
            Outcome::Failed(e) => return ApiError::from(e).into_response(),
        }
    }
    ApiError(
        StatusCode::CONFLICT,
        "too many concurrent endorsements; try again".into(),
    )
    .into_response()
}

/// An asset as the API shows it.
#[derive(Serialize, ToSchema)]
pub(super) struct AssetView {
    /// Its id.
    id: String,
    /// Its register's key.
    key: String,
    /// The contract that governs it.
    contract: String,
    /// Its state in the contract's machine.
    #[schema(schema_with = super::schema::machine_state)]
    state: MachineState,
    /// View of the current value (what the next signature must name).
    #[schema(value_type = u64)]
    view: View,
    /// Round of the certificate this member holds.
    round: u32,
    /// The step that produced the current value.
    last: LastStep,
}

/// The transition that produced an asset's current value.
#[derive(Serialize, ToSchema)]
struct LastStep {
    /// The transition's name.
    transition: String,
    /// Who signed it.
    #[schema(schema_with = super::schema::user_key)]
    actor: UserPublicKey,
    /// Its input.
    #[schema(schema_with = super::schema::any_value)]
    input: Json_,
}

impl AssetView {
    fn new(id: &str, record: AssetRecord, certified: &Certified) -> AssetView {
        AssetView {
            id: id.to_owned(),
            key: format!("{ASSET_PREFIX}{id}"),
            contract: record.contract,
            state: record.state,
            view: certified.view,
            round: certified.round,
            last: LastStep {
                transition: record.transition,
                actor: record.actor,
                input: record.input,
            },
        }
    }
}

/// Query of the asset listing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AssetQuery {
    /// Only assets of this contract.
    contract: Option<String>,
}

/// Assets, optionally of one contract.
#[utoipa::path(get, path = "/v1/assets", operation_id = "listAssets", tag = "contracts",
    params(AssetQuery),
    responses(
        (status = 200, description = "Assets in id order", body = Vec<AssetView>),
        (status = 400, description = "The query does not parse", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn list_assets(
    State(node): State<NodeHandle>,
    Query(q): Query<AssetQuery>,
) -> Result<Json<Vec<AssetView>>, ApiError> {
    let found = node
        .list(ASSET_PREFIX.to_owned(), crate::runtime::MAX_LIST)
        .await?;
    Ok(Json(
        found
            .iter()
            .filter_map(|(k, c)| {
                let id = std::str::from_utf8(k.as_bytes())
                    .ok()?
                    .strip_prefix(ASSET_PREFIX)?;
                let record: AssetRecord = parse(c)?;
                let wanted = q
                    .contract
                    .as_deref()
                    .is_none_or(|name| name == record.contract);
                wanted.then(|| AssetView::new(id, record, c))
            })
            .collect(),
    ))
}

/// The asset's committed value and record, `None` if it does not exist yet.
async fn current_asset(
    node: &NodeHandle,
    id: &str,
) -> Result<(Key, Option<(Certified, AssetRecord)>), ApiError> {
    check_asset_id(id).map_err(asset_error)?;
    let key = key(ASSET_PREFIX, id)?;
    let current = match node.get(key.clone()).await? {
        Some(c) => {
            let record = parse::<AssetRecord>(&c).ok_or_else(|| {
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the committed asset does not parse".into(),
                )
            })?;
            Some((c, record))
        }
        None => None,
    };
    Ok((key, current))
}

/// One asset.
#[utoipa::path(get, path = "/v1/assets/{id}", operation_id = "getAsset", tag = "contracts",
    params(("id" = String, Path, description = "The asset id: 1 to 64 of a-z, 0-9, _ and -", pattern = "^[a-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The asset as committed", body = AssetView),
        (status = 400, description = "A malformed id", body = ErrorBody),
        (status = 404, description = "No such asset", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn get_asset(
    State(node): State<NodeHandle>,
    Path(id): Path<String>,
) -> Result<Json<AssetView>, ApiError> {
    match current_asset(&node, &id).await? {
        (_, Some((c, record))) => Ok(Json(AssetView::new(&id, record, &c))),
        (_, None) => Err(ApiError(StatusCode::NOT_FOUND, format!("no asset {id}"))),
    }
}

/// Body of a challenge request and, with `view` and `signature`, of a transition.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TransitionBody {
    /// Needed to create an asset; must match the asset's contract otherwise.
    contract: Option<String>,
    /// The transition's name.
    transition: String,
    /// Its input (any JSON the contract accepts).
    #[schema(schema_with = super::schema::any_value)]
    input: Json_,
    /// Who signs it.
    #[schema(schema_with = super::schema::user_key)]
    actor: UserPublicKey,
    /// The view the challenge named (absent to create the asset).
    #[serde(default)]
    #[schema(value_type = Option<u64>)]
    view: Option<View>,
    /// The actor's signature of the challenge (transitions only).
    #[serde(default)]
    signature: Option<String>,
}

/// The exact bytes an actor signs for a transition.
#[derive(Serialize, ToSchema)]
pub(super) struct AssetChallenge {
    /// The bytes, hex.
    challenge_hex: String,
    /// The same bytes as text, for people to read before they sign.
    challenge_text: String,
    /// The asset's current view (absent before it exists).
    #[schema(value_type = Option<u64>)]
    view: Option<View>,
    /// The contract that governs the transition.
    contract: String,
}

/// Resolves the contract and the step's starting point.
async fn prepare(
    node: &NodeHandle,
    id: &str,
    body: &TransitionBody,
) -> Result<(Key, Option<(Certified, AssetRecord)>, Arc<dyn Contract>), ApiError> {
    let (key, current) = current_asset(node, id).await?;
    let name = match (&current, &body.contract) {
        (Some((_, record)), Some(given)) if *given != record.contract => {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("asset {id} is governed by {}, not {given}", record.contract),
            ))
        }
        (Some((_, record)), _) => record.contract.clone(),
        (None, Some(given)) => given.clone(),
        (None, None) => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no asset {id} (give a contract to create it)"),
            ))
        }
    };
    let contract = node.apps().registry().get(&name).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no installed contract {name}"),
        )
    })?;
    Ok((key, current, contract))
}

/// The exact bytes the actor signs for a transition.
#[utoipa::path(post, path = "/v1/assets/{id}/challenge", operation_id = "assetChallenge", tag = "contracts",
    params(("id" = String, Path, description = "The asset id: 1 to 64 of a-z, 0-9, _ and -", pattern = "^[a-z0-9_-]{1,64}$")),
    request_body = TransitionBody,
    responses(
        (status = 200, description = "The bytes to sign", body = AssetChallenge),
        (status = 400, description = "A malformed id or body", body = ErrorBody),
        (status = 404, description = "No such asset (without a contract to create it) or contract", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as application/json", body = ErrorBody),
        (status = 422, description = "The asset is governed by another contract", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn challenge(
    State(node): State<NodeHandle>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TransitionBody>,
) -> Result<Json<AssetChallenge>, ApiError> {
    let (_, current, contract) = prepare(&node, &id, &body).await?;
    let view = current.as_ref().map(|(c, _)| c.view);
    let bytes = transition_challenge(
        &node.membership().network_id(),
        &id,
        view,
        contract.name(),
        &body.transition,
        &body.actor,
        &body.input,
    );
    Ok(Json(AssetChallenge {
        challenge_hex: hex::encode(&bytes),
        challenge_text: String::from_utf8_lossy(&bytes).into_owned(),
        view,
        contract: contract.name().to_owned(),
    }))
}

/// Apply a signed transition (every member re-runs the contract's guard and effect).
#[utoipa::path(post, path = "/v1/assets/{id}/transitions", operation_id = "applyTransition", tag = "contracts",
    params(("id" = String, Path, description = "The asset id: 1 to 64 of a-z, 0-9, _ and -", pattern = "^[a-z0-9_-]{1,64}$")),
    request_body = TransitionBody,
    responses(
        (status = 200, description = "The asset as committed", body = AssetView),
        (status = 202, description = "Not committed within 30 s; it may still commit", body = PendingBody),
        (status = 400, description = "A malformed id or body, or no signature", body = ErrorBody),
        (status = 403, description = "The signature is not the actor's over this step", body = ErrorBody),
        (status = 404, description = "No such asset (without a contract to create it) or contract", body = ErrorBody),
        (status = 409, description = "The asset changed since the challenge or another change won", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as application/json", body = ErrorBody),
        (status = 422, description = "The contract refuses the transition", body = ErrorBody),
        (status = 429, description = "Too many writes are waiting", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn transition(
    State(node): State<NodeHandle>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TransitionBody>,
) -> Response {
    match run_transition(node, id, body).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run_transition(
    node: NodeHandle,
    id: String,
    body: TransitionBody,
) -> Result<Response, Response> {
    let reply = |e: ApiError| e.into_response();
    let (key, current, contract) = prepare(&node, &id, &body).await.map_err(reply)?;
    let view = current.as_ref().map(|(c, _)| c.view);
    if body.view != view {
        return Err(reply(ApiError(
            StatusCode::CONFLICT,
            format!("the asset changed since the challenge (signed {:?}, now {view:?}); ask for a new challenge", body.view),
        )));
    }
    let signature = body.signature.clone().ok_or_else(|| {
        reply(ApiError(
            StatusCode::BAD_REQUEST,
            "signature missing".into(),
        ))
    })?;
    let network = node.membership().network_id();
    let challenge = transition_challenge(
        &network,
        &id,
        view,
        contract.name(),
        &body.transition,
        &body.actor,
        &body.input,
    );
    let valid = hex::decode(&signature)
        .ok()
        .is_some_and(|sig| verify_user_signature(&body.actor, &challenge, &sig).is_ok());
    if !valid {
        return Err(reply(asset_error(AssetError::BadSignature)));
    }
    let old = current.as_ref().map(|(c, record)| (record, c.view));
    let next = next_record(
        contract.as_ref(),
        &id,
        old,
        &body.transition,
        body.input,
        body.actor,
        signature,
    )
    .map_err(|e| reply(asset_error(e)))?;
    check_record(&network, contract.as_ref(), &id, old, &next)
        .map_err(|e| reply(asset_error(e)))?;
    let value = encode(&next).map_err(reply)?;
    Ok(match wait_for(&node, key, value, None).await {
        Outcome::Committed(c) => match parse::<AssetRecord>(&c) {
            Some(record) => Json(AssetView::new(&id, record, &c)).into_response(),
            None => reply(ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unreadable asset".into(),
            )),
        },
        Outcome::Pending(response) => response,
        Outcome::Failed(NodeError::Lost(_)) | Outcome::Failed(NodeError::Rejected(_)) => {
            reply(ApiError(
                StatusCode::CONFLICT,
                "another change to this asset was committed first".into(),
            ))
        }
        Outcome::Failed(e) => reply(ApiError::from(e)),
    })
}
