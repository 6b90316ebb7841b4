//! A member running in the browser (crates/browser, on the `/member` page), beside native member
//! processes: headless Chromium over WebDriver against a consortium of four on loopback, three
//! of them `beaufort node` processes and the fourth this browser tab.
//!
//! What is checked is what the paper promises of a browser replica: with one native member
//! stopped, the quorum (3 of 4) cannot form without the browser's votes, so every commit then is
//! the browser voting; closing its tab and opening the page again restores the member from
//! IndexedDB (keys and state), it catches up and votes again, and no member holds evidence of
//! it voting twice. Every wait polls a condition with the common deadline.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use common::*;
use serde_json::json;
use tokio::runtime::Runtime;
use webdriver::*;

/// The members the browser runs as, and the native member stopped to make its votes needed.
const BROWSER: usize = 3;
const STOPPED: usize = 2;

/// Waits until the page's member runs and is connected to `count` members.
fn wait_connected(browser: &Browser, count: usize) {
    browser.wait(
        "the member to run",
        "document.getElementById('member-state')?.dataset.state === 'running'",
        vec![],
    );
    browser.wait(
        &format!("the browser member to be connected to {count} members"),
        "document.getElementById('member-neighbours')?.dataset.count === arguments[0]",
        vec![json!(count.to_string())],
    );
}

/// A number the page shows.
fn shown_number(browser: &Browser, id: &str) -> u64 {
    browser
        .text(id)
        .parse()
        .unwrap_or_else(|_| panic!("#{id} is not a number: {}", browser.diagnostic()))
}

/// Writes committed one after another at `member` for the latency comparison.
const TIMED_WRITES: usize = 30;

/// The commit latency of [`TIMED_WRITES`] writes submitted one at a time at `member` (each
/// answered 200 = committed), as milliseconds sorted: figures for docs/EVALUATION.md §8, printed,
/// never asserted.
fn commit_latencies(member: &Member, prefix: &str) -> Vec<f64> {
    let mut latencies: Vec<f64> = (0..TIMED_WRITES)
        .map(|i| {
            let started = std::time::Instant::now();
            let (status, body) = member.put_wait(&format!("{prefix}/{i}"), "x", "30s");
            assert_eq!(status, 200, "write {i} did not commit: {body}");
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    latencies
}

fn print_latencies(what: &str, sorted: &[f64]) {
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    println!(
        "commit latency, {what}: p50 {:.1} ms  p90 {:.1} ms  max {:.1} ms ({} writes)",
        at(0.5),
        at(0.9),
        at(1.0),
        sorted.len()
    );
}

#[test]
fn a_browser_member_votes_beside_native_members_and_comes_back_from_its_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    init(dir.path(), 4);
    let mut members: Vec<Member> = (0..BROWSER)
        .map(|i| Member::start(&dir.path().join(format!("member-{i}.toml"))))
        .collect();
    let page = format!("{}/member", members[0].api_url());
    let bls = std::fs::read_to_string(dir.path().join(format!("member-{BROWSER}.bls")))
        .expect("the browser member's BLS key file");
    let p2p = std::fs::read_to_string(dir.path().join(format!("member-{BROWSER}.p2p")))
        .expect("the browser member's libp2p key file");

    // All native: with member 3 absent, the quorum of 3 needs each of the three natives.
    let native = commit_latencies(&members[0], "timed/native");

    let rt = Runtime::new().expect("tokio runtime");
    let driver = Driver::start();
    let browser = Browser::open(&driver, &rt, "browser member");

    // The keys, as an operator pastes them; the page finds which member they are.
    browser.goto(&page);
    browser.wait(
        "the page to ask for keys",
        "document.getElementById('member-state')?.dataset.state === 'keys'",
        vec![],
    );
    browser.js(
        "document.getElementById('bls-key-text').value = arguments[0]; \
         document.getElementById('p2p-key-text').value = arguments[1];",
        vec![json!(bls), json!(p2p)],
    );
    browser.click("#start-button");
    wait_connected(&browser, BROWSER);
    assert_eq!(browser.text("member-index"), BROWSER.to_string());
    assert_eq!(shown_number(&browser, "member-restored"), 0);

    // With one native member stopped, 3 of 4 can only be reached with the browser's vote.
    members[STOPPED].kill();
    browser.wait(
        "the browser to see the stopped member go",
        "document.getElementById('member-neighbours')?.dataset.count === arguments[0]",
        vec![json!((BROWSER - 1).to_string())],
    );
    let votes_before = shown_number(&browser, "member-votes");
    members[0].put("browser/one", "1");
    members[1].wait_for("browser/one", "1");
    // The commit needed the browser's votes: the page shows them (it refreshes twice a second).
    browser.wait(
        "the browser to show the votes the commit needed",
        "Number(document.getElementById('member-votes')?.textContent) > arguments[0]",
        vec![json!(votes_before)],
    );

    // The same with the browser in the place of native member 2.
    let with_browser = commit_latencies(&members[0], "timed/browser");
    print_latencies("members 0, 1, 2 native (3 of 4 needed)", &native);
    print_latencies(
        "members 0, 1 native and 3 in the browser (3 of 4 needed)",
        &with_browser,
    );

    // A write proposed by the browser member itself.
    browser.js(
        "document.getElementById('write-key').value = 'browser/own'; \
         document.getElementById('write-value').value = 'from the tab';",
        vec![],
    );
    browser.click("#write-button");
    browser.wait(
        "the browser's own write to commit",
        "document.getElementById('write-result')?.textContent.startsWith('Committed')",
        vec![],
    );
    members[0].wait_for("browser/own", "from the tab");

    // Close the tab (a new one takes its place, so the browser and its storage stay).
    let client = browser.client();
    let old = rt.block_on(client.window()).expect("the tab's handle");
    let new = rt.block_on(client.new_window(true)).expect("a new tab");
    rt.block_on(client.close_window())
        .expect("close the member's tab");
    rt.block_on(client.switch_to_window(new.handle))
        .expect("switch to the new tab");
    assert!(
        !rt.block_on(client.windows())
            .expect("the open tabs")
            .contains(&old),
        "the member's tab is still open"
    );

    // While it is gone nothing can commit: a write waits for the browser's vote.
    let (status, body) = members[0].put_wait("browser/two", "2", SHORT_WAIT);
    assert_eq!(status, 202, "committed without the browser member: {body}");

    // The dashboard of the same node says which member this browser runs.
    browser.goto(&format!("{}/", members[0].api_url()));
    browser.wait(
        "the dashboard to name the browser's member",
        "document.getElementById('browser-member')?.textContent.startsWith(arguments[0])",
        vec![json!(format!(
            "This browser is member {BROWSER} of this network"
        ))],
    );

    // The page again: the member restores keys and state from IndexedDB, catches up and votes.
    browser.goto(&page);
    wait_connected(&browser, BROWSER - 1);
    assert_eq!(browser.text("member-index"), BROWSER.to_string());
    assert!(
        shown_number(&browser, "member-restored") >= 2,
        "the member did not restore its keys: {}",
        browser.diagnostic()
    );
    members[0].wait_for("browser/two", "2");
    members[1].wait_for("browser/two", "2");
    // The page counts votes since the member started: the reopened one cast the commit's.
    browser.wait(
        "the reopened member to show the votes the commit needed",
        "Number(document.getElementById('member-votes')?.textContent) > 0",
        vec![],
    );

    // Nobody holds evidence of the browser member voting twice, and it holds none either.
    for i in [0, 1] {
        assert_eq!(
            members[i].metric("beaufort_excluded_members"),
            0,
            "member {i} excluded someone"
        );
    }
    assert_eq!(browser.text("member-excluded"), "none");
}
