//! The slots of one (kind, round) of a view, stored for a thousand members.
//!
//! With votes as pieces almost every slot is [`Ballot::Covered`], and all covered slots of one
//! value are equal. A map from member to ballot spends ~230 bytes per slot on them (an 81-byte
//! ballot and the tree around it); a member of a 1000-member consortium holds ~2000 slots for
//! every key in flight, and a simulation holds every member. Here each slot is a 2-byte index
//! into a table of distinct contents in which a covered value appears once, so a covered slot
//! costs 2 bytes and lookups by member are direct. It behaves, compares and serialises exactly
//! as the `BTreeMap<MemberIndex, Ballot>` it replaces.

use super::Ballot;
use crate::types::MemberIndex;
use beaufort_crypto::membership::MAX_MEMBERS;
use serde::de::{Error as _, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The votes of one kind in one round: at most one slot per member.
#[derive(Clone, Default)]
pub struct RoundBallots {
    /// Per member: 0 for an empty slot, else one more than the index of its content in `table`.
    slots: Vec<u16>,
    /// Distinct contents: each covered value once, shared by every slot that holds it; any other
    /// ballot once per slot.
    table: Vec<Ballot>,
    /// How many slots point at each entry of `table`; an entry at 0 is garbage until the next
    /// compaction.
    refs: Vec<u16>,
    /// Filled slots.
    len: usize,
    /// Entries of `table` with no slot pointing at them.
    garbage: usize,
}

impl RoundBallots {
    /// Number of filled slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot of `member`.
    pub fn get(&self, member: &MemberIndex) -> Option<&Ballot> {
        let entry = self.entry_of(*member)?;
        self.table.get(entry)
    }

    /// Whether `member`'s slot is filled.
    pub fn contains_key(&self, member: &MemberIndex) -> bool {
        self.entry_of(*member).is_some()
    }

    /// Fills (or overwrites) `member`'s slot; returns what it held. A member index of
    /// [`MAX_MEMBERS`] or more cannot belong to any membership and is refused (`None`, nothing
    /// stored), so the table never grows past one slot per possible member.
    pub fn insert(&mut self, member: MemberIndex, ballot: Ballot) -> Option<Ballot> {
        let m = usize::from(member);
        if m >= MAX_MEMBERS {
            return None;
        }
        let old = self.remove(&member);
        let entry = match ballot {
            Ballot::Covered { .. } => self.table.iter().position(|held| *held == ballot),
            _ => None,
        };
        let entry = match entry {
            Some(entry) => {
                if self.refs[entry] == 0 {
                    self.garbage -= 1;
                }
                self.refs[entry] += 1;
                entry
            }
            None => {
                self.table.push(ballot);
                self.refs.push(1);
                self.table.len() - 1
            }
        };
        if self.slots.len() <= m {
            self.slots.resize(m + 1, 0);
        }
        // The table holds at most a slot's worth of entries per possible member plus as much
        // garbage (compacted below), far under u16::MAX.
        self.slots[m] = u16::try_from(entry + 1).unwrap_or(u16::MAX);
        self.len += 1;
        old
    }

    /// Empties `member`'s slot; returns what it held.
    pub fn remove(&mut self, member: &MemberIndex) -> Option<Ballot> {
        let m = usize::from(*member);
        let entry = self.entry_of(*member)?;
        self.slots[m] = 0;
        self.len -= 1;
        self.refs[entry] -= 1;
        if self.refs[entry] == 0 {
            self.garbage += 1;
        }
        let ballot = self.table[entry];
        if self.garbage > 16 && self.garbage * 2 > self.table.len() {
            self.compact();
        }
        Some(ballot)
    }

    /// The filled slots in member order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            ballots: self,
            front: 0,
            back: self.slots.len(),
        }
    }

    /// The filled slots' contents in member order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Ballot> + '_ {
        self.iter().map(|(_, ballot)| ballot)
    }

    /// The members with a filled slot, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = MemberIndex> + '_ {
        self.iter().map(|(member, _)| member)
    }

    fn entry_of(&self, member: MemberIndex) -> Option<usize> {
        match self.slots.get(usize::from(member)) {
            Some(&slot) if slot != 0 => Some(usize::from(slot) - 1),
            _ => None,
        }
    }

    /// Drops the garbage entries and renumbers the slots.
    fn compact(&mut self) {
        let mut renumbered = vec![0u16; self.table.len()];
        let mut table = Vec::with_capacity(self.table.len() - self.garbage);
        let mut refs = Vec::with_capacity(table.capacity());
        for (entry, (&ballot, &count)) in self.table.iter().zip(&self.refs).enumerate() {
            if count > 0 {
                table.push(ballot);
                refs.push(count);
                renumbered[entry] = u16::try_from(table.len()).unwrap_or(u16::MAX);
            }
        }
        for slot in self.slots.iter_mut().filter(|slot| **slot != 0) {
            *slot = renumbered[usize::from(*slot) - 1];
        }
        while self.slots.last() == Some(&0) {
            self.slots.pop();
        }
        self.table = table;
        self.refs = refs;
        self.garbage = 0;
    }
}

impl PartialEq for RoundBallots {
    fn eq(&self, other: &RoundBallots) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for RoundBallots {}

impl fmt::Debug for RoundBallots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The filled slots of a [`RoundBallots`] in member order, from either end.
pub struct Iter<'a> {
    ballots: &'a RoundBallots,
    /// The next member index to look at from the front, and one past the next from the back.
    front: usize,
    back: usize,
}

impl<'a> Iter<'a> {
    fn at(&self, m: usize) -> Option<(MemberIndex, &'a Ballot)> {
        let member = MemberIndex::try_from(m).ok()?;
        let entry = self.ballots.entry_of(member)?;
        Some((member, self.ballots.table.get(entry)?))
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (MemberIndex, &'a Ballot);

    fn next(&mut self) -> Option<Self::Item> {
        while self.front < self.back {
            let m = self.front;
            self.front += 1;
            if let Some(slot) = self.at(m) {
                return Some(slot);
            }
        }
        None
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        while self.front < self.back {
            self.back -= 1;
            if let Some(slot) = self.at(self.back) {
                return Some(slot);
            }
        }
        None
    }
}

impl<'a> IntoIterator for &'a RoundBallots {
    type Item = (MemberIndex, &'a Ballot);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<(MemberIndex, Ballot)> for RoundBallots {
    fn from_iter<I: IntoIterator<Item = (MemberIndex, Ballot)>>(slots: I) -> RoundBallots {
        let mut ballots = RoundBallots::default();
        for (member, ballot) in slots {
            ballots.insert(member, ballot);
        }
        ballots
    }
}

/// As a map from member to ballot, in member order: the encoding of the map it replaces.
impl Serialize for RoundBallots {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len))?;
        for (member, ballot) in self.iter() {
            map.serialize_entry(&member, ballot)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RoundBallots {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RoundBallots, D::Error> {
        deserializer.deserialize_map(SlotsVisitor)
    }
}

struct SlotsVisitor;

impl<'de> Visitor<'de> for SlotsVisitor {
    type Value = RoundBallots;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a map from member index to ballot")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RoundBallots, A::Error> {
        let mut ballots = RoundBallots::default();
        while let Some((member, ballot)) = map.next_entry::<MemberIndex, Ballot>()? {
            if usize::from(member) >= MAX_MEMBERS {
                return Err(A::Error::custom(format!(
                    "member index {member} is outside every membership (at most {MAX_MEMBERS} members)"
                )));
            }
            ballots.insert(member, ballot);
        }
        Ok(ballots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ValueHash;
    use beaufort_crypto::bls::Signature;
    use beaufort_crypto::hash::Digest;
    use std::collections::BTreeMap;

    fn value(byte: u8) -> ValueHash {
        ValueHash(Digest([byte; 32]))
    }

    fn ballot(choice: u64) -> Ballot {
        let v = value((choice % 3) as u8);
        match choice % 4 {
            0 | 1 => Ballot::Covered { value: v },
            2 => Ballot::Vote {
                value: v,
                signature: Signature::from_bytes(&[(choice % 251) as u8; 48]).expect("48 bytes"),
            },
            _ => Ballot::Conflicted {
                first: value(0),
                second: value(1),
            },
        }
    }

    /// Any sequence of inserts and removals leaves the same slots, in the same order, with the
    /// same encoding, as the map it replaces.
    #[test]
    fn behaves_and_encodes_as_a_map_from_member_to_ballot() {
        let mut x: u64 = 7;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for members in [4u64, 100, 1000] {
            let (mut ours, mut map) = (RoundBallots::default(), BTreeMap::new());
            for _ in 0..20_000 {
                let member = MemberIndex::try_from(next() % members).expect("small");
                if next() % 3 == 0 {
                    assert_eq!(ours.remove(&member), map.remove(&member));
                } else {
                    let b = ballot(next());
                    assert_eq!(ours.insert(member, b), map.insert(member, b));
                }
                assert_eq!(ours.len(), map.len());
            }
            assert!(ours.iter().eq(map.iter().map(|(&m, b)| (m, b))));
            assert!(
                ours.table.len() <= 2 * map.len() + 34,
                "garbage is compacted"
            );
            let encoded = postcard::to_allocvec(&ours).expect("encodes");
            assert_eq!(encoded, postcard::to_allocvec(&map).expect("encodes"));
            let decoded: RoundBallots = postcard::from_bytes(&encoded).expect("decodes");
            assert_eq!(decoded, ours);
        }
    }

    #[test]
    fn a_member_index_outside_every_membership_is_refused() {
        let map = BTreeMap::from([(MemberIndex::MAX, ballot(0))]);
        let encoded = postcard::to_allocvec(&map).expect("encodes");
        assert!(postcard::from_bytes::<RoundBallots>(&encoded).is_err());
        let mut ours = RoundBallots::default();
        assert_eq!(ours.insert(MemberIndex::MAX, ballot(0)), None);
        assert!(ours.is_empty());
    }

    #[test]
    fn covered_slots_of_one_value_share_one_entry() {
        let ours: RoundBallots = (0..1000)
            .map(|m| (m, Ballot::Covered { value: value(1) }))
            .collect();
        assert_eq!((ours.len(), ours.table.len()), (1000, 1));
    }
}
