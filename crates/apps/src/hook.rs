//! The validation hook every member of a network runs: it routes each key to its application's
//! rules by prefix.
//!
//! - `loyalty/…`: only `loyalty/ticket/<id>` keys, holding [`TicketRecord`]s ([`check_ticket`]);
//! - `asset/<id>`: [`AssetRecord`]s governed by a contract ([`check_record`]); a contract this
//!   member has not installed yet makes the hook answer [`HookError::Unavailable`];
//! - `contract/<name>`: [`ContractPackage`]s, growing only by endorsements;
//! - a key under the prefix of a rule an application registered ([`AppHook::with_rule`]): that
//!   rule decides;
//! - any other key: plain data, except that keys under a write-once prefix of the network's
//!   configuration may be written only while they have no value.
//!
//! Tickets, assets and contracts are never deleted: their history is what makes them
//! trustworthy, and a deleted contract would change the answer for assets that use it.

use crate::loyalty::{check_ticket, TicketRecord, TICKET_PREFIX};
use beaufort_contracts::asset::{check_asset_id, check_record, AssetRecord, ASSET_PREFIX};
use beaufort_contracts::install::{ContractPackage, CONTRACT_PREFIX};
use beaufort_contracts::{ContractError, Registry};
use beaufort_core::hook::{HookError, ValidationHook};
use beaufort_core::state::Certified;
use beaufort_core::types::{Key, Value};
use beaufort_crypto::membership::Membership;
use beaufort_crypto::user::UserPublicKey;
use serde::de::DeserializeOwned;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

/// Keys reserved for applications: plain writes there are refused.
pub const LOYALTY_PREFIX: &str = "loyalty/";

/// Key prefixes the built-in applications own; no registered rule may overlap them.
pub const RESERVED_PREFIXES: [&str; 3] = [LOYALTY_PREFIX, ASSET_PREFIX, CONTRACT_PREFIX];

/// Why an application's rule cannot be registered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The prefix is empty: a rule for every key would override the built-in applications.
    #[error("a rule needs a non-empty key prefix")]
    EmptyPrefix,
    /// The prefix overlaps one of the built-in applications' prefixes.
    #[error("the prefix {prefix:?} overlaps the reserved prefix {reserved:?}")]
    Reserved {
        /// The prefix asked for.
        prefix: String,
        /// The reserved prefix it overlaps.
        reserved: &'static str,
    },
    /// The prefix overlaps the prefix of a rule registered before.
    #[error("the prefix {prefix:?} overlaps the prefix {other:?} of another rule")]
    Overlap {
        /// The prefix asked for.
        prefix: String,
        /// The other rule's prefix.
        other: String,
    },
}

/// Whether one of two prefixes starts with the other (some key would fall under both).
fn overlap(a: &str, b: &str) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The hook of a Beaufort network's applications.
pub struct AppHook {
    membership: Arc<Membership>,
    registry: Arc<Registry>,
    write_once: Vec<Vec<u8>>,
    rules: Vec<(String, Arc<dyn ValidationHook>)>,
    owners: RwLock<OwnerIndex>,
}

/// Which tickets each customer key owns, kept from the committed values this member learns, so
/// a wallet's listing reads its tickets instead of scanning every ticket.
#[derive(Default)]
struct OwnerIndex {
    /// Ticket id → the view of the value indexed and its owner.
    owner_of: HashMap<String, (u64, UserPublicKey)>,
    /// Owner → its ticket ids.
    tickets: HashMap<UserPublicKey, BTreeSet<String>>,
}

impl OwnerIndex {
    fn learn(&mut self, view: u64, record: &TicketRecord) {
        if let Some((seen, old)) = self.owner_of.get(&record.id) {
            if *seen > view {
                return;
            }
            if let Some(ids) = self.tickets.get_mut(old) {
                ids.remove(&record.id);
                if ids.is_empty() {
                    self.tickets.remove(old);
                }
            }
        }
        self.owner_of
            .insert(record.id.clone(), (view, record.owner));
        self.tickets
            .entry(record.owner)
            .or_default()
            .insert(record.id.clone());
    }
}

impl AppHook {
    /// A hook checking signatures against `membership`, running contracts from `registry`, and
    /// enforcing the configured write-once prefixes.
    pub fn new(
        membership: Arc<Membership>,
        registry: Arc<Registry>,
        write_once_prefixes: &[String],
    ) -> AppHook {
        AppHook {
            membership,
            registry,
            write_once: write_once_prefixes
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
            rules: Vec::new(),
            owners: RwLock::new(OwnerIndex::default()),
        }
    }

    /// The ids of the tickets `owner` holds, in id order, as far as the committed values this
    /// member has learnt ([`AppHook::learn`]) tell.
    pub fn tickets_of(&self, owner: &UserPublicKey) -> Vec<String> {
        let index = self.owners.read().unwrap_or_else(PoisonError::into_inner);
        index
            .tickets
            .get(owner)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds an application's own rule: every write of a key starting with `prefix` must pass
    /// `rule` (which sees the value certified before, with its view, and the proposed one),
    /// instead of being plain data. Every member of the network must register the same rules,
    /// or members disagree on what is valid and writes under the prefix stall.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use beaufort_apps::AppHook;
    /// # use beaufort_contracts::Registry;
    /// # use beaufort_core::hook::HookError;
    /// # use beaufort_core::state::Certified;
    /// # use beaufort_core::types::{Key, Value};
    /// # use beaufort_crypto::{bls::SecretKey, hash::{hash, Domain}, membership::{MemberKey, Membership}};
    /// # let key = MemberKey::from_secret(&SecretKey::generate(&[7; 32]));
    /// # let membership = Arc::new(Membership::new(hash(Domain::NetworkId, &[b"doc"]), vec![key]).unwrap());
    /// use beaufort_core::hook::ValidationHook;
    ///
    /// // Room bookings: a value names who booked, and a booked slot is never re-booked.
    /// let bookings = |_: &Key, old: Option<&Certified>, new: &Value| match (old, new.as_data()) {
    ///     (Some(_), _) => Err(HookError::Rejected("the slot is booked".into())),
    ///     (None, Some(who)) if !who.is_empty() => Ok(()),
    ///     (None, _) => Err(HookError::Rejected("say who books".into())),
    /// };
    /// let hook = AppHook::new(membership, Arc::new(Registry::new()), &[])
    ///     .with_rule("room/", Arc::new(bookings))?;
    /// let slot = Key::new(b"room/blue/09:00".to_vec())?;
    /// assert!(hook.validate(&slot, None, &Value::data(b"ada".to_vec())?).is_ok());
    /// assert!(hook.validate(&slot, None, &Value::data(Vec::new())?).is_err());
    /// // The built-in applications' prefixes stay theirs.
    /// # let hook = AppHook::new(hook.membership().clone().into(), Arc::new(Registry::new()), &[]);
    /// assert!(hook.with_rule("loyalty/x/", Arc::new(bookings)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_rule(
        mut self,
        prefix: impl Into<String>,
        rule: Arc<dyn ValidationHook>,
    ) -> Result<AppHook, RuleError> {
        let prefix = prefix.into();
        if prefix.is_empty() {
            return Err(RuleError::EmptyPrefix);
        }
        if let Some(reserved) = RESERVED_PREFIXES.iter().find(|r| overlap(&prefix, r)) {
            return Err(RuleError::Reserved { prefix, reserved });
        }
        if let Some((other, _)) = self.rules.iter().find(|(p, _)| overlap(&prefix, p)) {
            let other = other.clone();
            return Err(RuleError::Overlap { prefix, other });
        }
        self.rules.push((prefix, rule));
        Ok(self)
    }
}

impl AppHook {
    /// Takes note of a committed value: a ticket's owner is indexed ([`AppHook::tickets_of`]);
    /// a contract package that reached a quorum of endorsements is compiled and installed, so
    /// assets under it can be validated. Called by the node for every decision and for every
    /// value restored from disk at start; returns the name of a contract it newly installed.
    pub fn learn(&self, key: &Key, certified: &Certified) -> Result<Option<String>, ContractError> {
        let text = std::str::from_utf8(key.as_bytes()).ok();
        if text.is_some_and(|k| k.starts_with(TICKET_PREFIX)) {
            if let Some(Ok(record)) = certified
                .value
                .as_data()
                .map(serde_json::from_slice::<TicketRecord>)
            {
                self.owners
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .learn(certified.view, &record);
            }
            return Ok(None);
        }
        let Some(name) = text.and_then(|k| k.strip_prefix(CONTRACT_PREFIX)) else {
            return Ok(None);
        };
        let Some(Ok(package)) = certified
            .value
            .as_data()
            .map(serde_json::from_slice::<ContractPackage>)
        else {
            return Ok(None);
        };
        if package.name != name
            || !package.is_installed(&self.membership)
            || self.registry.get(name).is_some()
        {
            return Ok(None);
        }
        // Fails only if this member reached its cap on installed contracts (the hook accepted
        // the package, so it compiled); assets under it then stay Unavailable here.
        self.registry.install(&package)?;
        Ok(Some(package.name))
    }

    /// The contracts this member can run.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The membership signatures are checked against.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
}

fn rejected(why: impl std::fmt::Display) -> HookError {
    HookError::Rejected(why.to_string())
}

/// Parses a record value (a tombstone is refused: application records are never deleted).
fn parse<T: DeserializeOwned>(value: &Value, what: &str) -> Result<T, HookError> {
    let bytes = value
        .as_data()
        .ok_or_else(|| rejected(format!("a {what} is never deleted")))?;
    serde_json::from_slice(bytes).map_err(|e| rejected(format!("not a {what} record: {e}")))
}

fn parse_old<T: DeserializeOwned>(
    old: Option<&Certified>,
    what: &str,
) -> Result<Option<(T, u64)>, HookError> {
    old.map(|c| parse::<T>(&c.value, what).map(|record| (record, c.view)))
        .transpose()
}

impl ValidationHook for AppHook {
    fn validate(&self, key: &Key, old: Option<&Certified>, new: &Value) -> Result<(), HookError> {
        let text = std::str::from_utf8(key.as_bytes()).unwrap_or("");
        if let Some(id) = text.strip_prefix(TICKET_PREFIX) {
            let old = parse_old::<TicketRecord>(old, "ticket")?;
            let new = parse::<TicketRecord>(new, "ticket")?;
            return check_ticket(
                &self.membership,
                id,
                old.as_ref().map(|(r, v)| (r, *v)),
                &new,
            )
            .map_err(rejected);
        }
        if text.starts_with(LOYALTY_PREFIX) {
            return Err(rejected(format!(
                "{LOYALTY_PREFIX} keys are reserved for loyalty tickets"
            )));
        }
        if let Some(id) = text.strip_prefix(ASSET_PREFIX) {
            check_asset_id(id).map_err(rejected)?;
            let old = parse_old::<AssetRecord>(old, "asset")?;
            let new = parse::<AssetRecord>(new, "asset")?;
            let contract = self.registry.get(&new.contract).ok_or_else(|| {
                HookError::Unavailable(format!("contract {} is not installed here", new.contract))
            })?;
            let network = self.membership.network_id();
            return check_record(
                &network,
                contract.as_ref(),
                id,
                old.as_ref().map(|(r, v)| (r, *v)),
                &new,
            )
            .map_err(rejected);
        }
        if let Some(name) = text.strip_prefix(CONTRACT_PREFIX) {
            let old = parse_old::<ContractPackage>(old, "contract")?;
            let new = parse::<ContractPackage>(new, "contract")?;
            return new
                .check_write(&self.membership, name, old.as_ref().map(|(p, _)| p))
                .map_err(rejected);
        }
        if let Some((_, rule)) = self
            .rules
            .iter()
            .find(|(prefix, _)| key.as_bytes().starts_with(prefix.as_bytes()))
        {
            return rule.validate(key, old, new);
        }
        let write_once = self
            .write_once
            .iter()
            .any(|p| key.as_bytes().starts_with(p));
        if write_once && old.is_some() {
            return Err(rejected(format!("{key} can be written only once")));
        }
        Ok(())
    }
}
