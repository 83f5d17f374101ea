/// Webhook handling allocates many small, short-lived objects; glibc's allocator spent about 30 %
/// of the CPU of an accepted webhook on them (perf), mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use hookstream::cli::{self, Cli, Command, DeadLetterCommand};
use hookstream::configuration::get_configuration;
use hookstream::dead_letter::{list, replay};
use hookstream::startup::Application;
use hookstream::tail::tail;
use hookstream::telemetry;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Sign {
            provider,
            secret,
            file,
        } => match cli::sign(&provider, &secret, &file) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hookstream sign: {e}");
                ExitCode::from(2)
            }
        },
        Command::Tail {
            topic,
            count,
            wait_secs,
        } => {
            let result = get_configuration(&cli.config_dir)
                .map_err(|e| e.to_string())
                .and_then(|s| tail(&s.kafka, &topic, count, Duration::from_secs(wait_secs)));
            match result {
                Ok(0) => {
                    eprintln!("hookstream tail: no records in {topic} within {wait_secs} s");
                    ExitCode::from(1)
                }
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hookstream tail: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Load(args) => match cli::load(args) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hookstream load: {e}");
                ExitCode::from(2)
            }
        },
        Command::DeadLetters(command) => match dead_letters(&cli.config_dir, command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hookstream dead-letters: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve => match serve(&cli.config_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hookstream: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn dead_letters(config_dir: &std::path::Path, command: DeadLetterCommand) -> Result<(), String> {
    let settings = get_configuration(config_dir).map_err(|e| e.to_string())?;
    match command {
        DeadLetterCommand::List { limit } => {
            list::list(&settings, limit, &mut std::io::stdout().lock()).map(|_| ())
        }
        DeadLetterCommand::Replay {
            dry_run,
            from_beginning,
        } => {
            let runtime = tokio::runtime::Runtime::new()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            let options = replay::ReplayOptions {
                dry_run,
                from_beginning,
            };
            let summary = runtime.block_on(replay::replay(&settings, options))?;
            println!("{summary}");
            Ok(())
        }
    }
}

fn serve(config_dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let settings = get_configuration(config_dir)?;
    telemetry::init(&settings.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let app = Application::build(settings)?;
        app.run_until_stopped().await?;
        Ok(())
    })
}
