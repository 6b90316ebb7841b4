//! Member key files: a small JSON file holding one member's BLS secret key, with its public key
//! and proof of possession so an operator can paste those into the network configuration.
//!
//! ```json
//! {
//!   "format": "beaufort-bls-secret-key-v1",
//!   "secret_key": "<64 hex digits, big-endian scalar>",
//!   "public_key": "<192 hex digits, compressed G2 point>",
//!   "proof_of_possession": "<96 hex digits, compressed G1 point>"
//! }
//! ```
//!
//! Files are created with mode 0600 on Unix. Reading checks that the public key and proof match
//! the secret key, so a file edited by hand cannot silently claim another member's identity.
//! Errors never contain the file's contents.

use crate::bls::{ProofOfPossession, PublicKey, SecretKey, SECRET_KEY_LEN};
use crate::error::CryptoError;
use crate::membership::MemberKey;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The `format` tag of key files written by this version.
pub const KEY_FILE_FORMAT: &str = "beaufort-bls-secret-key-v1";

/// Key files larger than this are rejected unread (a real one is about 450 bytes).
pub const MAX_KEY_FILE_SIZE: u64 = 64 * 1024;

/// The JSON shape of a key file. Wiped on drop since it holds the secret key's hex.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct KeyFileContents {
    format: String,
    secret_key: String,
    #[zeroize(skip)]
    public_key: PublicKey,
    #[zeroize(skip)]
    proof_of_possession: ProofOfPossession,
}

/// Generates a fresh member key from `rng` (normally `ring::rand::SystemRandom`), returning the
/// secret key and the configuration entry to publish.
pub fn generate_member_key(rng: &dyn SecureRandom) -> Result<(SecretKey, MemberKey), CryptoError> {
    let mut ikm = Zeroizing::new([0u8; 32]);
    rng.fill(&mut ikm[..])
        .map_err(|_| CryptoError::Randomness)?;
    let secret = SecretKey::generate(&ikm);
    let member = MemberKey::from_secret(&secret);
    Ok((secret, member))
}

/// Writes `secret` to a new key file at `path`, readable only by its owner on Unix. Refuses to
/// replace an existing file unless `overwrite` is set, in which case the file is replaced
/// atomically (write to a temporary file, then rename).
pub fn write_secret_key_file(
    path: &Path,
    secret: &SecretKey,
    overwrite: bool,
) -> Result<(), CryptoError> {
    let member = MemberKey::from_secret(secret);
    let contents = KeyFileContents {
        format: KEY_FILE_FORMAT.to_owned(),
        secret_key: hex::encode(Zeroizing::new(secret.to_bytes()).as_ref()),
        public_key: member.public_key,
        proof_of_possession: member.pop,
    };
    // Enough capacity that serialization never reallocates (and so leaves no stray copies).
    let mut json = Zeroizing::new(Vec::with_capacity(1024));
    serde_json::to_writer_pretty(&mut *json, &contents).map_err(|_| {
        CryptoError::KeyFileFormat {
            path: path.to_owned(),
            reason: "could not encode the key".to_owned(),
        }
    })?;
    json.push(b'\n');

    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| CryptoError::KeyFileIo { path, source }
    };
    if overwrite {
        let temporary = temporary_path(path);
        match std::fs::remove_file(&temporary) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error(&temporary)(e))
            }
            _ => {}
        }
        write_new(&temporary, &json)?;
        std::fs::rename(&temporary, path).map_err(io_error(path))
    } else {
        write_new(path, &json)
    }
}

/// Creates `path` (which must not exist) with owner-only permissions and writes `bytes` durably.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            CryptoError::KeyFileExists {
                path: path.to_owned(),
            }
        } else {
            CryptoError::KeyFileIo {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let io_error = |source| CryptoError::KeyFileIo {
        path: path.to_owned(),
        source,
    };
    #[cfg(unix)]
    {
        // The umask may have cleared bits but never adds any; make the mode exact anyway.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io_error)?;
    }
    file.write_all(bytes).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

/// `<path>.tmp`, next to the target so the final rename stays on one file system.
fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Reads a key file written by [`write_secret_key_file`], checking its format, its size, and that
/// its public key and proof of possession belong to its secret key.
pub fn read_secret_key_file(path: &Path) -> Result<SecretKey, CryptoError> {
    let io_error = |source| CryptoError::KeyFileIo {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            CryptoError::KeyFileMissing {
                path: path.to_owned(),
            }
        } else {
            io_error(source)
        }
    })?;
    let too_large = |size| CryptoError::KeyFileTooLarge {
        path: path.to_owned(),
        size,
        limit: MAX_KEY_FILE_SIZE,
    };
    let size = file.metadata().map_err(io_error)?.len();
    if size > MAX_KEY_FILE_SIZE {
        return Err(too_large(size));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(size as usize + 1));
    file.take(MAX_KEY_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_KEY_FILE_SIZE {
        return Err(too_large(bytes.len() as u64));
    }
    parse_secret_key_file(&bytes, path)
}

/// Parses the contents of a key file written by [`write_secret_key_file`] with the checks of
/// [`read_secret_key_file`]; `path` only names the source in errors. For runtimes that get the
/// file's bytes without a file system: a browser member imports its key from a file the operator
/// picks.
pub fn parse_secret_key_file(bytes: &[u8], path: &Path) -> Result<SecretKey, CryptoError> {
    let format_error = |reason: &str| CryptoError::KeyFileFormat {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() as u64 > MAX_KEY_FILE_SIZE {
        return Err(CryptoError::KeyFileTooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
            limit: MAX_KEY_FILE_SIZE,
        });
    }
    // serde_json's messages can quote input, so report only where parsing failed.
    let contents: KeyFileContents = serde_json::from_slice(bytes).map_err(|e| {
        format_error(&format!(
            "not a key file ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if contents.format != KEY_FILE_FORMAT {
        return Err(format_error(&format!(
            "unknown format (expected \"{KEY_FILE_FORMAT}\")"
        )));
    }
    let mut raw = Zeroizing::new([0u8; SECRET_KEY_LEN]);
    hex::decode_to_slice(&contents.secret_key, &mut raw[..])
        .map_err(|_| format_error("secret_key is not 64 hex digits"))?;
    let secret = SecretKey::from_bytes(&raw[..])
        .map_err(|_| format_error("secret_key is not a valid BLS secret key"))?;
    let member = MemberKey::from_secret(&secret);
    if member.public_key != contents.public_key {
        return Err(format_error("public_key does not match secret_key"));
    }
    if member.pop != contents.proof_of_possession {
        return Err(format_error(
            "proof_of_possession does not match secret_key",
        ));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    /// A fresh, empty directory under the system temp dir.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "beaufort-crypto-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn round_trip_and_no_overwrite() {
        let dir = scratch_dir("round-trip");
        let path = dir.join("member.key");
        let (secret, member) = generate_member_key(&SystemRandom::new()).unwrap();
        write_secret_key_file(&path, &secret, false).unwrap();
        let back = read_secret_key_file(&path).unwrap();
        assert_eq!(back.to_bytes(), secret.to_bytes());
        assert_eq!(MemberKey::from_secret(&back), member);

        let other = SecretKey::generate(&[8; 32]);
        assert!(matches!(
            write_secret_key_file(&path, &other, false),
            Err(CryptoError::KeyFileExists { .. })
        ));
        assert_eq!(
            read_secret_key_file(&path).unwrap().to_bytes(),
            secret.to_bytes()
        );
        write_secret_key_file(&path, &other, true).unwrap();
        assert_eq!(
            read_secret_key_file(&path).unwrap().to_bytes(),
            other.to_bytes()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch_dir("mode");
        let path = dir.join("member.key");
        let secret = SecretKey::generate(&[1; 32]);
        write_secret_key_file(&path, &secret, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        write_secret_key_file(&path, &secret, true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clear_errors_without_secrets() {
        let dir = scratch_dir("errors");
        let secret = SecretKey::generate(&[2; 32]);
        let secret_hex = hex::encode(secret.to_bytes());

        assert!(matches!(
            read_secret_key_file(&dir.join("absent.key")),
            Err(CryptoError::KeyFileMissing { .. })
        ));

        let big = dir.join("big.key");
        std::fs::write(&big, vec![b' '; MAX_KEY_FILE_SIZE as usize + 1]).unwrap();
        assert!(matches!(
            read_secret_key_file(&big),
            Err(CryptoError::KeyFileTooLarge { .. })
        ));

        let path = dir.join("member.key");
        write_secret_key_file(&path, &secret, false).unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        let check = |text: String, expect: &str| {
            std::fs::write(&path, text).unwrap();
            let err = read_secret_key_file(&path).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, CryptoError::KeyFileFormat { .. }),
                "{message}"
            );
            assert!(message.contains(expect), "{message}");
            assert!(!message.contains(&secret_hex), "{message}");
            assert!(!format!("{err:?}").contains(&secret_hex));
        };
        check("{not json".to_owned(), "Syntax");
        // The secret placed where a number is expected: serde would quote it; we must not.
        check(
            format!("{{\"format\": 1, \"secret_key\": 2, \"x\": \"{secret_hex}\"}}"),
            "not a key file",
        );
        check(format!("[\"{secret_hex}\"]"), "not a key file");
        check(good.replace(KEY_FILE_FORMAT, "v0"), "unknown format");
        check(good.replace(&secret_hex, &"zz".repeat(32)), "64 hex digits");
        check(
            good.replace(&secret_hex, &"ff".repeat(32)),
            "not a valid BLS secret key",
        );
        let other = hex::encode(SecretKey::generate(&[3; 32]).to_bytes());
        check(
            good.replace(&secret_hex, &other),
            "public_key does not match",
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
