//! `beaufort doctor`: from the network file alone, ask every member's API who it is and what it
//! holds (`GET /v1/info`, `GET /v1/digest`), compare them, and say in words which member is
//! unreachable, on another network, cut off, behind, or excluded for voting twice, and what its
//! operator should do. No consortium has one operator; this is how one party sees the whole.
//! Exit status 1 when something needs an operator.

use anyhow::{bail, Context, Result};
use beaufort_client::{Client, Trust};
use beaufort_node::api::Info;
use beaufort_node::config::{read_bounded, Config, NetworkSection};
use beaufort_node::digest::StoreDigest;
use clap::Args;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long one member is given to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two looks when members differ, so decisions under way can land.
const SETTLE: Duration = Duration::from_secs(1);

/// Arguments of `beaufort doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// Any member's configuration file (only its `[network]` table is read).
    #[arg(long, conflicts_with = "network", required_unless_present = "network")]
    config: Option<PathBuf>,
    /// The network description (`GET /v1/network`, JSON).
    #[arg(long)]
    network: Option<PathBuf>,
    /// Looks at the whole consortium before a difference between members is reported (they
    /// are retaken one second apart while members differ: decisions in flight settle).
    #[arg(long, default_value_t = 3)]
    looks: u32,
    /// Also trust this certificate (PEM) for members' https:// APIs (repeatable); with
    /// --config, its tls_cert and tls_trust files are trusted too.
    #[arg(long = "tls-trust")]
    tls_trust: Vec<PathBuf>,
}

/// One member as doctor saw it.
#[derive(Debug)]
pub struct Seen {
    /// Its index.
    pub index: usize,
    /// Its display name.
    pub name: String,
    /// Where its API was asked.
    pub url: String,
    /// What it answered, or why it did not.
    pub answer: Result<(Info, StoreDigest), String>,
}

/// Something doctor reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Needs an operator (exit status 1), or only worth knowing.
    pub problem: bool,
    /// The member it is about, if one.
    pub member: Option<usize>,
    /// What to tell the operator.
    pub text: String,
}

impl Finding {
    fn problem(member: Option<usize>, text: String) -> Finding {
        Finding {
            problem: true,
            member,
            text,
        }
    }

    fn note(member: Option<usize>, text: String) -> Finding {
        Finding {
            problem: false,
            member,
            text,
        }
    }

    /// Whether the finding is a difference between members that may settle on its own.
    fn may_settle(&self) -> bool {
        self.problem
            && (self.text.contains(" behind ")
                || self.text.contains("differ under")
                || self.text.contains("connected to no other"))
    }
}

/// Runs the doctor and prints what it found.
pub fn doctor(args: DoctorArgs) -> Result<ExitCode> {
    let config = args.config.as_deref().map(Config::load).transpose()?;
    let trust = crate::client::trust(config.as_ref(), &args.tls_trust)?;
    let network: NetworkSection = match (config, &args.network) {
        (Some(config), _) => config.network,
        (None, Some(path)) => serde_json::from_str(&read_bounded(path)?)
            .with_context(|| format!("parsing the network description {}", path.display()))?,
        (None, None) => bail!("give --config or --network"),
    };
    let network_id = network.id().to_hex();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let mut seen = runtime.block_on(look(&network, &trust));
    let mut findings = diagnose(&network_id, &seen);
    for _ in 1..args.looks.max(1) {
        if !findings.iter().any(Finding::may_settle) {
            break;
        }
        std::thread::sleep(SETTLE);
        seen = runtime.block_on(look(&network, &trust));
        findings = diagnose(&network_id, &seen);
    }
    println!(
        "network {} ({}), {} members",
        network.name,
        network_id,
        network.members.len()
    );
    for member in &seen {
        match &member.answer {
            Ok((info, digest)) => println!(
                "  member {} ({}) at {}: version {}, {} keys, {} neighbours",
                member.index,
                member.name,
                member.url,
                info.version,
                digest.prefixes.iter().map(|p| p.keys).sum::<u64>(),
                digest.neighbours.len()
            ),
            Err(why) => println!(
                "  member {} ({}) at {}: no answer ({why})",
                member.index, member.name, member.url
            ),
        }
    }
    let problems = findings.iter().filter(|f| f.problem).count();
    for finding in &findings {
        let mark = if finding.problem { "PROBLEM" } else { "note" };
        println!("{mark}: {}", finding.text);
    }
    if problems == 0 {
        println!("OK: every member answers and holds the same decisions");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{problems} problem(s) found");
        Ok(ExitCode::FAILURE)
    }
}

/// Asks every member at once.
async fn look(network: &NetworkSection, trust: &Trust) -> Vec<Seen> {
    let mut asks = tokio::task::JoinSet::new();
    for (index, member) in network.members.iter().enumerate() {
        let name = member
            .name
            .clone()
            .unwrap_or_else(|| format!("member-{index}"));
        let url = member.api_url.clone().unwrap_or_default();
        let trust = trust.clone();
        asks.spawn(async move {
            let answer = ask(&url, &trust).await;
            Seen {
                index,
                name,
                url,
                answer,
            }
        });
    }
    let mut seen = Vec::new();
    while let Some(done) = asks.join_next().await {
        if let Ok(member) = done {
            seen.push(member);
        }
    }
    seen.sort_by_key(|member| member.index);
    seen
}

/// One member's info and digest, or why not.
async fn ask(url: &str, trust: &Trust) -> Result<(Info, StoreDigest), String> {
    if url.is_empty() {
        return Err("the network file gives no api_url for it".into());
    }
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(format!("{url} is not an http:// or https:// URL"));
    }
    let client = Client::with_trust(url, trust);
    let both = async {
        Ok::<_, beaufort_client::ClientError>((client.info().await?, client.digest().await?))
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, both).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {ANSWER_TIMEOUT:?}")),
    }
}

/// What is wrong, in words an operator acts on. Pure, so every rule is tested on its own.
pub fn diagnose(network_id: &str, seen: &[Seen]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let name = |index: usize| {
        seen.iter().find(|s| s.index == index).map_or_else(
            || format!("member {index}"),
            |s| format!("member {index} ({})", s.name),
        )
    };
    let mut answering: Vec<(&Seen, &Info, &StoreDigest)> = Vec::new();
    for member in seen {
        match &member.answer {
            Err(why) => findings.push(Finding::problem(
                Some(member.index),
                format!(
                    "{} does not answer at {} ({why}). Is its node running? Check the process, \
                     that its api_bind listens where the network file's api_url points, and \
                     firewalls between you.",
                    name(member.index),
                    member.url
                ),
            )),
            Ok((info, _)) if info.network_id != network_id => findings.push(Finding::problem(
                Some(member.index),
                format!(
                    "{} at {} serves network {} ({}), not this one: its api_url points at \
                     another consortium's node, or its configuration's [network] table differs \
                     from this file.",
                    name(member.index),
                    member.url,
                    info.network_id,
                    info.network
                ),
            )),
            Ok((info, digest)) if usize::from(digest.member) != member.index => {
                findings.push(Finding::problem(
                    Some(member.index),
                    format!(
                        "the API at {} is member {}'s ({}), not {}'s: fix api_url in the network \
                         file.",
                        member.url,
                        digest.member,
                        info.name,
                        name(member.index)
                    ),
                ))
            }
            Ok((info, digest)) => answering.push((member, info, digest)),
        }
    }

    // Excluded members, with who holds the proof.
    let mut proofs: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (member, _, digest) in &answering {
        for &excluded in &digest.excluded {
            proofs
                .entry(usize::from(excluded))
                .or_default()
                .insert(member.index);
        }
    }
    for (excluded, holders) in &proofs {
        findings.push(Finding::problem(
            Some(*excluded),
            format!(
                "{} is excluded for voting twice (proof held by members {}): the others ignore \
                 its votes for good. Its operator should stop it and find out how it signed two \
                 values (two processes with one key, or a store replaced by an older copy \
                 without `beaufort restore`); it can only rejoin under a new key.",
                name(*excluded),
                list(holders)
            ),
        ));
    }

    // Versions differ during a rolling upgrade: worth knowing, not a problem.
    let mut versions: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for (member, info, _) in &answering {
        versions
            .entry(info.version.as_str())
            .or_default()
            .insert(member.index);
    }
    if versions.len() > 1 {
        let text = versions
            .iter()
            .map(|(version, members)| format!("{version} (members {})", list(members)))
            .collect::<Vec<_>>()
            .join(", ");
        findings.push(Finding::note(
            None,
            format!("members run different versions: {text}"),
        ));
    }

    // A member that writes a version another cannot read loses every link to it.
    for (writer, info, _) in &answering {
        let unable: BTreeSet<usize> = answering
            .iter()
            .filter(|(_, reader, _)| {
                !(reader.wire_reads_from..=reader.wire_reads_to).contains(&info.wire_writes)
            })
            .map(|(reader, _, _)| reader.index)
            .collect();
        if !unable.is_empty() {
            findings.push(Finding::problem(
                Some(writer.index),
                format!(
                    "{} writes wire version {}, which members {} cannot read: set \
                     `wire_version` in its [node] table to a version every member reads, until \
                     they all run the new build.",
                    name(writer.index),
                    info.wire_writes,
                    list(&unable)
                ),
            ));
        }
    }

    for (member, _, digest) in &answering {
        if digest.neighbours.is_empty() && seen.len() > 1 {
            findings.push(Finding::problem(
                Some(member.index),
                format!(
                    "{} is connected to no other member: check its listen addresses, the \
                     addresses the network file gives for the others, and firewalls between the \
                     hosts.",
                    name(member.index)
                ),
            ));
        }
        if digest.fenced_keys > 0 {
            findings.push(Finding::note(
                Some(member.index),
                format!(
                    "{} was restored from a backup and sits out {} keys until the others write \
                     them (its own writes to them are refused meanwhile).",
                    name(member.index),
                    digest.fenced_keys
                ),
            ));
        }
    }

    // Decisions learnt per prefix, among members not excluded.
    let honest: Vec<&(&Seen, &Info, &StoreDigest)> = answering
        .iter()
        .filter(|(member, _, _)| !proofs.contains_key(&member.index))
        .collect();
    let prefixes: BTreeSet<&str> = honest
        .iter()
        .flat_map(|(_, _, digest)| digest.prefixes.iter().map(|p| p.prefix.as_str()))
        .collect();
    for prefix in prefixes {
        let figures: Vec<(usize, u64, u64, Option<&str>)> = honest
            .iter()
            .map(|(member, _, digest)| {
                let found = digest.prefixes.iter().find(|p| p.prefix == prefix);
                (
                    member.index,
                    found.map_or(0, |p| p.keys),
                    found.map_or(0, |p| p.decisions),
                    found.map(|p| p.digest.as_str()),
                )
            })
            .collect();
        let Some(&(ahead, ahead_keys, most, ahead_digest)) = figures
            .iter()
            .max_by_key(|(index, _, decisions, _)| (*decisions, usize::MAX - index))
        else {
            continue;
        };
        for &(index, keys, decisions, digest) in &figures {
            if decisions < most {
                findings.push(Finding::problem(
                    Some(index),
                    format!(
                        "{} is behind under `{prefix}`: it has learnt {} fewer decisions than \
                         member {ahead} ({keys} keys against {ahead_keys}). Members catch up \
                         through anti-entropy within seconds; if it stays behind, check its \
                         connections and its log.",
                        name(index),
                        most - decisions
                    ),
                ));
            } else if digest != ahead_digest {
                findings.push(Finding::problem(
                    Some(index),
                    format!(
                        "{} and member {ahead} differ under `{prefix}` with as many decisions \
                         each: each lacks decisions the other has. Run doctor again; if it \
                         persists, check both members' connections and logs, and keep both \
                         stores.",
                        name(index)
                    ),
                ));
            }
        }
    }
    findings
}

fn list(members: &BTreeSet<usize>) -> String {
    members
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use beaufort_node::digest::PrefixDigest;

    const NETWORK: &str = "aa";

    fn answer(index: u16, decisions: u64, excluded: Vec<u16>) -> Seen {
        let info = Info {
            version: "0.1.0".into(),
            member: index,
            members: 4,
            name: format!("shop-{index}"),
            network: "test".into(),
            network_id: NETWORK.into(),
            wire_reads_from: 5,
            wire_reads_to: 5,
            wire_writes: 5,
        };
        let digest = StoreDigest {
            member: index,
            merkle_root: String::new(),
            neighbours: vec![(index + 1) % 4],
            excluded,
            fenced_keys: 0,
            prefixes: vec![PrefixDigest {
                prefix: "points".into(),
                keys: 2,
                decisions,
                digest: format!("d{decisions}"),
            }],
        };
        Seen {
            index: usize::from(index),
            name: format!("shop-{index}"),
            url: format!("http://127.0.0.1:{}", 8000 + index),
            answer: Ok((info, digest)),
        }
    }

    fn problems_about(findings: &[Finding]) -> Vec<Option<usize>> {
        findings
            .iter()
            .filter(|f| f.problem)
            .map(|f| f.member)
            .collect()
    }

    #[test]
    fn members_holding_the_same_decisions_are_healthy() {
        let seen: Vec<Seen> = (0..4).map(|i| answer(i, 5, vec![])).collect();
        assert_eq!(diagnose(NETWORK, &seen), []);
    }

    #[test]
    fn an_unreachable_member_is_named_with_where_it_was_asked() {
        let mut seen: Vec<Seen> = (0..4).map(|i| answer(i, 5, vec![])).collect();
        seen[2].answer = Err("connection refused".into());
        let findings = diagnose(NETWORK, &seen);
        assert_eq!(problems_about(&findings), [Some(2)]);
        assert!(findings[0]
            .text
            .contains("member 2 (shop-2) does not answer at http://127.0.0.1:8002"));
    }

    #[test]
    fn a_member_behind_is_named_with_how_far() {
        let mut seen: Vec<Seen> = (0..4).map(|i| answer(i, 5, vec![])).collect();
        seen[1] = answer(1, 3, vec![]);
        let findings = diagnose(NETWORK, &seen);
        assert_eq!(problems_about(&findings), [Some(1)]);
        assert!(findings[0]
            .text
            .contains("behind under `points`: it has learnt 2 fewer"));
        assert!(findings[0].may_settle());
    }

    #[test]
    fn an_excluded_member_is_named_once_with_who_holds_the_proof() {
        let seen: Vec<Seen> = (0..4)
            .map(|i| answer(i, 5, if i == 3 { vec![] } else { vec![3] }))
            .collect();
        let findings = diagnose(NETWORK, &seen);
        assert_eq!(problems_about(&findings), [Some(3)]);
        assert!(findings[0].text.contains(
            "member 3 (shop-3) is excluded for voting twice (proof held by members 0, 1, 2)"
        ));
    }

    #[test]
    fn another_network_and_mixed_versions_are_told_apart() {
        let mut seen: Vec<Seen> = (0..4).map(|i| answer(i, 5, vec![])).collect();
        if let Ok((info, _)) = &mut seen[0].answer {
            info.network_id = "bb".into();
        }
        if let Ok((info, _)) = &mut seen[1].answer {
            info.version = "0.2.0".into();
        }
        let findings = diagnose(NETWORK, &seen);
        assert_eq!(problems_about(&findings), [Some(0)]);
        let note = findings.iter().find(|f| !f.problem).expect("a note");
        assert!(note
            .text
            .contains("0.1.0 (members 2, 3), 0.2.0 (members 1)"));
    }

    #[test]
    fn a_member_writing_a_wire_version_others_cannot_read_is_told_to_pin_it() {
        let mut seen: Vec<Seen> = (0..4).map(|i| answer(i, 5, vec![])).collect();
        // Member 3 runs a newer build that reads 5 and 6 and writes 6; member 2 reads 5 and 6
        // and still writes 5, as a rolling upgrade has it.
        for (index, writes) in [(2, 5), (3, 6)] {
            if let Ok((info, _)) = &mut seen[index].answer {
                info.version = "0.2.0".into();
                info.wire_reads_to = 6;
                info.wire_writes = writes;
            }
        }
        let findings = diagnose(NETWORK, &seen);
        assert_eq!(problems_about(&findings), [Some(3)]);
        let problem = findings.iter().find(|f| f.problem).expect("a problem");
        assert!(
            problem
                .text
                .contains("writes wire version 6, which members 0, 1 cannot read"),
            "{}",
            problem.text
        );
    }
}
