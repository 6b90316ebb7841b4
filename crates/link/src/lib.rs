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

use libp2p::{request_response, StreamProtocol};
use std::time::Duration;

pub mod codec;
pub mod frame;
pub mod peers;
pub mod queue;

/// The sync protocol's name on the wire. Version 2: a request is a batch of messages (version 1
/// carried one), so members of either version refuse each other's requests instead of misreading
/// them.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/beaufort/sync/2");

/// How long a request may take, acknowledgement included. A link waits for it before sending the
/// next batch, so a lost connection stalls the link at most this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Most concurrent sync substreams per connection. An honest peer has at most one request in
/// flight to us and we one to it; the bound caps what a hostile peer can make us buffer.
pub const MAX_SYNC_STREAMS: usize = 8;

/// The sync protocol as every member runs it, native or in a browser.
pub fn sync_behaviour() -> request_response::Behaviour<codec::SyncCodec> {
    request_response::Behaviour::with_codec(
        codec::SyncCodec,
        [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(REQUEST_TIMEOUT)
            .with_max_concurrent_streams(MAX_SYNC_STREAMS),
    )
}

/// The peer exchange: `Full` where the member asks others too (native members), `Inbound` where
/// it only answers (a browser, which learns addresses from the network description).
pub fn peers_behaviour(
    support: request_response::ProtocolSupport,
) -> request_response::Behaviour<peers::PeersCodec> {
    request_response::Behaviour::with_codec(
        peers::PeersCodec,
        [(peers::PEERS_PROTOCOL, support)],
        request_response::Config::default()
            .with_request_timeout(REQUEST_TIMEOUT)
            .with_max_concurrent_streams(2),
    )
}
