//! TLS for the HTTP API and the web app: the server's certificate and key loaded from PEM files
//! (`[node] tls_cert`, `tls_key`), self-signed certificates for `beaufort init --tls`, and the
//! listener that hands the API only connections whose TLS handshake completed.
//!
//! rustls with the ring provider (the one the network stack already uses); TLS 1.2 and 1.3 and
//! ALPN `http/1.1`, the only protocol the API speaks. A client that sends plain HTTP to a TLS port
//! fails its handshake and gets no answer from the API: the connection is closed.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the API's TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file is missing, unreadable or not what it should hold.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate and the key do not go together, or rustls refuses them.
    #[error("TLS certificate {} with key {}: {reason}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why they are refused.
        reason: String,
    },
    /// A self-signed certificate could not be made.
    #[error("making a self-signed certificate: {0}")]
    Generate(String),
}

/// The crypto provider of every TLS configuration here: ring, already in the tree through libp2p.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Largest certificate or key file read (a chain of a few certificates is a few KiB).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let file = |reason: String| TlsError::File {
        path: path.to_path_buf(),
        reason,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| file(e.to_string()))?
        .len();
    if len > MAX_PEM_BYTES {
        return Err(file(format!("{len} bytes, more than {MAX_PEM_BYTES}")));
    }
    std::fs::read(path).map_err(|e| file(e.to_string()))
}

/// The certificates of a PEM file (`-----BEGIN CERTIFICATE-----` blocks), in order; refuses a
/// file without any.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File {
            path: path.to_path_buf(),
            reason: format!("not a PEM certificate file: {e}"),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::File {
            path: path.to_path_buf(),
            reason: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        });
    }
    Ok(certificates)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::File {
        path: path.to_path_buf(),
        reason: format!(
            "holds no PEM private key (PKCS#8, PKCS#1 or SEC1: -----BEGIN PRIVATE KEY-----): {e}"
        ),
    })
}

/// The API's server configuration from a certificate chain file and its key file; refuses a
/// key that does not belong to the certificate.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = read_certificates(cert)?;
    let private_key = read_private_key(key)?;
    let pair = |reason: String| TlsError::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                pair("the key does not belong to the certificate".into())
            }
            other => pair(other.to_string()),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A self-signed certificate (PEM) and its private key (PKCS#8 PEM) for `names`: host names and
/// IP addresses, each a subject alternative name.
pub fn self_signed(names: &[String]) -> Result<(String, String), TlsError> {
    let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((cert.pem(), key_pair.serialize_pem()))
}

/// Longest a client may take over its TLS handshake before its connection is dropped.
const HANDSHAKE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

type Handshake = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Option<(
                    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
                    std::net::SocketAddr,
                )>,
            > + Send,
    >,
>;

/// A TCP listener that hands out TLS connections once their handshake completed. Handshakes run
/// side by side while `accept` waits, so a slow or silent client holds up no one; one that fails
/// (plain HTTP, a client that does not trust the certificate) or takes longer than
/// [`HANDSHAKE_LIMIT`] is dropped.
pub(crate) struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    handshakes: futures::stream::FuturesUnordered<Handshake>,
}

impl TlsListener {
    pub(crate) fn new(
        tcp: tokio::net::TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            handshakes: futures::stream::FuturesUnordered::new(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = crate::api::conn::JsonErrorIo<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use futures::StreamExt;
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let handshake = self.acceptor.accept(stream);
                        self.handshakes.push(Box::pin(async move {
                            match tokio::time::timeout(HANDSHAKE_LIMIT, handshake).await {
                                Ok(Ok(tls)) => Some((tls, addr)),
                                Ok(Err(error)) => {
                                    tracing::debug!(%addr, %error, "TLS handshake failed");
                                    None
                                }
                                Err(_) => {
                                    tracing::debug!(%addr, "TLS handshake timed out");
                                    None
                                }
                            }
                        }));
                    }
                    Err(error) => {
                        // As axum's own TCP listener: out of file descriptors and the like pass.
                        tracing::warn!(%error, "accepting an API connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                Some(done) = self.handshakes.next(), if !self.handshakes.is_empty() => {
                    if let Some((tls, addr)) = done {
                        return (crate::api::conn::JsonErrorIo::new(tls), addr);
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn a_self_signed_pair_loads_and_a_foreign_key_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let (cert, key) = self_signed(&names).expect("self-signed");
        let (_, other_key) = self_signed(&names).expect("self-signed");
        let cert = write(dir.path(), "api.crt", &cert);
        let key = write(dir.path(), "api.key", &key);
        let other_key = write(dir.path(), "other.key", &other_key);
        server_config(&cert, &key).expect("a matching pair loads");
        let error = server_config(&cert, &other_key)
            .expect_err("mismatch")
            .to_string();
        assert!(
            error.contains("api.crt") && error.contains("other.key") && error.contains("belong"),
            "{error}"
        );
    }

    #[test]
    fn missing_and_wrong_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed(&["localhost".to_owned()]).expect("self-signed");
        let cert = write(dir.path(), "api.crt", &cert);
        let key = write(dir.path(), "api.key", &key);
        let missing = dir.path().join("missing.crt");
        let error = server_config(&missing, &key)
            .expect_err("missing")
            .to_string();
        assert!(error.contains("missing.crt"), "{error}");
        // A key file where the certificate should be, and the other way round.
        let error = server_config(&key, &key).expect_err("no cert").to_string();
        assert!(
            error.contains("api.key") && error.contains("CERTIFICATE"),
            "{error}"
        );
        let error = server_config(&cert, &cert).expect_err("no key").to_string();
        assert!(
            error.contains("api.crt") && error.contains("private key"),
            "{error}"
        );
        let junk = write(dir.path(), "junk.pem", "not pem at all");
        let error = server_config(&junk, &key).expect_err("junk").to_string();
        assert!(error.contains("junk.pem"), "{error}");
    }
}
