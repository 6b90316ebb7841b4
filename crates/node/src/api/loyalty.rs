//! Loyalty routes: merchants issue tickets, customers redeem and transfer them by signing the
//! challenge this node hands out. The member's own checks here give precise answers (403 for a
//! signature, 409 for a ticket already spent or changed, 404 for an unknown ticket); the same
//! rules run again in every member's validation hook before anyone votes.

use super::kv::{wait_for, Outcome, PendingBody};
use super::{ApiError, ApiJson, ErrorBody};
use crate::{NodeError, NodeHandle};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use beaufort_apps::loyalty::{
    self, check_request_id, check_ticket_id, redeem_challenge, transfer_challenge, Redemption,
    TicketAction, TicketError, TicketRecord, TICKET_PREFIX,
};
use beaufort_core::state::Certified;
use beaufort_core::types::{Key, MemberIndex, Value, View};
use beaufort_crypto::user::UserPublicKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A ticket as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TicketView {
    /// Its id.
    pub id: String,
    /// Its register's key.
    pub key: String,
    /// The issuing merchant.
    #[schema(value_type = u16)]
    pub issuer: MemberIndex,
    /// Points left.
    pub points: u64,
    /// Points at issue.
    pub issued_points: u64,
    /// Current owner.
    #[schema(schema_with = super::schema::user_key)]
    pub owner: UserPublicKey,
    /// `live` while points are left, else `redeemed`.
    #[schema(pattern = "^(live|redeemed)$")]
    pub status: String,
    /// View of the current value (what the next signature must name).
    #[schema(value_type = u64)]
    pub view: View,
    /// Round of the certificate this member holds. Under contention one value can gather a
    /// COMMIT quorum in two rounds of its view, so members may differ here for the same ticket.
    pub round: u32,
    /// The step that produced the current value.
    #[schema(schema_with = super::schema::ticket_action)]
    pub last: TicketAction,
}

impl TicketView {
    fn new(record: TicketRecord, certified: &Certified) -> TicketView {
        TicketView {
            key: format!("{TICKET_PREFIX}{}", record.id),
            status: if record.is_live() { "live" } else { "redeemed" }.to_owned(),
            id: record.id,
            issuer: record.issuer,
            points: record.points,
            issued_points: record.issued_points,
            owner: record.owner,
            view: certified.view,
            round: certified.round,
            last: record.last,
        }
    }
}

fn ticket_key(id: &str) -> Result<Key, ApiError> {
    check_ticket_id(id).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    Key::new(format!("{TICKET_PREFIX}{id}").into_bytes())
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))
}

fn parse_record(certified: &Certified) -> Result<TicketRecord, ApiError> {
    certified
        .value
        .as_data()
        .and_then(|bytes| serde_json::from_slice(bytes).ok())
        .ok_or_else(|| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the committed ticket does not parse".into(),
            )
        })
}

/// The ticket's committed value and record, or 404.
async fn current(node: &NodeHandle, id: &str) -> Result<(Key, Certified, TicketRecord), ApiError> {
    let key = ticket_key(id)?;
    let certified = node
        .get(key.clone())
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no ticket {id}")))?;
    let record = parse_record(&certified)?;
    Ok((key, certified, record))
}

fn ticket_error(error: TicketError) -> ApiError {
    let status = match error {
        TicketError::BadSignature(_) => StatusCode::FORBIDDEN,
        TicketError::AlreadyRedeemed => StatusCode::CONFLICT,
        TicketError::Malformed(_) => StatusCode::BAD_REQUEST,
        TicketError::NotEnoughPoints { .. } | TicketError::Invalid(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    };
    ApiError(status, error.to_string())
}

/// Proposes the ticket's next record and answers with the committed ticket.
async fn commit(node: NodeHandle, key: Key, record: &TicketRecord) -> Response {
    let bytes = match serde_json::to_vec(record) {
        Ok(b) => b,
        Err(e) => {
            return ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    };
    let value = match Value::data(bytes) {
        Ok(v) => v,
        Err(e) => return ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response(),
    };
    match wait_for(&node, key.clone(), value, None).await {
        Outcome::Committed(certified) => match parse_record(&certified) {
            Ok(record) => Json(TicketView::new(record, &certified)).into_response(),
            Err(e) => e.into_response(),
        },
        Outcome::Pending(response) => response,
        // The hook refusing our own proposal means the ticket moved on between our read and the
        // proposal; losing means another step on the same view won: both are conflicts.
        Outcome::Failed(NodeError::Lost(_)) | Outcome::Failed(NodeError::Rejected(_)) => ApiError(
            StatusCode::CONFLICT,
            "another change to this ticket was committed first (already redeemed or transferred)"
                .into(),
        )
        .into_response(),
        Outcome::Failed(e) => ApiError::from(e).into_response(),
    }
}

/// Body of an issue.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct IssueBody {
    /// The customer's key.
    #[schema(schema_with = super::schema::user_key)]
    owner: UserPublicKey,
    /// Points on the ticket.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    points: u64,
}

/// Issue a ticket of points to a customer (operator).
#[utoipa::path(post, path = "/v1/loyalty/tickets", operation_id = "issueTicket", tag = "loyalty",
    security(("bearer" = [])),
    request_body = IssueBody,
    responses(
        (status = 200, description = "The ticket as committed", body = TicketView),
        (status = 202, description = "Not committed within 30 s; it may still commit", body = PendingBody),
        (status = 400, description = "The body is not the documented JSON (e.g. 0 points)", body = ErrorBody),
        (status = 401, description = "No or a wrong operator token", body = ErrorBody),
        (status = 409, description = "Another value was committed instead", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as application/json", body = ErrorBody),
        (status = 429, description = "Too many writes are waiting", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn issue(
    State(node): State<NodeHandle>,
    ApiJson(body): ApiJson<IssueBody>,
) -> Response {
    let mut id = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut id);
    let id = hex::encode(id);
    let network = node.membership().network_id();
    let record = match loyalty::issue(
        &network,
        node.statement_signer(),
        &id,
        body.owner,
        body.points,
    ) {
        Ok(r) => r,
        Err(e) => return ticket_error(e).into_response(),
    };
    match ticket_key(&id) {
        Ok(key) => commit(node, key, &record).await,
        Err(e) => e.into_response(),
    }
}

/// Query of the owner listing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct OwnerQuery {
    /// The customer's key.
    #[param(schema_with = super::schema::user_key)]
    owner: UserPublicKey,
}

/// An owner's tickets and balance.
#[derive(Serialize, ToSchema)]
pub(super) struct Wallet {
    /// The customer's key.
    #[schema(schema_with = super::schema::user_key)]
    owner: UserPublicKey,
    /// Points left on the live tickets.
    balance: u64,
    /// The tickets the key owns, live and redeemed.
    tickets: Vec<TicketView>,
}

/// A customer's tickets and balance (the sum of the live tickets' points).
#[utoipa::path(get, path = "/v1/loyalty/tickets", operation_id = "listTickets", tag = "loyalty",
    params(OwnerQuery),
    responses(
        (status = 200, description = "The wallet", body = Wallet),
        (status = 400, description = "owner is missing or not a P-256 key", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn list(
    State(node): State<NodeHandle>,
    Query(q): Query<OwnerQuery>,
) -> Result<Json<Wallet>, ApiError> {
    // The owner index names the candidates; each is read and checked, so a ticket that moved
    // on since it was indexed is never shown under its former owner.
    let mut tickets = Vec::new();
    for id in node.apps().tickets_of(&q.owner) {
        let Ok(key) = ticket_key(&id) else { continue };
        let Some(certified) = node.get(key).await? else {
            continue;
        };
        if let Ok(record) = parse_record(&certified) {
            if record.owner == q.owner {
                tickets.push(TicketView::new(record, &certified));
            }
        }
    }
    let balance = tickets
        .iter()
        .filter(|t| t.status == "live")
        .map(|t| t.points)
        .sum();
    Ok(Json(Wallet {
        owner: q.owner,
        balance,
        tickets,
    }))
}

/// One ticket.
#[utoipa::path(get, path = "/v1/loyalty/tickets/{id}", operation_id = "getTicket", tag = "loyalty",
    params(("id" = String, Path, description = "The ticket id: 32 lowercase hex digits", pattern = "^[0-9a-f]{32}$")),
    responses(
        (status = 200, description = "The ticket as committed", body = TicketView),
        (status = 400, description = "The id is not 32 lowercase hex digits", body = ErrorBody),
        (status = 404, description = "No such ticket", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn get(
    State(node): State<NodeHandle>,
    Path(id): Path<String>,
) -> Result<Json<TicketView>, ApiError> {
    let (_, certified, record) = current(&node, &id).await?;
    Ok(Json(TicketView::new(record, &certified)))
}

/// Query of a challenge.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ChallengeQuery {
    /// `redeem` (at this member) or `transfer`.
    #[param(pattern = "^(redeem|transfer)$")]
    action: String,
    /// redeem: points (default all).
    #[param(minimum = 1)]
    amount: Option<u64>,
    /// transfer: the new owner.
    #[param(schema_with = super::schema::user_key)]
    to: Option<UserPublicKey>,
    /// redeem: the client's request id (1 to 64 of A-Z a-z 0-9 _ -), signed with the rest, so
    /// a retry of the redemption is answered with its first outcome and never charged twice.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    request_id: Option<String>,
}

/// The exact bytes to sign, with what they commit to.
#[derive(Serialize, ToSchema)]
pub(super) struct Challenge {
    /// The ticket id.
    ticket: String,
    /// `redeem` or `transfer`.
    action: String,
    /// The ticket's current view (the signature is good for this view only).
    #[schema(value_type = u64)]
    view: View,
    /// redeem: the member the points are redeemed at.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u16>)]
    merchant: Option<MemberIndex>,
    /// redeem: the points.
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<u64>,
    /// transfer: the new owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = super::schema::user_key)]
    to: Option<UserPublicKey>,
    /// redeem: the request id, when the query named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    /// The bytes, hex (they are also readable text).
    challenge_hex: String,
    /// The same bytes as text, for people to read before they sign.
    challenge_text: String,
}

/// The exact bytes the owner signs to redeem (at this member) or transfer the ticket at its
/// current view.
#[utoipa::path(get, path = "/v1/loyalty/tickets/{id}/challenge", operation_id = "ticketChallenge", tag = "loyalty",
    params(("id" = String, Path, description = "The ticket id: 32 lowercase hex digits", pattern = "^[0-9a-f]{32}$"), ChallengeQuery),
    responses(
        (status = 200, description = "The bytes to sign", body = Challenge),
        (status = 400, description = "A malformed id or query (an unknown action, amount 0, a transfer without to)", body = ErrorBody),
        (status = 404, description = "No such ticket", body = ErrorBody),
        (status = 409, description = "The ticket is already fully redeemed, or the request id was already redeemed (retry the signed redemption for its outcome)", body = ErrorBody),
        (status = 422, description = "More points asked for than the ticket holds", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn challenge(
    State(node): State<NodeHandle>,
    Path(id): Path<String>,
    Query(q): Query<ChallengeQuery>,
) -> Result<Json<Challenge>, ApiError> {
    let (_, certified, record) = current(&node, &id).await?;
    if !record.is_live() {
        return Err(ticket_error(TicketError::AlreadyRedeemed));
    }
    let network = node.membership().network_id();
    let me = node.config().node.index;
    let view = certified.view;
    let (bytes, merchant, amount, to) = match q.action.as_str() {
        "redeem" => {
            let amount = q.amount.unwrap_or(record.points);
            if amount == 0 {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "amount must be at least 1".into(),
                ));
            }
            if amount > record.points {
                return Err(ticket_error(TicketError::NotEnoughPoints {
                    have: record.points,
                    asked: amount,
                }));
            }
            if let Some(request_id) = &q.request_id {
                check_request_id(request_id).map_err(ticket_error)?;
                if record.request(request_id).is_some() {
                    return Err(ApiError(
                        StatusCode::CONFLICT,
                        format!("request {request_id} was already redeemed; retry the signed redemption to get its outcome"),
                    ));
                }
            }
            (
                redeem_challenge(&network, &id, view, me, amount, q.request_id.as_deref()),
                Some(me),
                Some(amount),
                None,
            )
        }
        "transfer" => {
            let to = q.to.ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    "a transfer needs to=<public key>".into(),
                )
            })?;
            (
                transfer_challenge(&network, &id, view, &to),
                None,
                None,
                Some(to),
            )
        }
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("action must be redeem or transfer, not {other:?}"),
            ))
        }
    };
    Ok(Json(Challenge {
        ticket: id,
        action: q.action,
        view,
        merchant,
        amount,
        to,
        request_id: q.request_id.filter(|_| merchant.is_some()),
        challenge_hex: hex::encode(&bytes),
        challenge_text: String::from_utf8_lossy(&bytes).into_owned(),
    }))
}

/// Body of a redemption.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RedeemBody {
    /// The view the challenge named.
    #[schema(value_type = u64)]
    view: View,
    /// The points the challenge named.
    #[schema(minimum = 1)]
    amount: u64,
    /// The owner's signature of the challenge.
    #[schema(schema_with = super::schema::user_signature)]
    signature: String,
    /// The member the challenge named (default: this one). A retry of a redemption at another
    /// member names the member of the first attempt, so it is the same request.
    #[serde(default)]
    #[schema(value_type = Option<u16>)]
    merchant: Option<MemberIndex>,
    /// The request id the challenge named, if any.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    request_id: Option<String>,
}

/// Header set on the answer to a redemption retried with a request id that was already
/// redeemed: the answer is the ticket after that redemption, which is not charged again.
const REPLAYED: &str = "beaufort-replayed";

/// The outcome of a redemption whose request id the ticket remembers: the ticket as it is (the
/// redemption was charged once), or 409 if the id was used for a different redemption.
fn replayed(
    request: &Redemption,
    record: &TicketRecord,
    certified: &Certified,
) -> Result<Option<Response>, ApiError> {
    let Some(request_id) = &request.request_id else {
        return Ok(None);
    };
    let Some(done) = record.request(request_id) else {
        return Ok(None);
    };
    if (done.view, done.merchant, done.amount) != (request.view, request.merchant, request.amount) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("request {request_id} was already used for a different redemption"),
        ));
    }
    let mut answer = Json(TicketView::new(record.clone(), certified)).into_response();
    answer
        .headers_mut()
        .insert(REPLAYED, axum::http::HeaderValue::from_static("true"));
    Ok(Some(answer))
}

/// The ticket about to be spent, if the signed view is its current one: a signature over an older
/// view is a request for a ticket that has changed since (409), not a forgery.
async fn spendable(
    node: &NodeHandle,
    id: &str,
    signed: View,
) -> Result<(Key, View, TicketRecord), ApiError> {
    let (key, certified, record) = current(node, id).await?;
    check_spendable(&record, &certified, signed)?;
    Ok((key, certified.view, record))
}

/// Whether the ticket can be spent by a step signed for view `signed`.
fn check_spendable(
    record: &TicketRecord,
    certified: &Certified,
    signed: View,
) -> Result<(), ApiError> {
    if !record.is_live() {
        return Err(ticket_error(TicketError::AlreadyRedeemed));
    }
    if signed != certified.view {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "the ticket changed since the challenge (signed view {signed}, now {}); ask for a new challenge",
                certified.view
            ),
        ));
    }
    Ok(())
}

/// Redeem points of the ticket at this member, signed by its owner.
#[utoipa::path(post, path = "/v1/loyalty/tickets/{id}/redeem", operation_id = "redeemTicket", tag = "loyalty",
    params(("id" = String, Path, description = "The ticket id: 32 lowercase hex digits", pattern = "^[0-9a-f]{32}$")),
    request_body = RedeemBody,
    responses(
        (status = 200, description = "The ticket as committed. A retry of a redemption whose request id was already redeemed (here or at another member) answers the ticket as it is now, charged once, with the header beaufort-replayed: true", body = TicketView,
            headers(("beaufort-replayed" = String, description = "true on the answer to a retry"))),
        (status = 202, description = "Not committed within 30 s; it may still commit (retry with the same body: it is never charged twice when it names a request id)", body = PendingBody),
        (status = 400, description = "A malformed id or body (e.g. amount 0, a bad request id, no such merchant)", body = ErrorBody),
        (status = 403, description = "The signature is not the owner's over this step", body = ErrorBody),
        (status = 404, description = "No such ticket", body = ErrorBody),
        (status = 409, description = "The ticket changed since the challenge or another change won, or the request id was used for a different redemption", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as application/json", body = ErrorBody),
        (status = 422, description = "More points than the ticket holds", body = ErrorBody),
        (status = 429, description = "Too many writes are waiting", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn redeem(
    State(node): State<NodeHandle>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RedeemBody>,
) -> Response {
    match redeem_once(node, id, body).await {
        Ok(answer) => answer,
        Err(e) => e.into_response(),
    }
}

/// A redemption, or the outcome of the first attempt of one retried with its request id.
async fn redeem_once(node: NodeHandle, id: String, body: RedeemBody) -> Result<Response, ApiError> {
    if body.amount == 0 {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "amount must be at least 1".into(),
        ));
    }
    if let Some(request_id) = &body.request_id {
        check_request_id(request_id).map_err(ticket_error)?;
    }
    let merchant = body.merchant.unwrap_or(node.config().node.index);
    if usize::from(merchant) >= node.membership().n() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("no merchant {merchant}"),
        ));
    }
    let request = Redemption {
        view: body.view,
        merchant,
        amount: body.amount,
        signature: body.signature,
        request_id: body.request_id,
    };
    let (key, certified, record) = current(&node, &id).await?;
    if let Some(answer) = replayed(&request, &record, &certified)? {
        return Ok(answer);
    }
    check_spendable(&record, &certified, request.view)?;
    let network = node.membership().network_id();
    let next = loyalty::redeem(&network, &record, request.clone()).map_err(ticket_error)?;
    let answer = commit(node.clone(), key, &next).await;
    if answer.status() == StatusCode::CONFLICT && request.request_id.is_some() {
        // The same request may have been committed through another member meanwhile (a retry
        // that raced its first attempt): then its outcome is the answer.
        let (_, certified, record) = current(&node, &id).await?;
        if let Some(replay) = replayed(&request, &record, &certified)? {
            return Ok(replay);
        }
    }
    Ok(answer)
}

/// Body of a transfer.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TransferBody {
    /// The view the challenge named.
    #[schema(value_type = u64)]
    view: View,
    /// The new owner.
    #[schema(schema_with = super::schema::user_key)]
    to: UserPublicKey,
    /// The owner's signature of the challenge.
    #[schema(schema_with = super::schema::user_signature)]
    signature: String,
}

/// Give the ticket to another key, signed by its owner.
#[utoipa::path(post, path = "/v1/loyalty/tickets/{id}/transfer", operation_id = "transferTicket", tag = "loyalty",
    params(("id" = String, Path, description = "The ticket id: 32 lowercase hex digits", pattern = "^[0-9a-f]{32}$")),
    request_body = TransferBody,
    responses(
        (status = 200, description = "The ticket as committed", body = TicketView),
        (status = 202, description = "Not committed within 30 s; it may still commit", body = PendingBody),
        (status = 400, description = "A malformed id or body (e.g. amount 0)", body = ErrorBody),
        (status = 403, description = "The signature is not the owner's over this step", body = ErrorBody),
        (status = 404, description = "No such ticket", body = ErrorBody),
        (status = 409, description = "The ticket changed since the challenge or another change won", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not declared as application/json", body = ErrorBody),
        (status = 422, description = "The ticket already belongs to that key", body = ErrorBody),
        (status = 429, description = "Too many writes are waiting", body = ErrorBody),
        (status = 503, description = "The runtime has stopped", body = ErrorBody)))]
pub(super) async fn transfer(
    State(node): State<NodeHandle>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TransferBody>,
) -> Response {
    let (key, view, record) = match spendable(&node, &id, body.view).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let network = node.membership().network_id();
    match loyalty::transfer(&network, &record, view, body.to, body.signature) {
        Ok(next) => commit(node, key, &next).await,
        Err(e) => ticket_error(e).into_response(),
    }
}
