//! Builds the browser's WebAssembly modules and hands them to the node, which serves them
//! (`src/api/web.rs`): the receipt verifier and QR codes (`crates/wasm`, for `/verify`, the
//! wallet and the dashboard) and the browser member (`crates/browser`, for `/member`).
//!
//! Why a build script: the module must be built from the same `beaufort-core`/`beaufort-crypto`
//! sources as the node, so a node can never serve a stale verifier; every `cargo build` of the
//! node rebuilds it when those sources change. It runs a second cargo, for
//! `wasm32-unknown-unknown`, with a target directory of its own (`<target>/wasm-build`, so it
//! never waits on the outer build's lock), then the wasm-bindgen CLI of the exact version in
//! Cargo.lock.
//!
//! That needs tools a plain Rust install lacks: the wasm32 target, clang (blst's C) and the
//! wasm-bindgen CLI; `scripts/wasm-tools.sh` installs them (the README's commands run it). Without
//! them the node still builds (so `cargo build`, `cargo clippy` and `cargo test` work on any
//! machine) and the page says what is missing; `BEAUFORT_WASM=require` (set by the scripts) turns
//! that into a build error. While tools are missing the script reruns on every build, so it
//! picks them up once they are installed.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";

/// The modules the pages load: the receipt verifier and QR codes (`crates/wasm`), and the
/// browser member (`crates/browser`, the `/member` page). Two modules, so the pages that only
/// check receipts do not download libp2p.
const MODULES: [&str; 2] = ["beaufort_wasm", "beaufort_browser"];

fn main() {
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .ancestors()
        .nth(2)
        .unwrap_or_else(|| panic!("{} has no workspace root", manifest_dir.display()))
        .to_path_buf();
    let out_dir = PathBuf::from(var("OUT_DIR"));
    let wasm_out = out_dir.join("wasm");
    if let Err(e) = std::fs::create_dir_all(&wasm_out) {
        panic!("creating {}: {e}", wasm_out.display());
    }
    for path in [
        "crates/wasm",
        "crates/browser",
        "crates/link",
        "crates/apps",
        "crates/contracts",
        "crates/receipt",
        "crates/core/src",
        "crates/core/Cargo.toml",
        "crates/crypto/src",
        "crates/crypto/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=BEAUFORT_WASM");
    let required = std::env::var("BEAUFORT_WASM").is_ok_and(|v| v == "require");

    match build(&workspace, &out_dir, &wasm_out) {
        Ok(()) => {}
        Err(Missing(reason)) if !required => {
            println!(
                "cargo:warning=the pages' WebAssembly modules are not built: {reason}; \
                 run scripts/wasm-tools.sh, then build again"
            );
            let message = format!(
                "This node was built without its WebAssembly modules (receipt verifier, browser member): {reason}. \
                 Its operator can install the tools with scripts/wasm-tools.sh and rebuild."
            );
            for module in MODULES {
                write(
                    &wasm_out.join(format!("{module}.js")),
                    format!("throw new Error({});\n", js_string(&message)).as_bytes(),
                );
                write(&wasm_out.join(format!("{module}_bg.wasm")), b"");
            }
            // A path that never exists: cargo then reruns this script on every build, so the
            // verifier is built as soon as the tools are there.
            println!(
                "cargo:rerun-if-changed={}",
                out_dir.join("wasm-tools-missing").display()
            );
        }
        Err(Missing(reason)) => panic!(
            "BEAUFORT_WASM=require but the WebAssembly verifier cannot be built: {reason} \
             (scripts/wasm-tools.sh installs what is missing)"
        ),
    }
}

/// Why the module could not be built: a tool is missing (the only failure that is not a bug).
struct Missing(String);

fn build(workspace: &Path, out_dir: &Path, wasm_out: &Path) -> Result<(), Missing> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_libdir =
        run(Command::new(&rustc).args(["--print", "target-libdir", "--target", TARGET])).map_err(
            |e| {
                Missing(format!(
                    "rustc cannot name the {TARGET} library directory ({e})"
                ))
            },
        )?;
    if !Path::new(target_libdir.trim()).is_dir() {
        return Err(Missing(format!(
            "the Rust target {TARGET} is not installed (rustup target add {TARGET})"
        )));
    }
    if std::env::var_os("CC_wasm32_unknown_unknown").is_none()
        && run(Command::new("clang").arg("--version")).is_err()
    {
        return Err(Missing(
            "clang is not installed; it compiles blst's C for wasm32".into(),
        ));
    }
    let wanted = locked_version(workspace, "wasm-bindgen")
        .ok_or_else(|| Missing("Cargo.lock names no wasm-bindgen".into()))?;
    let bindgen = wasm_bindgen_cli();
    let found = run(Command::new(&bindgen).arg("--version")).unwrap_or_default();
    if found.split_whitespace().nth(1) != Some(wanted.as_str()) {
        return Err(Missing(format!(
            "wasm-bindgen-cli {wanted} is not installed (found {:?})",
            found.trim()
        )));
    }

    // <target>/<profile>/build/<package>-<hash>/out → <target>/wasm-build
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .unwrap_or(out_dir)
        .join("wasm-build");
    let mut inner = Command::new(&cargo);
    inner
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--locked",
            "--lib",
            "-p",
            "beaufort-wasm",
            "-p",
            "beaufort-browser",
        ])
        .args(["--target", TARGET, "--target-dir"])
        .arg(&target_dir)
        // The wasm carries no debug information (wasm-bindgen would strip it anyway).
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false");
    // Flags and wrappers meant for the host build (clippy's driver under `cargo clippy`, a
    // target-cpu) must not reach the wasm build.
    for name in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        inner.env_remove(name);
    }
    if let Err(e) = run(&mut inner) {
        panic!("building the WebAssembly modules (crates/wasm, crates/browser) failed:\n{e}");
    }
    for module in MODULES {
        let module = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{module}.wasm"));
        let mut bind = Command::new(&bindgen);
        bind.args(["--target", "web", "--no-typescript", "--out-dir"])
            .arg(wasm_out)
            .arg(&module);
        if let Err(e) = run(&mut bind) {
            panic!("wasm-bindgen on {} failed:\n{e}", module.display());
        }
    }
    Ok(())
}

/// The wasm-bindgen CLI: on the PATH, or where `cargo install` puts it.
fn wasm_bindgen_cli() -> PathBuf {
    let installed = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin").join("wasm-bindgen"));
    match installed {
        Some(path) if path.is_file() => path,
        _ => PathBuf::from("wasm-bindgen"),
    }
}

/// The version Cargo.lock resolved for `package` (the first entry of that name).
fn locked_version(workspace: &Path, package: &str) -> Option<String> {
    let lock = std::fs::read_to_string(workspace.join("Cargo.lock")).ok()?;
    let header = format!("name = \"{package}\"\nversion = \"");
    let start = lock.find(&header)? + header.len();
    let end = lock[start..].find('"')?;
    Some(lock[start..start + end].to_owned())
}

/// Runs a command; its standard output, or why it failed (with its error output).
fn run(command: &mut Command) -> Result<String, String> {
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

fn write(path: &Path, contents: &[u8]) {
    if let Err(e) = std::fs::write(path, contents) {
        panic!("writing {}: {e}", path.display());
    }
}

/// A JavaScript string literal of `text`.
fn js_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || c == '<' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
