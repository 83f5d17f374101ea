//! What each command does.

use super::{DeadLetterCommand, Failure, LoadArgs, SendArgs, SpoolCommand};
use crate::configuration::{self, ConfigDir, Loaded, Settings};
use crate::operations::tail::TailOptions;
use crate::operations::{list, replay};
use crate::providers;
use crate::signature::Secret;
use crate::startup::Application;
use std::io::Read;
use std::path::Path;

fn loaded(config_dir: &ConfigDir) -> Result<Loaded, Failure> {
    configuration::load(config_dir).map_err(|e| Failure::new(1, e))
}

fn settings(config_dir: &ConfigDir) -> Result<Settings, Failure> {
    loaded(config_dir).map(|loaded| loaded.settings)
}

/// `hookstream serve`: runs the server until SIGTERM/SIGINT.
pub(super) fn serve(config_dir: &ConfigDir) -> Result<(), Failure> {
    let Loaded { settings, sources } = loaded(config_dir)?;
    crate::telemetry::init(&settings.log);
    tracing::info!(sources = %sources.join(", "), "configuration loaded");
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

/// `hookstream tail`: prints a topic's records.
pub(super) fn tail(
    config_dir: &ConfigDir,
    topic: &str,
    options: TailOptions,
) -> Result<(), Failure> {
    use crate::operations::tail::{self, TailError};
    let settings = settings(config_dir)?;
    match tail::tail(&settings, topic, options, &mut std::io::stdout().lock()) {
        Ok(_) => Ok(()),
        Err(e @ TailError::DeadLetterTopic(_)) => Err(Failure::new(2, e)),
        Err(e) => Err(Failure::new(1, e)),
    }
}

/// `hookstream dead-letters list|replay`.
pub(super) fn dead_letters(
    config_dir: &ConfigDir,
    command: DeadLetterCommand,
) -> Result<(), Failure> {
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
pub(super) fn config_check(config_dir: &ConfigDir, connect: bool) -> Result<(), Failure> {
    let Loaded { settings, sources } = loaded(config_dir)?;
    let shown = configuration::effective_toml(&settings).map_err(|e| Failure::new(1, e))?;
    println!("# hookstream's effective configuration, secrets redacted");
    println!("# read from: {}", sources.join(", "));
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

/// `hookstream sign`: prints the `Header: value` lines.
pub(super) fn sign(
    config_dir: &ConfigDir,
    provider: &str,
    secret: &str,
    file: &Path,
) -> Result<(), Failure> {
    signature_lines(config_dir, provider, secret, file)
        .map(|lines| println!("{lines}"))
        .map_err(|e| Failure::new(2, e))
}

/// A built-in provider, or one the configuration defines (then the configuration is loaded).
fn provider(
    config_dir: &ConfigDir,
    name: &str,
) -> Result<&'static dyn providers::Provider, String> {
    if let Some(provider) = providers::built_in(name) {
        return Ok(provider);
    }
    let registry = configuration::load(config_dir)
        .and_then(|loaded| loaded.settings.provider_registry())
        .map_err(|e| format!("{name:?} is not a built-in provider, and {e}"))?;
    registry.find(name).ok_or_else(|| {
        format!(
            "unknown provider {name:?} (known: {})",
            registry.names().join(", ")
        )
    })
}

/// The headers that sign `body` as `provider` with `secret` (as its scheme reads secrets: a
/// Standard Webhooks secret is `whsec_…`).
fn signature_headers(
    provider: &dyn providers::Provider,
    secret: &str,
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, String> {
    let scheme = provider.signature();
    let secret = scheme
        .parse_secrets(secret)?
        .into_iter()
        .next()
        .ok_or("the secret is empty")?;
    Ok(scheme.sign(body, &secret))
}

/// FILE's bytes; `-` is standard input.
fn read_body(file: &Path) -> Result<Vec<u8>, String> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        Ok(buf)
    } else {
        std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
    }
}

fn signature_lines(
    config_dir: &ConfigDir,
    provider_name: &str,
    secret: &str,
    file: &Path,
) -> Result<String, String> {
    let provider = provider(config_dir, provider_name)?;
    let body = read_body(file)?;
    Ok(signature_headers(provider, secret, &body)?
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `hookstream send`: signs FILE, POSTs it, prints the status and the answer; fails unless 2xx.
pub(super) fn send(config_dir: &ConfigDir, args: SendArgs) -> Result<(), Failure> {
    let failed = |e: String| Failure::new(2, e);
    let name = match &args.provider {
        Some(name) => name.clone(),
        None => args
            .url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    let provider =
        provider(config_dir, &name).map_err(|e| failed(format!("{e}: use --provider")))?;
    let mut body = read_body(&args.file).map_err(failed)?;
    if args.fresh_id {
        let text = String::from_utf8(body)
            .map_err(|_| failed("--fresh-id needs a UTF-8 JSON body".into()))?;
        let span = crate::load::event_id_span(provider, &text).map_err(failed)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let fresh = format!("send-{now:x}");
        body = [&text[..span.start], &fresh, &text[span.end..]]
            .concat()
            .into_bytes();
        eprintln!("hookstream send: event id {fresh}");
    }
    let mut headers: Vec<(String, String)> = signature_headers(provider, &args.secret, &body)
        .map_err(failed)?
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| failed(format!("--header {header:?} is not NAME:VALUE")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("cannot start the runtime: {e}")))?;
    let (status, answer) = runtime
        .block_on(async {
            let mut request = reqwest::Client::new()
                .post(&args.url)
                .header("content-type", "application/json");
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = request.body(body).send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        })
        .map_err(|e| Failure::new(1, format!("no answer from {}: {e}", args.url)))?;
    println!("{} {answer}", status.as_u16());
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure::new(1, format!("answered {status}")))
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

/// `hookstream spool status|drain`.
pub(super) fn spool(config_dir: &ConfigDir, command: SpoolCommand) -> Result<(), Failure> {
    use crate::operations::spool;
    let settings = settings(config_dir)?;
    match command {
        SpoolCommand::Status => {
            spool::status(&settings, &mut std::io::stdout().lock()).map_err(|e| Failure::new(1, e))
        }
        SpoolCommand::Drain { timeout } => {
            let runtime = tokio::runtime::Runtime::new()
                .map_err(|e| Failure::new(1, format!("cannot start the runtime: {e}")))?;
            match runtime.block_on(spool::drain(&settings, timeout)) {
                Ok(forwarded) => {
                    println!("forwarded {forwarded} record(s); the spool is empty");
                    Ok(())
                }
                Err(e) if e.contains("remain") => Err(Failure::new(3, e)),
                Err(e) => Err(Failure::new(1, e)),
            }
        }
    }
}
