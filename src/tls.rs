//! TLS on the public listener (`server.tls`), for deployments without a terminating proxy.
//!
//! The certificate chain and key are read from PEM files. They are read again on SIGHUP and when
//! either file changes (checked every few seconds, which also catches Kubernetes' atomic swap of
//! a mounted Secret): new handshakes get the new certificate, connections already open keep
//! theirs, nothing is dropped. A reload that fails (a half-written file, a key that does not
//! match) keeps the certificate in use and says why.

use crate::configuration::TlsSettings;
use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the files are checked for a change.
const POLL: Duration = Duration::from_secs(5);

/// The certificate in use, swapped on reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

/// The listener's certificate and where it comes from.
pub struct Certificates {
    current: Arc<Current>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Certificates {
    /// Reads the files; `None` when TLS is off (no files configured).
    pub fn load(settings: &TlsSettings) -> Result<Option<Self>, String> {
        if !settings.enabled() {
            return Ok(None);
        }
        let (cert_file, key_file) = (
            PathBuf::from(&settings.cert_file),
            PathBuf::from(&settings.key_file),
        );
        let key = read(&cert_file, &key_file)?;
        Ok(Some(Self {
            current: Arc::new(Current(RwLock::new(Arc::new(key)))),
            cert_file,
            key_file,
        }))
    }

    /// The rustls configuration of the listener: HTTP/1.1, this certificate (as it is now and
    /// after any reload).
    pub fn server_config(&self) -> rustls::ServerConfig {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|builder| {
            builder
                .with_no_client_auth()
                .with_cert_resolver(self.current.clone())
        })
        .unwrap_or_else(|e| unreachable!("ring supports rustls' default protocol versions: {e}"));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    /// Reads the files again and uses them for new handshakes.
    pub fn reload(&self) -> Result<(), String> {
        let key = read(&self.cert_file, &self.key_file)?;
        *self.current.0.write() = Arc::new(key);
        Ok(())
    }

    /// Reloads on SIGHUP and when a file changes, until the server stops it.
    pub async fn run_reload_until_stopped(self: Arc<Self>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: certificates are reloaded when their files change only");
                None
            }
        };
        let mut seen = self.modified();
        // A failed reload is tried again on every tick until one succeeds: the write that
        // completes a half-written file may land within the same mtime tick as the first part.
        let mut failing = false;
        loop {
            let why = tokio::select! {
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => "SIGHUP",
                () = tokio::time::sleep(POLL) => {
                    let now = self.modified();
                    if now == seen && !failing {
                        continue;
                    }
                    let why = if now == seen { "retrying a failed reload" } else { "the files changed" };
                    seen = now;
                    why
                }
            };
            match self.reload() {
                Ok(()) => {
                    failing = false;
                    tracing::info!(reason = why, "TLS certificate reloaded");
                }
                // Warned once per failing spell, not on every retry.
                Err(e) if failing => {
                    tracing::debug!(reason = why, error = %e, "TLS certificate still not reloaded")
                }
                Err(e) => {
                    failing = true;
                    tracing::warn!(
                        reason = why,
                        error = %e,
                        "TLS certificate not reloaded: the one in use stays; retried until the files are whole"
                    );
                }
            }
        }
    }

    /// When the files last changed (following symbolic links, as Kubernetes mounts them).
    fn modified(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let at = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        (at(&self.cert_file), at(&self.key_file))
    }
}

/// The chain and key from PEM files, checked to belong together.
fn read(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("server.tls.cert_file {}: {e}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "server.tls.cert_file {} holds no certificate",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("server.tls.key_file {}: {e}", key_file.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("server.tls: the key does not fit the certificate: {e}"))?;
    Ok(key)
}
