//! What one Beaufort member says to another over a libp2p connection, independent of how the
//! connection was made: the `/beaufort/sync/2` request-response protocol (a request is a batch of
//! encoded sync messages, [`frame`]; the response an empty acknowledgement, [`codec`]), the
//! `/beaufort/peers/1` peer exchange ([`peers`]) and the bounded FIFO of one outgoing link
//! ([`queue`]).
//!
//! It is its own crate because two runtimes speak it: the native network (`beaufort-net`, TCP,
//! QUIC and WebSocket listeners) and the browser member (`beaufort-browser`, WebSocket dialling
//! from WebAssembly). Nothing here touches a socket, a clock or an executor, so it builds for
//! `wasm32-unknown-unknown` with only libp2p's request-response machinery.

use libp2p::StreamProtocol;

pub mod codec;
pub mod frame;
pub mod peers;
pub mod queue;

/// The sync protocol's name on the wire. Version 2: a request is a batch of messages (version 1
/// carried one), so members of either version refuse each other's requests instead of misreading
/// them.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/beaufort/sync/2");
