//! A Kafka cluster that enforces what production clusters enforce, built from real parts: Tansu
//! with SCRAM-SHA-512 users (sqlite storage, `--authentication`) behind Debian's stunnel, which
//! speaks TLS and requires a client certificate signed by the cluster's CA (`requireCert`).
//! Tansu advertises the stunnel port, so every connection a client makes is TLS.
//!
//! Tansu 0.6.0's own `--cert` does not encrypt, hence stunnel. In 0.6.0 a wrong password is
//! stopped by librdkafka on the broker's error token rather than by Tansu: a test of a wrong
//! password proves hookstream's handling of the failure, not the broker's strictness.

use super::tools::{free_port, run_off_runtime, temp_dir, tool, Broker, OwnProcess, Storage};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A certificate authority of a test's own.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Its certificate, PEM (what `ssl.ca.location` names).
    pub ca_file: PathBuf,
}

/// A certificate and its key, as files.
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Authority {
    /// A new CA whose certificate is written to `dir/{name}.crt`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
            .expect("a CA certificate");
        let ca_file = dir.join(format!("{name}.crt"));
        std::fs::write(&ca_file, issuer.pem()).expect("write the CA");
        Authority { issuer, ca_file }
    }

    /// A certificate for `common_name` (and `names`, its subject alternative names), signed by
    /// this CA, written to `dir/{file}.crt` and `dir/{file}.key`.
    pub fn issue(&self, dir: &Path, file: &str, common_name: &str, names: &[&str]) -> Issued {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        let issued = Issued {
            cert_file: dir.join(format!("{file}.crt")),
            key_file: dir.join(format!("{file}.key")),
        };
        std::fs::write(&issued.cert_file, cert.pem()).expect("write the certificate");
        std::fs::write(&issued.key_file, key.serialize_pem()).expect("write the key");
        issued
    }
}

/// The SCRAM user every secured cluster has.
pub const USER: &str = "hookstream";
/// Its password.
pub const PASSWORD: &str = "s3cret-kafka-password";

/// Tansu requiring SCRAM-SHA-512, behind stunnel requiring a client certificate.
pub struct SecuredCluster {
    /// Owned for its process: dropped with the cluster.
    _broker: Broker,
    stunnel: OwnProcess,
    /// Where the certificates and configurations are written.
    pub dir: PathBuf,
    pub ca: Authority,
    /// A client certificate the cluster accepts (CN `client-1`).
    pub client: Issued,
    /// The port clients connect to (stunnel's, advertised by the broker).
    pub port: u16,
}

impl SecuredCluster {
    pub async fn start() -> Self {
        let port = free_port();
        let mut broker = Broker::start_on(free_port(), port, Storage::Sqlite).await;
        broker.require_authentication(&[(USER, PASSWORD)]).await;
        let dir = temp_dir("secured-kafka");
        let ca = Authority::new(&dir, "cluster-ca");
        let server = ca.issue(&dir, "server", "localhost", &["localhost", "127.0.0.1"]);
        let client = ca.issue(&dir, "client", "client-1", &[]);
        let mut stunnel = OwnProcess::new("stunnel", port);
        let config = stunnel.dir.join("stunnel.conf");
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\ndebug = info\n\n[kafka]\naccept = 127.0.0.1:{port}\n\
                 connect = 127.0.0.1:{}\ncert = {}\nkey = {}\nCAfile = {}\nrequireCert = yes\n\
                 verifyChain = yes\n",
                broker.port,
                server.cert_file.display(),
                server.key_file.display(),
                ca.ca_file.display(),
            ),
        )
        .expect("stunnel.conf");
        let mut command = std::process::Command::new(tool("stunnel4"));
        command.arg(&config);
        stunnel.launch(command, port).await;
        SecuredCluster {
            _broker: broker,
            stunnel,
            dir,
            ca,
            client,
            port,
        }
    }

    /// `bootstrap.servers`: stunnel's port.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What stunnel logged: among it, the subject of every client certificate it accepted
    /// (`Certificate accepted at depth=0: CN=…`).
    pub fn stunnel_log(&self) -> String {
        self.stunnel.log()
    }

    /// The `kafka.options` that reach this cluster: SASL_SSL, SCRAM-SHA-512 with the password
    /// taken from `${KAFKA_PASSWORD}`, the cluster's CA and the client certificate.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("security.protocol", "SASL_SSL".into()),
            ("sasl.mechanism", "SCRAM-SHA-512".into()),
            ("sasl.username", USER.into()),
            ("sasl.password", "${KAFKA_PASSWORD}".into()),
            ("ssl.ca.location", self.ca.ca_file.display().to_string()),
            (
                "ssl.certificate.location",
                self.client.cert_file.display().to_string(),
            ),
            (
                "ssl.key.location",
                self.client.key_file.display().to_string(),
            ),
        ]
    }

    /// A configuration directory of its own (`config/default.toml` and `{env}.toml` with
    /// `options` under `[kafka.options]`); `HOOKSTREAM_CONFIG_DIR` and `HOOKSTREAM_ENV` name it.
    pub fn config_dir(&self, env: &str, options: &[(&str, String)]) -> PathBuf {
        let dir = self.dir.join(format!("config-{env}"));
        std::fs::create_dir_all(&dir).expect("config dir");
        std::fs::copy("config/default.toml", dir.join("default.toml")).expect("default.toml");
        let mut toml = format!(
            "[kafka]\nbrokers = \"{}\"\n\n[kafka.options]\n",
            self.brokers()
        );
        for (key, value) in options {
            toml.push_str(&format!("\"{key}\" = \"{value}\"\n"));
        }
        std::fs::write(dir.join(format!("{env}.toml")), toml).expect("env toml");
        dir
    }

    /// The variables that point hookstream at [`SecuredCluster::config_dir`].
    pub fn config_env(dir: &Path, env: &str, password: &str) -> Vec<(&'static str, String)> {
        vec![
            ("HOOKSTREAM_CONFIG_DIR", dir.display().to_string()),
            ("HOOKSTREAM_ENV", env.to_string()),
            ("KAFKA_PASSWORD", password.to_string()),
        ]
    }

    /// Runs `hookstream ARGS` with `env` to its end: (exit code, stdout, stderr).
    pub async fn hookstream(
        args: &[&str],
        env: &[(&'static str, String)],
    ) -> (Option<i32>, String, String) {
        let mut command = std::process::Command::new(super::BIN);
        command
            .args(args)
            .env_remove("HOOKSTREAM_CONFIG_DIR")
            .env_remove("HOOKSTREAM_ENV")
            .env_remove("KAFKA_PASSWORD")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        run_off_runtime(command).await
    }

    /// The event ids `hookstream tail TOPIC` prints, read through this cluster with `env`'s
    /// configuration, once each holds every one of `ids` (or after `within`).
    pub async fn tailed_ids(
        env: &[(&'static str, String)],
        topic: &str,
        ids: &[String],
        within: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let (_, out, _) = Self::hookstream(&["tail", topic], env).await;
            let found: Vec<String> = out
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter_map(|record| {
                    record["value"]["event_id"]
                        .as_str()
                        .or_else(|| record["headers"]["hookstream-event-id"].as_str())
                        .map(str::to_string)
                })
                .collect();
            if ids.iter().all(|id| found.contains(id)) || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
