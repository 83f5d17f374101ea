//! The Kafka client's certificate files, watched so that a rotation (cert-manager rewriting a
//! mounted Secret) needs no restart.
//!
//! librdkafka reads `ssl.ca.location`, `ssl.certificate.location` and `ssl.key.location` once,
//! when a client is created. When one of them changes on disk, the sink builds new clients with
//! them ([`super::KafkaSink::rotate_clients`]) and moves writes to them; the old producers
//! finish what they hold (flushed on a thread of their own), so no write in flight is lost. New
//! files that do not load (half written, a key that does not match the certificate) leave the
//! clients in use as they are; they are tried again on the next tick, until they load.

use crate::configuration::KafkaSettings;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often the files are read for a change. They are small: their contents are compared, not
/// their times (Kubernetes swaps a mounted Secret by a symbolic link, and a rewrite within the
/// same second keeps the time).
const POLL: Duration = Duration::from_secs(2);

/// The librdkafka properties that name a file read when a client is created.
const FILE_PROPERTIES: [&str; 3] = [
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
];

/// The certificate files a configuration names.
pub struct CertificateFiles {
    /// (property, path), in [`FILE_PROPERTIES`] order.
    files: Vec<(&'static str, PathBuf)>,
}

impl CertificateFiles {
    /// `None` when `kafka.options` names no certificate file (the CA of the system, or no TLS).
    pub fn of(settings: &KafkaSettings) -> Option<Self> {
        Self::named_by(&settings.options)
    }

    fn named_by(options: &BTreeMap<String, String>) -> Option<Self> {
        let files: Vec<(&'static str, PathBuf)> = FILE_PROPERTIES
            .iter()
            .filter_map(|property| {
                options
                    .get(*property)
                    .map(|path| (*property, PathBuf::from(path.trim())))
            })
            .collect();
        (!files.is_empty()).then_some(Self { files })
    }

    /// What each file holds now (`None`: unreadable), as a digest.
    fn fingerprint(&self) -> Vec<Option<[u8; 32]>> {
        self.files
            .iter()
            .map(|(_, path)| std::fs::read(path).ok().map(|c| Sha256::digest(c).into()))
            .collect()
    }

    /// The properties whose file differs between two fingerprints.
    fn changed(&self, before: &[Option<[u8; 32]>], now: &[Option<[u8; 32]>]) -> Vec<&'static str> {
        self.files
            .iter()
            .zip(before.iter().zip(now))
            .filter(|(_, (a, b))| a != b)
            .map(|((property, _), _)| *property)
            .collect()
    }
}

/// Something whose clients can be built again from the files (the sink).
pub(crate) trait Rotate {
    /// Builds new clients and moves writes to them; `Err` leaves the clients in use.
    fn rotate_clients(&self) -> Result<(), String>;
}

/// Checks the files every [`POLL`] and rotates the clients when one changed, until the task is
/// aborted. A rotation that fails is tried again on every tick until one succeeds.
pub(crate) async fn run_rotation_until_stopped<R: Rotate + Send + Sync + 'static>(
    target: Arc<R>,
    files: CertificateFiles,
) {
    watch_every(target, files, POLL).await
}

async fn watch_every<R: Rotate + Send + Sync + 'static>(
    target: Arc<R>,
    files: CertificateFiles,
    poll: Duration,
) {
    let mut seen = files.fingerprint();
    let mut failing: Option<Vec<&'static str>> = None;
    loop {
        tokio::time::sleep(poll).await;
        let now = files.fingerprint();
        let retrying = failing.is_some();
        let changed = match (files.changed(&seen, &now), failing.take()) {
            (changed, _) if !changed.is_empty() => changed,
            (_, Some(still)) => still,
            (_, None) => continue,
        };
        seen = now;
        let rotating = target.clone();
        let outcome = tokio::task::spawn_blocking(move || rotating.rotate_clients())
            .await
            .unwrap_or_else(|e| Err(format!("the rotation panicked: {e}")));
        let files = changed.join(", ");
        match outcome {
            Ok(()) => tracing::info!(
                files,
                "Kafka client certificates reloaded: writes go to new clients, the old ones finish what they hold"
            ),
            // Warned once per failing spell, not on every retry.
            Err(error) if retrying => {
                tracing::debug!(files, %error, "Kafka client certificates still do not load");
                failing = Some(changed);
            }
            Err(error) => {
                tracing::warn!(
                    files,
                    %error,
                    "Kafka client certificates changed but do not load: the clients in use stay; tried again every {} s until they load",
                    poll.as_secs_f32()
                );
                failing = Some(changed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn only_the_files_a_configuration_names_are_watched() {
        let mut options = BTreeMap::new();
        options.insert("sasl.username".to_string(), "alice".to_string());
        assert!(CertificateFiles::named_by(&options).is_none());
        options.insert(
            "ssl.certificate.location".into(),
            " /etc/hookstream/kafka/client.crt".into(),
        );
        let files = CertificateFiles::named_by(&options).expect("one file");
        assert_eq!(
            files.files,
            vec![(
                "ssl.certificate.location",
                PathBuf::from("/etc/hookstream/kafka/client.crt")
            )]
        );
    }

    struct Counting(AtomicUsize, bool);
    impl Rotate for Counting {
        fn rotate_clients(&self) -> Result<(), String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if self.1 {
                Ok(())
            } else {
                Err("does not load".into())
            }
        }
    }

    #[tokio::test]
    async fn a_changed_file_rotates_once_and_a_failed_rotation_is_tried_again() {
        let dir = std::env::temp_dir().join(format!("hookstream-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("client.crt");
        std::fs::write(&cert, "one").unwrap();
        let mut options = BTreeMap::new();
        options.insert(
            "ssl.certificate.location".into(),
            cert.display().to_string(),
        );
        let poll = Duration::from_millis(20);
        for loads in [true, false] {
            let target = Arc::new(Counting(AtomicUsize::new(0), loads));
            let task = tokio::spawn(watch_every(
                target.clone(),
                CertificateFiles::named_by(&options).unwrap(),
                poll,
            ));
            tokio::time::sleep(poll * 5).await;
            assert_eq!(target.0.load(Ordering::SeqCst), 0, "nothing changed");
            std::fs::write(&cert, format!("changed {loads}")).unwrap();
            tokio::time::sleep(poll * 10).await;
            task.abort();
            let rotations = target.0.load(Ordering::SeqCst);
            if loads {
                assert_eq!(rotations, 1, "one change, one rotation");
            } else {
                assert!(
                    rotations >= 3,
                    "a failed rotation is tried again: {rotations}"
                );
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
