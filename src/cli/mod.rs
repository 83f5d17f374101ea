//! The command line: `hookstream serve | sign | send | topics [create] | tail | load |
//! dead-letters | config | spool | rejections`. The binary calls [`run`]; [`commands`] holds
//! what each command does.

mod commands;
mod rejections;
mod send;

use crate::configuration::ConfigDir;
use crate::operations::reader::Start;
use crate::operations::tail::{Format, TailOptions};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "hookstream",
    version,
    about = "Verified webhooks in, one Avro event stream on Kafka out"
)]
pub struct Cli {
    /// The directory holding default.toml and $HOOKSTREAM_ENV.toml (default: ./config when it
    /// exists, else the compiled-in defaults alone). A directory given here must exist and hold
    /// default.toml.
    #[arg(long, env = "HOOKSTREAM_CONFIG_DIR", global = true)]
    pub config_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook server (the default). SIGHUP reloads the providers, their secrets and
    /// log.level from the configuration files; every other key needs a restart.
    Serve {
        /// Also reload when the contents of a configuration file change (default.toml and
        /// $HOOKSTREAM_ENV.toml of the configuration directory, read every 2 s), as a mounted
        /// Kubernetes ConfigMap or Secret changes.
        #[arg(long)]
        watch_config: bool,
    },
    /// Print the signature headers a provider would send with FILE as the body.
    Sign {
        /// Provider name: livesession, lasoexperience, seismic, or one the configuration defines.
        #[arg(long)]
        provider: String,
        /// Signing secret (or set HOOKSTREAM_SIGN_SECRET to keep it out of the process list).
        /// Default: the provider's first secret in the configuration.
        #[arg(long, env = "HOOKSTREAM_SIGN_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// The request body, byte for byte; `-` reads standard input.
        file: PathBuf,
    },
    /// Sign FILE as the provider would and POST it to a hookstream webhook URL; print the answer.
    ///
    /// Exit status: 0 when the answer is accepted, spooled, duplicate, ping or a challenge; 3 when
    /// the webhook was verified but kept as a dead letter (the error and its detail are printed,
    /// with the `hookstream dead-letters` commands that list and replay it); 1 on any other answer,
    /// or none; 2 when no request could be made (an unknown provider, no secret, FILE unreadable).
    Send(SendArgs),
    /// Print the records of one or more topics, from every partition, like `kcat -C` or
    /// `rpk topic consume`: from --from to the end each topic has now, then exit (or go on with
    /// --follow). Each record is a JSON line decoded with the schema (--format json), its
    /// value's bytes (raw), its key (key), or a template like kcat's -f.
    ///
    /// With --group G it reads as the consumer group G: from the group's committed offsets
    /// (from --from in a partition where it has none), committing what it printed every second
    /// and when it stops (at the end, after --count, on Ctrl-C or SIGTERM), so the next run
    /// with --group G goes on after the last record printed.
    Tail {
        /// Topic names; with --regex, regular expressions matched against whole topic names.
        #[arg(required = true, value_name = "TOPIC")]
        topics: Vec<String>,
        /// The topics given are regular expressions (like `rpk topic consume -r`), e.g.
        /// 'webhooks\.livesession\..*'. Internal topics (the readiness canary
        /// {prefix}.canary, the cluster's own _… topics) and the dead-letter topic are left out.
        #[arg(short = 'r', long)]
        regex: bool,
        /// With --regex, match internal topics too.
        #[arg(long, requires = "regex")]
        all: bool,
        /// Where to start in each partition: beginning, end, an offset, -N (the last N), a time
        /// (@2026-12-07T10:00:00Z, RFC 3339, or @ and epoch milliseconds: the first record
        /// written at or after it, like `kcat -o s@…`), or a time ago (-1h, -30m, -2d; s, m,
        /// h, d).
        #[arg(long, default_value = "beginning", allow_hyphen_values = true)]
        from: Start,
        /// Keep printing new records as they arrive, until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// Stop after this many records.
        #[arg(short = 'c', long)]
        count: Option<u64>,
        /// Print each record's headers too (json format; a template has %h).
        #[arg(long)]
        headers: bool,
        /// How each record is printed: json (one JSON object per line, the value decoded; a
        /// value that does not decode has `undecodable` saying why), raw (the value's bytes as
        /// they are, then a newline), key (the key, then a newline), or a template such as
        /// '%t %p %o %k %v\n': %t topic, %p partition, %o offset, %T timestamp (epoch ms), %k
        /// key, %v the decoded record as JSON, %s the value's bytes, %S and %K the value's and
        /// the key's sizes, %h headers (name=value,…), %% a %, \n \t newline and tab. A
        /// template adds no newline of its own.
        #[arg(long, default_value = "json", value_name = "json|raw|key|TEMPLATE")]
        format: Format,
        /// Read as this consumer group and commit: stopped and run again, it goes on where it
        /// stopped.
        #[arg(short = 'g', long)]
        group: Option<String>,
        /// How long the broker has to answer for the topics' metadata and offsets before
        /// reading starts.
        #[arg(long, default_value = "10s", value_parser = broker_timeout)]
        timeout: std::time::Duration,
    },
    /// List the topics under kafka.topic_prefix (and the dead-letter topic) with their
    /// partitions, records and end offsets, like `rpk topic list`; `topics create` creates the
    /// topics the configuration writes to, for clusters that forbid hookstream to.
    Topics {
        /// Also list the internal topics: the readiness canary {prefix}.canary, which holds no
        /// events.
        #[arg(long)]
        all: bool,
        /// How long the broker has to answer, in all; past it, the command says which broker
        /// did not answer and exits 1.
        #[arg(long, default_value = "10s", value_parser = broker_timeout)]
        timeout: std::time::Duration,
        #[command(subcommand)]
        command: Option<TopicsCommand>,
    },
    /// Send signed webhooks to a hookstream deployment and report throughput and latency.
    Load(LoadArgs),
    /// Inspect or replay the dead-letter topic.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The durable spool (`[spool]`): what it holds, and forwarding all of it.
    #[command(subcommand)]
    Spool(SpoolCommand),
    /// Why webhooks failed: the latest deliveries a running server refused, newest first, from
    /// its admin port.
    ///
    /// For each (GET /rejections): when, from which address, the error code, which of the
    /// headers the provider's signature and mapping read came, the body's length and SHA-256,
    /// and for a signature that did not match whether it parsed and how many secrets were
    /// tried, with a hint. Never a body, a header's value, a signature or a secret.
    ///
    /// Exit status: 0 when it printed them (or that there are none); 1 when the server cannot be
    /// reached or refuses the request, saying why; 2 for an --admin-url that is not a URL.
    Rejections {
        /// Only this provider's (`unknown`: requests to paths that name no provider).
        #[arg(long)]
        provider: Option<String>,
        /// The admin port's base URL, e.g. http://10.0.0.7:9090 (default: server.admin_port of
        /// the configuration, on 127.0.0.1).
        #[arg(long, value_name = "URL")]
        admin_url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Records, bytes and the oldest record's age per topic, of the spool directory
    /// (spool.dir). Works while `serve` runs.
    ///
    /// Exit status: 0 when it printed them; 4 when spool.dir does not exist (naming the absolute
    /// path looked at: a relative spool.dir is read from the current directory); 1 on any other
    /// error.
    Status,
    /// Forward everything the spool holds to Kafka and exit 0 once it is empty: for a node being
    /// retired.
    ///
    /// Exit status: 0 once the spool is empty; 1 when the directory cannot be used (a `serve`
    /// holds it, it cannot be read or locked) or on another error; 3 when records remain after
    /// --timeout; 4 when spool.dir does not exist (naming the absolute path looked at: a
    /// relative spool.dir is read from the current directory; it is not created).
    Drain {
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the topics the configuration writes to (each enabled provider's documented event
    /// names, the dead-letter topic, the canary) with kafka.topic_partitions and
    /// kafka.topic_replication_factor, using the kafka.* settings: run it with credentials
    /// allowed to create topics. Prints `created` or `exists` per topic; exits 1 naming each
    /// topic that could not be created.
    Create {
        /// Connect to nothing: print the topics, and the ACLs the service account needs.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load the configuration exactly as `serve` would (every layer, every ${VAR} reference,
    /// every strict check, librdkafka's check of kafka.options without connecting), print
    /// the effective configuration as TOML with every secret shown as "<redacted>", and exit: 0
    /// when it is valid, 1 with the error `serve` would stop with otherwise.
    Check {
        /// Also try what it names, one line per check: the broker's metadata, a write to a topic
        /// hookstream may create, Redis (dedupe.backend = "redis") and the Schema Registry (when
        /// configured). Exit 1 if any fails.
        #[arg(long)]
        connect: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// Run dead letters through the current normalization and write those that now succeed to
    /// their normal topic (as consumer group dead_letter.replay_group).
    ///
    /// Letters that still fail, or whose provider is disabled, are written again at the end of
    /// the dead-letter topic before the group moves past them, so the next replay brings them
    /// back. Exit status: 0 when every letter read was replayed, 3 when some stay in the
    /// dead-letter topic, 1 on an error (nothing of the unfinished batch is committed).
    Replay {
        /// Report what would be replayed; write and commit nothing.
        #[arg(long)]
        dry_run: bool,
        /// Read every dead letter still in the topic, including those earlier replays read.
        /// A letter that succeeds now is written to its topic again even if an earlier replay
        /// wrote it (unless the dedupe window still remembers its event id; copies within this
        /// run are written once); one an earlier replay read that still fails is not written to
        /// the dead-letter topic again. The group's offsets end at the topic's end, as after a
        /// plain replay.
        #[arg(long)]
        from_beginning: bool,
        /// Replay only the letters of this provider; the others stay in the dead-letter topic
        /// for a later replay, as they were.
        #[arg(long)]
        provider: Option<String>,
    },
    /// Print dead letters as JSON lines, in the order they were received (oldest first).
    List {
        /// Print at most this many (the earliest received).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only the letters of this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Only the letters not yet written to an event topic: never replayed, or written back
        /// by a replay because they still fail.
        #[arg(long)]
        pending: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Webhook URL, e.g. http://127.0.0.1:8080/webhooks/livesession.
    #[arg(long)]
    pub url: String,
    /// Provider whose signature scheme to use (default: the URL's last segment).
    #[arg(long)]
    pub provider: Option<String>,
    /// Signing secret (or set HOOKSTREAM_SIGN_SECRET to keep it out of the process list).
    /// Default: the provider's first secret in the configuration.
    #[arg(long, env = "HOOKSTREAM_SIGN_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Give the delivery a fresh event id, so each send is a new event rather than a duplicate
    /// of the last: in the body, or in the id header when the provider reads its id from one.
    #[arg(long)]
    pub fresh_id: bool,
    /// A request header, `NAME:VALUE` (repeatable); it wins over FILE's sidecar
    /// (`NAME.headers.json` beside `NAME.json`, read when present).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    pub headers: Vec<String>,
    /// For an https:// URL: trust the certificates in this PEM file (e.g. a self-signed one)
    /// instead of the system's.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// For an https:// URL: accept any certificate (tests only).
    #[arg(long, conflicts_with = "ca_file")]
    pub tls_insecure: bool,
    /// The request body; `-` reads standard input.
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Webhook URL, e.g. http://127.0.0.1:8080/webhooks/livesession.
    #[arg(long)]
    pub url: String,
    /// Provider whose fixture and signature scheme to use (default: the URL's last segment).
    #[arg(long)]
    pub provider: Option<String>,
    /// The provider's signing secret, as configured in hookstream (with --sign-as
    /// standard-webhooks: the `whsec_…` secret).
    #[arg(long, env = "HOOKSTREAM_LOAD_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Sign the provider's fixture with another scheme than the provider's own, for a receiver
    /// other than hookstream (e.g. a Standard Webhooks receiver as a benchmark peer); each
    /// request's event id is its `webhook-id`.
    #[arg(long, value_enum)]
    pub sign_as: Option<SignAs>,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// How long to send, e.g. 10s (default 10s unless --requests is given).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "requests")]
    pub duration: Option<std::time::Duration>,
    /// How many requests to send in all.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Requests per second in all (open loop; latency counts from each request's scheduled time).
    /// Without it, each connection sends as fast as it is answered.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Send for this long first without counting (e.g. 3s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub warmup: std::time::Duration,
    /// Sign with a wrong key: every request should be answered 401 (the HTTP + HMAC baseline);
    /// a 401 is then what is expected.
    #[arg(long)]
    pub wrong_signature: bool,
    /// Longest wait for one response.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub timeout: std::time::Duration,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 even when requests failed or were answered otherwise than expected (by default
    /// that exits 1, naming the first failure of each kind).
    #[arg(long)]
    pub allow_errors: bool,
    /// For an https:// URL: trust the certificates in this PEM file (e.g. a self-signed one)
    /// instead of the system's.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// For an https:// URL: accept any certificate (tests only).
    #[arg(long, conflicts_with = "ca_file")]
    pub tls_insecure: bool,
}

/// `hookstream load --sign-as`: a signature scheme other than the provider's own.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SignAs {
    /// `webhook-id`, `webhook-timestamp` and `webhook-signature` (the Standard Webhooks
    /// specification, as Svix sends them).
    StandardWebhooks,
}

/// Why a command failed: the message, and the exit code it ends with.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl std::fmt::Display) -> Self {
        Self {
            code,
            message: message.to_string(),
        }
    }
}

/// Parses the command line and runs the command (`serve` when none is given).
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let config_dir = match cli.config_dir {
        Some(dir) => ConfigDir::Given(dir),
        None => ConfigDir::Default,
    };
    let (name, result) = match cli.command.unwrap_or(Command::Serve {
        watch_config: false,
    }) {
        Command::Serve { watch_config } => {
            ("hookstream", commands::serve(&config_dir, watch_config))
        }
        Command::Sign {
            provider,
            secret,
            file,
        } => (
            "hookstream sign",
            send::sign(&config_dir, &provider, secret.as_deref(), &file),
        ),
        Command::Tail {
            topics,
            regex,
            all,
            from,
            follow,
            count,
            headers,
            format,
            group,
            timeout,
        } => (
            "hookstream tail",
            commands::tail(
                &config_dir,
                &topics,
                TailOptions {
                    from,
                    follow,
                    count,
                    headers,
                    regex,
                    all,
                    format,
                    group,
                    timeout,
                    stop: None,
                },
            ),
        ),
        Command::Topics {
            command: None,
            all,
            timeout,
        } => (
            "hookstream topics",
            commands::topics(&config_dir, all, timeout),
        ),
        Command::Topics {
            command: Some(TopicsCommand::Create { dry_run }),
            ..
        } => (
            "hookstream topics create",
            commands::topics_create(&config_dir, dry_run),
        ),
        Command::Load(args) => ("hookstream load", commands::load(args)),
        Command::Send(args) => ("hookstream send", send::send(&config_dir, args)),
        Command::DeadLetters(command) => (
            "hookstream dead-letters",
            commands::dead_letters(&config_dir, command),
        ),
        Command::Config(ConfigCommand::Check { connect }) => (
            "hookstream config check",
            commands::config_check(&config_dir, connect),
        ),
        Command::Spool(command) => ("hookstream spool", commands::spool(&config_dir, command)),
        Command::Rejections {
            provider,
            admin_url,
        } => (
            "hookstream rejections",
            rejections::rejections(&config_dir, provider.as_deref(), admin_url.as_deref()),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{name}: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// A wait for the broker: a duration (`10s`, `2m`) above zero and at most a day (librdkafka
/// counts its timeouts in milliseconds, in 32 bits).
fn broker_timeout(text: &str) -> Result<std::time::Duration, String> {
    let timeout = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if timeout < std::time::Duration::from_millis(1)
        || timeout > std::time::Duration::from_secs(24 * 3600)
    {
        return Err(format!("{text} is not between 1ms and 24h"));
    }
    Ok(timeout)
}
