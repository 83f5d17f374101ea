//! `hookstream rejections`: the latest rejected deliveries of a running server, from its admin
//! port (`GET /rejections`), printed for a person.

use super::Failure;
use crate::configuration::{self, ConfigDir};
use crate::rejections::{Entry, Listing};
use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

/// Longest wait for the server's answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The admin port's base URL: `--admin-url`, else the configuration's `server.admin_port` on
/// 127.0.0.1 (or on `server.host`, when that is one address other than a loopback one).
fn admin_url(config_dir: &ConfigDir, given: Option<&str>) -> Result<String, Failure> {
    if let Some(url) = given {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            let shown = configuration::without_userinfo(url);
            Failure::new(2, format!("--admin-url {shown:?} is not a URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(Failure::new(
                2,
                format!(
                    "--admin-url {:?} is not an http:// URL, e.g. http://10.0.0.7:9090",
                    configuration::without_userinfo(url)
                ),
            ));
        }
        return Ok(url.trim_end_matches('/').to_string());
    }
    let settings = configuration::read(config_dir)
        .map_err(|e| {
            Failure::new(
                1,
                format!("{e} (the admin port is read from the configuration; --admin-url names it instead)"),
            )
        })?
        .settings;
    let port = settings.server.admin_port;
    if port == 0 {
        return Err(Failure::new(
            1,
            "server.admin_port is 0 (any free port), so the configuration does not say where the admin port is: give --admin-url",
        ));
    }
    let host = match settings.server.host.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() && !ip.is_loopback() => match ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        },
        _ => "127.0.0.1".to_string(),
    };
    Ok(format!("http://{host}:{port}"))
}

/// The innermost cause of an error (reqwest's own words are "error sending request for url").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// `hookstream rejections`: prints the latest rejected deliveries, newest first.
pub(super) fn rejections(
    config_dir: &ConfigDir,
    provider: Option<&str>,
    admin_url_given: Option<&str>,
) -> Result<(), Failure> {
    let base = admin_url(config_dir, admin_url_given)?;
    let url = format!("{base}/rejections");
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| Failure::new(1, format!("cannot make an HTTP client: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(1, format!("cannot start the runtime: {e}")))?;
    let unreachable = |e: reqwest::Error| {
        let why = if e.is_timeout() {
            format!("no answer within {} s", TIMEOUT.as_secs())
        } else {
            root_cause(&e)
        };
        Failure::new(
            1,
            format!(
                "cannot reach hookstream's admin port at {}: {why}. Is `hookstream serve` running{}? (--admin-url names another address)",
                configuration::without_userinfo(&base),
                if admin_url_given.is_some() { "" } else { " with this configuration" }
            ),
        )
    };
    let (status, text) = runtime.block_on(async {
        let mut request = client.get(&url);
        if let Some(provider) = provider {
            request = request.query(&[("provider", provider)]);
        }
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        Ok::<_, Failure>((status, text))
    })?;
    if !status.is_success() {
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let (code, detail) = (
            answer["error"].as_str().unwrap_or_default(),
            answer["detail"].as_str().unwrap_or_default(),
        );
        let what = if code == "not_found" {
            " (is this the admin port, server.admin_port, of a hookstream that serves /rejections?)"
                .to_string()
        } else if code.is_empty() {
            " (not hookstream's answer: is this its admin port?)".to_string()
        } else {
            format!(" ({code}): {detail}")
        };
        return Err(Failure::new(
            1,
            format!(
                "{} answered {status}{what}",
                configuration::without_userinfo(&url)
            ),
        ));
    }
    let listing: Listing = serde_json::from_str(&text).map_err(|e| {
        Failure::new(
            1,
            format!(
                "{} answered something that is not a list of rejections ({e}): is this hookstream's admin port?",
                configuration::without_userinfo(&url)
            ),
        )
    })?;
    print(&listing, provider, &mut std::io::stdout().lock())
        .map_err(|e| Failure::new(1, format!("cannot write: {e}")))
}

/// The rejections, one block each, newest first.
fn print(listing: &Listing, provider: Option<&str>, out: &mut impl Write) -> std::io::Result<()> {
    let of = provider.map(|p| format!(" of {p}")).unwrap_or_default();
    let kept = listing.kept_per_provider;
    if listing.rejections.is_empty() {
        return writeln!(
            out,
            "no rejected deliveries{of} recorded since the server started (it keeps the last {kept} per provider)"
        );
    }
    let count = listing.rejections.len();
    writeln!(
        out,
        "{count} rejected deliver{}{of}, newest first (the server keeps the last {kept} per provider)",
        if count == 1 { "y" } else { "ies" }
    )?;
    for entry in &listing.rejections {
        writeln!(out)?;
        write_entry(entry, out)?;
    }
    Ok(())
}

fn write_entry(e: &Entry, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{}  {}  {} {}  from {}",
        e.time,
        e.provider,
        e.status,
        e.reason,
        e.remote_addr.as_deref().unwrap_or("an unknown address")
    )?;
    let list = |names: &[String]| {
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    if !(e.headers_present.is_empty() && e.headers_missing.is_empty()) {
        writeln!(
            out,
            "  headers    present: {}; missing: {}",
            list(&e.headers_present),
            list(&e.headers_missing)
        )?;
    }
    let declared = e
        .content_length
        .map(|n| format!("{n} bytes declared"))
        .unwrap_or_else(|| "no length declared".to_string());
    match (e.body_bytes, &e.body_sha256) {
        (Some(bytes), Some(sha256)) => {
            writeln!(out, "  body       {bytes} bytes, sha256 {sha256}")?
        }
        _ => writeln!(out, "  body       not read in full ({declared})")?,
    }
    if let (Some(parsed), Some(tried)) = (e.signature_parsed, e.secrets_tried) {
        writeln!(
            out,
            "  signature  {}, {tried} secret{} tried",
            if parsed { "parsed" } else { "not parsed" },
            if tried == 1 { "" } else { "s" }
        )?;
    }
    write!(out, "  hint       ")?;
    wrapped(&e.hint, HINT_WIDTH, "             ", out)
}

/// Columns a hint's text takes before it wraps.
const HINT_WIDTH: usize = 87;

/// `text` in lines of at most `width` characters (a longer word stands alone), the first after
/// what is already written, the others after `indent`.
fn wrapped(text: &str, width: usize, indent: &str, out: &mut impl Write) -> std::io::Result<()> {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            writeln!(out, "{line}")?;
            write!(out, "{indent}")?;
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    writeln!(out, "{line}")
}
