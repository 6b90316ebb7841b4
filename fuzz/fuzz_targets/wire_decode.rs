//! Fuzz target `wire_decode`: arbitrary bytes from a peer into the sync protocol's decoder
//! (`beaufort_core::wire::decode`), the first thing a node does with every message it receives.
//!
//! Decoding must never panic, whatever the bytes: an error is the normal answer to garbage. When
//! the bytes do decode, the message must survive the round trip through the encoder:
//!
//! * it passes `validate` for the membership size it was decoded for;
//! * `encode` accepts it (the only possible refusal is the size limit, which a fuzz input of a few
//!   KiB cannot reach);
//! * the re-encoded bytes decode again, to the same message except for the order of the single
//!   votes in each key update: the encoder groups them by (kind, round, value) in that order,
//!   keeping the order of the votes inside a group, and puts equivocation proofs last (the input
//!   may group them any way it likes, or carry single votes as plain slots), and except the
//!   short-names flag of an update without single votes (a group may be empty: it names its value
//!   short and holds no vote; re-encoded, the update has no group and its flag is clear), and
//!   except single votes that came as plain slots with their whole hash in an update whose groups
//!   name values short (re-encoded, they join a group and are named short too);
//! * from there on the round trip is the identity, on messages and on bytes.
//!
//! Bytes are not compared with the input: postcard accepts over-long varints and the input's
//! grouping may differ, so only the re-encoding is canonical.

#![no_main]

use beaufort_core::register::KeyUpdate;
use beaufort_core::state::Ballot;
use beaufort_core::types::ValueHash;
use beaufort_core::wire::{
    decode, encode, short_ref, validate, SyncMessage, WireError, MAX_MESSAGE_BYTES, SHORT_REF_BYTES,
};
use beaufort_crypto::hash::Digest;
use libfuzzer_sys::fuzz_target;

/// Membership sizes to decode for: the one the other targets use, and one that needs a second
/// signer-bitmap byte.
const MEMBERS: [usize; 2] = [4, 10];

fuzz_target!(|data: &[u8]| {
    for members in MEMBERS {
        check(data, members);
    }
});

fn check(data: &[u8], members: usize) {
    let Ok(first) = decode(data, members) else {
        return;
    };
    assert_eq!(
        validate(&first, members),
        Ok(()),
        "decode returned a message that fails validation"
    );
    let bytes = match encode(&first) {
        Ok(bytes) => bytes,
        Err(WireError::TooLarge(len)) if len > MAX_MESSAGE_BYTES => return,
        Err(e) => panic!("a decoded message does not encode: {e}"),
    };
    let second = match decode(&bytes, members) {
        Ok(message) => message,
        Err(e) => panic!("a re-encoded message does not decode: {e}\n{first:?}"),
    };
    assert_eq!(
        second,
        canonical(first),
        "the round trip changed the message beyond vote order"
    );
    // From there on the encoding is a fixed point (the first round trip may still merge groups
    // whose values share a short name).
    let again = encode(&second).expect("the second encoding of a message");
    let third = decode(&again, members).expect("the second encoding decodes");
    assert_eq!(
        third, second,
        "a normalised message changed in a round trip"
    );
    assert_eq!(
        encode(&third).expect("the third encoding of a message"),
        again,
        "encoding is not a fixed point"
    );
}

/// What the encoder makes of a message: the votes of each key update in group order.
fn canonical(message: SyncMessage) -> SyncMessage {
    match message {
        SyncMessage::Updates { verified, updates } => SyncMessage::Updates {
            verified,
            updates: updates.into_iter().map(canonical_update).collect(),
        },
        other => other,
    }
}

fn canonical_update(mut update: KeyUpdate) -> KeyUpdate {
    let (mut singles, proofs): (Vec<_>, Vec<_>) = update
        .votes
        .into_iter()
        .partition(|wire| matches!(wire.ballot, Ballot::Vote { .. }));
    // Stable: votes of one group keep their relative order.
    singles.sort_by_key(|wire| (wire.kind, wire.round, wire.ballot.vote_value()));
    // A group may name its value short and hold no vote at all; with no single vote or piece
    // left there is nothing to name, and the re-encoding says the names are whole.
    update.short_refs &= !singles.is_empty() || !update.pieces.is_empty();
    // A single vote may also travel as a plain slot, with its whole hash, in an update whose
    // groups name their values short; re-encoded, it joins a group and is named short too.
    if update.short_refs {
        for wire in &mut singles {
            if let Ballot::Vote { value, signature } = wire.ballot {
                let mut bytes = [0u8; 32];
                bytes[..SHORT_REF_BYTES].copy_from_slice(&short_ref(value));
                wire.ballot = Ballot::Vote {
                    value: ValueHash(Digest(bytes)),
                    signature,
                };
            }
        }
    }
    singles.extend(proofs);
    update.votes = singles;
    update
}
