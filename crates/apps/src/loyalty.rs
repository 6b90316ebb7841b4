//! Loyalty points as tickets: a merchant (member) issues a ticket of N points to a customer's
//! P-256 key; the customer redeems it (wholly or partly) at any merchant, or transfers it to
//! another customer, each time by signing a challenge with their private key.
//!
//! One ticket is one register, `loyalty/ticket/<id>`, whose value is a [`TicketRecord`]. Every
//! member checks each proposed record ([`check_ticket`]) before voting: the issuer's BLS
//! statement proves who issued it and for how much, and the owner's signature over the exact
//! step (network, ticket, action, target, the ticket's current view) authorises a redemption or
//! transfer. Because the signature names the view of the value it spends, it is good for one
//! step: after any change to the ticket it no longer verifies, so of two concurrent redemptions
//! at two merchants consensus certifies one and the other can never be proposed again.

use beaufort_core::types::{MemberIndex, View};
use beaufort_crypto::bls::Signature;
use beaufort_crypto::hash::Digest;
use beaufort_crypto::membership::{Membership, Signer};
use beaufort_crypto::user::{verify_user_signature, UserPublicKey};
use serde::{Deserialize, Serialize};

/// Prefix of ticket keys.
pub const TICKET_PREFIX: &str = "loyalty/ticket/";

/// Most points on one ticket.
pub const MAX_POINTS: u64 = 1_000_000_000;

/// Length of a ticket id in hex digits (128 random bits).
pub const TICKET_ID_LEN: usize = 32;

/// Longest client-chosen request id of a redemption.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// How many of its most recent redemptions' request ids a ticket remembers: a retry of one of
/// them is answered with its outcome, and the id cannot be charged again.
pub const REMEMBERED_REQUESTS: usize = 16;

/// The value of `loyalty/ticket/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketRecord {
    /// The ticket's id (the key without the prefix).
    pub id: String,
    /// The merchant that issued it.
    pub issuer: MemberIndex,
    /// Who it was issued to.
    pub issued_to: UserPublicKey,
    /// Points at issue.
    pub issued_points: u64,
    /// The issuer's statement over [`issue_statement`].
    pub issuer_signature: Signature,
    /// Its current owner.
    pub owner: UserPublicKey,
    /// Points left; 0 means fully redeemed.
    pub points: u64,
    /// The step that produced this value.
    pub last: TicketAction,
    /// The most recent redemptions that named a request id, oldest first (at most
    /// [`REMEMBERED_REQUESTS`]): what makes a retried redemption idempotent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<RedeemedRequest>,
}

/// A redemption a ticket remembers by its request id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemedRequest {
    /// The client's request id.
    pub request_id: String,
    /// The view the owner signed (the ticket's view before the redemption).
    pub view: View,
    /// Where the points were redeemed.
    pub merchant: MemberIndex,
    /// Points redeemed.
    pub amount: u64,
}

/// A step in a ticket's life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum TicketAction {
    /// Issued by its issuer.
    Issue,
    /// `amount` points redeemed at `merchant`, signed by the owner.
    Redeem {
        /// The merchant where it was redeemed.
        merchant: MemberIndex,
        /// Points redeemed.
        amount: u64,
        /// The owner's signature over [`redeem_challenge`], hex.
        signature: String,
        /// The client's request id, signed with the rest, if the redemption named one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
    },
    /// Given by `from` to the new owner, signed by `from`.
    Transfer {
        /// The previous owner.
        from: UserPublicKey,
        /// Its signature over [`transfer_challenge`], hex.
        signature: String,
    },
}

impl TicketRecord {
    /// Whether points are left.
    pub fn is_live(&self) -> bool {
        self.points > 0
    }

    /// The remembered redemption with this request id, if any.
    pub fn request(&self, request_id: &str) -> Option<&RedeemedRequest> {
        self.requests.iter().find(|r| r.request_id == request_id)
    }
}

/// Why a ticket step is refused; each maps to a distinct HTTP status at the API.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// The ticket id, key or fields are malformed.
    #[error("malformed ticket: {0}")]
    Malformed(String),
    /// A signature (the owner's or the issuer's) does not verify.
    #[error("the signature does not verify: {0}")]
    BadSignature(&'static str),
    /// The ticket has no points left.
    #[error("the ticket is already fully redeemed")]
    AlreadyRedeemed,
    /// More points asked for than the ticket holds.
    #[error("the ticket holds {have} points, not {asked}")]
    NotEnoughPoints {
        /// Points left.
        have: u64,
        /// Points asked for.
        asked: u64,
    },
    /// The step is not a valid successor of the current value.
    #[error("not a valid step: {0}")]
    Invalid(String),
}

/// What the issuer signs.
pub fn issue_statement(network: &Digest, id: &str, owner: &UserPublicKey, points: u64) -> Vec<u8> {
    format!(
        "beaufort loyalty v1\nnetwork {}\nticket {id}\nissue {points} points to {}\n",
        network.to_hex(),
        hex::encode(owner.as_bytes())
    )
    .into_bytes()
}

/// What the owner signs to redeem `amount` points of the ticket at `merchant`, given the view of
/// the ticket's current value, and the client's request id if it names one (then a retry of the
/// same request is answered with its first outcome, never charged twice).
pub fn redeem_challenge(
    network: &Digest,
    id: &str,
    view: View,
    merchant: MemberIndex,
    amount: u64,
    request_id: Option<&str>,
) -> Vec<u8> {
    let mut text = format!(
        "beaufort loyalty v1\nnetwork {}\nticket {id}\nview {view}\nredeem {amount} points at merchant {merchant}\n",
        network.to_hex()
    );
    if let Some(request_id) = request_id {
        text.push_str(&format!("request {request_id}\n"));
    }
    text.into_bytes()
}

/// Checks a request id: 1 to [`MAX_REQUEST_ID_LEN`] characters of `A-Z a-z 0-9 _ -` (a UUID
/// fits), so it reads unambiguously inside the signed text.
pub fn check_request_id(request_id: &str) -> Result<(), TicketError> {
    let fits = !request_id.is_empty()
        && request_id.len() <= MAX_REQUEST_ID_LEN
        && request_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if fits {
        Ok(())
    } else {
        Err(TicketError::Malformed(format!(
            "a request id is 1 to {MAX_REQUEST_ID_LEN} of A-Z, a-z, 0-9, _ and -"
        )))
    }
}

/// What the owner signs to give the ticket to `to`, given the view of its current value.
pub fn transfer_challenge(network: &Digest, id: &str, view: View, to: &UserPublicKey) -> Vec<u8> {
    format!(
        "beaufort loyalty v1\nnetwork {}\nticket {id}\nview {view}\ntransfer to {}\n",
        network.to_hex(),
        hex::encode(to.as_bytes())
    )
    .into_bytes()
}

/// Checks a ticket id: [`TICKET_ID_LEN`] lowercase hex digits.
pub fn check_ticket_id(id: &str) -> Result<(), TicketError> {
    if id.len() == TICKET_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(TicketError::Malformed(format!(
            "ticket ids are {TICKET_ID_LEN} lowercase hex digits"
        )))
    }
}

/// A new ticket, signed by the issuing merchant.
pub fn issue(
    network: &Digest,
    signer: &Signer,
    id: &str,
    owner: UserPublicKey,
    points: u64,
) -> Result<TicketRecord, TicketError> {
    check_ticket_id(id)?;
    if points == 0 || points > MAX_POINTS {
        return Err(TicketError::Malformed(format!(
            "a ticket holds 1 to {MAX_POINTS} points"
        )));
    }
    Ok(TicketRecord {
        id: id.to_owned(),
        issuer: signer.index(),
        issued_to: owner,
        issued_points: points,
        issuer_signature: signer.sign_statement(&issue_statement(network, id, &owner, points)),
        owner,
        points,
        last: TicketAction::Issue,
        requests: Vec::new(),
    })
}

fn check_owner_signature(
    owner: &UserPublicKey,
    challenge: &[u8],
    signature: &str,
) -> Result<(), TicketError> {
    let bytes = hex::decode(signature).map_err(|_| TicketError::BadSignature("not hex"))?;
    verify_user_signature(owner, challenge, &bytes)
        .map_err(|_| TicketError::BadSignature("not the owner's signature of this step"))
}

/// A redemption as the owner signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redemption {
    /// The ticket's view the owner signed.
    pub view: View,
    /// Where the points are redeemed.
    pub merchant: MemberIndex,
    /// Points to redeem.
    pub amount: u64,
    /// The owner's signature over [`redeem_challenge`], hex.
    pub signature: String,
    /// The client's request id, if the redemption names one.
    pub request_id: Option<String>,
}

/// The ticket after redeeming `request.amount` points at `request.merchant`, if the owner's
/// signature over [`redeem_challenge`] is valid for the current value `old` (certified in
/// `request.view`) and the request id, if any, was not charged already.
pub fn redeem(
    network: &Digest,
    old: &TicketRecord,
    request: Redemption,
) -> Result<TicketRecord, TicketError> {
    let Redemption {
        view,
        merchant,
        amount,
        signature,
        request_id,
    } = request;
    if let Some(request_id) = &request_id {
        check_request_id(request_id)?;
        if old.request(request_id).is_some() {
            return Err(TicketError::Invalid(format!(
                "request {request_id} was already redeemed"
            )));
        }
    }
    if !old.is_live() {
        return Err(TicketError::AlreadyRedeemed);
    }
    check_owner_signature(
        &old.owner,
        &redeem_challenge(
            network,
            &old.id,
            view,
            merchant,
            amount,
            request_id.as_deref(),
        ),
        &signature,
    )?;
    if amount == 0 || amount > old.points {
        return Err(TicketError::NotEnoughPoints {
            have: old.points,
            asked: amount,
        });
    }
    let mut requests = old.requests.clone();
    if let Some(request_id) = &request_id {
        requests.push(RedeemedRequest {
            request_id: request_id.clone(),
            view,
            merchant,
            amount,
        });
        let excess = requests.len().saturating_sub(REMEMBERED_REQUESTS);
        requests.drain(..excess);
    }
    Ok(TicketRecord {
        points: old.points - amount,
        last: TicketAction::Redeem {
            merchant,
            amount,
            signature,
            request_id,
        },
        requests,
        ..old.clone()
    })
}

/// The ticket after its owner gave it to `to`, if the owner's `signature` over
/// [`transfer_challenge`] is valid for the current value `old` (certified in `view`).
pub fn transfer(
    network: &Digest,
    old: &TicketRecord,
    view: View,
    to: UserPublicKey,
    signature: String,
) -> Result<TicketRecord, TicketError> {
    if !old.is_live() {
        return Err(TicketError::AlreadyRedeemed);
    }
    check_owner_signature(
        &old.owner,
        &transfer_challenge(network, &old.id, view, &to),
        &signature,
    )?;
    if to == old.owner {
        return Err(TicketError::Invalid(
            "the ticket already belongs to that key".into(),
        ));
    }
    Ok(TicketRecord {
        owner: to,
        last: TicketAction::Transfer {
            from: old.owner,
            signature,
        },
        ..old.clone()
    })
}

/// Checks a proposed ticket value against the current one (`old` with its view, `None` for a new
/// ticket). Every member runs this before voting: it recomputes the step from the signed request
/// the record carries and requires the proposal to be exactly that.
pub fn check_ticket(
    membership: &Membership,
    key_id: &str,
    old: Option<(&TicketRecord, View)>,
    new: &TicketRecord,
) -> Result<(), TicketError> {
    let network = membership.network_id();
    if new.id != key_id {
        return Err(TicketError::Malformed(
            "the record's id is not its key's".into(),
        ));
    }
    check_ticket_id(key_id)?;
    let expected = match (old, &new.last) {
        (None, TicketAction::Issue) => {
            let statement = issue_statement(&network, &new.id, &new.issued_to, new.issued_points);
            if !membership.verify_statement(new.issuer, &statement, &new.issuer_signature) {
                return Err(TicketError::BadSignature("not the issuer's statement"));
            }
            if new.issued_points == 0 || new.issued_points > MAX_POINTS {
                return Err(TicketError::Malformed(format!(
                    "a ticket holds 1 to {MAX_POINTS} points"
                )));
            }
            TicketRecord {
                owner: new.issued_to,
                points: new.issued_points,
                requests: Vec::new(),
                ..new.clone()
            }
        }
        (None, _) => {
            return Err(TicketError::Invalid(
                "a ticket starts with its issue".into(),
            ))
        }
        (Some(_), TicketAction::Issue) => {
            return Err(TicketError::Invalid("a ticket is issued once".into()))
        }
        (
            Some((old, view)),
            TicketAction::Redeem {
                merchant,
                amount,
                signature,
                request_id,
            },
        ) => {
            if usize::from(*merchant) >= membership.n() {
                return Err(TicketError::Invalid(format!("no merchant {merchant}")));
            }
            redeem(
                &network,
                old,
                Redemption {
                    view,
                    merchant: *merchant,
                    amount: *amount,
                    signature: signature.clone(),
                    request_id: request_id.clone(),
                },
            )?
        }
        (Some((old, view)), TicketAction::Transfer { from, signature }) => {
            if *from != old.owner {
                return Err(TicketError::Invalid(
                    "only the owner can transfer the ticket".into(),
                ));
            }
            transfer(&network, old, view, new.owner, signature.clone())?
        }
    };
    if expected == *new {
        Ok(())
    } else {
        Err(TicketError::Invalid(
            "the record is not what its step produces".into(),
        ))
    }
}
