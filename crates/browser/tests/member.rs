//! The browser member's portable half, natively: four members set up from a network description
//! and key files as the page hands them over, driven through the step contract (`plan`, the
//! records written, `durable`) with messages passed in memory, decide writes; a member whose
//! "tab" closed after its records were written but before its messages left comes back from
//! those records and the consortium goes on deciding with nobody excluded. What the storage
//! holds is checked on the way back in.

use beaufort_browser::member::{Member, WriteOutcome};
use beaufort_browser::records::{Record, Stored, StoredError, Table};
use beaufort_browser::setup::{Loaded, SetupError};
use beaufort_crypto::keyfile::{generate_member_key, write_secret_key_file};
use beaufort_crypto::SecretKey;
use std::collections::{BTreeMap, VecDeque};

const N: usize = 4;

/// Key files and the network description of a consortium of `N`.
struct Consortium {
    network: String,
    key_files: Vec<Vec<u8>>,
}

fn consortium() -> Consortium {
    let rng = ring::rand::SystemRandom::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = Vec::new();
    let mut key_files = Vec::new();
    for i in 0..N {
        let (secret, key): (SecretKey, _) = generate_member_key(&rng).expect("a key");
        let path = dir.path().join(format!("member-{i}.bls"));
        write_secret_key_file(&path, &secret, false).expect("write the key file");
        key_files.push(std::fs::read(&path).expect("read the key file"));
        let mut entry = serde_json::to_value(key).expect("a member key as JSON");
        entry["peer_id"] = serde_json::json!(format!("peer-{i}"));
        entry["addresses"] = serde_json::json!([
            format!("/ip4/127.0.0.1/tcp/{}", 7000 + i),
            format!("/ip4/127.0.0.1/tcp/{}/ws", 7100 + i),
        ]);
        members.push(entry);
    }
    let network = serde_json::json!({
        "name": "browser-test",
        "write_once_prefixes": ["voucher/"],
        "members": members,
    })
    .to_string();
    Consortium { network, key_files }
}

/// A member and what its "IndexedDB" holds.
struct Slot {
    member: Member,
    disk: BTreeMap<(&'static str, Vec<u8>), Vec<u8>>,
}

impl Slot {
    fn start(consortium: &Consortium, i: usize, stored: Stored) -> Slot {
        let loaded = Loaded::new(&consortium.network, &consortium.key_files[i]).expect("set up");
        assert_eq!(usize::from(loaded.consortium.me), i);
        let (replica, apps) = loaded.replica(stored);
        Slot {
            member: Member::new(replica, apps, N),
            disk: BTreeMap::new(),
        }
    }

    fn stored(&self) -> Stored {
        let pick = |table: Table| {
            self.disk
                .iter()
                .filter(|((t, _), _)| *t == table.name())
                .map(|((_, k), v)| (k.clone(), v.clone()))
                .collect()
        };
        Stored::decode(pick(Table::Registers), pick(Table::Evidence)).expect("what was written")
    }

    fn write(&mut self, records: Vec<Record>) {
        for record in records {
            self.disk
                .insert((record.table.name(), record.key), record.value);
        }
    }
}

/// The members in memory: every message delivered in order, time advancing 5 ms a round.
struct World {
    slots: Vec<Option<Slot>>,
    wire: VecDeque<(usize, usize, Vec<u8>)>,
    now: u64,
    outcomes: Vec<(u64, WriteOutcome)>,
    /// The member whose next writing step is cut off after its records are written (its tab
    /// closes), and what its storage held then.
    close_after_write: Option<usize>,
    closed: Option<(usize, Slot)>,
}

impl World {
    fn new(consortium: &Consortium) -> World {
        let mut world = World {
            slots: (0..N)
                .map(|i| Some(Slot::start(consortium, i, Stored::default())))
                .collect(),
            wire: VecDeque::new(),
            now: 0,
            outcomes: Vec::new(),
            close_after_write: None,
            closed: None,
        };
        for i in 0..N {
            for j in (0..N).filter(|&j| j != i) {
                world.connect(i, j);
            }
        }
        world
    }

    fn connect(&mut self, i: usize, j: usize) {
        let step = self.slots[i]
            .as_mut()
            .expect("running")
            .member
            .link(j as u16, true);
        self.carry_out(i, step);
    }

    /// Carries out one step of member `i` in the contract's order.
    fn carry_out(&mut self, i: usize, step: beaufort_core::replica::Step) {
        let slot = self.slots[i].as_mut().expect("running");
        let plan = slot.member.plan(step);
        for (to, bytes) in plan.early {
            self.wire.push_back((i, usize::from(to), bytes));
        }
        let wrote = !plan.records.is_empty();
        slot.write(plan.records);
        if wrote && self.close_after_write == Some(i) {
            // The tab closes between the durable write and the messages that follow it.
            self.closed = self.slots[i].take().map(|slot| (i, slot));
            self.close_after_write = None;
            for j in (0..N).filter(|&j| j != i) {
                if let Some(other) = self.slots[j].as_mut() {
                    let step = other.member.link(i as u16, false);
                    self.carry_out(j, step);
                }
            }
            return;
        }
        let done = slot.member.durable(plan.after);
        assert!(done.faults.is_empty(), "an honest member was blamed");
        for (to, bytes) in done.messages {
            self.wire.push_back((i, usize::from(to), bytes));
        }
        self.outcomes.extend(done.writes);
    }

    /// One round: deliver what is on the wire, then tick everyone.
    fn round(&mut self) {
        for _ in 0..self.wire.len() {
            let Some((from, to, bytes)) = self.wire.pop_front() else {
                break;
            };
            let Some(slot) = self.slots[to].as_mut() else {
                continue;
            };
            let step = slot
                .member
                .receive(from as u16, &bytes)
                .expect("an honest member's message decodes");
            self.carry_out(to, step);
        }
        self.now += 5;
        for i in 0..N {
            if let Some(slot) = self.slots[i].as_mut() {
                let now = self.now;
                let step = slot.member.tick(now, |_| true);
                self.carry_out(i, step);
            }
        }
    }

    /// Runs until `write` has an outcome.
    fn until_outcome(&mut self, write: u64) -> WriteOutcome {
        for _ in 0..4_000 {
            if let Some((_, outcome)) = self.outcomes.iter().find(|(id, _)| *id == write) {
                return outcome.clone();
            }
            self.round();
        }
        panic!("write {write} never ended");
    }

    fn propose(&mut self, i: usize, key: &str, value: &str, id: u64) {
        let step = self.slots[i]
            .as_mut()
            .expect("running")
            .member
            .write(key, value.as_bytes(), id)
            .expect("a valid write");
        self.carry_out(i, step);
    }
}

#[test]
fn four_browser_members_decide_through_the_step_contract() {
    let consortium = consortium();
    let mut world = World::new(&consortium);
    world.propose(3, "tools/drill", "lent to Ann", 1);
    match world.until_outcome(1) {
        WriteOutcome::Committed(certified) => assert!(certified.qc.signers.members().count() >= 3),
        other => panic!("the write did not commit: {other:?}"),
    }
    for _ in 0..200 {
        world.round();
    }
    for slot in world.slots.iter_mut().flatten() {
        let status = slot.member.status();
        assert_eq!(
            status.decisions, 1,
            "member {} learnt the decision",
            status.member
        );
        assert!(status.votes_cast > 0, "member {} voted", status.member);
        assert!(status.excluded.is_empty());
    }
}

#[test]
fn a_member_whose_tab_closed_after_its_write_comes_back_from_its_records() {
    let consortium = consortium();
    let mut world = World::new(&consortium);
    // Member 3's first step that writes anything (its first votes) is its last before the tab
    // closes: the records are durable, the messages behind them never leave.
    world.close_after_write = Some(3);
    world.propose(0, "tools/saw", "lent to Bo", 1);
    for _ in 0..200 {
        world.round();
        if world.closed.is_some() {
            break;
        }
    }
    let (index, closed) = world.closed.take().expect("member 3 wrote its votes");
    assert_eq!(index, 3);
    // The tab opens again: the member starts from what its storage held.
    let stored = closed.stored();
    assert!(!stored.states.is_empty(), "the votes' state was written");
    let mut reopened = Slot::start(&consortium, 3, stored);
    reopened.disk = closed.disk;
    assert_eq!(reopened.member.status().restored_keys, 1);
    world.slots[3] = Some(reopened);
    for j in 0..3 {
        world.connect(3, j);
        world.connect(j, 3);
    }
    // Without member 2, the quorum of 3 needs the reopened member's votes.
    world.slots[2] = None;
    for j in [0, 1, 3] {
        let step = world.slots[j]
            .as_mut()
            .expect("running")
            .member
            .link(2, false);
        world.carry_out(j, step);
    }
    match world.until_outcome(1) {
        WriteOutcome::Committed(certified) => {
            let signers: Vec<u16> = certified.qc.signers.members().map(|(i, _)| i).collect();
            assert!(signers.contains(&3), "certified by {signers:?}");
        }
        other => panic!("the write did not commit: {other:?}"),
    }
    for slot in world.slots.iter_mut().flatten() {
        assert!(
            slot.member.status().excluded.is_empty(),
            "member {} holds evidence against someone",
            slot.member.status().member
        );
    }
}

#[test]
fn stored_records_are_checked_on_the_way_back_in() {
    let consortium = consortium();
    let mut world = World::new(&consortium);
    world.propose(1, "tools/ladder", "lent to Cy", 1);
    assert!(matches!(world.until_outcome(1), WriteOutcome::Committed(_)));
    let slot = world.slots[1].as_ref().expect("running");
    let stored = slot.stored();
    assert_eq!(stored.states.len(), 1, "the key's state was written");
    let registers: Vec<(Vec<u8>, Vec<u8>)> = slot
        .disk
        .iter()
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect();

    let mut corrupt = registers.clone();
    corrupt[0].1.truncate(3);
    assert!(matches!(
        Stored::decode(corrupt, Vec::new()),
        Err(StoredError::Corrupt { .. })
    ));
    let mut bad_key = registers;
    bad_key[0].0 = Vec::new();
    assert!(matches!(
        Stored::decode(bad_key, Vec::new()),
        Err(StoredError::Key(_))
    ));
}

#[test]
fn keys_of_no_member_and_broken_descriptions_are_refused() {
    let consortium = consortium();
    let other = self::consortium();
    assert!(matches!(
        Loaded::new(&consortium.network, &other.key_files[0]),
        Err(SetupError::NotAMember { .. })
    ));
    assert!(matches!(
        Loaded::new("{\"name\": 1}", &consortium.key_files[0]),
        Err(SetupError::Network(_))
    ));
    assert!(matches!(
        Loaded::new(&consortium.network, b"{not a key file"),
        Err(SetupError::Key(_))
    ));
    let loaded = Loaded::new(&consortium.network, &consortium.key_files[2]).expect("member 2");
    assert_eq!(loaded.consortium.me, 2);
    assert_eq!(
        loaded.consortium.peers[1].websocket,
        vec!["/ip4/127.0.0.1/tcp/7101/ws".to_owned()],
        "only WebSocket addresses are kept: a page can dial nothing else"
    );
}
