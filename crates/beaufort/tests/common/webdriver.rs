//! Headless Chromium driven over WebDriver (chromedriver), shared by the browser tests
//! (`browser.rs`: the web app; `browser_member.rs`: a member running in the browser).
//!
//! The WebDriver client is fantoccini, the maintained Rust client, taken without any TLS feature:
//! chromedriver listens on loopback, so it talks plain HTTP over the hyper/hyper-util stack the
//! node already uses (axum) and brings no second HTTP client or TLS library.
//!
//! Every wait polls the page until a condition holds, with the common deadline; nothing sleeps
//! and hopes, nothing asserts timings. Chromium and chromedriver must be installed (Debian:
//! `apt-get install chromium chromium-driver`; `scripts/test.sh` does it): without them the test
//! fails and says so.

#![allow(dead_code)] // Each test binary uses its own subset of these helpers.

use super::DEADLINE;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value as Json};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::runtime::Runtime;

/// Desktop and phone viewports of the screenshots (CSS pixels).
pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

/// A program from an environment variable, else the first of `names` on the PATH.
pub fn find_program(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

pub fn missing(what: &str, variable: &str) -> String {
    format!(
        "{what} was not found on the PATH (or in ${variable}). The browser tests need Debian's \
         chromium and chromium-driver packages: `apt-get update && apt-get install -y chromium \
         chromium-driver` (scripts/test.sh installs them when chromedriver is missing)."
    )
}

/// A port that was free a moment ago (as `beaufort init --api-port 0` picks its own).
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// chromedriver on a free loopback port, killed when dropped.
pub struct Driver {
    child: Child,
    url: String,
    chromium: PathBuf,
    log: PathBuf,
    dir: TempDir,
}

impl Driver {
    pub fn start() -> Driver {
        let chromedriver = find_program("BEAUFORT_CHROMEDRIVER", &["chromedriver"])
            .unwrap_or_else(|| panic!("{}", missing("chromedriver", "BEAUFORT_CHROMEDRIVER")));
        let chromium = find_program("BEAUFORT_CHROMIUM", &["chromium", "chromium-browser"])
            .unwrap_or_else(|| panic!("{}", missing("chromium", "BEAUFORT_CHROMIUM")));
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("chromedriver.log");
        let port = free_port();
        let mut child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromedriver.display()));
        let deadline = Instant::now() + DEADLINE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "chromedriver exited ({status}) before listening: {}",
                    read_log(&log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver never listened on port {port}: {}",
                read_log(&log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
            log,
            dir,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The end of a log file, for failure messages.
pub fn read_log(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// One person's browser: its own Chromium with a fresh profile (so its own IndexedDB, hence its
/// own customer key), driven synchronously so the test reads top to bottom like the other
/// multi-process tests. The session (and Chromium) is closed when dropped.
pub struct Browser<'a> {
    pub who: &'static str,
    pub rt: &'a Runtime,
    client: Option<Client>,
    _profile: TempDir,
}

impl<'a> Browser<'a> {
    pub fn open(driver: &Driver, rt: &'a Runtime, who: &'static str) -> Browser<'a> {
        let profile = tempfile::tempdir_in(driver.dir.path()).expect("profile dir");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": driver.chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                    "--no-first-run",
                    "--no-default-browser-check",
                    // Nothing but the consortium on loopback: no update checks, sync or the like.
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-extensions",
                    "--disable-domain-reliability",
                    "--disable-features=MediaRouter,DialMediaRouteProvider,OptimizationHints,Translate",
                    // Screenshots as a phone shows the page (overlay scrollbars take no room).
                    "--hide-scrollbars",
                ],
            },
        });
        let Json::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        let client = rt
            .block_on(builder.connect(&driver.url))
            .unwrap_or_else(|e| {
                panic!(
                    "{who}: chromedriver could not start Chromium ({e}); its log ends with:\n{}",
                    read_log(&driver.log)
                )
            });
        Browser {
            who,
            rt,
            client: Some(client),
            _profile: profile,
        }
    }

    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("session open until drop")
    }

    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("{}: open {url}: {e}", self.who));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn js(&self, script: &str, args: Vec<Json>) -> Json {
        self.rt
            .block_on(self.client().execute(script, args))
            .unwrap_or_else(|e| panic!("{}: script failed ({e}): {script}", self.who))
    }

    /// What the page shows a person right now: the URL, the error box and the result areas.
    pub fn diagnostic(&self) -> String {
        let script = "const t = (id) => { const e = document.getElementById(id); \
            return e ? `${id}${e.hidden ? ' (hidden)' : ''}: ${e.innerText.trim()}` : ''; }; \
            return [location.href, t('error'), t('result'), t('issue-result')] \
            .filter(Boolean).join(' | ');";
        match self.rt.block_on(self.client().execute(script, vec![])) {
            Ok(Json::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(e) => format!("(page unreadable: {e})"),
        }
    }

    /// Polls the JavaScript expression `condition` (with `args` as `arguments`) until it is
    /// truthy, and returns its value; panics with `what` and what the page shows after
    /// [`DEADLINE`].
    pub fn wait(&self, what: &str, condition: &str, args: Vec<Json>) -> Json {
        let script = format!("return ({condition});");
        let deadline = Instant::now() + DEADLINE;
        loop {
            let value = self.js(&script, args.clone());
            let truthy = match &value {
                Json::Null | Json::Bool(false) => false,
                Json::String(s) => !s.is_empty(),
                Json::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what}; the page shows: {}",
                self.who,
                self.diagnostic()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the element with `id` shows exactly `text`.
    pub fn wait_text(&self, id: &str, text: &str) {
        self.wait(
            &format!("#{id} to read {text:?}"),
            "document.getElementById(arguments[0])?.textContent.trim() === arguments[1]",
            vec![json!(id), json!(text)],
        );
    }

    /// Waits until an element matches `css`.
    pub fn wait_for(&self, css: &str) {
        self.wait(
            &format!("an element matching {css}"),
            "document.querySelector(arguments[0]) !== null",
            vec![json!(css)],
        );
    }

    /// The text of the element with `id` ("" if there is none).
    pub fn text(&self, id: &str) -> String {
        let value = self.js(
            "return document.getElementById(arguments[0])?.textContent.trim() ?? '';",
            vec![json!(id)],
        );
        value.as_str().unwrap_or_default().to_owned()
    }

    pub fn exists(&self, css: &str) -> bool {
        self.js(
            "return document.querySelector(arguments[0]) !== null;",
            vec![json!(css)],
        ) == Json::Bool(true)
    }

    pub fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.rt
            .block_on(self.client().find(Locator::Css(css)))
            .unwrap_or_else(|e| {
                panic!(
                    "{}: no element {css} ({e}); the page shows: {}",
                    self.who,
                    self.diagnostic()
                )
            })
    }

    /// Clicks like a person: WebDriver scrolls the element into view and refuses hidden ones.
    pub fn click(&self, css: &str) {
        let element = self.find(css);
        self.rt
            .block_on(element.click())
            .unwrap_or_else(|e| panic!("{}: click {css}: {e}", self.who));
    }

    /// Replaces the field's content by typing `text`.
    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.rt
            .block_on(async {
                element.clear().await?;
                element.send_keys(text).await
            })
            .unwrap_or_else(|e| panic!("{}: type into {css}: {e}", self.who));
    }

    /// Chooses `path` in the file input `css`, as a person picking a file does.
    pub fn choose_file(&self, css: &str, path: &Path) {
        let element = self.find(css);
        let path = path.to_str().expect("a UTF-8 temporary path");
        self.rt
            .block_on(element.send_keys(path))
            .unwrap_or_else(|e| panic!("{}: choose {path} in {css}: {e}", self.who));
    }

    /// A PNG of the element `css` as the screen shows it (what a phone's camera would see).
    pub fn element_png(&self, css: &str) -> Vec<u8> {
        let element = self.find(css);
        let png = self
            .rt
            .block_on(element.screenshot())
            .unwrap_or_else(|e| panic!("{}: screenshot of {css}: {e}", self.who));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{}: the screenshot of {css} is not a PNG",
            self.who
        );
        png
    }

    /// The text the page's form field `id` holds.
    pub fn value(&self, id: &str) -> String {
        self.js(
            "return document.getElementById(arguments[0])?.value ?? '';",
            vec![json!(id)],
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    pub fn select(&self, css: &str, value: &str) {
        let element = self.find(css);
        self.rt
            .block_on(element.select_by_value(value))
            .unwrap_or_else(|e| panic!("{}: select {value} in {css}: {e}", self.who));
    }

    /// This browser's customer key, once the page has loaded or created it.
    pub fn public_key(&self) -> String {
        let pk = self.wait(
            "the customer key in #my-pk",
            "document.getElementById('my-pk')?.dataset.pk",
            vec![],
        );
        let pk = pk.as_str().expect("a string").to_owned();
        assert!(
            pk.len() == 130 && pk.starts_with("04"),
            "{}: #my-pk is not an uncompressed P-256 key: {pk}",
            self.who
        );
        assert_eq!(
            self.text("my-pk"),
            pk,
            "#my-pk shows exactly the key it carries"
        );
        pk
    }

    /// The viewport's size as the page sees it, once two readings in a row agree: a resize is
    /// applied asynchronously, so a single reading may still be the old size.
    pub fn settled_viewport(&self) -> (i64, i64) {
        let read = || {
            let inner = self.js("return [window.innerWidth, window.innerHeight];", vec![]);
            (
                inner[0].as_i64().expect("a width in pixels"),
                inner[1].as_i64().expect("a height in pixels"),
            )
        };
        let mut last = read();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = read();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// Makes the viewport (what the page sees as `innerWidth` x `innerHeight`) exactly
    /// `width` x `height`. WebDriver sizes the outer window, whose frame differs by platform, so
    /// the window is corrected by what the viewport lacks until it fits (a stale reading only
    /// costs one more round).
    pub fn resize_viewport(&self, width: u32, height: u32) {
        let wanted = (i64::from(width), i64::from(height));
        let mut outer = wanted;
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (w, h) = (
                u32::try_from(outer.0.max(100)).expect("a window width"),
                u32::try_from(outer.1.max(100)).expect("a window height"),
            );
            self.rt
                .block_on(self.client().set_window_size(w, h))
                .unwrap_or_else(|e| panic!("{}: resize the window to {w}x{h}: {e}", self.who));
            let inner = self.settled_viewport();
            if inner == wanted {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the viewport stays {inner:?} instead of {wanted:?}",
                self.who
            );
            outer = (outer.0 + wanted.0 - inner.0, outer.1 + wanted.1 - inner.1);
        }
    }

    /// Screenshots of the current page at the desktop and the phone size, as `<name>-desktop.png`
    /// and `<name>-phone.png`; the viewport is left at the desktop size.
    pub fn screenshots(&self, name: &str, dir: &Path) {
        for (size, (width, height)) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.resize_viewport(width, height);
            let png = self
                .rt
                .block_on(self.client().screenshot())
                .unwrap_or_else(|e| panic!("{}: screenshot: {e}", self.who));
            assert!(
                png.starts_with(b"\x89PNG\r\n\x1a\n"),
                "{}: the screenshot is not a PNG",
                self.who
            );
            let path = dir.join(format!("{name}-{size}.png"));
            std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        self.resize_viewport(DESKTOP.0, DESKTOP.1);
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Closing the last window of the session quits its Chromium.
            let _ = self.rt.block_on(client.close());
        }
    }
}
