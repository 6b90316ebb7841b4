//! The web app in a real browser: headless Chromium, driven over WebDriver by chromedriver,
//! against a real consortium of four member processes on loopback. What the API-level tests
//! cannot see is checked here: the pages' own JavaScript signs with WebCrypto keys kept in
//! IndexedDB, a wallet served by one member redeems at another member across origins (CORS and
//! the CSP), live updates arrive over server-sent events, and errors reach the person in words.
//!
//! The WebDriver client is fantoccini, the maintained Rust client, taken without any TLS feature:
//! chromedriver listens on loopback, so it talks plain HTTP over the hyper/hyper-util stack the
//! node already uses (axum) and brings no second HTTP client or TLS library. What it does add,
//! through its `webdriver` protocol-types crate, is compiled for the tests only (an older `http`
//! 0.2, `cookie`, ICU's text segmenter) — cheaper to keep than a hand-written WebDriver client.
//!
//! Every wait polls the page (or the API) until a condition holds, with the same generous
//! deadline as the other multi-process tests; nothing sleeps and hopes, nothing asserts timings.
//! Chromium and chromedriver must be installed (Debian: `apt-get install chromium
//! chromium-driver`; `scripts/test.sh` does it): without them the test fails and says so.
//!
//! With `BEAUFORT_SCREENSHOTS=1` the test also writes the screenshots in docs/screenshots/;
//! otherwise it takes them into a temporary directory, so a normal run leaves the tree alone.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use common::*;
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;
use tempfile::TempDir;
use tokio::runtime::Runtime;
use webdriver::*;

/// Where screenshots go: docs/screenshots/ when BEAUFORT_SCREENSHOTS=1, else a temporary
/// directory (kept alive by the second field).
fn screenshot_dir() -> (PathBuf, Option<TempDir>) {
    if std::env::var("BEAUFORT_SCREENSHOTS").as_deref() == Ok("1") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
        std::fs::create_dir_all(&dir).expect("create docs/screenshots");
        (dir, None)
    } else {
        let temp = tempfile::tempdir().expect("tempdir");
        (temp.path().to_path_buf(), Some(temp))
    }
}

/// `GET path` at `member` as JSON, once it answers 200.
fn get_json(member: &Member, path: &str) -> Option<Json> {
    match member.http("GET", path, "") {
        Some((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// The wallet's summary of its last redemption, once there is one (the result area may still show
/// an earlier action's outcome until then).
const AFTER_REDEEM: &str =
    "(() => { const t = document.getElementById('result-summary')?.textContent ?? ''; \
    return /^(Redeemed|Nothing redeemed)/.test(t) && t; })()";

/// One browser test at a time: each starts a consortium and several Chromiums, which two cores
/// run better one after the other than at once.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_web_app_in_a_real_browser_on_a_real_consortium() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let started = Instant::now();
    // First, so a machine without a browser fails at once and says why.
    let driver = Driver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let members = consortium(dir.path(), 4);
    members[0].put("warmup", "1");
    for m in &members {
        m.wait_for("warmup", "1");
    }
    let urls: Vec<String> = members.iter().map(Member::api_url).collect();
    let (shots, _keep) = screenshot_dir();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("consortium up after {:?}", started.elapsed());

    let merchant = Browser::open(&driver, &rt, "merchant (dashboard of member 0)");
    let customer = Browser::open(&driver, &rt, "customer (wallet at member 0)");
    operator_errors_are_shown(&members, &urls, &merchant);
    println!("error display checked after {:?}", started.elapsed());
    let ticket = loyalty_across_merchants(&members, &urls, &merchant, &customer, &shots);
    println!("loyalty checked after {:?}", started.elapsed());
    receipts_checked_in_the_browser(&members, &customer, &ticket, &shots);
    println!("receipts checked after {:?}", started.elapsed());
    wasm_against_native(&customer, &urls[0]);
    println!("wasm measured after {:?}", started.elapsed());
    eshare_between_neighbours(&driver, &rt, &members, &urls, &merchant, &customer);
    println!("eShare checked after {:?}", started.elapsed());
    wallet_kept_across_members(&driver, &rt, &members, &urls, &merchant, &shots);
    println!(
        "wallet export, import and QR checked after {:?}",
        started.elapsed()
    );
    eloan_pledged_once(&driver, &rt, &members, &urls, &shots);
    println!("eLoan checked after {:?}", started.elapsed());

    merchant.screenshots("dashboard", &shots);
    customer.screenshots("eshare", &shots);
    println!(
        "screenshots in {} after {:?}",
        shots.display(),
        started.elapsed()
    );
}

/// (c) A wrong operator token gets a clear 401 message; a key the server refuses shows the
/// server's own words. Leaves the dashboard with the right token saved.
fn operator_errors_are_shown(members: &[Member], urls: &[String], merchant: &Browser) {
    merchant.goto(&format!("{}/", urls[0]));
    merchant.wait_text("node-name", "Merchant A");
    // The feed shows what commits after its stream opened: from here on, everything.
    merchant.wait_text("feed-state", "live");
    merchant.wait_text("token-status", "no token");

    merchant.type_into("#token", "not-the-operator-token");
    merchant.click("#save-token");
    merchant.wait_text("token-status", "rejected");
    let shown = merchant
        .wait(
            "the 401 in the error box",
            "!document.getElementById('error').hidden && document.getElementById('error-list').textContent",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        shown.contains("rejected the operator token")
            && shown.contains("Wrong or missing operator token")
            && shown.contains("(HTTP 401)"),
        "the dashboard explains the refused token: {shown}"
    );

    merchant.type_into("#token", &members[0].token());
    merchant.click("#save-token");
    merchant.wait_text("token-status", "accepted");
    merchant.wait(
        "the error box to clear once the token is accepted",
        "document.getElementById('error').hidden",
        vec![],
    );
    merchant.wait_text("status-member", "0 (numbered 0–3)");

    // Well-formed to the page (130 hex digits, 04 first) but not a point on the curve: only the
    // server can tell, and the person must see what it said.
    let bad_key = format!("04{}", "00".repeat(64));
    let (status, body) = members[0]
        .http(
            "POST",
            "/v1/loyalty/tickets",
            &json!({ "owner": bad_key, "points": 5 }).to_string(),
        )
        .expect("member 0 answers");
    assert!(
        (400..500).contains(&status),
        "the server refuses the key: {status} {body}"
    );
    let server_says: String = match serde_json::from_str::<Json>(&body) {
        Ok(json) => json["error"].as_str().unwrap_or_default().to_owned(),
        Err(_) => body.trim().chars().take(200).collect(),
    };
    assert!(!server_says.is_empty(), "the server gives a reason: {body}");
    merchant.type_into("#issue-owner", &bad_key);
    merchant.type_into("#issue-points", "5");
    merchant.click("#issue-button");
    let result = merchant
        .wait(
            "the refused issue in #issue-result",
            "document.getElementById('issue-result').classList.contains('fail') && document.getElementById('issue-result').textContent",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        result.contains(&server_says) && result.contains(&format!("(HTTP {status})")),
        "#issue-result shows the server's words {server_says:?} and status {status}: {result}"
    );
    let errors = merchant.text("error-list");
    assert!(errors.contains(&server_says), "the error box too: {errors}");
    merchant.click("#error-dismiss");
}

/// (a) Points issued at merchant A are redeemed at merchant B from a wallet served by A; every
/// member agrees; a second redemption is refused; the dashboard's feed shows both steps.
fn loyalty_across_merchants(
    members: &[Member],
    urls: &[String],
    merchant: &Browser,
    customer: &Browser,
    shots: &Path,
) -> String {
    customer.goto(&format!("{}/wallet", urls[0]));
    let pk = customer.public_key();
    customer.wait_text("balance", "0");
    customer.wait_text("live-state", "live");

    merchant.type_into("#issue-owner", &pk);
    merchant.type_into("#issue-points", "50");
    merchant.click("#issue-button");
    let ticket = merchant
        .wait(
            "the issued ticket's id",
            "document.getElementById('issue-result').classList.contains('ok') && document.getElementById('issue-ticket')?.textContent",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(ticket.len(), 32, "a ticket id is 16 bytes in hex: {ticket}");
    let key = format!("loyalty/ticket/{ticket}");

    // The wallet learns of it by itself (live updates), without a reload.
    customer.wait_text("balance", "50");
    customer.wait_for(&format!(
        "#ticket-{ticket}[data-status=live][data-points='50']"
    ));

    // The shop list: every member by name, this shop first chosen.
    customer.wait_for("#redeem-merchant option[value='3']");
    let options = customer.js(
        "return [...document.querySelectorAll('#redeem-merchant option')].map(o => [o.value, o.textContent]);",
        vec![],
    );
    assert_eq!(
        options,
        json!([
            ["0", "Merchant A (this shop)"],
            ["1", "Merchant B"],
            ["2", "Merchant C"],
            ["3", "Merchant D"]
        ]),
        "the merchant selector lists the network's members"
    );
    assert_eq!(
        customer.js(
            "return document.getElementById('redeem-merchant').value;",
            vec![]
        ),
        json!("0"),
        "it defaults to the shop that served the wallet"
    );
    customer.select("#redeem-merchant", "1");
    customer.type_into("#redeem-amount", "50");
    customer.click("#redeem-button");
    let summary = customer
        .wait(
            "the redemption's result",
            "document.getElementById('result').classList.contains('ok') && document.getElementById('result-summary')?.textContent",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        summary.contains("Redeemed 50 points at Merchant B"),
        "{summary}"
    );
    customer.wait_text("balance", "0");
    customer.wait_for(&format!(
        "#ticket-{ticket}[data-status=redeemed][data-points='0']"
    ));
    customer.screenshots("wallet", shots);

    for (i, m) in members.iter().enumerate() {
        eventually(
            &format!("member {i} to hold the ticket as redeemed at member 1"),
            || {
                get_json(m, &format!("/v1/loyalty/tickets?owner={pk}")).is_some_and(|w| {
                    let t = &w["tickets"][0];
                    w["balance"] == 0
                        && w["tickets"].as_array().map(Vec::len) == Some(1)
                        && t["id"] == json!(ticket)
                        && t["status"] == "redeemed"
                        && t["points"] == 0
                        && t["last"]["action"] == "redeem"
                        && t["last"]["merchant"] == 1
                        && t["last"]["amount"] == 50
                })
            },
        );
    }

    // Spending the same points again: the wallet refuses, says why, and nothing changes.
    customer.type_into("#redeem-amount", "10");
    customer.click("#redeem-button");
    let refused = customer
        .wait(
            "the refusal of a second redemption",
            "document.getElementById('result').classList.contains('fail') && !document.getElementById('error').hidden && document.getElementById('error-list').textContent",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        refused.contains("You have 0 points; you cannot redeem 10."),
        "{refused}"
    );
    assert!(
        customer.text("result-summary").contains("Nothing redeemed"),
        "{}",
        customer.text("result-summary")
    );
    assert_eq!(customer.text("balance"), "0");
    // And the consortium would refuse it too, at any member.
    let (status, body) = members[2]
        .http(
            "GET",
            &format!("/v1/loyalty/tickets/{ticket}/challenge?action=redeem&amount=10"),
            "",
        )
        .expect("member 2 answers");
    assert_eq!(status, 409, "{body}");

    // The dashboard, open all along, saw the issue here and the redemption at merchant B.
    let row = |kind: &str| format!("#feed .feed-item.feed-{kind}[data-key='{key}']");
    merchant.wait_for(&row("issue"));
    merchant.wait_for(&row("redeem"));
    let redeemed = merchant.js(
        "return document.querySelector(arguments[0]).textContent;",
        vec![json!(row("redeem"))],
    );
    let redeemed = redeemed.as_str().unwrap_or_default();
    assert!(
        redeemed.contains("Redeemed 50 points")
            && redeemed.contains("at Merchant B")
            && redeemed.contains("0 left (used up)"),
        "{redeemed}"
    );
    let issued = merchant.js(
        "return document.querySelector(arguments[0]).textContent;",
        vec![json!(row("issue"))],
    );
    assert!(
        issued
            .as_str()
            .is_some_and(|t| t.contains("Issued 50 points") && t.contains("(this shop)")),
        "{issued}"
    );
    ticket
}

/// Waits until /verify has loaded its WebAssembly verifier and the network's keys; fails at once
/// with the page's words when it could not (a node built without the wasm tools says which).
fn verifier_ready(browser: &Browser) {
    let state = browser.wait(
        "the verifier to load the network's keys",
        "(() => { const s = document.getElementById('network-state')?.dataset.state; \
         return s && s !== 'loading' && s; })()",
        vec![],
    );
    assert_eq!(
        state,
        json!("ready"),
        "/verify could not load its verifier: {}",
        browser.text("network-state")
    );
}

/// The verdict `/verify` shows once it has checked a receipt: `verified` or `refused`.
fn verdict(browser: &Browser, what: &str) -> String {
    let state = browser.wait(
        what,
        "(() => { const r = document.getElementById('verify-result'); \
         return r && !r.hidden && r.dataset.state; })()",
        vec![],
    );
    state.as_str().unwrap_or_default().to_owned()
}

/// Pastes `receipt` into /verify (as a person would, replacing what was there) and checks it.
fn paste_and_check(browser: &Browser, receipt: &str) -> String {
    browser.js(
        "const t = document.getElementById('receipt-text'); t.value = arguments[0]; \
         t.dispatchEvent(new Event('input'));",
        vec![json!(receipt)],
    );
    browser.click("#verify-button");
    verdict(browser, "the receipt's verdict")
}

/// (d) The wallet's receipt link opens /verify, which checks the receipt in this browser with the
/// WebAssembly build of `beaufort verify`'s code against the network's keys and only then shows
/// the ticket; tampered receipts, pasted or from a file, are refused with the reason and show no
/// value.
fn receipts_checked_in_the_browser(
    members: &[Member],
    customer: &Browser,
    ticket: &str,
    shots: &Path,
) {
    let key = format!("loyalty/ticket/{ticket}");
    let committed = members[3].value(&key).expect("the ticket is committed");
    customer.wait_for(&format!("#check-{ticket}"));
    customer.click(&format!("#check-{ticket}"));
    verifier_ready(customer);
    assert_eq!(
        verdict(customer, "the wallet's receipt checked"),
        "verified"
    );
    assert_eq!(customer.text("verified-key"), key);
    assert_eq!(customer.text("verified-value"), committed);
    let summary = customer.text("verify-summary");
    assert!(summary.contains("of 4 members"), "{summary}");

    // The same receipt as another member hands it out, then edited in every field that matters.
    let (status, genuine) = members[1]
        .http("GET", &format!("/v1/receipts/{key}"), "")
        .expect("member 1 answers");
    assert_eq!(status, 200, "{genuine}");
    let receipt: Json = serde_json::from_str(&genuine).expect("receipt JSON");
    let forged_text = committed.replace("\"points\":0", "\"points\":5000");
    assert_ne!(
        forged_text, committed,
        "the ticket's value names its points: {committed}"
    );
    let tampered: Vec<(&str, Json, &str)> = vec![
        (
            "its text value",
            {
                let mut r = receipt.clone();
                r["value"] = json!(forged_text);
                r
            },
            "is not what its value_hex holds",
        ),
        (
            "its value and value_hex",
            {
                let mut r = receipt.clone();
                r["value"] = json!(forged_text);
                r["value_hex"] = json!(hex::encode(&forged_text));
                r
            },
            "certificate does not verify",
        ),
        (
            "its signature",
            {
                let mut r = receipt.clone();
                let signature = r["certificate"]["signature"]
                    .as_str()
                    .expect("hex")
                    .to_owned();
                let flipped = if signature.ends_with('0') { '1' } else { '0' };
                r["certificate"]["signature"] =
                    json!(format!("{}{flipped}", &signature[..signature.len() - 1]));
                r
            },
            "",
        ),
        (
            "its signer set",
            {
                // Whichever form the signer multiset took, name another set with the same
                // signature.
                let mut r = receipt.clone();
                let signers = &mut r["certificate"]["signers"];
                if let Some(bits) = signers["Bitmap"]["bits"][0].as_u64() {
                    signers["Bitmap"]["bits"][0] = json!(bits ^ 1);
                } else {
                    let form = if signers["AllBut"].is_object() {
                        "AllBut"
                    } else {
                        "Listed"
                    };
                    let gaps = signers[form]["gaps"].as_array_mut().expect("a signer list");
                    if gaps.pop().is_none() {
                        gaps.push(json!(0));
                    }
                }
                r
            },
            "certificate does not verify",
        ),
    ];
    for (what, forged, reason) in &tampered {
        assert_eq!(
            paste_and_check(customer, &forged.to_string()),
            "refused",
            "a receipt with edited {what} must be refused"
        );
        let summary = customer.text("verify-summary");
        assert!(
            summary.starts_with("Refused: ") && summary.contains(reason),
            "edited {what}: {summary}"
        );
        assert_eq!(
            customer.text("verified-value"),
            "",
            "edited {what}: no value shown"
        );
        assert!(
            customer.js("return document.getElementById('verified').hidden;", vec![])
                == json!(true),
            "edited {what}: the value's facts stay hidden"
        );
    }
    // From a file, as a customer keeps it.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("receipt.json");
    std::fs::write(&file, tampered[1].1.to_string()).expect("write the receipt file");
    customer.js(
        "document.getElementById('receipt-text').value = '';",
        vec![],
    );
    let input = customer.find("#receipt-file");
    customer
        .rt
        .block_on(input.send_keys(&file.display().to_string()))
        .expect("choose the receipt file");
    assert_eq!(verdict(customer, "the file's verdict"), "refused");
    assert_eq!(customer.text("verified-value"), "");
    // And the genuine receipt pasted: shown again.
    assert_eq!(paste_and_check(customer, &genuine), "verified");
    assert_eq!(customer.text("verified-value"), committed);
    customer.screenshots("verify", shots);
}

/// BLS in the browser against native code, on identical work (`beaufort_wasm::BenchFixture`, a
/// committee of 100 with a 67-signer certificate): printed for docs/EVALUATION.md, asserted only
/// to compute the right answers, never on timings.
fn wasm_against_native(browser: &Browser, url: &str) {
    const MEMBERS: u16 = 100;
    const SIGNERS: u16 = 67;
    browser.goto(&format!("{url}/verify"));
    verifier_ready(browser);
    let script = "const [members, signers, done] = arguments;
        (async () => {
          const wasm = await import('/web/beaufort_wasm.js');
          await wasm.default();
          const module = await (await fetch('/web/beaufort_wasm_bg.wasm')).arrayBuffer();
          const gzip = await new Response(new Blob([module]).stream()
            .pipeThrough(new CompressionStream('gzip'))).arrayBuffer();
          let start = performance.now();
          const f = new wasm.BenchFixture(members, signers);
          const setup = performance.now() - start;
          const time = (name, op, n) => {
            op();
            const s = performance.now();
            for (let i = 0; i < n; i++) if (!op()) throw new Error(`${name} failed`);
            return (performance.now() - s) / n;
          };
          done({
            bytes: module.byteLength, gzip: gzip.byteLength, setup,
            sign: time('sign', () => f.sign(), 30),
            verify: time('verify', () => f.verifyOne(), 30),
            certificate: time('certificate', () => f.verifyCertificate(), 30),
            members: time('members', () => f.loadMembers(), 2),
          });
        })().catch((e) => done({ error: String(e) }));";
    let wasm = browser
        .rt
        .block_on(
            browser
                .client()
                .execute_async(script, vec![json!(MEMBERS), json!(SIGNERS)]),
        )
        .unwrap_or_else(|e| panic!("the wasm measurement failed to run: {e}"));
    assert!(wasm.get("error").is_none(), "wasm measurement: {wasm}");

    let fixture = beaufort_wasm::BenchFixture::build(MEMBERS, SIGNERS).expect("fixture");
    let time = |op: &dyn Fn() -> bool, n: u32| {
        assert!(op());
        let start = Instant::now();
        for _ in 0..n {
            assert!(op());
        }
        start.elapsed().as_secs_f64() * 1000.0 / f64::from(n)
    };
    let native = [
        ("BLS sign (a vote)", "sign", time(&|| fixture.sign(), 300)),
        (
            "BLS verify one vote",
            "verify",
            time(&|| fixture.verify_one(), 300),
        ),
        (
            "certificate of 67 of 100: verify",
            "certificate",
            time(&|| fixture.verify_certificate(), 300),
        ),
        (
            "membership of 100: load (proofs of possession)",
            "members",
            time(&|| fixture.load_members(), 5),
        ),
    ];
    println!("wasm vs native (ms per operation):");
    for (name, field, native_ms) in native {
        let wasm_ms = wasm[field].as_f64().expect("a number");
        println!(
            "  {name}: wasm {wasm_ms:.3} ms, native {native_ms:.3} ms, {:.1}x",
            wasm_ms / native_ms
        );
    }
    println!(
        "  wasm module: {} bytes ({} gzipped)",
        wasm["bytes"], wasm["gzip"]
    );
}

/// (b) An owner lends a tool to a neighbour whose wallet lives at another member, takes it back,
/// and the neighbour reports it broken; a stranger never gets the owner's buttons.
fn eshare_between_neighbours(
    driver: &Driver,
    rt: &Runtime,
    members: &[Member],
    urls: &[String],
    merchant: &Browser,
    owner: &Browser,
) {
    owner.goto(&format!("{}/eshare", urls[0]));
    let owner_pk = owner.public_key();
    owner.wait_text("live-state", "live");
    owner.wait(
        "the register button to be enabled",
        "!document.getElementById('register-button').disabled",
        vec![],
    );
    owner.type_into("#tool-name", "Hammer drill");
    owner.click("#register-button");
    owner.wait(
        "the registration's result",
        "document.getElementById('result').classList.contains('ok')",
        vec![],
    );
    let id = owner
        .wait(
            "the new tool in the list",
            "[...document.querySelectorAll('#tools li.tool')].find(li => li.dataset.owner === arguments[0] && li.textContent.includes('Hammer drill'))?.dataset.id",
            vec![json!(owner_pk)],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned();
    owner.wait_text(&format!("state-{id}"), "Available");
    owner.wait_text(&format!("owner-{id}"), "you");
    owner.wait_for(&format!("#lend-{id}"));

    let borrower = Browser::open(driver, rt, "borrower (eShare at member 2)");
    borrower.goto(&format!("{}/eshare", urls[2]));
    let borrower_pk = borrower.public_key();
    borrower.wait_text("live-state", "live");
    assert_ne!(borrower_pk, owner_pk, "another browser, another key");
    // Same origin as the owner but another browser profile: another key, no owner's rights.
    let stranger = Browser::open(driver, rt, "stranger (eShare at member 0)");
    stranger.goto(&format!("{}/eshare", urls[0]));
    let stranger_pk = stranger.public_key();
    stranger.wait_text("live-state", "live");
    assert!(stranger_pk != owner_pk && stranger_pk != borrower_pk);
    let no_buttons = |who: &Browser, state: &str| {
        who.wait_text(&format!("state-{id}"), state);
        for button in ["lend", "return", "broken"] {
            assert!(
                !who.exists(&format!("#{button}-{id}")),
                "{}: no {button} button on {id} while it is {state}",
                who.who
            );
        }
    };
    no_buttons(&stranger, "Available");

    owner.click(&format!("#lend-{id}"));
    owner.type_into(&format!("#lend-to-{id}"), &borrower_pk);
    owner.click(&format!("#lend-confirm-{id}"));
    owner.wait_text(&format!("state-{id}"), "Lent out");
    owner.wait_for(&format!("#return-{id}"));

    borrower.wait_text(&format!("state-{id}"), "Lent out");
    borrower.wait_text(&format!("borrower-{id}"), "you");
    no_buttons(&borrower, "Lent out");
    no_buttons(&stranger, "Lent out");

    owner.click(&format!("#return-{id}"));
    owner.wait_text(&format!("state-{id}"), "Available");

    // The last borrower may report it broken (the stranger still may not).
    borrower.wait_text(&format!("state-{id}"), "Available");
    borrower.wait_for(&format!("#broken-{id}"));
    assert!(
        !borrower.exists(&format!("#lend-{id}")),
        "only the owner lends"
    );
    no_buttons(&stranger, "Available");
    let note = "the chuck wobbles and the motor smells burnt";
    borrower.click(&format!("#broken-{id}"));
    borrower.type_into(&format!("#broken-note-{id}"), note);
    borrower.click(&format!("#broken-confirm-{id}"));
    borrower.wait(
        "the report's result",
        "document.getElementById('result').classList.contains('ok')",
        vec![],
    );
    borrower.wait_text(&format!("state-{id}"), "Broken");

    for (i, m) in members.iter().enumerate() {
        eventually(&format!("member {i} to hold {id} as Broken"), || {
            get_json(m, &format!("/v1/assets/{id}")).is_some_and(|a| {
                a["contract"] == "eshare"
                    && a["state"]["name"] == "Broken"
                    && a["state"]["value"]["note"] == note
                    && a["state"]["value"]["reported_by"] == json!(borrower_pk)
                    && a["state"]["value"]["owner"] == json!(owner_pk)
                    && a["last"]["transition"] == "report_broken"
            })
        });
    }
    no_buttons(&stranger, "Broken");
    owner.wait_text(&format!("state-{id}"), "Broken");

    // A second tool, lent out, so the list (and its screenshot) shows more than one state.
    owner.type_into("#tool-name", "Ladder");
    owner.click("#register-button");
    let ladder = owner
        .wait(
            "the ladder in the list",
            "[...document.querySelectorAll('#tools li.tool')].find(li => li.dataset.owner === arguments[0] && li.textContent.includes('Ladder'))?.dataset.id",
            vec![json!(owner_pk)],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned();
    owner.wait_for(&format!("#lend-{ladder}"));
    owner.click(&format!("#lend-{ladder}"));
    owner.type_into(&format!("#lend-to-{ladder}"), &borrower_pk);
    owner.click(&format!("#lend-confirm-{ladder}"));
    owner.wait_text(&format!("state-{ladder}"), "Lent out");

    // The dashboard renders asset changes from the register's own record.
    let row = format!("#feed .feed-item.feed-broken[data-key='asset/{id}']");
    merchant.wait_for(&row);
    let text = merchant.js(
        "return document.querySelector(arguments[0]).textContent;",
        vec![json!(row)],
    );
    assert!(
        text.as_str()
            .is_some_and(|t| t.contains("eShare: Hammer drill is broken")
                && t.contains("Reported broken by")
                && !t.contains("report_broken")),
        "{text}"
    );
}

/// The wallet people can keep. The merchant adds a customer by a picture of the QR code their
/// wallet shows (a screenshot of it, uploaded on the dashboard); the customer exports the wallet
/// at member A under a passphrase, opens the export's link to member B's wallet page (another
/// origin, so another, empty wallet until then), is refused with a wrong passphrase, imports it
/// with the right one, sees the same points and redeems them there. A second browser at member C
/// imports the same export from a file and sees the same, now spent, ticket.
fn wallet_kept_across_members(
    driver: &Driver,
    rt: &Runtime,
    members: &[Member],
    urls: &[String],
    merchant: &Browser,
    shots: &Path,
) {
    let files = tempfile::tempdir().expect("tempdir");
    let customer = Browser::open(driver, rt, "customer (wallet kept across members)");
    customer.goto(&format!("{}/wallet", urls[0]));
    let pk = customer.public_key();
    customer.wait_text("live-state", "live");
    customer.wait(
        "the key's QR code to be drawn",
        "(() => { const img = document.getElementById('my-qr'); \
         return !img.hidden && img.dataset.pk === arguments[0] && img.complete && img.naturalWidth > 0; })()",
        vec![json!(pk)],
    );

    // The merchant reads the customer's key from a picture of the QR code.
    // Whole in the viewport, as a phone's camera would frame it (a screenshot of an element at
    // the viewport's edge comes out cut or squeezed).
    customer.js(
        "document.getElementById('my-qr').scrollIntoView({ block: 'center' });",
        vec![],
    );
    let png = customer.element_png("#my-qr");
    let size = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    assert!(
        png.len() > 24 && size(16) == size(20) && size(16) >= 200,
        "the picture is the whole square code"
    );
    let picture = files.path().join("customer-qr.png");
    std::fs::write(&picture, &png).expect("write the picture");
    merchant.goto(&format!("{}/", urls[0]));
    merchant.wait_text("token-status", "accepted");
    merchant.choose_file("#scan-file", &picture);
    let scanned = merchant
        .wait(
            "the scanned key",
            "(() => { const s = document.getElementById('scan-status'); \
             return ['found', 'none', 'error'].includes(s.dataset.state) && s.dataset.state + ': ' + s.textContent; })()",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(scanned.starts_with("found: "), "{scanned}");
    assert_eq!(
        merchant.value("issue-owner"),
        pk,
        "the QR code gave the customer's key"
    );
    merchant.type_into("#issue-points", "30");
    merchant.click("#issue-button");
    let ticket = merchant
        .wait(
            "the ticket issued to the scanned key",
            "document.getElementById('issue-result').classList.contains('ok') && document.getElementById('issue-ticket')?.textContent",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned();
    customer.wait_text("balance", "30");

    // A picture without a QR code is told apart from one with a code.
    let blank = files.path().join("blank.png");
    std::fs::write(&blank, merchant.element_png("#issue-points")).expect("write the picture");
    merchant.choose_file("#scan-file", &blank);
    merchant.wait(
        "the scanner to find nothing in a picture of a text field",
        "document.getElementById('scan-status').dataset.state === 'none'",
        vec![],
    );

    // Export at member A.
    let passphrase = "correct horse battery staple";
    customer.type_into("#export-pass", passphrase);
    customer.type_into("#export-pass2", "a different passphrase");
    customer.click("#export-button");
    customer.wait(
        "the refusal of two different passphrases",
        "document.getElementById('error-list').textContent.includes('The two passphrases differ')",
        vec![],
    );
    customer.type_into("#export-pass2", passphrase);
    customer.click("#export-button");
    customer.wait(
        "the exported wallet",
        "!document.getElementById('export-result').hidden && document.getElementById('export-text').value",
        vec![],
    );
    let exported = customer.value("export-text");
    let parsed: Json = serde_json::from_str(&exported).expect("the export is JSON");
    assert_eq!(parsed["format"], "beaufort-wallet-1", "{exported}");
    assert_eq!(parsed["public_key"], json!(pk), "{exported}");
    assert_eq!(parsed["kdf"]["name"], "PBKDF2", "{exported}");
    assert_eq!(parsed["cipher"]["name"], "AES-GCM", "{exported}");
    assert!(
        parsed.get("d").is_none() && !exported.contains("\"pkcs8\""),
        "no key material in the clear: {exported}"
    );

    // The export's link opens member B's wallet page with the wallet waiting for its passphrase.
    let link = customer
        .wait(
            "the link to Merchant B's wallet page",
            "document.querySelector('#export-links a.import-link[data-member=\"1\"]')?.href",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        link.starts_with(&format!("{}/wallet#wallet=", urls[1])),
        "{link}"
    );
    customer.click("#export-links a.import-link[data-member='1']");
    customer.wait_text("node-name", "Merchant B");
    let fresh = customer.public_key();
    assert_ne!(
        fresh, pk,
        "another origin holds another wallet until the import"
    );
    customer.wait(
        "the linked wallet in the import form, and out of the address bar",
        "document.getElementById('import-text').value.length > 0 && location.hash === ''",
        vec![],
    );
    assert_eq!(customer.value("import-text"), exported);

    customer.type_into("#import-pass", "not the passphrase");
    customer.click("#import-button");
    customer.wait(
        "the refusal of a wrong passphrase",
        "document.getElementById('error-list').textContent.includes('Wrong passphrase')",
        vec![],
    );
    assert_eq!(
        customer.public_key(),
        fresh,
        "a refused import changes nothing"
    );

    customer.type_into("#import-pass", passphrase);
    customer.click("#import-button");
    customer.wait(
        "the imported key",
        "document.getElementById('my-pk').dataset.pk === arguments[0]",
        vec![json!(pk)],
    );
    customer.wait_text("balance", "30");
    customer.wait_for(&format!(
        "#ticket-{ticket}[data-status=live][data-points='30']"
    ));
    customer.wait(
        "the QR code of the imported key",
        "document.getElementById('my-qr').dataset.pk === arguments[0]",
        vec![json!(pk)],
    );

    // Redeemed at member B, where the wallet now lives too.
    customer.wait_for("#redeem-merchant option[value='1']");
    assert_eq!(
        customer.js(
            "return document.getElementById('redeem-merchant').value;",
            vec![]
        ),
        json!("1"),
        "member B's page defaults to member B"
    );
    customer.type_into("#redeem-amount", "30");
    customer.click("#redeem-button");
    let summary = customer
        .wait("the redemption at member B", AFTER_REDEEM, vec![])
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        summary.contains("Redeemed 30 points at Merchant B"),
        "{summary}"
    );
    customer.wait_text("balance", "0");
    for (i, m) in members.iter().enumerate() {
        eventually(
            &format!("member {i} to hold the scanned customer's ticket as redeemed at member 1"),
            || {
                get_json(m, &format!("/v1/loyalty/tickets/{ticket}")).is_some_and(|t| {
                    t["owner"] == json!(pk)
                        && t["points"] == 0
                        && t["last"]["action"] == "redeem"
                        && t["last"]["merchant"] == 1
                })
            },
        );
    }

    // The same export, from a file, in another browser at member C: the same wallet.
    let file = files.path().join("beaufort-wallet.json");
    std::fs::write(&file, &exported).expect("write the export");
    let phone = Browser::open(driver, rt, "customer's new phone (wallet at member 2)");
    phone.goto(&format!("{}/wallet", urls[2]));
    let other = phone.public_key();
    assert_ne!(other, pk);
    phone.choose_file("#import-file", &file);
    phone.wait(
        "the file's text in the import form",
        "document.getElementById('import-text').value.startsWith('{')",
        vec![],
    );
    phone.type_into("#import-pass", passphrase);
    phone.click("#import-button");
    phone.wait(
        "the imported key on the new phone",
        "document.getElementById('my-pk').dataset.pk === arguments[0]",
        vec![json!(pk)],
    );
    phone.wait_for(&format!(
        "#ticket-{ticket}[data-status=redeemed][data-points='0']"
    ));
    phone.wait_text("balance", "0");
    customer.screenshots("wallet-imported", shots);
}

/// The eLoan page: a supplier at member 0 registers an invoice and pledges it to a lender whose
/// browser is at member 3; the lender releases it; the same invoice cannot be registered again.
fn eloan_pledged_once(
    driver: &Driver,
    rt: &Runtime,
    members: &[Member],
    urls: &[String],
    shots: &Path,
) {
    let lender = Browser::open(driver, rt, "lender (eLoan at member 3)");
    lender.goto(&format!("{}/eloan", urls[3]));
    let lender_pk = lender.public_key();
    lender.wait_text("live-state", "live");

    let supplier = Browser::open(driver, rt, "supplier (eLoan at member 0)");
    supplier.goto(&format!("{}/eloan", urls[0]));
    supplier.public_key();
    supplier.wait_text("live-state", "live");
    supplier.wait(
        "the register button to be enabled",
        "!document.getElementById('register-button').disabled",
        vec![],
    );
    let register = |number: &str| {
        supplier.type_into("#invoice-supplier", "BE0123.456.789");
        supplier.type_into("#invoice-number", number);
        supplier.type_into("#invoice-debtor", "Bakery Janssens");
        supplier.type_into("#invoice-amount", "1250");
        supplier.click("#register-button");
    };
    register("2026/0042");
    supplier.wait(
        "the registration's result",
        "document.getElementById('result').classList.contains('ok')",
        vec![],
    );
    let id = "invoice-be0123_456_789-2026_0042";
    supplier.wait_text(&format!("state-{id}"), "Free to pledge");
    supplier.click(&format!("#pledge-{id}"));
    supplier.type_into(&format!("#pledge-to-{id}"), &lender_pk);
    supplier.click(&format!("#pledge-confirm-{id}"));
    supplier.wait_text(&format!("state-{id}"), "Pledged");
    supplier.wait_text(&format!("lender-{id}"), &format!("{}…", &lender_pk[..12]));

    lender.wait_text(&format!("state-{id}"), "Pledged");
    lender.wait_text(&format!("lender-{id}"), "you");
    assert!(
        !supplier.exists(&format!("#release-{id}")),
        "only the lender may release"
    );
    supplier.screenshots("eloan", shots);
    lender.click(&format!("#release-{id}"));
    lender.wait_text(&format!("state-{id}"), "Released");
    supplier.wait_text(&format!("state-{id}"), "Released");
    assert!(
        supplier
            .text(&format!("invoice-{id}"))
            .contains("Released (repaid) by"),
        "the step is named in words: {}",
        supplier.text(&format!("invoice-{id}"))
    );

    // The same invoice again: the contract refuses, and the page says so.
    register("2026/0042");
    let refused = supplier
        .wait(
            "the refusal of a second registration",
            "document.getElementById('result').classList.contains('fail') && document.getElementById('error-list').textContent",
            vec![],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        refused.contains("Could not register invoice 2026/0042"),
        "{refused}"
    );
    for (i, m) in members.iter().enumerate() {
        eventually(
            &format!("member {i} to hold the invoice as released"),
            || {
                get_json(m, &format!("/v1/assets/{id}")).is_some_and(|a| {
                    a["state"]["name"] == "Released"
                        && a["state"]["value"]["lender"] == json!(lender_pk)
                })
            },
        );
    }
}

/// `beaufort demo --serve` as a person runs it, killed when dropped: what it printed up to
/// "press Ctrl-C to stop".
struct ServedDemo {
    child: Child,
    printed: Vec<String>,
}

impl ServedDemo {
    fn start(args: &[&str]) -> ServedDemo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_beaufort"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run beaufort demo");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, printed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut demo = ServedDemo {
            child,
            printed: Vec::new(),
        };
        let deadline = Instant::now() + DEADLINE * 2;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match printed.recv_timeout(left) {
                Ok(line) => {
                    let done = line == "press Ctrl-C to stop";
                    demo.printed.push(line);
                    if done {
                        return demo;
                    }
                }
                Err(e) => panic!(
                    "the demo did not start serving ({e}); it printed:\n{}",
                    demo.printed.join("\n")
                ),
            }
        }
    }

    /// The first printed line that starts with `prefix` (leading spaces ignored).
    fn line(&self, prefix: &str) -> &str {
        self.printed
            .iter()
            .map(|l| l.trim_start())
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| {
                panic!(
                    "the demo printed no line starting {prefix:?}:\n{}",
                    self.printed.join("\n")
                )
            })
    }
}

impl Drop for ServedDemo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo's pages show something: its printed wallet link opens a customer's wallet with
/// points at a member (and they can be spent there), eShare lists tools lent out, back and
/// broken in words, eLoan lists invoices free, pledged and released, and the printed metrics and
/// OpenAPI addresses answer. Screenshots of these pages are docs/screenshots/demo-*.png.
#[test]
fn the_demo_leaves_pages_with_points_tools_and_loans() {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let driver = Driver::start();
    let demo = ServedDemo::start(&["demo", "--nodes", "4", "--duration", "3s", "--serve"]);
    let (shots, _keep) = screenshot_dir();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");

    // "  member 0: TOKEN  (dashboard http://ADDRESS/)"
    let member0 = demo
        .printed
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("member 0: ") && l.ends_with("/)"))
        .unwrap_or_else(|| panic!("no token line for member 0:\n{}", demo.printed.join("\n")))
        .to_owned();
    let words: Vec<&str> = member0.split_whitespace().collect();
    let token = words.get(2).copied().expect("a token");
    let base = words
        .last()
        .and_then(|w| w.strip_suffix("/)"))
        .expect("the dashboard address")
        .to_owned();
    let link = demo.line(&format!("{base}/wallet#wallet=")).to_owned();
    let passphrase = demo
        .line("Alice's wallet, 215 points in 3 tickets")
        .split('"')
        .nth(1)
        .expect("a quoted passphrase")
        .to_owned();
    assert!(demo
        .line("metrics (Prometheus/OpenMetrics): ")
        .ends_with(&format!("{base}/metrics")));
    assert!(demo
        .line("API description (OpenAPI 3.1): ")
        .ends_with(&format!("{base}/openapi.json")));
    assert!(demo.line("CLI: ").contains(" get --config "));

    // The dashboard first, so its feed shows the redemption below.
    let merchant = Browser::open(&driver, &rt, "merchant (demo dashboard of member 0)");
    merchant.goto(&format!("{base}/"));
    merchant.wait_text("feed-state", "live");
    merchant.type_into("#token", token);
    merchant.click("#save-token");
    merchant.wait_text("token-status", "accepted");
    let answers = merchant.js(
        "return Promise.all(['/metrics', '/openapi.json'].map((p) => fetch(p).then((r) => r.status)));",
        vec![],
    );
    assert_eq!(answers, json!([200, 200]), "the printed addresses answer");

    let customer = Browser::open(&driver, &rt, "customer (the demo's wallet link)");
    customer.goto(&link);
    customer.wait(
        "the linked wallet in the import form",
        "document.getElementById('import-text').value.length > 0 && document.getElementById('import-button').disabled === false",
        vec![],
    );
    customer.type_into("#import-pass", &passphrase);
    customer.click("#import-button");
    customer.wait_text("balance", "215");
    assert_eq!(
        customer.js(
            "return document.querySelectorAll('#tickets li.ticket').length;",
            vec![]
        ),
        json!(3)
    );
    customer.select("#redeem-merchant", "1");
    customer.type_into("#redeem-amount", "20");
    customer.click("#redeem-button");
    let summary = customer.wait("the redemption at member 1", AFTER_REDEEM, vec![]);
    assert!(
        summary
            .as_str()
            .is_some_and(|t| t.starts_with("Redeemed 20 points")),
        "{summary}"
    );
    customer.wait_text("balance", "195");
    customer.screenshots("demo-wallet", &shots);
    merchant.wait_for("#feed .feed-item.feed-redeem");
    merchant.screenshots("demo-dashboard", &shots);

    customer.goto(&format!("{base}/eshare"));
    customer.wait_text("state-ladder-demo", "Lent out");
    customer.wait_text("state-hammer-drill-demo", "Available");
    customer.wait_text("state-pressure-washer-demo", "Broken");
    customer.wait_text("state-lawn-mower-demo", "Available");
    let washer = customer.text("tool-pressure-washer-demo");
    assert!(
        washer.contains("Reported broken by you") && !washer.contains("report_broken"),
        "{washer}"
    );
    customer.screenshots("demo-eshare", &shots);

    customer.goto(&format!("{base}/eloan"));
    customer.wait_text("state-invoice-be0123_456_789-2026_0108", "Free to pledge");
    customer.wait_text("state-invoice-be0123_456_789-2026_0107", "Pledged");
    customer.wait_text("state-invoice-be0123_456_789-2026_0099", "Released");
    customer.screenshots("demo-eloan", &shots);

    // The member the demo leaves to a browser joins from the printed page with the printed key
    // files, beside the four native members.
    let slot = demo.line("member 4 is left to a browser: ").to_owned();
    let words: Vec<&str> = slot.split_whitespace().collect();
    let after = |word: &str| {
        let at = words
            .iter()
            .position(|w| *w == word)
            .unwrap_or_else(|| panic!("no {word:?} in {slot}"));
        words.get(at + 1).copied().expect("a word follows")
    };
    assert_eq!(after("open"), format!("{base}/member"));
    let bls = Path::new(after("it"));
    let p2p = Path::new(words[words.iter().position(|w| *w == "it").expect("it") + 3]);
    let member = Browser::open(&driver, &rt, "browser member (the demo's member 4)");
    member.goto(&format!("{base}/member"));
    member.wait(
        "the page to ask for keys",
        "document.getElementById('member-state')?.dataset.state === 'keys'",
        vec![],
    );
    member.choose_file("#bls-key-file", bls);
    member.choose_file("#p2p-key-file", p2p);
    member.wait(
        "the chosen files in the form",
        "document.getElementById('bls-key-text').value.length > 0 && document.getElementById('p2p-key-text').value.length > 0",
        vec![],
    );
    member.click("#start-button");
    member.wait(
        "the browser member connected to the four native members",
        "document.getElementById('member-neighbours')?.dataset.count === '4'",
        vec![],
    );
    assert_eq!(member.text("member-index"), "4");
    member.screenshots("demo-member", &shots);
}
