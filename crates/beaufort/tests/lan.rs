//! A consortium on one LAN with no discovery server and no configured addresses: members find
//! each other by mDNS (a farmer's market on one Wi-Fi). Needs a multicast-capable interface,
//! which the test asserts rather than skips.

mod common;

use common::*;
use std::path::Path;

/// Rewrites a member's configuration for a LAN: no member addresses, listen on every interface
/// (ports picked by the OS), mDNS on.
fn lan_config(path: &Path) {
    let text = std::fs::read_to_string(path).expect("read config");
    let mut out = String::new();
    let mut in_listen = false;
    for line in text.lines() {
        if line.starts_with("addresses = [") {
            out.push_str("addresses = []\n");
            // A one-line list ends on this line; a multi-line list is skipped below.
            in_listen = !line.ends_with(']');
            continue;
        }
        if line.starts_with("listen = [") {
            out.push_str("listen = [\"/ip4/0.0.0.0/tcp/0\", \"/ip4/0.0.0.0/udp/0/quic-v1\"]\n");
            in_listen = !line.ends_with(']');
            continue;
        }
        if in_listen {
            in_listen = !line.trim_start().starts_with(']');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let last_table = out.lines().rfind(|l| l.starts_with('['));
    assert_eq!(last_table, Some("[node]"), "the [node] table comes last");
    out.push_str("mdns = true\n");
    assert!(
        !out.contains("/ip4/127.0.0.1/tcp"),
        "no configured address is left:\n{out}"
    );
    std::fs::write(path, out).expect("write config");
}

#[test]
fn members_without_addresses_or_servers_find_each_other_by_mdns_and_commit() {
    let has_multicast = std::fs::read_to_string("/proc/net/igmp")
        .map(|igmp| {
            // Device lines start with the interface index; group lines with a tab.
            igmp.lines()
                .any(|l| l.starts_with(|c: char| c.is_ascii_digit()) && !l.contains("\tlo "))
        })
        .unwrap_or(false);
    assert!(
        has_multicast,
        "mDNS needs a multicast-capable network interface besides loopback (see /proc/net/igmp)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path(), 4);
    let members: Vec<Member> = (0..4)
        .map(|i| {
            let config = dir.path().join(format!("member-{i}.toml"));
            lan_config(&config);
            Member::start(&config)
        })
        .collect();
    members[2].put("market/stall-7", "open");
    assert_eq!(agreed_value(&members, "market/stall-7"), "open");
    for m in &members {
        let status = m.status();
        let neighbours = status["neighbours"].as_array().map_or(0, Vec::len);
        assert!(neighbours >= 1, "member found neighbours by mDNS: {status}");
    }
}
