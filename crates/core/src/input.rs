//! Every input a runtime hands a replica, as one value: what a runtime feeds through
//! [`Replica::apply`], what a recorder logs, and what a replay feeds back. Because the node and
//! the simulators reach the replica only through these, a node's recorded inputs, replayed into
//! a fresh replica with the same key, give the same outgoing messages byte for byte (the
//! conformance test holds them to that).

use crate::replica::{ProposeError, Replica, Step};
use crate::types::{Key, MemberIndex, Value};
use crate::wire::SyncMessage;
use serde::{Deserialize, Serialize};

/// One input to a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// The runtime's clock reached `now` (milliseconds, [`Replica::tick`]).
    Tick {
        /// The time.
        now: u64,
    },
    /// A decoded message from a neighbour ([`Replica::receive`]).
    Receive {
        /// The neighbour.
        from: MemberIndex,
        /// The message.
        message: SyncMessage,
    },
    /// A local write ([`Replica::propose`]).
    Propose {
        /// The key.
        key: Key,
        /// The value (a tombstone deletes).
        value: Value,
    },
    /// A neighbour connected ([`Replica::add_peer`]).
    PeerUp(MemberIndex),
    /// A neighbour disconnected or was dropped for a fault ([`Replica::remove_peer`]).
    PeerDown(MemberIndex),
    /// The runtime's word on a link's readiness ([`Replica::set_link_ready`]).
    LinkReady {
        /// The neighbour.
        peer: MemberIndex,
        /// Whether its link can take a push now.
        ready: bool,
    },
    /// Everything earlier steps asked to persist is durable ([`Replica::mark_durable`]).
    Durable,
}

impl Replica {
    /// Applies one input. Only a proposal can fail (the hook refused the value); every other
    /// input returns a step, empty when it has no effects.
    pub fn apply(&mut self, input: Input) -> Result<Step, ProposeError> {
        Ok(match input {
            Input::Tick { now } => self.tick(now),
            Input::Receive { from, message } => self.receive(from, message),
            Input::Propose { key, value } => self.propose(key, value)?.0,
            Input::PeerUp(peer) => {
                self.add_peer(peer);
                Step::default()
            }
            Input::PeerDown(peer) => {
                self.remove_peer(peer);
                Step::default()
            }
            Input::LinkReady { peer, ready } => {
                self.set_link_ready(peer, ready);
                Step::default()
            }
            Input::Durable => {
                self.mark_durable();
                Step::default()
            }
        })
    }
}
