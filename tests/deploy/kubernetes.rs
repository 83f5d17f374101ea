//! The Kubernetes manifests (`deploy/kubernetes/`), checked with the real tools and against the
//! program: every manifest validates strictly against Kubernetes 1.30 and the newest version
//! `kubernetes-validate` knows, the kustomization renders, the Deployment's configuration — the
//! ConfigMap's file, the variables and files it takes from the example Secret — passes
//! `hookstream config check`, the ConfigMap holds no secret, every secret the docs name reaches
//! the pod from the Secret, and the probes, ports and grace period fit what hookstream does.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const DIR: &str = "deploy/kubernetes";

fn manifest(name: &str) -> Value {
    let path = Path::new(DIR).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every manifest file but the kustomization.
fn manifest_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(DIR)
        .expect("deploy/kubernetes")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

/// What the kustomization lists.
fn listed() -> Vec<String> {
    manifest("kustomization.yaml")["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a file name").to_string())
        .collect()
}

fn container() -> Value {
    manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"][0].clone()
}

fn pod() -> Value {
    manifest("deployment.yaml")["spec"]["template"]["spec"].clone()
}

fn config_map() -> BTreeMap<String, String> {
    manifest("configmap.yaml")["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("a string value").to_string()))
        .collect()
}

/// The configuration file the ConfigMap holds, as text.
fn config_file() -> String {
    config_map()
        .remove("production.toml")
        .expect("the ConfigMap holds production.toml")
}

/// The ConfigMap's configuration file, read.
fn settings() -> toml::Table {
    toml::from_str(&config_file()).expect("the ConfigMap's file is TOML")
}

/// The example Secret's keys and values.
fn example_secret() -> BTreeMap<String, String> {
    let example = manifest("secret.example.yaml");
    assert_eq!(example["metadata"]["name"], "hookstream");
    example["stringData"]
        .as_object()
        .expect("stringData")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("a string value").to_string()))
        .collect()
}

/// A reference to a key of the Secret `hookstream`.
#[derive(Debug)]
struct SecretKey {
    key: String,
    optional: bool,
}

/// The container's variables: (name, its literal value, or the Secret's key it comes from).
fn variables(container: &Value) -> Vec<(String, Result<String, SecretKey>)> {
    let mut variables = Vec::new();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        // The whole Secret: each of its keys a variable of that name.
        assert_eq!(
            from["secretRef"]["name"], "hookstream",
            "envFrom {from}: the ConfigMap holds a file, not variables"
        );
        let optional = from["secretRef"]["optional"].as_bool().unwrap_or(false);
        for key in example_secret().into_keys() {
            let name = format!("{}{key}", from["prefix"].as_str().unwrap_or_default());
            variables.push((name, Err(SecretKey { key, optional })));
        }
    }
    for var in container["env"].as_array().expect("env") {
        let name = var["name"].as_str().expect("name").to_string();
        let value = match var["value"].as_str() {
            Some(value) => Ok(value.to_string()),
            None => {
                let secret = &var["valueFrom"]["secretKeyRef"];
                assert_eq!(secret["name"], "hookstream", "{name} comes from the Secret");
                Err(SecretKey {
                    key: secret["key"].as_str().expect("key").to_string(),
                    optional: secret["optional"].as_bool().unwrap_or(false),
                })
            }
        };
        variables.push((name, value));
    }
    variables
}

/// The Secret's keys `pod` mounts as files: (key, the file's path in the container).
fn secret_files(pod: &Value, container: &Value) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        // A mount of no volume of the pod's is a StatefulSet's claim (the spool).
        let Some(volume) = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == mount["name"])
        else {
            continue;
        };
        if volume["secret"].is_null() {
            continue;
        }
        assert_eq!(volume["secret"]["secretName"], "hookstream", "{volume}");
        let items = volume["secret"]["items"]
            .as_array()
            .expect("the files are listed (items): the Secret holds more than files");
        let dir = mount["mountPath"].as_str().expect("mountPath");
        for item in items {
            files.push((
                item["key"].as_str().expect("key").to_string(),
                format!("{dir}/{}", item["path"].as_str().expect("path")),
            ));
        }
    }
    files
}

/// The container's environment with the example Secret's values.
fn container_env(container: &Value) -> Vec<(String, String)> {
    let secret = example_secret();
    variables(container)
        .into_iter()
        .map(|(name, value)| {
            let value = value.unwrap_or_else(|from| {
                secret
                    .get(&from.key)
                    .unwrap_or_else(|| panic!("the example Secret lacks {}", from.key))
                    .clone()
            });
            (name, value)
        })
        .collect()
}

/// The image's configuration directory (the Dockerfile's HOOKSTREAM_CONFIG_DIR).
fn image_config_dir() -> String {
    let dockerfile = std::fs::read_to_string("Dockerfile").expect("Dockerfile");
    dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("ENV HOOKSTREAM_CONFIG_DIR="))
        .expect("the Dockerfile sets HOOKSTREAM_CONFIG_DIR")
        .trim()
        .to_string()
}

/// What a pod of `pod` would read, laid out here: a configuration directory with the image's
/// `default.toml` and the ConfigMap's file where the container mounts it, and the Secret's files
/// (real certificates and a key, made here) where it mounts them — the configuration's paths to
/// them rewritten to here. Checks on the way that the mounts are where the configuration looks.
fn pod_files(pod: &Value, container: &Value, label: &str) -> std::path::PathBuf {
    let root = temp_dir(label);
    let config_dir = root.join("config");
    std::fs::create_dir_all(&config_dir).expect("a directory");
    std::fs::copy("config/default.toml", config_dir.join("default.toml")).expect("copied");

    let env: BTreeMap<String, String> = container_env(container).into_iter().collect();
    let hookstream_env = env.get("HOOKSTREAM_ENV").expect("HOOKSTREAM_ENV is set");
    let mounted = container["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == "config")
        .expect("the configuration is mounted");
    assert_eq!(
        mounted["mountPath"].as_str(),
        Some(format!("{}/{hookstream_env}.toml", image_config_dir()).as_str()),
        "the ConfigMap's file is read as the HOOKSTREAM_ENV layer"
    );
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "config")
        .expect("the config volume");
    assert_eq!(volume["configMap"]["name"], "hookstream");
    let key = mounted["subPath"].as_str().expect("subPath");
    let mut text = config_map()
        .remove(key)
        .unwrap_or_else(|| panic!("the ConfigMap has no {key}"));

    // Every file the configuration names under a mount of the Secret is one of its files.
    let files = secret_files(pod, container);
    let ca = rcgen::generate_simple_self_signed(vec!["kafka-ca".into()]).expect("a certificate");
    let client =
        rcgen::generate_simple_self_signed(vec!["hookstream".into()]).expect("a certificate");
    let contents: BTreeMap<&str, String> = [
        ("kafka-ca.crt", ca.cert.pem()),
        ("kafka-client.crt", client.cert.pem()),
        ("kafka-client.key", client.signing_key.serialize_pem()),
    ]
    .into();
    let options = settings()["kafka"]["options"].clone();
    for (option, value) in options.as_table().expect("kafka.options") {
        let Some(path) = value.as_str().filter(|_| option.ends_with(".location")) else {
            continue;
        };
        let (key, _) = files
            .iter()
            .find(|(_, file)| file == path)
            .unwrap_or_else(|| panic!("{option} = {path}: no file of the Secret is mounted there"));
        let here = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(here.parent().expect("a directory")).expect("a directory");
        let content = contents
            .get(key.as_str())
            .unwrap_or_else(|| panic!("no test content for the Secret's {key}"));
        std::fs::write(&here, content).expect("written");
        text = text.replace(&format!("\"{path}\""), &format!("\"{}\"", here.display()));
    }
    std::fs::write(config_dir.join(format!("{hookstream_env}.toml")), text).expect("written");
    config_dir
}

/// Runs `hookstream config check` as a pod of `pod` would: exactly the container's environment
/// (with the example Secret's values, and `extra`), and its files.
fn pod_config_check(
    pod: &Value,
    container: &Value,
    extra: &[(&str, &str)],
) -> std::process::Output {
    let dir = pod_files(pod, container, "pod-config");
    let mut env = container_env(container);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Command::new(BIN)
        .arg("--config-dir")
        .arg(&dir)
        .args(["config", "check"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("hookstream runs")
}

/// Whether `value` is one `${VAR}` reference and nothing else.
fn is_reference(value: &str) -> bool {
    value
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
        .is_some_and(|name| {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// The `${VAR}` references in `text`.
fn references(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            rest = &rest[at + 2..];
            continue;
        }
        let tail = &rest[at + 2..];
        let end = tail.find('}').expect("a closed reference");
        names.push(tail[..end].to_string());
        rest = &tail[end + 1..];
    }
    names
}

/// Every value of `table` that is not a table: (dotted key, value).
fn leaves(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::Table(inner) => leaves(&key, inner, out),
            other => out.push((key, other.clone())),
        }
    }
}

/// Whether a key's name says it holds a secret.
fn named_like_a_secret(key: &str) -> bool {
    let key = key.to_lowercase();
    !key.ends_with(".location")
        && [
            "secret",
            "password",
            "passwd",
            "passphrase",
            "token",
            "credential",
            "private",
            "username",
            "key.pem",
            "jaas",
            "api_key",
            "apikey",
        ]
        .iter()
        .any(|word| key.contains(word))
}

fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn every_manifest_is_valid_for_kubernetes_1_30_and_the_newest_version() {
    let files: Vec<String> = manifest_files()
        .iter()
        .map(|f| format!("{DIR}/{f}"))
        .collect();
    assert!(files.len() >= 6, "{files:?}");
    let mut args: Vec<&str> = vec!["--strict", "-k", "1.30.0"];
    args.extend(files.iter().map(String::as_str));
    assert_tool_succeeds("kubernetes-validate", &args, None);
    let mut args: Vec<&str> = vec!["--strict"];
    args.extend(files.iter().map(String::as_str));
    assert_tool_succeeds("kubernetes-validate", &args, None);
}

#[test]
fn the_kustomization_renders_every_manifest_but_the_example_secret() {
    let listed = listed();
    let files = manifest_files();
    for file in &listed {
        assert!(
            files.contains(file),
            "the kustomization lists {file}, which does not exist"
        );
    }
    for file in &files {
        if file == "secret.example.yaml" {
            assert!(
                !listed.contains(file),
                "placeholder secrets must never be applied"
            );
        } else {
            assert!(listed.contains(file), "{file} is not in the kustomization");
        }
    }
    let output = Command::new(tool("kubectl"))
        .args(["kustomize", DIR])
        .output()
        .expect("kubectl runs");
    let rendered = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ] {
        assert!(
            rendered.contains(&format!("kind: {kind}\n")),
            "{kind} missing:\n{rendered}"
        );
    }
    assert!(!rendered.contains("kind: Secret"), "{rendered}");
}

#[test]
fn the_deployment_configuration_passes_config_check() {
    let output = pod_config_check(&pod(), &container(), &[]);
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{err}");
    let effective: toml::Value = toml::from_str(&out).expect("TOML");
    assert_eq!(effective["dedupe"]["backend"].as_str(), Some("redis"));
    assert_eq!(effective["server"]["shutdown_delay"].as_str(), Some("5s"));
    let options = &effective["kafka"]["options"];
    assert_eq!(options["security.protocol"].as_str(), Some("SASL_SSL"));
    assert_eq!(options["sasl.password"].as_str(), Some("<redacted>"));
    for provider in ["livesession", "lasoexperience", "seismic", "github"] {
        assert_eq!(
            effective["providers"][provider]["secrets"].as_str(),
            Some("<redacted>"),
            "{provider} gets its secret from the Secret"
        );
    }
    assert_eq!(
        effective["providers"]["github"]["preset"].as_str(),
        Some("github")
    );
    // No value of the example Secret is printed.
    for (key, value) in example_secret() {
        if value.contains("replace-me") {
            assert!(!out.contains("replace-me"), "{key} shown:\n{out}");
        }
    }
    for variable in ["KAFKA_SASL_PASSWORD", "GITHUB_WEBHOOK_SECRET", "REDIS_URL"] {
        assert!(
            out.contains(&format!("from ${{{variable}}}\n")),
            "config check says where the value came from: {out}"
        );
    }

    // The check has teeth: a misspelt variable fails it, naming the key; so does a Secret key the
    // configuration refers to that is missing.
    let output = pod_config_check(
        &pod(),
        &container(),
        &[("HOOKSTREAM__KAFKA__TOPIC_PARTITONS", "6")],
    );
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        err.contains("did you mean `kafka.topic_partitions`?"),
        "{err}"
    );
    let mut without_password = container();
    let env = without_password["env"].as_array_mut().expect("env");
    env.retain(|var| var["name"] != "KAFKA_SASL_PASSWORD");
    let output = pod_config_check(&pod(), &without_password, &[]);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        err.contains("`kafka.options.\"sasl.password\"` refers to ${KAFKA_SASL_PASSWORD}, but the environment variable KAFKA_SASL_PASSWORD is not set"),
        "{err}"
    );
}

#[test]
fn the_config_map_holds_no_secret() {
    // No key of the ConfigMap is named like a secret.
    for key in config_map().keys() {
        assert!(!named_like_a_secret(key), "{key} belongs in the Secret");
    }
    let text = config_file();
    assert!(
        !text.contains("-----BEGIN"),
        "a certificate or key in the ConfigMap"
    );
    let mut values = Vec::new();
    leaves("", &settings(), &mut values);
    assert!(values.len() > 10, "{values:?}");

    // What config check redacts — hookstream's own list of what is secret — and everything
    // named like a secret is a ${VAR} reference in the file, never a value.
    let output = pod_config_check(&pod(), &container(), &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let effective: toml::Table =
        toml::from_str(&String::from_utf8_lossy(&output.stdout)).expect("TOML");
    let mut redacted = Vec::new();
    leaves("", &effective, &mut redacted);
    let redacted: Vec<String> = redacted
        .into_iter()
        .filter(|(_, v)| v.as_str().is_some_and(|v| v.contains("<redacted>")))
        .map(|(k, _)| k)
        .collect();
    assert!(
        redacted.iter().any(|k| k == "kafka.options.sasl.password"),
        "{redacted:?}"
    );
    for (key, value) in &values {
        let text = value.as_str().unwrap_or_default();
        if redacted.contains(key) || named_like_a_secret(key) {
            assert!(
                is_reference(text),
                "{key} is a secret: in the ConfigMap it must be a ${{VAR}} reference to the Secret, not {value}"
            );
        }
        if let Some(userinfo) = text.split("://").nth(1).and_then(|rest| {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            authority.rsplit_once('@').map(|(info, _)| info)
        }) {
            assert!(
                is_reference(userinfo) || userinfo.is_empty(),
                "{key}: a URL with credentials in the ConfigMap"
            );
        }
    }
}

/// The Secret's keys the docs tell people to create: `--from-literal=KEY=…` and
/// `--from-file=KEY=…` in every `kubectl create secret generic hookstream` of the README and
/// docs/.
fn documented_secret_keys() -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    let mut files = vec![std::path::PathBuf::from("README.md")];
    files.extend(
        std::fs::read_dir("docs")
            .expect("docs")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("kubectl create secret generic hookstream") {
            let command = &rest[at..];
            let end = command.find("\n```").unwrap_or(command.len());
            for word in command[..end].split_whitespace() {
                let Some(flag) = word
                    .strip_prefix("--from-literal=")
                    .or_else(|| word.strip_prefix("--from-file="))
                else {
                    continue;
                };
                let key = flag.split('=').next().unwrap_or_default();
                keys.insert(key.to_string(), file.display().to_string());
            }
            rest = &command[end..];
        }
    }
    keys
}

#[test]
fn every_secret_the_docs_name_reaches_the_pod_from_the_secret() {
    let container = container();
    let variables = variables(&container);
    let files = secret_files(&pod(), &container);
    let reached: Vec<&str> = variables
        .iter()
        .filter_map(|(_, v)| v.as_ref().err().map(|k| k.key.as_str()))
        .chain(files.iter().map(|(key, _)| key.as_str()))
        .collect();

    // Named by the example Secret or by the docs' command: reaches the container.
    let example = example_secret();
    let documented = documented_secret_keys();
    assert!(
        documented.contains_key("kafka-sasl-password"),
        "{documented:?}"
    );
    for (key, source) in example
        .keys()
        .map(|k| (k, "secret.example.yaml".to_string()))
        .chain(documented.iter().map(|(k, f)| (k, f.clone())))
    {
        assert!(
            reached.contains(&key.as_str()),
            "{source} names the Secret's {key}, which the Deployment never reads"
        );
    }

    // Needed by the Deployment (not optional): in the example Secret and in the docs' command,
    // so that either makes a pod that starts.
    for (name, value) in &variables {
        let Err(from) = value else { continue };
        assert!(
            example.contains_key(&from.key),
            "the example Secret lacks {}",
            from.key
        );
        if !from.optional {
            assert!(
                documented.contains_key(&from.key),
                "{name} needs the Secret's {}, which the docs do not create",
                from.key
            );
        }
    }
    for (key, _) in &files {
        assert!(example.contains_key(key), "the example Secret lacks {key}");
        assert!(documented.contains_key(key), "the docs do not create {key}");
    }

    // Every reference of the configuration file is a variable the container sets, and every
    // signing secret is set from the Secret: the built-ins' directly, the github preset's
    // through its reference.
    let names: Vec<&str> = variables.iter().map(|(n, _)| n.as_str()).collect();
    let text = config_file();
    let used = references(&text);
    assert!(used.len() >= 4, "{used:?}");
    for variable in &used {
        let (_, value) = variables
            .iter()
            .find(|(n, _)| n == variable)
            .unwrap_or_else(|| {
                panic!("the ConfigMap refers to ${{{variable}}}, which the container does not set")
            });
        assert!(value.is_err(), "${{{variable}}} comes from the Secret");
    }
    for name in [
        "HOOKSTREAM__PROVIDERS__LIVESESSION__SECRETS",
        "HOOKSTREAM__PROVIDERS__LASOEXPERIENCE__SECRETS",
        "HOOKSTREAM__PROVIDERS__SEISMIC__SECRETS",
    ] {
        assert!(
            names.contains(&name),
            "{name} missing from the container's env"
        );
    }
    assert_eq!(
        settings()["providers"]["github"]["secrets"].as_str(),
        Some("${GITHUB_WEBHOOK_SECRET}")
    );
}

#[tokio::test]
async fn probes_use_the_admin_port_and_its_routes_and_the_grace_period_covers_the_drain() {
    let settings = settings();
    let admin_port = settings["server"]["admin_port"]
        .as_integer()
        .and_then(|p| u64::try_from(p).ok())
        .expect("a port");
    let public_port = settings["server"]["port"]
        .as_integer()
        .and_then(|p| u64::try_from(p).ok())
        .expect("a port");
    let container = container();
    let port_of = |name: &str| {
        container["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no {name} port"))
    };
    assert_eq!(port_of("admin"), admin_port);
    assert_eq!(port_of("http"), public_port);

    // Each probe asks the admin port for a path hookstream serves there.
    let app = spawn_app().await;
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert!(
            get["port"] == "admin" || get["port"].as_u64() == Some(admin_port),
            "{probe} asks port {}",
            get["port"]
        );
        assert_ne!(
            app.admin(path).await.status,
            404,
            "{path} on the admin port"
        );
    }
    app.get("/readyz").await.assert_error(404, "not_found");
    let annotations = &manifest("deployment.yaml")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], admin_port.to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // The Service publishes the public port only.
    let service = manifest("service.yaml");
    let ports = service["spec"]["ports"].as_array().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["targetPort"], "http");

    // preStop, then the delay, then in-flight requests and the flush, each up to the timeout.
    let pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .expect("a preStop command");
    assert_eq!(pre_stop[0], "sleep");
    let pre_stop = Duration::from_secs(
        pre_stop[1]
            .as_str()
            .expect("seconds")
            .parse()
            .expect("a number"),
    );
    let delay = duration(
        settings["server"]["shutdown_delay"]
            .as_str()
            .expect("a duration"),
    );
    let timeout = duration(
        settings["server"]["shutdown_timeout"]
            .as_str()
            .expect("a duration"),
    );
    assert!(
        !delay.is_zero(),
        "a shutdown delay, for clusters without the preStop hook"
    );
    let grace = Duration::from_secs(
        manifest("deployment.yaml")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds"),
    );
    let drain = pre_stop + delay + timeout * 2;
    assert!(
        grace > drain,
        "grace period {grace:?} <= preStop + delay + drain + flush = {drain:?}"
    );
}

#[test]
fn rollouts_keep_capacity_and_pods_run_hardened() {
    let deployment = manifest("deployment.yaml");
    let spec = &deployment["spec"];
    // The autoscaler owns the replica count: a count here would undo its choice on every apply.
    assert!(
        spec.get("replicas").is_none(),
        "deployment.yaml sets replicas: {}",
        spec["replicas"]
    );
    assert_eq!(manifest("hpa.yaml")["spec"]["minReplicas"], 3);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let keys: Vec<&str> = pod["topologySpreadConstraints"]
        .as_array()
        .expect("topology spread")
        .iter()
        .filter_map(|c| c["topologyKey"].as_str())
        .collect();
    assert_eq!(
        keys,
        ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    );
    let container = container();
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
    for kind in ["requests", "limits"] {
        assert!(container["resources"][kind]["memory"].is_string(), "{kind}");
        assert!(container["resources"][kind]["cpu"].is_string(), "{kind}");
    }
    let hpa = manifest("hpa.yaml");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    assert_eq!(manifest("pdb.yaml")["kind"], "PodDisruptionBudget");
}

/// `deploy/kubernetes-spool` rendered with kustomize: its documents.
fn spool_variant() -> Vec<Value> {
    let output = Command::new(tool("kubectl"))
        .args(["kustomize", "deploy/kubernetes-spool"])
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.split("\n---\n")
        .map(|doc| serde_yaml_ng::from_str(doc).expect("YAML"))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind)
}

#[test]
fn the_spool_variant_renders_and_is_valid_like_the_base() {
    let output = Command::new(tool("kubectl"))
        .args(["kustomize", "deploy/kubernetes-spool"])
        .output()
        .expect("kubectl runs");
    assert!(output.status.success());
    let rendered = temp_dir("spool-variant").join("rendered.yaml");
    std::fs::write(&rendered, &output.stdout).expect("written");
    let path = rendered.display().to_string();
    assert_tool_succeeds(
        "kubernetes-validate",
        &["--strict", "-k", "1.30.0", &path],
        None,
    );
    assert_tool_succeeds("kubernetes-validate", &["--strict", &path], None);
}

#[test]
fn the_spool_variant_is_a_statefulset_with_a_volume_per_pod_and_a_read_only_root() {
    let docs = spool_variant();
    assert!(
        of_kind(&docs, "Deployment").is_none(),
        "the Deployment is replaced"
    );
    let set = of_kind(&docs, "StatefulSet").expect("a StatefulSet");
    assert!(
        set["spec"].get("replicas").is_none(),
        "the autoscaler owns the count"
    );
    let claim = &set["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "spool");
    let pod = &set["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "spool"))
        .expect("the spool volume is mounted");
    let spool_env: BTreeMap<String, String> = container_env(container).into_iter().collect();
    assert_eq!(spool_env["HOOKSTREAM__SPOOL__ENABLED"], "true");
    assert_eq!(
        spool_env["HOOKSTREAM__SPOOL__DIR"].as_str(),
        mount["mountPath"].as_str().expect("mountPath"),
        "the spool is where the volume is"
    );
    // The same wiring as the Deployment: its variables, files and configuration.
    let base = self::container();
    let base_pod = self::pod();
    let same = |value: &Value, name: &str| value[name].as_array().cloned().unwrap_or_default();
    for var in same(&base, "env") {
        assert!(
            same(container, "env").contains(&var),
            "{var} is not in the StatefulSet"
        );
    }
    for mount in same(&base, "volumeMounts") {
        assert!(
            same(container, "volumeMounts").contains(&mount),
            "{mount} is not in the StatefulSet"
        );
    }
    for volume in same(&base_pod, "volumes") {
        assert!(
            same(pod, "volumes").contains(&volume),
            "{volume} is not in the StatefulSet"
        );
    }
    assert_eq!(
        pod["securityContext"]["fsGroup"],
        base_pod["securityContext"]["fsGroup"]
    );
    assert_eq!(
        set["spec"]["serviceName"],
        of_kind(&docs, "Service")
            .and_then(|_| docs
                .iter()
                .find(|d| d["kind"] == "Service" && d["spec"]["clusterIP"] == "None"))
            .expect("a headless Service")["metadata"]["name"]
    );
    let hpa = of_kind(&docs, "HorizontalPodAutoscaler").expect("HPA");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "StatefulSet");
    assert_eq!(
        pod["terminationGracePeriodSeconds"],
        manifest("deployment.yaml")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    );

    // Its configuration passes `config check`, spool included.
    let output = pod_config_check(pod, container, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let effective: toml::Value =
        toml::from_str(&String::from_utf8_lossy(&output.stdout)).expect("TOML");
    assert_eq!(effective["spool"]["enabled"].as_bool(), Some(true));
}
