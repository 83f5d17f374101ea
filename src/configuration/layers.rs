//! Which layers a configuration is read from, and the checks that no layer is silently missing:
//! a configuration directory that does not exist, a `HOOKSTREAM_ENV` naming no file, and a
//! `HOOKSTREAM_…` variable that looks meant for hookstream but would be ignored (one underscore
//! where two belong) each stop startup with a message saying so; and so does a
//! `HOOKSTREAM__KAFKA__OPTIONS__…` variable, which cannot name a librdkafka property.

use super::strict::{edit_distance, known_keys};
use super::ConfigError;
use std::path::{Path, PathBuf};

/// Where the configuration files are.
#[derive(Debug, Clone)]
pub enum ConfigDir {
    /// Given with `--config-dir` or `HOOKSTREAM_CONFIG_DIR`: it must exist and hold
    /// `default.toml`.
    Given(PathBuf),
    /// Nothing given: `./config` if it exists, else the compiled-in defaults alone.
    Default,
}

/// The variables hookstream reads under its own name besides `HOOKSTREAM__SECTION__KEY`.
const OWN_VARIABLES: &[&str] = &[
    "HOOKSTREAM_ENV",
    "HOOKSTREAM_CONFIG_DIR",
    "HOOKSTREAM_SIGN_SECRET",
    "HOOKSTREAM_LOAD_SECRET",
];

/// Prefixes of variables others set under hookstream's name: Kubernetes' service links (every
/// pod in a namespace with a Service called `hookstream` gets `HOOKSTREAM_SERVICE_HOST`,
/// `HOOKSTREAM_PORT_8080_TCP`, …) and the test suite's own.
const NOT_OURS: &[&str] = &["HOOKSTREAM_SERVICE_", "HOOKSTREAM_PORT", "HOOKSTREAM_TEST_"];

/// The files to read, in order, and the sources to name in the startup line.
pub(super) struct Files {
    /// `default.toml`, then `{HOOKSTREAM_ENV}.toml`, when they are to be read.
    pub files: Vec<PathBuf>,
}

/// The files of `dir` to read for `env` (`HOOKSTREAM_ENV`), or why they cannot be.
pub(super) fn files(dir: &ConfigDir, env: Option<&str>) -> Result<Files, ConfigError> {
    let env = env.map(str::trim).filter(|e| !e.is_empty());
    let dir = match dir {
        ConfigDir::Given(dir) => {
            if !dir.is_dir() {
                return Err(ConfigError::Layer(format!(
                    "the configuration directory {} does not exist (--config-dir or HOOKSTREAM_CONFIG_DIR)",
                    dir.display()
                )));
            }
            if !dir.join("default.toml").is_file() {
                return Err(ConfigError::Layer(format!(
                    "the configuration directory {} has no default.toml: --config-dir names the directory holding it",
                    dir.display()
                )));
            }
            Some(dir.clone())
        }
        ConfigDir::Default => Some(PathBuf::from("config")).filter(|d| d.is_dir()),
    };
    let mut files = Vec::new();
    if let Some(dir) = &dir {
        let default = dir.join("default.toml");
        if default.is_file() {
            files.push(default);
        }
    }
    if let Some(env) = env {
        let Some(dir) = &dir else {
            return Err(ConfigError::Layer(format!(
                "HOOKSTREAM_ENV={env}, but there is no configuration directory to find {env}.toml in (--config-dir)"
            )));
        };
        let file = dir.join(format!("{env}.toml"));
        if !file.is_file() {
            return Err(ConfigError::Layer(format!(
                "HOOKSTREAM_ENV={env}, but {} does not exist (there: {})",
                file.display(),
                toml_files(dir).join(", ")
            )));
        }
        files.push(file);
    }
    Ok(Files { files })
}

/// A layer that cannot be read, said without the file's text: a TOML syntax error would quote
/// the line at fault, and the line may hold a secret. Where it is and what is wrong are enough.
pub(super) fn unreadable(error: config::ConfigError) -> ConfigError {
    let config::ConfigError::FileParse { uri, cause } = error else {
        return ConfigError::Load(error);
    };
    let file = uri.unwrap_or_else(|| "a configuration file".to_string());
    let problem = match cause.downcast_ref::<toml::de::Error>() {
        Some(e) => {
            let shown = e.to_string();
            let at = shown.lines().next().unwrap_or_default();
            if at == e.message() {
                e.message().to_string()
            } else {
                format!("{at}: {}", e.message())
            }
        }
        None => "cannot be read as TOML".to_string(),
    };
    ConfigError::Layer(format!(
        "{file}: {problem} (the line is not shown: it may hold a secret)"
    ))
}

fn toml_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    names
}

/// `HOOKSTREAM__…` variables that are read, and an error for the first `HOOKSTREAM_…` one that
/// would be ignored although it is a near miss of one that is read.
pub(super) fn check_variables(
    variables: impl IntoIterator<Item = String>,
) -> Result<usize, ConfigError> {
    let mut read = 0;
    let known: Vec<(String, String)> = known_keys()
        .into_iter()
        .map(|key| {
            let variable = format!("HOOKSTREAM__{}", key.replace('.', "__").to_uppercase());
            (flattened(&variable), variable)
        })
        .collect();
    for name in variables {
        if let Some(option) = librdkafka_option(&name) {
            return Err(ConfigError::Layer(format!(
                "the environment variable {name} cannot set a librdkafka property: librdkafka's names hold dots and underscores (`log.queue`, `log_level`), and a variable's name cannot say which of its underscores stand for dots. Set it under [kafka.options] in a configuration file, its value from another variable if it is a secret: \"{}\" = \"${{KAFKA_{}}}\" (see docs/configuration.md, \"Values from the environment\")",
                option.to_lowercase().replace('_', "."),
                option.to_uppercase(),
            )));
        }
        if name.starts_with("HOOKSTREAM__") {
            read += 1;
            continue;
        }
        if !name.starts_with("HOOKSTREAM_")
            || OWN_VARIABLES.contains(&name.as_str())
            || NOT_OURS.iter().any(|prefix| name.starts_with(prefix))
        {
            continue;
        }
        let flat = flattened(&name);
        let nearest = known
            .iter()
            .map(|(flat_known, variable)| (edit_distance(&flat, flat_known), variable))
            .filter(|(distance, _)| *distance <= 2)
            .min();
        if let Some((_, variable)) = nearest {
            return Err(ConfigError::Layer(format!(
                "the environment variable {name} is not read by hookstream: did you mean {variable}? (sections and keys are separated by two underscores)"
            )));
        }
    }
    Ok(read)
}

/// What follows `HOOKSTREAM__KAFKA__OPTIONS__` in `name` (read whatever its case, as the
/// configuration's environment layer reads it), when it starts so.
fn librdkafka_option(name: &str) -> Option<&str> {
    const PREFIX: &str = "HOOKSTREAM__KAFKA__OPTIONS__";
    name.get(..PREFIX.len())
        .filter(|start| start.eq_ignore_ascii_case(PREFIX))
        .map(|_| &name[PREFIX.len()..])
}

/// A variable name with every run of underscores made one, uppercase: how it reads to a person.
fn flattened(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(names: &[&str]) -> Result<usize, String> {
        check_variables(names.iter().map(|n| n.to_string())).map_err(|e| e.to_string())
    }

    #[test]
    fn single_underscores_are_refused_naming_the_variable_meant() {
        let err = check(&["HOOKSTREAM_KAFKA_BROKERS"]).unwrap_err();
        assert!(
            err.contains("did you mean HOOKSTREAM__KAFKA__BROKERS?"),
            "{err}"
        );
        let err = check(&["HOOKSTREAM_KAFKA_ACK_TIMOUT"]).unwrap_err();
        assert!(err.contains("HOOKSTREAM__KAFKA__ACK_TIMEOUT"), "{err}");
        let err = check(&["HOOKSTREAM_DEDUPE__REDIS_URL"]).unwrap_err();
        assert!(err.contains("HOOKSTREAM__DEDUPE__REDIS__URL"), "{err}");
    }

    #[test]
    fn a_librdkafka_property_in_a_variable_is_refused_with_the_file_form_as_the_hint() {
        for name in [
            "HOOKSTREAM__KAFKA__OPTIONS__SECURITY_PROTOCOL",
            "hookstream__kafka__options__security_protocol",
        ] {
            let err = check(&[name]).unwrap_err();
            assert!(
                err.contains(&format!(
                    "the environment variable {name} cannot set a librdkafka property"
                )) && err.contains("[kafka.options]")
                    && err.contains("\"security.protocol\" = \"${KAFKA_SECURITY_PROTOCOL}\""),
                "{err}"
            );
        }
        // The table's own variable is refused by the strict check ("is a table"), and the
        // section's keys are read as ever.
        assert_eq!(check(&["HOOKSTREAM__KAFKA__OPTIONS"]), Ok(1));
        assert_eq!(check(&["HOOKSTREAM__KAFKA__OPTIONSX"]), Ok(1));
        assert_eq!(check(&["HOOKSTREAM__KAFKA__BROKERS"]), Ok(1));
    }

    #[test]
    fn variables_hookstream_does_not_own_are_left_alone() {
        // What Kubernetes injects for a Service named hookstream, and the test suite's own.
        let others = [
            "HOOKSTREAM_SERVICE_HOST",
            "HOOKSTREAM_SERVICE_PORT",
            "HOOKSTREAM_SERVICE_PORT_HTTP",
            "HOOKSTREAM_PORT",
            "HOOKSTREAM_PORT_8080_TCP",
            "HOOKSTREAM_PORT_8080_TCP_ADDR",
            "HOOKSTREAM_PORT_8080_TCP_PORT",
            "HOOKSTREAM_PORT_8080_TCP_PROTO",
            "HOOKSTREAM_TEST_BROKERS",
            "HOOKSTREAM_TEST_REDIS",
            "HOOKSTREAM_ENV",
            "HOOKSTREAM_CONFIG_DIR",
            "HOOKSTREAM_SIGN_SECRET",
            "HOOKSTREAM_LOAD_SECRET",
            "HOOKSTREAM_SOMETHING_ELSE_ENTIRELY",
            "PATH",
        ];
        assert_eq!(check(&others), Ok(0));
        assert_eq!(check(&["HOOKSTREAM__KAFKA__BROKERS", "PATH"]), Ok(1));
    }

    #[test]
    fn a_named_environment_file_must_exist() {
        let dir = ConfigDir::Given(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config"
        )));
        let err = files(&dir, Some("producton"))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("producton.toml does not exist"), "{err}");
        assert!(err.contains("docker.toml"), "it lists what is there: {err}");
        assert_eq!(files(&dir, Some("docker")).expect("exists").files.len(), 2);
        assert_eq!(
            files(&dir, Some(" ")).expect("blank is unset").files.len(),
            1
        );
    }

    #[test]
    fn a_syntax_error_in_a_file_says_where_without_the_line() {
        let dir =
            std::env::temp_dir().join(format!("hookstream-config-syntax-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let file = dir.join("broken.toml");
        std::fs::write(&file, "[providers.livesession]\nsecrets = \"hunter2\n").expect("written");
        let err = config::Config::builder()
            .add_source(config::File::from(file.clone()))
            .build()
            .map_err(unreadable)
            .expect_err("refused")
            .to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            // The file as the configuration library names it: absolute, or relative to the
            // working directory when that is shorter (a checkout beside the temporary directory).
            err.contains(&format!(
                "hookstream-config-syntax-{}/broken.toml",
                std::process::id()
            )) && err.contains("line 2, column")
                && err.contains("invalid basic string"),
            "{err}"
        );
    }

    #[test]
    fn a_given_directory_must_exist_and_hold_default_toml() {
        let missing = ConfigDir::Given(PathBuf::from("/nonexistent"));
        let err = files(&missing, None).err().expect("refused").to_string();
        assert!(err.contains("/nonexistent does not exist"), "{err}");
        let dir =
            std::env::temp_dir().join(format!("hookstream-empty-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let err = files(&ConfigDir::Given(dir.clone()), None)
            .err()
            .expect("refused")
            .to_string();
        let _ = std::fs::remove_dir(&dir);
        assert!(err.contains("has no default.toml"), "{err}");
    }
}
