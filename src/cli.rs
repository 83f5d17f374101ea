//! Command-line interface.

use crate::providers;
use crate::signature::Secret;
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "hookstream",
    version,
    about = "Verified webhooks in, one Avro event stream on Kafka out"
)]
pub struct Cli {
    /// Directory holding default.toml and $HOOKSTREAM_ENV.toml.
    #[arg(
        long,
        env = "HOOKSTREAM_CONFIG_DIR",
        default_value = "config",
        global = true
    )]
    pub config_dir: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook server (the default).
    Serve,
    /// Print the signature header a provider would send with FILE as the body.
    Sign {
        /// Provider name: livesession, lasoexperience or seismic.
        #[arg(long)]
        provider: String,
        /// Signing secret (or set HOOKSTREAM_SIGN_SECRET to keep it out of the process list).
        #[arg(long, env = "HOOKSTREAM_SIGN_SECRET", hide_env_values = true)]
        secret: String,
        /// The request body, byte for byte; `-` reads standard input.
        file: PathBuf,
    },
    /// Print the records of TOPIC as JSON lines (from the beginning), decoded with the schema.
    Tail {
        topic: String,
        /// Stop after this many records.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 10)]
        wait_secs: u64,
    },
    /// Send signed webhooks to a hookstream deployment and report throughput and latency.
    Load(LoadArgs),
    /// Inspect or replay the dead-letter topic.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// Run dead letters through the current normalization and write those that now succeed to
    /// their normal topic (as consumer group dead_letter.replay_group).
    Replay {
        /// Report what would be replayed; write and commit nothing.
        #[arg(long)]
        dry_run: bool,
        /// Ignore the group's committed offsets and read every dead letter still in the topic
        /// (an event may be replayed again; consumers dedupe by event_id).
        #[arg(long)]
        from_beginning: bool,
    },
    /// Print dead letters as JSON lines, oldest first.
    List {
        /// Stop after this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Webhook URL, e.g. http://127.0.0.1:8080/webhooks/livesession.
    #[arg(long)]
    pub url: String,
    /// Provider whose fixture and signature scheme to use (default: the URL's last segment).
    #[arg(long)]
    pub provider: Option<String>,
    /// The provider's signing secret, as configured in hookstream.
    #[arg(long, env = "HOOKSTREAM_LOAD_SECRET", hide_env_values = true)]
    pub secret: String,
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
    /// Sign with a wrong key: every request should be answered 401 (the HTTP + HMAC baseline).
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
}

/// `hookstream sign`: returns the `Header: value` line.
pub fn sign(provider: &str, secret: &str, file: &PathBuf) -> Result<String, String> {
    let provider = providers::find(provider).ok_or_else(|| {
        let known: Vec<_> = providers::REGISTRY.iter().map(|p| p.name()).collect();
        format!(
            "unknown provider {provider:?} (known: {})",
            known.join(", ")
        )
    })?;
    let body = if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        buf
    } else {
        std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?
    };
    let scheme = provider.signature();
    Ok(format!(
        "{}: {}",
        scheme.primary_header(),
        scheme.sign(&body, &Secret::new(secret))
    ))
}

/// `hookstream load`: runs the load and prints the report.
pub fn load(args: LoadArgs) -> Result<String, String> {
    use crate::load::{self, Limit, LoadOptions, Target};
    let target = Target::parse(&args.url)?;
    let provider_name = match &args.provider {
        Some(p) => p.clone(),
        None => target
            .path
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or_default()
            .to_string(),
    };
    let provider = providers::find(&provider_name)
        .ok_or_else(|| format!("unknown provider {provider_name:?}: use --provider"))?;
    let limit = match (args.requests, args.duration) {
        (Some(n), _) => Limit::Requests(n),
        (None, Some(d)) => Limit::Duration(d),
        (None, None) => Limit::Duration(std::time::Duration::from_secs(10)),
    };
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let options = LoadOptions {
        target,
        provider,
        secret: Secret::new(&args.secret),
        connections: args.connections,
        limit,
        rate: args.rate,
        warmup: args.warmup,
        wrong_signature: args.wrong_signature,
        timeout: args.timeout,
        id_prefix: format!("load-{started}"),
        record_outcomes: false,
        progress: true,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let report = runtime.block_on(load::run(options))?;
    Ok(if args.json {
        report.to_json().to_string()
    } else {
        report.to_text()
    })
}
