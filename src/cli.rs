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
