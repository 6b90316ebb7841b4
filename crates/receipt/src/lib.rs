//! Receipts: a committed value with the quorum certificate that decided it, and the offline check
//! of that certificate against the network's member keys.
//!
//! The check lives here, apart from the node, because it has to run in three places that must
//! agree byte for byte: `beaufort verify` on the command line, the node (which builds receipts and
//! computes the network id), and the customer's browser, where `beaufort-wasm` compiles this crate
//! to WebAssembly. It therefore depends only on the pure `beaufort-core` and `beaufort-crypto`:
//! no I/O, no clock, nothing that does not compile for `wasm32-unknown-unknown`.

use beaufort_core::state::Certified;
use beaufort_core::types::{Key, Value};
use beaufort_core::vote::vote_message;
use beaufort_crypto::hash::{hash, Digest, Domain};
use beaufort_crypto::membership::{MemberKey, Membership};
use beaufort_crypto::{PublicKey, QuorumCertificate};
use serde::Deserialize;

/// Largest receipt or network description accepted, in bytes: a value is at most a few KiB and a
/// network of [`beaufort_crypto::membership::MAX_MEMBERS`] members well under this, so anything
/// larger is refused before it is parsed.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Why a receipt or a network description was refused. Every message is meant for the person who
/// holds the receipt, so it says what is wrong in words.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// The document is larger than [`MAX_DOCUMENT_BYTES`].
    #[error("the {what} is {len} bytes, more than the {MAX_DOCUMENT_BYTES} accepted")]
    TooLarge {
        /// Which document.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// The document is not JSON of the expected shape.
    #[error("this is not a {what}: {error}")]
    Parse {
        /// Which document.
        what: &'static str,
        /// The parser's message.
        error: String,
    },
    /// The receipt names another network than the one it is checked against.
    #[error("the receipt is for network {claimed}, not {expected} ({name})")]
    WrongNetwork {
        /// The network id the receipt names.
        claimed: String,
        /// The id of the network checked against.
        expected: String,
        /// That network's name.
        name: String,
    },
    /// The receipt's fields contradict each other (an edited value, a bad key or hex).
    #[error("the receipt contradicts itself: {0}")]
    Inconsistent(String),
    /// The network description's member keys are unusable (a bad proof of possession, a repeat).
    #[error("the network description's member keys are invalid: {0}")]
    Members(String),
    /// The certificate is not a quorum of valid signatures of these members on this value.
    #[error("the certificate does not verify: {0}")]
    Certificate(String),
}

/// The network id: a hash of the consortium's name, the write-once rules and every member's BLS
/// key and peer id. Votes are signed over it, so a certificate of one network never verifies in
/// another; the node's configuration and the receipt check both derive it here.
pub fn network_id<'a>(
    name: &str,
    write_once_prefixes: &[String],
    members: impl IntoIterator<Item = (&'a PublicKey, &'a str)>,
) -> Digest {
    let mut parts: Vec<&[u8]> = vec![b"network", name.as_bytes()];
    for prefix in write_once_prefixes {
        parts.push(b"write-once");
        parts.push(prefix.as_bytes());
    }
    for (public_key, peer_id) in members {
        parts.push(public_key.as_bytes());
        parts.push(peer_id.as_bytes());
    }
    hash(Domain::NetworkId, &parts)
}

/// A value's bytes as text when they are UTF-8: the convenience copy an API value carries next to
/// its hex, which a receipt check requires to match exactly.
pub fn value_text(data: Option<&[u8]>) -> Option<String> {
    data.and_then(|d| std::str::from_utf8(d).ok().map(str::to_owned))
}

/// One member as the public network description (`GET /v1/network`, `network.json`) lists it;
/// fields a receipt check does not need (addresses, API URL) are ignored.
#[derive(Clone, Debug, Deserialize)]
pub struct NetworkMember {
    /// The BLS public key and proof of possession.
    #[serde(flatten)]
    pub key: MemberKey,
    /// The libp2p peer id (part of the network id).
    pub peer_id: String,
    /// A display name (a shop's name).
    #[serde(default)]
    pub name: Option<String>,
}

/// The part of the public network description a receipt is checked against.
#[derive(Clone, Debug, Deserialize)]
pub struct NetworkKeys {
    /// The consortium's name.
    pub name: String,
    /// Key prefixes written only once (part of the network id).
    #[serde(default)]
    pub write_once_prefixes: Vec<String>,
    /// The members, in index order.
    pub members: Vec<NetworkMember>,
}

impl NetworkKeys {
    /// Parses a network description (the JSON a node serves at `GET /v1/network`).
    pub fn from_json(text: &str) -> Result<NetworkKeys, ReceiptError> {
        parse(text, "network description")
    }

    /// The network id these members sign over.
    pub fn id(&self) -> Digest {
        network_id(
            &self.name,
            &self.write_once_prefixes,
            self.members
                .iter()
                .map(|m| (&m.key.public_key, m.peer_id.as_str())),
        )
    }

    /// Checks every proof of possession once and returns the checker receipts go through.
    pub fn checker(&self) -> Result<ReceiptChecker, ReceiptError> {
        let membership = Membership::new(self.id(), self.members.iter().map(|m| m.key).collect())
            .map_err(|e| ReceiptError::Members(e.to_string()))?;
        Ok(ReceiptChecker {
            name: self.name.clone(),
            membership,
        })
    }
}

/// The fields of a committed value as the API shows it (`GET /v1/kv/...`): the ones the
/// certificate covers (key, `value_hex` or `deleted`, view, round) and `value`, a text copy.
#[derive(Clone, Copy, Debug)]
pub struct ValueFields<'a> {
    /// The key.
    pub key: &'a str,
    /// The value as text, when it is text.
    pub value: Option<&'a str>,
    /// The value's bytes in hex (absent for a delete).
    pub value_hex: Option<&'a str>,
    /// The key was deleted.
    pub deleted: bool,
    /// The view the value was certified in.
    pub view: u64,
    /// The round it was certified in.
    pub round: u32,
    /// The certificate.
    pub certificate: &'a QuorumCertificate,
}

impl ValueFields<'_> {
    /// Rebuilds the certified value from the fields the certificate covers.
    ///
    /// `value` is only a convenience copy of `value_hex` as text, so it is refused unless it is
    /// exactly what the certified bytes decode to: otherwise a receipt with an edited `value`
    /// would pass verification while showing a value nobody certified.
    pub fn certified(&self) -> Result<(Key, Certified), ReceiptError> {
        let bad = ReceiptError::Inconsistent;
        let key = Key::new(self.key.as_bytes().to_vec()).map_err(|e| bad(e.to_string()))?;
        let value = match (self.value_hex, self.deleted) {
            (None, true) => Value::Tombstone,
            (Some(_), true) => return Err(bad("it is marked deleted but has value_hex".into())),
            (Some(h), false) => {
                Value::data(hex::decode(h).map_err(|e| bad(format!("value_hex: {e}")))?)
                    .map_err(|e| bad(e.to_string()))?
            }
            (None, false) => return Err(bad("value_hex missing".into())),
        };
        let derived = value_text(value.as_data());
        if derived.as_deref() != self.value {
            return Err(bad(format!(
                "its value {:?} is not what its value_hex holds ({:?})",
                self.value, derived
            )));
        }
        Ok((
            key,
            Certified {
                view: self.view,
                round: self.round,
                value,
                qc: self.certificate.clone(),
            },
        ))
    }
}

/// A receipt (`GET /v1/receipts/KEY`) or a value as `beaufort get` prints it (no network id).
#[derive(Clone, Debug, Deserialize)]
pub struct Receipt {
    /// The network id (hex) the receipt claims; checked when present.
    #[serde(default)]
    pub network_id: Option<String>,
    /// The key.
    pub key: String,
    /// The value as text, when it is text.
    pub value: Option<String>,
    /// The value's bytes in hex (absent for a delete).
    pub value_hex: Option<String>,
    /// The key was deleted.
    pub deleted: bool,
    /// The view the value was certified in.
    pub view: u64,
    /// The round it was certified in.
    pub round: u32,
    /// The quorum certificate (signer multiset and aggregate BLS signature).
    pub certificate: QuorumCertificate,
}

impl Receipt {
    /// Parses a receipt's JSON (at most [`MAX_DOCUMENT_BYTES`]).
    pub fn from_json(text: &str) -> Result<Receipt, ReceiptError> {
        parse(text, "receipt")
    }

    /// The fields the certificate covers.
    pub fn fields(&self) -> ValueFields<'_> {
        ValueFields {
            key: &self.key,
            value: self.value.as_deref(),
            value_hex: self.value_hex.as_deref(),
            deleted: self.deleted,
            view: self.view,
            round: self.round,
            certificate: &self.certificate,
        }
    }
}

/// Checks a certified value's certificate against a verified membership: the signers must be a
/// quorum of its members and the aggregate signature theirs on this key's (view, round, value).
pub fn verify_certified(
    membership: &Membership,
    key: &Key,
    certified: &Certified,
) -> Result<(), ReceiptError> {
    let message = vote_message(&membership.network_id(), key, &certified.subject());
    membership
        .verify_qc(&certified.qc, message.as_bytes())
        .map_err(|e| ReceiptError::Certificate(e.to_string()))
}

/// A network's verified membership, built once ([`NetworkKeys::checker`]) and used for every
/// receipt, since loading it checks every member's proof of possession.
#[derive(Clone)]
pub struct ReceiptChecker {
    name: String,
    membership: Membership,
}

impl ReceiptChecker {
    /// The network's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The members, checked.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Checks a receipt: its network id (when it names one), the consistency of its fields and
    /// its certificate. Only what this returns may be shown as the certified value.
    pub fn verify(&self, receipt: &Receipt) -> Result<Verified, ReceiptError> {
        let expected = self.membership.network_id().to_hex();
        if let Some(claimed) = &receipt.network_id {
            if *claimed != expected {
                return Err(ReceiptError::WrongNetwork {
                    claimed: claimed.clone(),
                    expected,
                    name: self.name.clone(),
                });
            }
        }
        let (key, certified) = receipt.fields().certified()?;
        verify_certified(&self.membership, &key, &certified)?;
        Ok(Verified {
            signers: certified.qc.signers.support_len(),
            members: self.membership.n(),
            key,
            certified,
        })
    }

    /// Parses and checks a receipt's JSON.
    pub fn verify_json(&self, text: &str) -> Result<Verified, ReceiptError> {
        self.verify(&Receipt::from_json(text)?)
    }
}

/// A value whose certificate verified: the only thing a verifier shows.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The key.
    pub key: Key,
    /// The certified value with its certificate.
    pub certified: Certified,
    /// How many members signed the certificate.
    pub signers: usize,
    /// How many members the network has.
    pub members: usize,
}

impl Verified {
    /// The key as text (lossy for a key that is not UTF-8).
    pub fn key_text(&self) -> String {
        String::from_utf8_lossy(self.key.as_bytes()).into_owned()
    }

    /// The value for people: quoted text, `0x`-hex for bytes that are not UTF-8, or `<deleted>`,
    /// always from the verified bytes, never from the receipt's text fields.
    pub fn shown(&self) -> String {
        match self.certified.value.as_data() {
            None => "<deleted>".to_owned(),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => format!("{text:?}"),
                Err(_) => format!("0x{}", hex::encode(bytes)),
            },
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &'static str,
) -> Result<T, ReceiptError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(ReceiptError::TooLarge {
            what,
            len: text.len(),
        });
    }
    serde_json::from_str(text).map_err(|e| ReceiptError::Parse {
        what,
        error: e.to_string(),
    })
}
