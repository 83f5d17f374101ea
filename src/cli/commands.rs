//! What each command does.

use super::{DeadLetterCommand, Failure, LoadArgs};
use crate::configuration::{get_configuration, Settings};
use crate::operations::{list, replay};
use crate::providers;
use crate::signature::Secret;
use crate::startup::Application;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

fn settings(config_dir: &Path) -> Result<Settings, Failure> {
    get_configuration(config_dir).map_err(|e| Failure::new(1, e))
}

/// `hookstream serve`: runs the server until SIGTERM/SIGINT.
pub(super) fn serve(config_dir: &Path) -> Result<(), Failure> {
    let settings = settings(config_dir)?;
    crate::telemetry::init(&settings.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(1, format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let app = Application::build(settings).map_err(|e| Failure::new(1, e))?;
        app.run_until_stopped()
            .await
            .map_err(|e| Failure::new(1, e))
    })
}

/// `hookstream tail`: prints a topic's records; fails when there are none in time.
pub(super) fn tail(
    config_dir: &Path,
    topic: &str,
    count: usize,
    wait_secs: u64,
) -> Result<(), Failure> {
    let settings = settings(config_dir)?;
    match crate::operations::tail::tail(
        &settings.kafka,
        topic,
        count,
        Duration::from_secs(wait_secs),
    ) {
        Ok(0) => Err(Failure::new(
            1,
            format!("no records in {topic} within {wait_secs} s"),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(Failure::new(1, e)),
    }
}

/// `hookstream dead-letters list|replay`.
pub(super) fn dead_letters(config_dir: &Path, command: DeadLetterCommand) -> Result<(), Failure> {
    let settings = settings(config_dir)?;
    match command {
        DeadLetterCommand::List { limit } => {
            list::list(&settings, limit, &mut std::io::stdout().lock())
                .map(|_| ())
                .map_err(|e| Failure::new(1, e))
        }
        DeadLetterCommand::Replay {
            dry_run,
            from_beginning,
        } => {
            let runtime = tokio::runtime::Runtime::new()
                .map_err(|e| Failure::new(1, format!("cannot start the runtime: {e}")))?;
            let options = replay::ReplayOptions {
                dry_run,
                from_beginning,
            };
            let summary = runtime
                .block_on(replay::replay(&settings, options))
                .map_err(|e| Failure::new(1, e))?;
            println!("{summary}");
            if summary.complete() {
                Ok(())
            } else {
                Err(Failure::new(
                    3,
                    "some dead letters were not replayed: they stay in the dead-letter topic for the next replay",
                ))
            }
        }
    }
}

/// `hookstream config check [--connect]`.
pub(super) fn config_check(config_dir: &Path, connect: bool) -> Result<(), Failure> {
    let settings = settings(config_dir)?;
    let shown = crate::configuration::effective_toml(&settings).map_err(|e| Failure::new(1, e))?;
    print!("{shown}");
    if !connect {
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::new(1, format!("cannot start the runtime: {e}")))?;
    let checks = runtime.block_on(crate::operations::check::connect(&settings));
    println!();
    for check in &checks {
        println!("# {check}");
    }
    let failed = checks.iter().filter(|c| c.outcome.is_err()).count();
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::new(
            1,
            format!("{failed} of {} connection checks failed", checks.len()),
        ))
    }
}

/// `hookstream sign`: prints the `Header: value` line.
pub(super) fn sign(provider: &str, secret: &str, file: &Path) -> Result<(), Failure> {
    signature_line(provider, secret, file)
        .map(|line| println!("{line}"))
        .map_err(|e| Failure::new(2, e))
}

fn signature_line(provider: &str, secret: &str, file: &Path) -> Result<String, String> {
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
pub(super) fn load(args: LoadArgs) -> Result<(), Failure> {
    run_load(args)
        .map(|report| println!("{report}"))
        .map_err(|e| Failure::new(2, e))
}

fn run_load(args: LoadArgs) -> Result<String, String> {
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
