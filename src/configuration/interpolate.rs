//! `${VAR}` in configuration values: a value, or part of one, taken from an environment
//! variable, so that a secret (a SASL password, a signing secret, a Redis URL) never has to be
//! written in a file — a Kubernetes Secret can carry it in a variable instead.
//!
//! Applied to every string value once the layers are merged, whatever layer set it. `${NAME}`
//! (`NAME` of letters, digits and `_`, not starting with a digit) is replaced by the variable's
//! value; `$${` is a literal `${`; any other `$` is itself. A variable that is not set stops
//! startup, naming the key and the variable — never an empty value in its place; so does a `${`
//! that starts no reference. Errors never show a value.
//!
//! The values resolved are as secret as the keys that hold them: what is printed or logged of
//! them is decided by key, as for any other value ([`super::effective`]).

use super::strict::source_name;
use super::ConfigError;
use config::{Map, Source, Value, ValueKind};

/// A key whose value took one or more variables: what `config check` may show instead of a
/// secret (the names of the variables, never their values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The key, dotted, a key holding dots quoted (`kafka.options."sasl.password"`).
    pub key: String,
    /// The variables its value took, in order.
    pub variables: Vec<String>,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let variables: Vec<String> = self.variables.iter().map(|v| format!("${{{v}}}")).collect();
        write!(f, "{} from {}", self.key, variables.join(", "))
    }
}

/// What is wrong with one value's references.
#[derive(Debug, PartialEq, Eq)]
enum Problem {
    Unset(String),
    NotUnicode(String),
    /// The whole value is one reference, to a variable set to nothing: a Secret's key left
    /// empty, never a value anyone means.
    Empty(String),
    Malformed,
}

/// `config` with every string value's references resolved through `lookup` (a variable's value,
/// `None` when it is not set), and the keys that had any.
pub(super) fn interpolate(
    config: config::Config,
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<(config::Config, Vec<Reference>), ConfigError> {
    let mut root = Source::collect(&config)?;
    let mut references = Vec::new();
    resolve_table(&mut Vec::new(), &mut root, &lookup, &mut references)?;
    let resolved = config::Config::builder()
        .add_source(Resolved(root))
        .build()?;
    Ok((resolved, references))
}

fn resolve_value(
    path: &mut Vec<String>,
    value: &mut Value,
    lookup: &impl Fn(&str) -> Option<std::ffi::OsString>,
    references: &mut Vec<Reference>,
) -> Result<(), ConfigError> {
    let origin = value.origin().map(str::to_string);
    match &mut value.kind {
        ValueKind::String(text) => {
            let key = key_of(path);
            match resolve(text, lookup) {
                Ok(None) => {}
                Ok(Some((resolved, variables))) => {
                    *text = resolved;
                    if !variables.is_empty() {
                        references.push(Reference { key, variables });
                    }
                }
                Err(problem) => return Err(refused(key, problem, origin.as_deref())),
            }
        }
        ValueKind::Table(table) => resolve_table(path, table, lookup, references)?,
        ValueKind::Array(values) => {
            for value in values {
                resolve_value(path, value, lookup, references)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Every value of `table`, in the order of their names (so that of several errors, the same is
/// reported every time).
fn resolve_table(
    path: &mut Vec<String>,
    table: &mut Map<String, Value>,
    lookup: &impl Fn(&str) -> Option<std::ffi::OsString>,
    references: &mut Vec<Reference>,
) -> Result<(), ConfigError> {
    let mut names: Vec<String> = table.keys().cloned().collect();
    names.sort();
    for name in names {
        let Some(value) = table.get_mut(&name) else {
            continue;
        };
        path.push(name);
        let resolved = resolve_value(path, value, lookup, references);
        path.pop();
        resolved?;
    }
    Ok(())
}

/// The error for `key`, saying where its value was set, never the value.
fn refused(key: String, problem: Problem, origin: Option<&str>) -> ConfigError {
    let from = origin
        .map(|o| format!(" (in {})", source_name(o, &key)))
        .unwrap_or_default();
    let problem = match problem {
        Problem::Unset(name) => format!(
            "refers to ${{{name}}}, but the environment variable {name} is not set{from}"
        ),
        Problem::NotUnicode(name) => format!(
            "refers to ${{{name}}}, but the environment variable {name} is not valid UTF-8{from}"
        ),
        Problem::Empty(name) => format!(
            "refers to ${{{name}}}, but the environment variable {name} is empty{from}"
        ),
        Problem::Malformed => format!(
            "has a `${{` that starts no reference{from}: a reference is ${{NAME}} (letters, digits and _), and $${{ is a literal ${{"
        ),
    };
    ConfigError::Invalid(key, problem)
}

/// `path` as the errors name keys: dotted, a part holding anything but letters, digits, `_`
/// and `-` quoted.
fn key_of(path: &[String]) -> String {
    path.iter()
        .map(|part| {
            if !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                part.clone()
            } else {
                format!("\"{part}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `text` with its references resolved and the variables they named; `None` when it has no `$`
/// (nothing to do).
fn resolve(
    text: &str,
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Option<(String, Vec<String>)>, Problem> {
    if !text.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut variables = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or(Problem::Malformed)?;
            let name = &tail[..end];
            if !is_variable_name(name) {
                return Err(Problem::Malformed);
            }
            let value = lookup(name).ok_or_else(|| Problem::Unset(name.to_string()))?;
            let value = value
                .into_string()
                .map_err(|_| Problem::NotUnicode(name.to_string()))?;
            out.push_str(&value);
            variables.push(name.to_string());
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    if let [name] = variables.as_slice() {
        if out.is_empty() && text == format!("${{{name}}}") {
            return Err(Problem::Empty(name.clone()));
        }
    }
    Ok(Some((out, variables)))
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The merged values, resolved, as a source to build the configuration from again (the values
/// keep their origins, for the errors that name them).
#[derive(Clone)]
struct Resolved(Map<String, Value>);

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The values may be secrets.
        f.write_str("Resolved(…)")
    }
}

impl Source for Resolved {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::ffi::OsString;

    fn environment(variables: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let variables: BTreeMap<String, OsString> = variables
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| variables.get(name).cloned()
    }

    fn text(value: &str, variables: &[(&str, &str)]) -> Result<String, Problem> {
        resolve(value, environment(variables)).map(|r| r.map_or(value.to_string(), |(s, _)| s))
    }

    #[test]
    fn references_are_replaced_by_the_variables_values() {
        let env = [("PW", "s3cr3t"), ("HOST", "redis"), ("EMPTY", "")];
        assert_eq!(text("${PW}", &env), Ok("s3cr3t".into()));
        assert_eq!(
            text("redis://:${PW}@${HOST}:6379", &env),
            Ok("redis://:s3cr3t@redis:6379".into())
        );
        assert_eq!(text("a${EMPTY}b", &env), Ok("ab".into()), "set, but empty");
        assert_eq!(
            resolve("${PW}-${HOST}", environment(&env)).map(|r| r.map(|(_, v)| v)),
            Ok(Some(vec!["PW".to_string(), "HOST".to_string()]))
        );
        assert_eq!(resolve("plain", environment(&env)), Ok(None));
    }

    #[test]
    fn a_doubled_dollar_is_a_literal_reference_and_a_lone_dollar_itself() {
        assert_eq!(text("$${PW}", &[]), Ok("${PW}".into()));
        assert_eq!(text("a$${PW}b", &[("PW", "x")]), Ok("a${PW}b".into()));
        assert_eq!(
            text("cost: $5, $$ or $", &[]),
            Ok("cost: $5, $$ or $".into())
        );
        assert_eq!(text("$PW", &[("PW", "x")]), Ok("$PW".into()));
        assert_eq!(
            resolve("$${PW}", environment(&[])).map(|r| r.map(|(_, v)| v)),
            Ok(Some(Vec::new())),
            "an escape is no reference"
        );
    }

    #[test]
    fn an_unset_variable_or_a_malformed_reference_is_refused() {
        assert_eq!(text("${NOPE}", &[]), Err(Problem::Unset("NOPE".into())));
        assert_eq!(
            text("${PW}", &[("PW", "")]),
            Err(Problem::Empty("PW".into()))
        );
        assert_eq!(
            text("a${PW}", &[("PW", "")]),
            Ok("a".into()),
            "part of a value may be empty"
        );
        assert_eq!(
            text("${A}${NOPE}", &[("A", "x")]),
            Err(Problem::Unset("NOPE".into()))
        );
        for malformed in ["${", "${PW", "${}", "${1PW}", "${P W}", "${P-W}", "x${PW"] {
            assert_eq!(
                text(malformed, &[("PW", "x")]),
                Err(Problem::Malformed),
                "{malformed}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_variable_that_is_not_unicode_is_refused() {
        use std::os::unix::ffi::OsStringExt;
        let lookup = |_: &str| Some(OsString::from_vec(vec![0xff, 0xfe]));
        assert_eq!(
            resolve("${BAD}", lookup),
            Err(Problem::NotUnicode("BAD".into()))
        );
    }

    fn merged(files: &[&str]) -> config::Config {
        let mut builder = config::Config::builder();
        for (i, text) in files.iter().enumerate() {
            builder = builder.add_source(
                config::File::from_str(text, config::FileFormat::Toml).required(i == 0),
            );
        }
        builder.build().expect("TOML")
    }

    #[test]
    fn every_string_value_of_the_merged_layers_is_resolved_and_the_keys_named() {
        let config = merged(&[
            "[kafka]\nbrokers = \"b:9092\"\nack_timeout = \"5s\"\n[kafka.options]\n\"sasl.password\" = \"file-literal\"",
            "[kafka.options]\n\"sasl.password\" = \"${KAFKA_PW}\"\n[providers.github]\npreset = \"github\"\nsecrets = \"${GH_A},${GH_B}\"\nping_events = [\"${PING}\"]\n[server]\nport = \"${PORT}\"",
        ]);
        let env = environment(&[
            ("KAFKA_PW", "kafka-secret"),
            ("GH_A", "gh-a"),
            ("GH_B", "gh-b"),
            ("PING", "ping"),
            ("PORT", "8081"),
        ]);
        let (config, references) = interpolate(config, env).expect("resolved");
        assert_eq!(
            config
                .get_table("kafka.options")
                .expect("options")
                .remove("sasl.password")
                .and_then(|v| v.into_string().ok())
                .as_deref(),
            Some("kafka-secret"),
            "the later layer's reference, resolved"
        );
        assert_eq!(
            config
                .get_string("providers.github.secrets")
                .ok()
                .as_deref(),
            Some("gh-a,gh-b")
        );
        assert_eq!(config.get_int("server.port").ok(), Some(8081));
        assert_eq!(
            config
                .get_array("providers.github.ping_events")
                .ok()
                .map(|a| a
                    .into_iter()
                    .map(|v| v.into_string().unwrap_or_default())
                    .collect::<Vec<_>>()),
            Some(vec!["ping".to_string()])
        );
        let mut named: Vec<String> = references.iter().map(ToString::to_string).collect();
        named.sort();
        assert_eq!(
            named,
            [
                "kafka.options.\"sasl.password\" from ${KAFKA_PW}",
                "providers.github.ping_events from ${PING}",
                "providers.github.secrets from ${GH_A}, ${GH_B}",
                "server.port from ${PORT}",
            ]
        );
    }

    #[test]
    fn an_unset_variable_names_the_key_and_the_variable_never_a_value() {
        let config = merged(&[
            "[kafka.options]\n\"sasl.username\" = \"someone\"\n\"sasl.password\" = \"pw-${KAFKA_SASL_PASSWORD}-literal-secret\"",
        ]);
        let err = interpolate(config, environment(&[]))
            .expect_err("refused")
            .to_string();
        assert_eq!(
            err,
            "configuration key `kafka.options.\"sasl.password\"` refers to ${KAFKA_SASL_PASSWORD}, but the environment variable KAFKA_SASL_PASSWORD is not set"
        );
        let config = merged(&["[providers.livesession]\nsecrets = \"literal-secret${\""]);
        let err = interpolate(config, environment(&[]))
            .expect_err("refused")
            .to_string();
        assert!(
            err.starts_with("configuration key `providers.livesession.secrets` has a `${` that starts no reference"),
            "{err}"
        );
        assert!(!err.contains("literal-secret"), "{err}");
    }

    #[test]
    fn a_value_set_by_a_variable_names_the_variable() {
        let config = config::Config::builder()
            .add_source(
                config::Environment::with_prefix("HOOKSTREAM")
                    .prefix_separator("__")
                    .separator("__")
                    .source(Some(
                        [(
                            "HOOKSTREAM__DEDUPE__REDIS__URL".to_string(),
                            "redis://:${REDIS_PW}@redis:6379".to_string(),
                        )]
                        .into(),
                    )),
            )
            .build()
            .expect("built");
        let err = interpolate(config, environment(&[]))
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("`dedupe.redis.url` refers to ${REDIS_PW}")
                && err.ends_with("(in HOOKSTREAM__DEDUPE__REDIS__URL)"),
            "{err}"
        );
    }

    #[test]
    fn without_references_the_configuration_is_left_as_it_is() {
        let config = merged(&["[server]\nhost = \"0.0.0.0\"\nnote = \"$${literal}\""]);
        let (config, references) = interpolate(config, environment(&[])).expect("resolved");
        assert!(references.is_empty());
        assert_eq!(
            config.get_string("server.host").ok().as_deref(),
            Some("0.0.0.0")
        );
        assert_eq!(
            config.get_string("server.note").ok().as_deref(),
            Some("${literal}")
        );
    }

    #[test]
    fn debug_output_shows_no_value() {
        let resolved = Resolved(
            [(
                "kafka".to_string(),
                Value::new(None, ValueKind::String("hunter2".into())),
            )]
            .into_iter()
            .collect(),
        );
        assert!(!format!("{resolved:?}").contains("hunter2"));
    }
}
