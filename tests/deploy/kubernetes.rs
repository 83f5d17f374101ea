//! The Kubernetes manifests (`deploy/kubernetes/`), checked with the real tools and against the
//! program: every manifest validates strictly against Kubernetes 1.30 and the newest version
//! `kubernetes-validate` knows, the kustomization renders, the Deployment's configuration passes
//! `hookstream config check`, and the probes, ports and grace period fit what hookstream does.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const DIR: &str = "deploy/kubernetes";
const BIN: &str = env!("CARGO_BIN_EXE_hookstream");

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

fn config_map() -> BTreeMap<String, String> {
    manifest("configmap.yaml")["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("a string value").to_string()))
        .collect()
}

/// The environment the container gets: the ConfigMap, and the Secret's keys with placeholders.
fn container_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = config_map().into_iter().collect();
    for var in container()["env"].as_array().expect("env") {
        let name = var["name"].as_str().expect("name").to_string();
        let secret = &var["valueFrom"]["secretKeyRef"];
        assert_eq!(secret["name"], "hookstream", "{name} comes from the Secret");
        let key = secret["key"].as_str().expect("key");
        let placeholder = if key == "redis-url" {
            "redis://placeholder:6379".to_string()
        } else {
            format!("placeholder-{key}")
        };
        env.push((name, placeholder));
    }
    env
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

/// Runs `hookstream config check` with exactly `env` (and the repository's config directory).
fn config_check(env: &[(String, String)]) -> std::process::Output {
    Command::new(BIN)
        .args(["--config-dir", "config", "config", "check"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("hookstream runs")
}

#[test]
fn the_deployment_configuration_passes_config_check() {
    let env = container_env();
    let output = config_check(&env);
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{err}");
    let effective: toml::Value = toml::from_str(&out).expect("TOML");
    assert_eq!(effective["dedupe"]["backend"].as_str(), Some("redis"));
    assert_eq!(effective["server"]["shutdown_delay"].as_str(), Some("5s"));
    for provider in ["livesession", "lasoexperience", "seismic"] {
        assert_eq!(
            effective["providers"][provider]["secrets"].as_str(),
            Some("<redacted>"),
            "{provider} gets its secret from the Secret"
        );
    }

    // The check has teeth: a misspelt variable in the ConfigMap fails it, naming the key.
    let mut misspelt = env.clone();
    misspelt.push(("HOOKSTREAM__KAFKA__TOPIC_PARTITONS".into(), "6".into()));
    let output = config_check(&misspelt);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        err.contains("did you mean `kafka.topic_partitions`?"),
        "{err}"
    );
}

#[test]
fn secrets_come_from_the_secret_and_never_from_the_config_map() {
    for key in config_map().keys() {
        assert!(
            !["SECRETS", "PASSWORD", "REDIS__URL"]
                .iter()
                .any(|s| key.contains(s)),
            "{key} belongs in the Secret"
        );
    }
    let env = container()["env"].as_array().expect("env").clone();
    let names: Vec<&str> = env.iter().filter_map(|v| v["name"].as_str()).collect();
    for name in [
        "HOOKSTREAM__PROVIDERS__LIVESESSION__SECRETS",
        "HOOKSTREAM__PROVIDERS__LASOEXPERIENCE__SECRETS",
        "HOOKSTREAM__PROVIDERS__SEISMIC__SECRETS",
        "HOOKSTREAM__DEDUPE__REDIS__URL",
    ] {
        assert!(
            names.contains(&name),
            "{name} missing from the container's env"
        );
    }
    let example = manifest("secret.example.yaml");
    let keys: Vec<&String> = example["stringData"]
        .as_object()
        .expect("stringData")
        .keys()
        .collect();
    for var in &env {
        let key = var["valueFrom"]["secretKeyRef"]["key"]
            .as_str()
            .expect("key");
        assert!(
            keys.iter().any(|k| *k == key),
            "the example Secret lacks {key}"
        );
    }
}

#[tokio::test]
async fn probes_use_the_admin_port_and_its_routes_and_the_grace_period_covers_the_drain() {
    let settings = config_map();
    let admin_port: u64 = settings["HOOKSTREAM__SERVER__ADMIN_PORT"]
        .parse()
        .expect("a port");
    let public_port: u64 = settings["HOOKSTREAM__SERVER__PORT"]
        .parse()
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
    let delay = duration(&settings["HOOKSTREAM__SERVER__SHUTDOWN_DELAY"]);
    let timeout = duration(&settings["HOOKSTREAM__SERVER__SHUTDOWN_TIMEOUT"]);
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
    let data = &of_kind(&docs, "ConfigMap").expect("ConfigMap")["data"];
    assert_eq!(data["HOOKSTREAM__SPOOL__ENABLED"], "true");
    assert_eq!(
        data["HOOKSTREAM__SPOOL__DIR"], mount["mountPath"],
        "the spool is where the volume is"
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
    let mut env: Vec<(String, String)> = data
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    env.push((
        "HOOKSTREAM__DEDUPE__REDIS__URL".into(),
        "redis://redis:6379".into(),
    ));
    let output = config_check(&env);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let effective: toml::Value =
        toml::from_str(&String::from_utf8_lossy(&output.stdout)).expect("TOML");
    assert_eq!(effective["spool"]["enabled"].as_bool(), Some(true));
}
