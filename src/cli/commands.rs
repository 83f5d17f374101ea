//! Each command's glue: its arguments and configuration read, the operation run
//! ([`crate::operations`], [`crate::startup`]), its output printed and its exit status chosen.

use super::{DeadLetterCommand, Failure, LoadArgs, SpoolCommand};
use crate::configuration::{self, ConfigDir, Loaded, Settings};
use crate::operations::tail::TailOptions;
use crate::operations::{list, replay};
use crate::providers;
use crate::signature::Secret;
use crate::startup::{Application, Reload};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The configuration, loaded and checked as `serve` checks it before it starts: every layer,
/// every strict check, and librdkafka's own check of the Kafka client configuration (without
/// connecting); with librdkafka's configuration warnings.
fn loaded(config_dir: &ConfigDir) -> Result<(Loaded, Vec<String>), Failure> {
    let loaded = configuration::read(config_dir).map_err(|e| Failure::new(1, e))?;
    let warnings = crate::kafka::check_producer_config(&loaded.settings.kafka)
        .map_err(|e| Failure::new(1, e))?;
    Ok((loaded, warnings))
}

fn settings(config_dir: &ConfigDir) -> Result<Settings, Failure> {
    loaded(config_dir).map(|(loaded, _)| loaded.settings)
}

/// `hookstream serve`: runs the server until SIGTERM/SIGINT, reloading the providers and
/// `log.level` on SIGHUP (and, with `watch_config`, when a configuration file changes).
pub(super) fn serve(config_dir: &ConfigDir, watch_config: bool) -> Result<(), Failure> {
    // librdkafka's warnings are logged by the clients `serve` creates.
    let (
        Loaded {
            settings,
            sources,
            references,
        },
        _,
    ) = loaded(config_dir)?;
    crate::telemetry::init(&settings.log);
    let references: Vec<String> = references.iter().map(ToString::to_string).collect();
    tracing::info!(
        sources = %sources.join(", "),
        from_variables = %references.join("; "),
        "configuration loaded"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(1, format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        // SIGHUP is listened to before anything else: from the moment the port answers, it
        // reloads rather than ends the process.
        let reload = Reload::listen(config_dir.clone(), watch_config);
        let app = Application::build(settings).map_err(|e| Failure::new(1, e))?;
        app.reloading(reload)
            .run_until_stopped()
            .await
            .map_err(|e| Failure::new(1, e))
    })
}

/// `hookstream tail`: prints the records of one or more topics. With `--group`, Ctrl-C and
/// SIGTERM stop it after the record being printed, and what was printed is committed.
pub(super) fn tail(
    config_dir: &ConfigDir,
    topics: &[String],
    mut options: TailOptions,
) -> Result<(), Failure> {
    use crate::operations::tail::{self, TailError};
    let settings = settings(config_dir)?;
    if options.group.is_some() {
        options.stop = Some(stop_on_signal()?);
    }
    match tail::tail(&settings, topics, options, &mut std::io::stdout().lock()) {
        Ok(_) => Ok(()),
        Err(e @ TailError::DeadLetterTopic(_)) => Err(Failure::new(2, e)),
        Err(e) => Err(Failure::new(1, e)),
    }
}

/// A flag set by the first SIGINT or SIGTERM, which then does not end the process: the command
/// watching the flag ends by itself; a second signal ends it at once (exit 130). The handlers
/// are in place when this returns.
fn stop_on_signal() -> Result<Arc<AtomicBool>, Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(1, format!("cannot start the runtime: {e}")))?;
    let (installed, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let (mut interrupt, mut terminate) = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
                (Err(e), _) | (_, Err(e)) => {
                    let _ = installed.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = installed.send(Ok(()));
            for _ in 0..2 {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                if flag.swap(true, Ordering::SeqCst) {
                    // A second signal: the command did not end by itself (a broker that does
                    // not answer the commit), so the signal ends it as it would have.
                    std::process::exit(130);
                }
            }
        });
    });
    match wait.recv() {
        Ok(Ok(())) => Ok(stop),
        Ok(Err(e)) => Err(Failure::new(1, format!("cannot handle signals: {e}"))),
        Err(_) => Err(Failure::new(1, "cannot handle signals")),
    }
}

/// `hookstream topics [--all] [--timeout D]`: the topics under the prefix.
pub(super) fn topics(
    config_dir: &ConfigDir,
    all: bool,
    timeout: std::time::Duration,
) -> Result<(), Failure> {
    let settings = settings(config_dir)?;
    crate::operations::topics::topics(&settings, all, timeout, &mut std::io::stdout().lock())
        .map(|_| ())
        .map_err(|e| Failure::new(1, e))
}

/// `hookstream topics create [--dry-run]`.
pub(super) fn topics_create(config_dir: &ConfigDir, dry_run: bool) -> Result<(), Failure> {
    use crate::operations::topics;
    let settings = settings(config_dir)?;
    if dry_run {
        let plan = topics::plan(&settings).map_err(|e| Failure::new(1, e))?;
        return topics::print_plan(&settings, &plan, &mut std::io::stdout().lock())
            .map_err(|e| Failure::new(1, format!("cannot write: {e}")));
    }
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::new(1, format!("cannot start the runtime: {e}")))?;
    runtime
        .block_on(topics::create(&settings, &mut std::io::stdout().lock()))
        .map_err(|e| Failure::new(1, e))
}

/// `hookstream dead-letters list|replay`.
pub(super) fn dead_letters(
    config_dir: &ConfigDir,
    command: DeadLetterCommand,
) -> Result<(), Failure> {
    let settings = settings(config_dir)?;
    match command {
        DeadLetterCommand::List {
            limit,
            provider,
            pending,
        } => {
            let options = list::ListOptions {
                limit,
                provider,
                pending,
            };
            list::list(&settings, &options, &mut std::io::stdout().lock())
                .map(|_| ())
                .map_err(|e| Failure::new(1, e))
        }
        DeadLetterCommand::Replay {
            dry_run,
            from_beginning,
            provider,
        } => {
            let runtime = tokio::runtime::Runtime::new()
                .map_err(|e| Failure::new(1, format!("cannot start the runtime: {e}")))?;
            let options = replay::ReplayOptions {
                dry_run,
                from_beginning,
                provider,
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
pub(super) fn config_check(config_dir: &ConfigDir, connect: bool) -> Result<(), Failure> {
    let (
        Loaded {
            settings,
            sources,
            references,
        },
        librdkafka_warnings,
    ) = loaded(config_dir)?;
    let shown = configuration::effective_toml(&settings).map_err(|e| Failure::new(1, e))?;
    println!("# hookstream's effective configuration, secrets redacted");
    println!("# read from: {}", sources.join(", "));
    // Which values came from which variables: their names, never their values.
    for reference in &references {
        println!("# {reference}");
    }
    print!("{shown}");
    for warning in settings.warnings().into_iter().chain(librdkafka_warnings) {
        eprintln!("hookstream config check: warning: {warning}");
    }
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

/// `hookstream load`: runs the load and prints the report. Exits 1 when a request failed or was
/// answered otherwise than expected (2xx; 401 with `--wrong-signature`), unless
/// `--allow-errors`.
pub(super) fn load(args: LoadArgs) -> Result<(), Failure> {
    let (json, allow_errors, wrong_signature) =
        (args.json, args.allow_errors, args.wrong_signature);
    let report = run_load(args).map_err(|e| Failure::new(2, e))?;
    println!(
        "{}",
        if json {
            report.to_json().to_string()
        } else {
            report.to_text()
        }
    );
    let expected = |status: u16| {
        if wrong_signature {
            status == 401
        } else {
            (200..300).contains(&status)
        }
    };
    let unexpected = report.unexpected(expected);
    if unexpected == 0 || allow_errors {
        return Ok(());
    }
    let causes: Vec<String> = report
        .first_failures
        .iter()
        .map(|(kind, detail)| format!("{kind} ({detail})"))
        .collect();
    Err(Failure::new(
        1,
        format!(
            "{unexpected} of {} requests were not answered {}{}",
            report.requests,
            if wrong_signature { "401" } else { "2xx" },
            if causes.is_empty() {
                String::new()
            } else {
                format!(": {}", causes.join("; "))
            }
        ),
    ))
}

fn run_load(args: LoadArgs) -> Result<crate::load::Report, String> {
    use crate::load::{self, Limit, LoadOptions, Target};
    let target = Target::parse(&args.url)?;
    let target_tls = target.tls;
    let provider_name = match &args.provider {
        Some(p) => p.clone(),
        None => target
            .path
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or_default()
            .to_string(),
    };
    let provider = providers::built_in(&provider_name).ok_or_else(|| {
        format!(
            "{provider_name:?} is not a built-in provider: use --provider (the load generator writes the built-ins' payloads)"
        )
    })?;
    let limit = match (args.requests, args.duration) {
        (Some(n), _) => Limit::Requests(n),
        (None, Some(d)) => Limit::Duration(d),
        (None, None) => Limit::Duration(std::time::Duration::from_secs(10)),
    };
    let (sign_as, secret) = match args.sign_as {
        None => (None, Secret::new(&args.secret)),
        Some(super::SignAs::StandardWebhooks) => {
            let scheme = crate::signature::SignatureScheme::StandardWebhooks {
                tolerance: std::time::Duration::from_secs(300),
            };
            let secret = scheme
                .parse_secrets(&args.secret)
                .map_err(|e| format!("--secret: {e}"))?
                .into_iter()
                .next()
                .ok_or("--secret: no secret given")?;
            (Some(scheme), secret)
        }
    };
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let options = LoadOptions {
        target,
        provider,
        sign_as,
        secret,
        connections: args.connections,
        limit,
        rate: args.rate,
        warmup: args.warmup,
        wrong_signature: args.wrong_signature,
        timeout: args.timeout,
        id_prefix: format!("load-{started}"),
        record_outcomes: false,
        progress: true,
        tls: if target_tls {
            Some(load::client_config(
                args.ca_file.as_deref(),
                args.tls_insecure,
            )?)
        } else {
            None
        },
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(load::run(options))
}

/// `hookstream spool status|drain`. Exit status: 1 when the spool directory cannot be used (a
/// `serve` holds it, …) or on another error, 3 when `drain` leaves records behind, 4 when the
/// directory does not exist (not 2: clap exits 2 on a usage error).
pub(super) fn spool(config_dir: &ConfigDir, command: SpoolCommand) -> Result<(), Failure> {
    use crate::operations::spool::{self, SpoolCommandError};
    let failure = |e: SpoolCommandError| {
        let code = match e {
            SpoolCommandError::NotFound(_) => 4,
            SpoolCommandError::RecordsRemain { .. } => 3,
            SpoolCommandError::Unusable(_) | SpoolCommandError::Failed(_) => 1,
        };
        Failure::new(code, e)
    };
    let settings = settings(config_dir)?;
    match command {
        SpoolCommand::Status => {
            spool::status(&settings, &mut std::io::stdout().lock()).map_err(failure)
        }
        SpoolCommand::Drain { timeout } => {
            let runtime = tokio::runtime::Runtime::new()
                .map_err(|e| Failure::new(1, format!("cannot start the runtime: {e}")))?;
            let forwarded = runtime
                .block_on(spool::drain(&settings, timeout))
                .map_err(failure)?;
            println!("forwarded {forwarded} record(s); the spool is empty");
            Ok(())
        }
    }
}
