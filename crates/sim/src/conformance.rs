//! Conformance: a runtime's recorded inputs, fed back into a fresh replica in the order every
//! runtime drives it, give the messages that runtime sent. A node records its inputs and sends
//! (`beaufort_node::Recording`); if a replay gives other bytes, the node decided something the
//! core did not, and the simulator no longer measures the program the node runs.

use beaufort_core::input::Input;
use beaufort_core::replica::{Replica, Step};
use beaufort_core::types::MemberIndex;
use beaufort_core::wire::{encode, SyncMessage, WireError};

/// Applies `inputs` to `replica` and returns what it sends, encoded, in the order a runtime
/// sends it: the inputs up to each [`Input::Durable`] form one batch whose early messages leave
/// before the batch's write and whose other messages leave after it ([`Step::early`],
/// [`Step::messages`]). Messages of a last batch without its `Durable` have not left yet and are
/// not returned. A proposal the hook refuses is refused again (the node logs it all the same:
/// its client got the refusal) and has no effect.
pub fn replay_inputs(
    replica: &mut Replica,
    inputs: impl IntoIterator<Item = Input>,
) -> Result<Vec<(MemberIndex, Vec<u8>)>, WireError> {
    let mut sent = Vec::new();
    let mut batch = Step::default();
    for input in inputs {
        if input == Input::Durable {
            let step = std::mem::take(&mut batch);
            encode_into(&mut sent, step.early)?;
            replica.mark_durable();
            encode_into(&mut sent, step.messages)?;
        } else if let Ok(step) = replica.apply(input) {
            batch.absorb(step);
        }
    }
    Ok(sent)
}

fn encode_into(
    sent: &mut Vec<(MemberIndex, Vec<u8>)>,
    messages: Vec<(MemberIndex, SyncMessage)>,
) -> Result<(), WireError> {
    for (to, message) in messages {
        sent.push((to, encode(&message)?));
    }
    Ok(())
}
