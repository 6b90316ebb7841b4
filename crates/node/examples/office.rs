//! A complete small consortium app on Beaufort: the members of a shared office book meeting
//! rooms and hand each other parcels, with nobody trusted to keep the books.
//!
//! - **Its own key prefix and rule**: `room/<room>/<slot>` holds who booked the slot; every
//!   member's [`booking_rule`] refuses a booking without a name and a second booking of a booked
//!   slot (a slot is freed by deleting it).
//! - **A contract**: `parcel`, a compiled-in state machine (`Start` → `sent` → `delivered`)
//!   whose assets live under `asset/<id>` like eShare's; only the recipient can confirm delivery,
//!   and every step is signed by a person's P-256 key.
//!
//! The same [`office`] applications must be given to every member ([`NodeHandle::start_with`]).
//! Run it with `cargo run -p beaufort-node --example office`: it starts a consortium of four
//! members in this process (real libp2p on loopback, stores in a temporary directory) and plays
//! the app through; `cargo test --examples` runs the same as a test.

use beaufort_contracts::asset::{next_record, transition_challenge, AssetRecord, ASSET_PREFIX};
use beaufort_contracts::{Contract, ContractError, NativeContract, State, TransitionContext};
use beaufort_core::hook::HookError;
use beaufort_core::state::Certified;
use beaufort_core::types::{Key, Value};
use beaufort_crypto::user::UserKeyPair;
use beaufort_node::config::{init_local, Config, InitOptions, DEFAULT_NEIGHBOURS};
use beaufort_node::{Apps, NodeError, NodeHandle, StartOptions};
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Prefix of the room bookings: `room/<room>/<slot>`.
const ROOMS: &str = "room/";

/// Longest name on a booking.
const MAX_NAME: usize = 64;

/// How long the example waits for the members to connect and for a value to spread.
const PATIENCE: Duration = Duration::from_secs(120);

/// The rule every member runs on `room/` keys before it votes: a booking names who booked
/// (1 to 64 bytes of text), and a booked slot is not booked again until it is freed (deleted).
pub fn booking_rule(_key: &Key, old: Option<&Certified>, new: &Value) -> Result<(), HookError> {
    let booked = old.is_some_and(|c| c.value.as_data().is_some());
    match new.as_data() {
        None => Ok(()),
        Some(_) if booked => Err(HookError::Rejected("the slot is already booked".into())),
        Some(who)
            if !who.is_empty() && who.len() <= MAX_NAME && std::str::from_utf8(who).is_ok() =>
        {
            Ok(())
        }
        Some(_) => Err(HookError::Rejected(format!(
            "a booking names who booked: 1 to {MAX_NAME} bytes of text"
        ))),
    }
}

fn send_guard(_: &State, input: &Json, _: &TransitionContext) -> Result<(), String> {
    match input.get("to").and_then(Json::as_str) {
        Some(to) if to.len() == 130 && to.starts_with("04") => Ok(()),
        _ => Err("input.to must be the recipient's public key (130 hex digits)".into()),
    }
}

fn send_effect(_: &State, input: &Json, ctx: &TransitionContext) -> Result<Json, String> {
    Ok(json!({ "from": ctx.actor, "to": input["to"] }))
}

fn deliver_guard(state: &State, _: &Json, ctx: &TransitionContext) -> Result<(), String> {
    if state.value["to"].as_str() == Some(ctx.actor.as_str()) {
        Ok(())
    } else {
        Err("only the recipient confirms delivery".into())
    }
}

fn deliver_effect(state: &State, _: &Json, _: &TransitionContext) -> Result<Json, String> {
    Ok(state.value.clone())
}

/// The parcel contract: sent to a recipient, delivered only when that recipient confirms.
pub fn parcel() -> Result<NativeContract, ContractError> {
    NativeContract::new("parcel")
        .transition("send", &["Start"], "sent", send_guard, send_effect)
        .transition(
            "deliver",
            &["sent"],
            "delivered",
            deliver_guard,
            deliver_effect,
        )
        .build()
}

/// The office's applications, as every member starts with them.
pub fn office() -> Result<Apps, ContractError> {
    Ok(Apps::new()
        .rule(ROOMS, booking_rule)
        .contract(Arc::new(parcel()?)))
}

/// A step of a parcel signed by `actor`, as its next record.
fn step(
    node: &NodeHandle,
    contract: &dyn Contract,
    old: Option<(&AssetRecord, u64)>,
    transition: &str,
    input: Json,
    actor: &UserKeyPair,
) -> Result<AssetRecord, Error> {
    let challenge = transition_challenge(
        &node.membership().network_id(),
        "parcel-1",
        old.map(|(_, view)| view),
        contract.name(),
        transition,
        &actor.public_key(),
        &input,
    );
    let signature = hex::encode(actor.sign(&challenge)?);
    Ok(next_record(
        contract,
        "parcel-1",
        old,
        transition,
        input,
        actor.public_key(),
        signature,
    )?)
}

/// Polls `node` until `key` holds a value.
async fn known(node: &NodeHandle, key: &Key) -> Result<Certified, Error> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(certified) = node.get(key.clone()).await? {
            return Ok(certified);
        }
        if Instant::now() > deadline {
            return Err(format!("{key} never reached the member").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `members` members with the office apps and plays bookings and a parcel through.
async fn run(members: usize) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let consortium = init_local(
        dir.path(),
        &InitOptions {
            members,
            name: "office".into(),
            p2p_base_port: 0,
            api_base_port: 0,
            write_once_prefixes: Vec::new(),
            neighbours: DEFAULT_NEIGHBOURS,
            aggregate_wait_ms: None,
        },
    )?;
    let mut nodes = Vec::new();
    for path in &consortium.config_files {
        let config = Config::load(path)?;
        nodes.push(NodeHandle::start_with(
            config,
            StartOptions::default(),
            office()?,
        )?);
    }
    let deadline = Instant::now() + PATIENCE;
    for node in &nodes {
        while node.status().await?.neighbours.len() + 1 < members {
            if Instant::now() > deadline {
                return Err("the members did not connect".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!("{members} members connected");

    // Rooms: member 0 books a slot; member 1, once it knows, cannot book it again.
    let slot = Key::new(b"room/blue/2026-12-07T09".to_vec())?;
    nodes[0]
        .set(slot.clone(), Value::data(b"ada".to_vec())?)
        .await?;
    known(&nodes[1], &slot).await?;
    match nodes[1]
        .set(slot.clone(), Value::data(b"grace".to_vec())?)
        .await
    {
        Err(NodeError::Rejected(why)) => println!("double booking refused: {why}"),
        Ok(_) => return Err("a double booking was committed".into()),
        Err(other) => return Err(other.into()),
    }
    match nodes[1]
        .set(Key::new(b"room/red/10".to_vec())?, Value::data(Vec::new())?)
        .await
    {
        Err(NodeError::Rejected(why)) => println!("nameless booking refused: {why}"),
        Ok(_) => return Err("a nameless booking was committed".into()),
        Err(other) => return Err(other.into()),
    }
    nodes[1].delete(slot.clone()).await?;
    nodes[1].set(slot, Value::data(b"grace".to_vec())?).await?;
    println!("the freed slot was booked again");

    // Parcels: Ada sends one to Grace through member 2; only Grace can confirm it, at member 3.
    let (ada, grace) = (UserKeyPair::generate()?, UserKeyPair::generate()?);
    let contract = nodes[2]
        .apps()
        .registry()
        .get("parcel")
        .ok_or("the parcel contract is not compiled in")?;
    let to = json!({ "to": hex::encode(grace.public_key().as_bytes()) });
    let sent = step(&nodes[2], contract.as_ref(), None, "send", to, &ada)?;
    let key = Key::new(format!("{ASSET_PREFIX}parcel-1").into_bytes())?;
    let certified = nodes[2]
        .set(key.clone(), Value::data(serde_json::to_vec(&sent)?)?)
        .await?;
    // Member 3 builds the next step on the value it holds: wait until it has heard of it.
    known(&nodes[3], &key).await?;
    let old = Some((&sent, certified.view));
    if step(
        &nodes[3],
        contract.as_ref(),
        old,
        "deliver",
        json!({}),
        &ada,
    )
    .is_ok()
    {
        return Err("the sender confirmed delivery".into());
    }
    let delivered = step(
        &nodes[3],
        contract.as_ref(),
        old,
        "deliver",
        json!({}),
        &grace,
    )?;
    nodes[3]
        .set(key, Value::data(serde_json::to_vec(&delivered)?)?)
        .await?;
    println!("parcel-1 is {}", delivered.state.name);
    Ok(())
}

fn main() -> Result<(), Error> {
    tokio::runtime::Runtime::new()?.block_on(run(4))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_office_app_runs_on_a_consortium_of_four() {
        super::main().expect("the office app");
    }
}
