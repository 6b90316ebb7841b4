//! A Beaufort member in the browser: the paper's thesis that the replicas are the participants'
//! own browsers. The page runs the same `beaufort-core` replica, BLS crypto and applications'
//! hook as a native member, compiled to WebAssembly; this crate is only the thin runtime around
//! it, as `beaufort-node` is for a process and `beaufort-sim` for the simulator.
//!
//! - [`setup`]: the network description and the member's key files, checked (the index is the
//!   member whose key the file holds).
//! - [`records`]: what IndexedDB keeps (states and proofs, postcard, as redb keeps them natively).
//! - [`member`]: the core's step contract carried out in order: early messages, the durable
//!   write, then the rest; own writes and the status the page shows.
//! - `runtime` and the bindings (WebAssembly only): libp2p over WebSocket to the members'
//!   `/ws` listeners with the native protocols (`beaufort-link`), timers from the page, and the
//!   `BrowserMember` class the page's script drives (`crates/node/web/member.js`).
//!
//! The page, not this module, talks to IndexedDB: it reads every record before starting the
//! member, and writes the records of each step in one transaction with strict durability,
//! resolving the promise the runtime awaits only when that transaction completed.

pub mod member;
pub mod records;
pub mod setup;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod bindings;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod runtime;

/// Reads a libp2p identity key file as `beaufort init` writes it: the hex of a 32-byte Ed25519
/// seed (surrounding whitespace ignored).
pub fn p2p_seed(text: &str) -> Result<[u8; 32], setup::SetupError> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| {
        setup::SetupError::Identity("not the 64 hex digits of an Ed25519 seed".into())
    })?;
    Ok(seed)
}
