//! The class the page's script drives (`crates/node/web/member.js`). Errors reach the page as
//! `Error`s with the Rust message, so the person is told in words what is wrong.

use crate::member::{Member, Status};
use crate::records::{Pairs, Stored};
use crate::runtime::{swarm, Command, Page, Runtime};
use crate::setup::Loaded;
use futures::channel::{mpsc, oneshot};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

fn js_error(error: impl std::fmt::Display) -> JsError {
    JsError::new(&error.to_string())
}

/// The id of the network a description describes (hex): the page names its IndexedDB database
/// after it, so members of two networks never share storage.
#[wasm_bindgen(js_name = networkId)]
pub fn network_id(network_json: &str) -> Result<String, JsError> {
    if network_json.len() > crate::setup::MAX_NETWORK_BYTES {
        return Err(JsError::new("the network description is too large"));
    }
    beaufort_receipt::NetworkKeys::from_json(network_json)
        .map(|keys| keys.id().to_hex())
        .map_err(js_error)
}

/// Which member of which network a key file belongs to, so the page can open that member's
/// IndexedDB database before starting it: `{"member": i, "network_id": hex, "network": name}`.
#[wasm_bindgen]
pub fn identify(network_json: &str, bls_key_file: &str) -> Result<String, JsError> {
    let loaded = Loaded::new(network_json, bls_key_file.as_bytes()).map_err(js_error)?;
    let consortium = &loaded.consortium;
    Ok(serde_json::json!({
        "member": consortium.me,
        "members": consortium.n(),
        "network_id": consortium.network_id.to_hex(),
        "network": consortium.name,
    })
    .to_string())
}

/// `[[key bytes, value bytes], ...]` as the page read them from one object store.
fn pairs(array: &js_sys::Array) -> Result<Pairs, JsError> {
    array
        .iter()
        .map(|entry| {
            let entry = js_sys::Array::from(&entry);
            if entry.length() != 2 {
                return Err(JsError::new("a stored record is not a [key, value] pair"));
            }
            let bytes = |v: JsValue| js_sys::Uint8Array::new(&v).to_vec();
            Ok((bytes(entry.get(0)), bytes(entry.get(1))))
        })
        .collect()
}

/// A running browser member.
#[wasm_bindgen]
pub struct BrowserMember {
    commands: mpsc::UnboundedSender<Command>,
    status: Rc<RefCell<Status>>,
    dialable: usize,
}

#[wasm_bindgen]
impl BrowserMember {
    /// Starts the member: the network description (`GET /v1/network`), its BLS key file and
    /// libp2p key file (their text), what its IndexedDB held (`[[key, value], ...]` per object
    /// store), `persist(records)` (writes `[[store, key, value], ...]` in one transaction and
    /// returns a promise that resolves once it is durable) and `event(json)`.
    #[wasm_bindgen(constructor)]
    pub fn start(
        network_json: &str,
        bls_key_file: &str,
        p2p_key_file: &str,
        registers: js_sys::Array,
        evidence: js_sys::Array,
        persist: js_sys::Function,
        event: js_sys::Function,
    ) -> Result<BrowserMember, JsError> {
        let loaded = Loaded::new(network_json, bls_key_file.as_bytes()).map_err(js_error)?;
        let mut seed = crate::p2p_seed(p2p_key_file).map_err(js_error)?;
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut seed)
            .map_err(|e| js_error(format!("libp2p key file: {e}")))?;
        let consortium = loaded.consortium.clone();
        let listed = consortium
            .peers
            .get(usize::from(consortium.me))
            .map(|p| p.peer_id.clone());
        if listed.as_deref() != Some(keypair.public().to_peer_id().to_string().as_str()) {
            return Err(js_error(format!(
                "the libp2p key file is not member {}'s identity",
                consortium.me
            )));
        }
        let stored = Stored::decode(pairs(&registers)?, pairs(&evidence)?).map_err(js_error)?;
        let (replica, apps) = loaded.replica(stored);
        let member = Member::new(replica, apps, consortium.n());
        let status = Rc::new(RefCell::new(Status::default()));
        let swarm = swarm(keypair).map_err(js_error)?;
        let runtime = Runtime::new(
            member,
            swarm,
            consortium,
            Page { persist, event },
            status.clone(),
        );
        let dialable = runtime.dialable();
        let (commands, receiver) = mpsc::unbounded();
        wasm_bindgen_futures::spawn_local(runtime.run(receiver));
        Ok(BrowserMember {
            commands,
            status,
            dialable,
        })
    }

    /// How many members list a WebSocket address this page can dial.
    #[wasm_bindgen(getter)]
    pub fn dialable(&self) -> usize {
        self.dialable
    }

    /// The member's status as JSON (see `member::Status`).
    pub fn status(&self) -> String {
        serde_json::to_string(&*self.status.borrow()).unwrap_or_default()
    }

    /// Proposes `value` for `key` from this member; resolves with `{key, view, round, signers}`
    /// once decided, rejects if another value won or the member stopped.
    pub fn put(&self, key: String, value: String) -> js_sys::Promise {
        let (reply, outcome) = oneshot::channel();
        let sent = self.commands.unbounded_send(Command::Write {
            key: key.clone(),
            value: value.into_bytes(),
            reply,
        });
        wasm_bindgen_futures::future_to_promise(async move {
            if sent.is_err() {
                return Err(JsError::new("the member has stopped").into());
            }
            match outcome.await {
                Ok(Ok(certified)) => Ok(JsValue::from_str(
                    &serde_json::json!({
                        "key": key,
                        "view": certified.view,
                        "round": certified.round,
                        "signers": certified.qc.signers.members().map(|(i, _)| i).collect::<Vec<_>>(),
                    })
                    .to_string(),
                )),
                Ok(Err(reason)) => Err(JsError::new(&reason).into()),
                Err(_) => Err(JsError::new("the member has stopped").into()),
            }
        })
    }

    /// Stops the member: its connections close; what IndexedDB holds stays.
    pub fn stop(&self) {
        let _ = self.commands.unbounded_send(Command::Stop);
    }
}
