//! Comments for a configuration file as `beaufort init` writes it, so an operator who opens
//! `member-N.toml` reads what each setting does there rather than in the source. The file is
//! serialised by serde (one source of truth for its shape); this only inserts `#` lines above
//! the tables and keys it knows, so a setting without a comment is still written.

/// The comment above each table header or key (`table`, `key`; an empty key is the table's own
/// header).
const COMMENTS: &[(&str, &str, &str)] = &[
    (
        "network",
        "",
        "Identical in every member's file: its hash is the network id, so members\n\
        with different [network] tables cannot talk.",
    ),
    ("network", "name", "The consortium's name."),
    (
        "network",
        "write_once_prefixes",
        "Keys under these prefixes can be written once only.",
    ),
    (
        "network",
        "aggregate_wait_ms",
        "Votes travel combined into pieces on one tree per key; each member waits up\n\
        to this long for its other tree links (fewer bytes, more latency). Absent: single\n\
        shares. Not part of the network id, but every member should run the same.",
    ),
    (
        "network.members",
        "",
        "One entry per member, in index order: BLS public key and proof of\n\
        possession, libp2p peer id and addresses; name and api_url (its public API URL, which\n\
        wallets, `beaufort doctor` and `beaufort restore` use) are not part of the network id.",
    ),
    (
        "node",
        "",
        "This member's own settings. Relative paths are relative to this file.",
    ),
    (
        "node",
        "index",
        "This member's index in [[network.members]].",
    ),
    (
        "node",
        "bls_key_file",
        "The BLS secret key that signs votes (mode 0600).",
    ),
    (
        "node",
        "p2p_key_file",
        "The libp2p identity seed (mode 0600).",
    ),
    (
        "node",
        "data_dir",
        "The store (redb). Back it up with `beaufort backup`, never by copying\n\
        it while the member runs.",
    ),
    ("node", "listen", "libp2p listen addresses (TCP and QUIC)."),
    (
        "node",
        "api_bind",
        "Where the HTTP API and web app listen; localhost unless you put a proxy\n\
        or firewall in front.",
    ),
    (
        "node",
        "api_token",
        "The operator token: `Authorization: Bearer <token>` for writes,\n\
        /v1/status and /v1/backup. Keep this file private (mode 0600).",
    ),
    (
        "node",
        "tls_cert",
        "With tls_key: serve the API and web app over HTTPS only, with this\n\
        certificate chain (PEM). `beaufort init --tls` makes a self-signed one; or give your own\n\
        (a public CA's lets phones and browsers in without a warning).",
    ),
    (
        "node",
        "tls_key",
        "The private key of tls_cert (PEM, mode 0600).",
    ),
    (
        "node",
        "tls_trust",
        "Certificates the command-line tools (get, put, doctor, restore) trust\n\
        besides the public roots and tls_cert: the other members' self-signed ones.",
    ),
    (
        "node",
        "neighbours",
        "How many members to keep connections to.",
    ),
    (
        "node",
        "discovery",
        "Rendezvous servers (`beaufort discovery`), .../p2p/<peer id>.",
    ),
    (
        "node",
        "mdns",
        "Find members on the local network with mDNS.",
    ),
    ("node", "test_controls", "Tests only; never in production."),
    (
        "node",
        "wire_version",
        "The wire version this member writes during a rolling upgrade\n\
        (docs/OPERATING.md, \"Upgrading\").",
    ),
];

/// `text` (a serialised configuration) with each known table and key preceded by its comment.
pub(crate) fn commented(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    out.push_str("# A Beaufort member's configuration (docs/OPERATING.md).\n");
    let mut table = String::new();
    let mut members_seen = 0;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let header = trimmed
            .strip_prefix("[[")
            .and_then(|rest| rest.strip_suffix("]]"))
            .or_else(|| {
                trimmed
                    .strip_prefix('[')
                    .and_then(|rest| rest.strip_suffix(']'))
            });
        let comment = match header {
            Some(name) => {
                table = name.to_owned();
                if table == "network.members" {
                    members_seen += 1;
                }
                // The members' header is explained above the first member only.
                (table != "network.members" || members_seen == 1)
                    .then(|| find(&table, ""))
                    .flatten()
            }
            None => trimmed
                .split_once('=')
                .and_then(|(key, _)| find(&table, key.trim())),
        };
        if let Some(comment) = comment {
            if header.is_some() && !out.ends_with("\n\n") {
                out.push('\n');
            }
            for part in comment.lines() {
                out.push_str("# ");
                out.push_str(part.trim());
                out.push('\n');
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn find(table: &str, key: &str) -> Option<&'static str> {
    COMMENTS
        .iter()
        .find(|(t, k, _)| *t == table && *k == key)
        .map(|(_, _, comment)| *comment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{init_local, Config, InitOptions};

    /// A consortium of `members` on free loopback ports, with one write-once prefix.
    fn loopback(members: usize, name: &str) -> InitOptions {
        InitOptions {
            members,
            name: name.into(),
            p2p_base_port: 0,
            api_base_port: 0,
            write_once_prefixes: vec!["voucher/".into()],
            neighbours: 7,
            aggregate_wait_ms: None,
        }
    }

    #[test]
    fn an_initialised_configuration_explains_its_settings_and_reads_back_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = InitOptions {
            aggregate_wait_ms: Some(300),
            ..loopback(3, "comments")
        };
        let consortium = init_local(dir.path(), &options).expect("init");
        let path = &consortium.config_files[0];
        let text = std::fs::read_to_string(path).expect("read");
        for (table, key, comment) in COMMENTS {
            let first = comment.lines().next().expect("a line").trim();
            let written = text.contains(&format!("# {first}\n"));
            let present = if key.is_empty() {
                text.contains(&format!("[{table}]"))
            } else {
                text.lines().any(|l| l.starts_with(&format!("{key} =")))
            };
            assert!(
                !present || written,
                "[{table}] {key} has no comment:\n{text}"
            );
        }
        assert!(text.contains("# The operator token"));
        assert_eq!(
            text.matches("# One entry per member").count(),
            1,
            "the members' comment comes once"
        );
        let loaded = Config::load(path).expect("loads");
        let uncommented: Config = toml::from_str(
            &text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .expect("parses");
        assert_eq!(loaded.network, uncommented.network);
        assert_eq!(loaded.network.cadence().aggregate_wait, Some(300));
        assert_eq!(loaded.node.api_token, uncommented.node.api_token);
    }

    /// The wait is paid on every phase of every decision: a network asking for more than
    /// [`crate::config::MAX_AGGREGATE_WAIT_MS`] is refused at load, with the setting named.
    #[test]
    fn an_aggregation_wait_past_the_bound_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let consortium = init_local(dir.path(), &loopback(1, "wait")).expect("init");
        let mut config = consortium.configs[0].clone();
        assert_eq!(
            config.network.cadence().aggregate_wait,
            None,
            "single shares"
        );
        config.network.aggregate_wait_ms = Some(crate::config::MAX_AGGREGATE_WAIT_MS);
        config.validate().expect("the bound itself is accepted");
        config.network.aggregate_wait_ms = Some(crate::config::MAX_AGGREGATE_WAIT_MS + 1);
        let refused = config.validate().expect_err("refused");
        assert!(
            refused.to_string().contains("aggregate_wait_ms"),
            "{refused}"
        );
    }

    #[test]
    fn init_with_tls_writes_commented_settings_that_load_and_serve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let consortium = init_local(dir.path(), &loopback(2, "tls"))
            .expect("init")
            .with_self_signed_tls(dir.path(), &["shop.example".to_owned()])
            .expect("tls");
        let path = &consortium.config_files[1];
        let text = std::fs::read_to_string(path).expect("read");
        for comment in [
            "# With tls_key: serve",
            "# The private key of tls_cert",
            "# Certificates the",
        ] {
            assert!(text.contains(comment), "{comment} missing:\n{text}");
        }
        let config = Config::load(path).expect("load");
        // Relative to the file, like the other paths.
        assert_eq!(config.node.tls_cert, Some(dir.path().join("member-1.crt")));
        assert_eq!(config.node.tls_key, Some(dir.path().join("member-1.key")));
        assert_eq!(config.node.tls_trust, vec![dir.path().join("member-0.crt")]);
        assert!(config.network.members.iter().all(|m| m
            .api_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://127.0.0.1:"))));
        assert!(config.node.tls_server_config().expect("serves").is_some());
        // One without the other is refused.
        let half = text.replace("tls_key = \"member-1.key\"\n", "");
        let half_path = dir.path().join("half.toml");
        std::fs::write(&half_path, half).expect("write");
        let error = Config::load(&half_path).expect_err("half").to_string();
        assert!(error.contains("tls_cert and node.tls_key"), "{error}");
    }
}
