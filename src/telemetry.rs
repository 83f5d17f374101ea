//! Logging setup, and the budget that bounds log volume.

use serde::{Deserialize, Serialize};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The `[log]` section of the configuration; defined here so that logging depends on nothing
/// above it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogSettings {
    /// A filter: a level, or `target=level` pairs (`info`, `hookstream=debug,rdkafka=warn`).
    pub level: String,
    /// `json` (one object per line) or `pretty`.
    pub format: String,
}

/// The levels a filter may name.
const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// A `log.level` (or `RUST_LOG`) filter: a level, or `target=level` pairs separated by commas
/// (`info`, `hookstream=debug,rdkafka=warn`). A filter by target and level only — unlike
/// `EnvFilter` it costs nothing per span. Each directive must be a level or `target=level`: a
/// bare word that is not a level (`verbose`) would otherwise be read as a target with every
/// other line off — silence, not what anyone asked for.
pub fn filter(directives: &str) -> Result<Targets, String> {
    let example = "like \"info\" or \"hookstream=debug,info\"";
    // An empty filter would silence every line, the one saying so included.
    if directives.split(',').all(|d| d.trim().is_empty()) {
        return Err(format!(
            "{directives:?} names no level; a filter is {example}"
        ));
    }
    for directive in directives.split(',').map(str::trim) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) => {
                if target.is_empty() || target.contains(['[', '{', ' ']) {
                    return Err(format!(
                        "{directives:?}: {directive:?} is not target=level (span and field filters are not supported); a filter is {example}"
                    ));
                }
                level
            }
            None if directive.is_empty() => continue,
            None => directive,
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{directives:?}: {level:?} is not a level ({}); a filter is {example}",
                LEVELS.join(", ")
            ));
        }
    }
    directives
        .parse()
        .map_err(|e| format!("{directives:?} is not a filter {example} ({e})"))
}

/// The level filter of the installed subscriber, replaced by [`set_level`].
static LEVEL: std::sync::OnceLock<
    tracing_subscriber::reload::Handle<Targets, tracing_subscriber::Registry>,
> = std::sync::OnceLock::new();

/// Installs the global subscriber. `RUST_LOG`, when set and valid, overrides `log.level`
/// (which configuration has checked).
pub fn init(settings: &LogSettings) {
    let from_env = rust_log();
    let filter = match &from_env {
        Some(Ok(filter)) => Some(filter.clone()),
        _ => filter(&settings.level).ok(),
    }
    .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let (filter, level) = tracing_subscriber::reload::Layer::new(filter);
    // Colour only on a terminal: a file or a log collector gets plain text.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry().with(filter);
    // A second initialization (tests) is harmless: the first subscriber stays.
    let installed = if settings.format == "json" {
        registry.with(layer.json()).try_init()
    } else {
        registry.with(layer).try_init()
    };
    if installed.is_ok() {
        let _ = LEVEL.set(level);
    }
    if let Some(Err(why)) = from_env {
        tracing::warn!("RUST_LOG ignored, log.level used instead: {why}");
    }
}

/// `RUST_LOG`'s filter, when it is set.
fn rust_log() -> Option<Result<Targets, String>> {
    std::env::var("RUST_LOG").ok().map(|d| filter(&d))
}

/// What [`set_level`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelChange {
    /// Lines are filtered by the new `log.level` from now on.
    Applied,
    /// `RUST_LOG` is set (and valid): it goes on overriding `log.level`, as at startup.
    OverriddenByRustLog,
    /// No subscriber of ours is installed (a test's process): nothing to change.
    NotInstalled,
}

/// Filters log lines by `directives` (a `log.level`, which configuration has checked) from now
/// on, unless `RUST_LOG` overrides it.
pub fn set_level(directives: &str) -> Result<LevelChange, String> {
    if matches!(rust_log(), Some(Ok(_))) {
        return Ok(LevelChange::OverriddenByRustLog);
    }
    let Some(level) = LEVEL.get() else {
        return Ok(LevelChange::NotInstalled);
    };
    let filter = filter(directives)?;
    level
        .reload(filter)
        .map_err(|e| format!("the log filter could not be replaced: {e}"))?;
    Ok(LevelChange::Applied)
}

/// Lines per key (e.g. per rejection reason) written each second before the rest are counted.
pub const LINES_PER_SECOND: u32 = 5;

/// How many lines of one kind may be written per key, and per how long: a property of the
/// event that writes them (`InternalEvent::LOG_LIMIT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimit {
    pub lines: u32,
    pub per: std::time::Duration,
}

impl LogLimit {
    /// [`LINES_PER_SECOND`] lines per key each second: a flood's first lines, then a count.
    pub const PER_SECOND: LogLimit = LogLimit {
        lines: LINES_PER_SECOND,
        per: std::time::Duration::from_secs(1),
    };

    /// One line per key each minute: a condition that lasts, said once in a while.
    pub const PER_MINUTE: LogLimit = LogLimit::once_every(60);

    /// One line per key each `seconds`.
    pub const fn once_every(seconds: u64) -> LogLimit {
        LogLimit {
            lines: 1,
            per: std::time::Duration::from_secs(seconds),
        }
    }
}

/// Bounds the log volume of each kind of line: at most `limit.lines` per key each `limit.per`;
/// the others are only counted, and the next line written for that key says how many were left
/// out. A flood of bad requests therefore cannot flood the logs (metrics still count every one).
/// One budget serves every kind of line, each keyed by its kind (the event) and its own key.
#[derive(Default)]
pub struct LogBudget {
    windows: parking_lot::Mutex<std::collections::HashMap<(&'static str, &'static str), Window>>,
}

struct Window {
    started: std::time::Instant,
    written: u32,
    suppressed: u64,
}

impl LogBudget {
    /// `Some(n)` when a line of `kind` for `key` may be written now under `limit`, `n` being how
    /// many were suppressed since the last one; `None` when this one is suppressed.
    pub fn admit(&self, limit: LogLimit, kind: &'static str, key: &'static str) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut windows = self.windows.lock();
        let window = windows.entry((kind, key)).or_insert(Window {
            started: now,
            written: 0,
            suppressed: 0,
        });
        if now.duration_since(window.started) >= limit.per {
            window.started = now;
            window.written = 0;
        }
        if window.written >= limit.lines {
            window.suppressed += 1;
            return None;
        }
        window.written += 1;
        Some(std::mem::take(&mut window.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_is_levels_and_target_level_pairs_only() {
        for good in [
            "info",
            "WARN",
            "hookstream=debug,info",
            "rdkafka=warn, info",
            "off",
        ] {
            assert!(filter(good).is_ok(), "{good}");
        }
        let err = filter("verbose").unwrap_err();
        assert!(err.contains("\"verbose\" is not a level"), "{err}");
        assert!(filter("hookstream=loud").is_err());
        assert!(
            filter("").is_err(),
            "an empty filter would silence everything"
        );
        assert!(filter(" , ").is_err());
        assert!(filter("info,hookstream[webhook]=debug").is_err());
    }

    #[test]
    fn a_flood_is_cut_to_a_few_lines_per_second_per_key_and_the_rest_counted() {
        let budget = LogBudget::default();
        let admit = |key| budget.admit(LogLimit::PER_SECOND, "line", key);
        let written = (0..1000).filter(|_| admit("a").is_some()).count();
        assert_eq!(written, LINES_PER_SECOND as usize);
        assert_eq!(admit("b"), Some(0), "keys have budgets of their own");
        assert_eq!(
            budget.admit(LogLimit::PER_SECOND, "another line", "a"),
            Some(0),
            "kinds of line have budgets of their own"
        );
        std::thread::sleep(std::time::Duration::from_millis(1010));
        assert_eq!(
            admit("a"),
            Some(1000 - u64::from(LINES_PER_SECOND)),
            "the next line says how many were left out"
        );
        assert_eq!(admit("a"), Some(0));
    }
}
