//! deploy/kubernetes/ as a cluster would take it: every manifest validates against the
//! Kubernetes schemas (kubernetes-validate, pinned in scripts/install-deps.sh, strict) and the
//! ServiceMonitor against the prometheus-operator CRD schema vendored in tests/kubernetes/; the
//! ConfigMap's tally.toml with the StatefulSet's environment and the example Secret's files is
//! a configuration the real `tally` accepts; and the manifests agree with each other.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tally_tests::{tally_bin, workspace_root};

/// The oldest Kubernetes the manifests are for (PodDisruptionBudget's
/// unhealthyPodEvictionPolicy and the StatefulSet's PVC retention policy are on by default from
/// 1.27), and the newest the pinned kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.27", "1.37"];

fn manifests_dir() -> PathBuf {
    workspace_root().join("deploy/kubernetes")
}

fn validator() -> PathBuf {
    workspace_root().join("tests/kubernetes/validate.py")
}

/// Runs `python3` with `args`; panics with a hint when it cannot start.
fn python(args: &[&str]) -> Output {
    Command::new("python3")
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run python3 ({err}); run scripts/install-deps.sh"))
}

/// The YAML documents of `path`, as JSON (read by PyYAML, which kubernetes-validate brings).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))";
    let out = python(&["-c", script, &path.display().to_string()]);
    assert!(out.status.success(), "cannot read {} as YAML: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("python's json.dumps gives JSON")
}

/// The manifests kustomization.yaml lists, checked against the directory: every YAML file is
/// listed and every listed file exists.
fn manifests() -> Vec<PathBuf> {
    let dir = manifests_dir();
    let kustomization = &yaml_documents(&dir.join("kustomization.yaml"))[0];
    let mut listed: Vec<String> = kustomization["resources"]
        .as_array()
        .expect("kustomization.yaml lists resources")
        .iter()
        .map(|r| r.as_str().expect("a resource is a file name").to_string())
        .collect();
    listed.sort();
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes exists")
        .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    present.sort();
    assert_eq!(listed, present, "kustomization.yaml's resources and the files in {}", dir.display());
    listed.iter().map(|name| dir.join(name)).collect()
}

/// Runs the validator over `files` for Kubernetes `version`.
fn validate(version: &str, files: &[PathBuf]) -> Output {
    let mut args = vec![validator().display().to_string(), version.to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    python(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

// Proves: every manifest in deploy/kubernetes/ validates strictly (unknown fields are errors)
// for the oldest and the newest Kubernetes the manifests are for, the ServiceMonitor included;
// every resource was looked at, none skipped.
#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let files = manifests();
    let resources: usize = files.iter().map(|f| yaml_documents(f).len()).sum();
    for version in KUBERNETES_VERSIONS {
        let out = validate(version, &files);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "Kubernetes {version}:\n{text}{}", String::from_utf8_lossy(&out.stderr));
        let ok = text.lines().filter(|line| line.starts_with("OK ")).count();
        assert_eq!(ok, resources, "every resource validated for Kubernetes {version}:\n{text}");
        assert!(text.contains("ServiceMonitor/tally"), "{text}");
    }
}

// Proves the validation above can fail: an unknown field in the StatefulSet's probe, a port
// given as text in the Service and an unknown field in the ServiceMonitor's endpoint are each
// reported as an error naming the resource.
#[test]
fn validator_rejects_broken_manifests() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let breakages = [
        ("statefulset.yaml", "path: /readyz", "pathh: /readyz", "StatefulSet/tally"),
        ("service.yaml", "port: 9464", "port: nine", "Service/tally"),
        ("servicemonitor.yaml", "interval: 30s", "intervall: 30s", "ServiceMonitor/tally"),
    ];
    for (file, from, to, resource) in breakages {
        let original = std::fs::read_to_string(manifests_dir().join(file)).expect("read a manifest");
        assert!(original.contains(from), "{file} no longer contains {from:?}");
        let broken = dir.path().join(file);
        std::fs::write(&broken, original.replacen(from, to, 1)).expect("write the broken copy");
        let out = validate(KUBERNETES_VERSIONS[1], &[broken]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{file} with {to:?} passed:\n{text}");
        assert!(text.lines().any(|l| l.starts_with("ERROR") && l.contains(resource)), "{file}:\n{text}");
    }
}

/// The one resource of `kind` in `file`.
fn resource(file: &str, kind: &str) -> Value {
    let docs = yaml_documents(&manifests_dir().join(file));
    let found: Vec<Value> = docs.into_iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in {file}");
    found.into_iter().next().unwrap_or_default()
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value.as_str().unwrap_or_else(|| panic!("{what} is not a string: {value}"))
}

/// The volume mount of `container` that mounts the volume whose definition has `source` (e.g.
/// `configMap`) named `name` under `name_key`.
fn mount_path(pod: &Value, container: &Value, source: &str, name_key: &str, name: &str) -> String {
    let volume = pod["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v[source][name_key] == name))
        .unwrap_or_else(|| panic!("no {source} volume {name}"));
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == volume["name"]))
        .unwrap_or_else(|| panic!("container {} does not mount {name}", container["name"]));
    str_of(&mount["mountPath"], "mountPath").to_string()
}

// Proves: the real `tally check` accepts the ConfigMap's tally.toml with the environment each
// container of the StatefulSet sets, reading the secrets from the example Secret's keys where
// the pod mounts them; and the manifests agree: the command's --config is the ConfigMap's
// mount, state.path lies on the PVC, http.listen is the container's port on all interfaces,
// the probes and the Services use that port.
#[test]
fn configmap_and_statefulset_make_a_valid_tally_configuration() {
    let config_map = resource("configmap.yaml", "ConfigMap");
    let secret = resource("secret.example.yaml", "Secret");
    let stateful_set = resource("statefulset.yaml", "StatefulSet");
    let pod = &stateful_set["spec"]["template"]["spec"];
    let toml_text = str_of(&config_map["data"]["tally.toml"], "the ConfigMap's tally.toml");
    let config: toml::Table = toml_text.parse().expect("the ConfigMap's tally.toml is TOML");
    let listen = config["http"]["listen"].as_str().expect("http.listen is set");
    let state_path = config["state"]["path"].as_str().expect("state.path is set");

    let dir = tempfile::tempdir().expect("a temp dir");
    let secrets_dir = dir.path().join("secrets");
    std::fs::create_dir(&secrets_dir).expect("create the secrets dir");
    for (key, value) in secret["stringData"].as_object().expect("the Secret has stringData") {
        std::fs::write(secrets_dir.join(key), str_of(value, key)).expect("write a secret file");
    }
    let config_file = dir.path().join("tally.toml");
    std::fs::write(&config_file, toml_text).expect("write tally.toml");

    let containers = pod["initContainers"].as_array().into_iter().chain(pod["containers"].as_array()).flatten();
    let mut checked = 0;
    for container in containers {
        let name = str_of(&container["name"], "a container name");
        let config_mount =
            mount_path(pod, container, "configMap", "name", str_of(&config_map["metadata"]["name"], "name"));
        let secret_mount =
            mount_path(pod, container, "secret", "secretName", str_of(&secret["metadata"]["name"], "name"));
        let command: Vec<&str> =
            container["command"].as_array().expect("a command").iter().map(|a| str_of(a, "arg")).collect();
        assert_eq!(command[0], "tally", "{name}: {command:?}");
        let at = command.iter().position(|a| *a == "--config").expect("--config is given");
        assert_eq!(command[at + 1], format!("{config_mount}/tally.toml"), "{name}: --config is the ConfigMap's file");

        let mut check = Command::new(tally_bin());
        check.args(["check", "--config"]).arg(&config_file).env_remove("RUST_LOG");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TALLY_") {
                check.env_remove(key);
            }
        }
        for variable in container["env"].as_array().into_iter().flatten() {
            let value = str_of(&variable["value"], "an env value (valueFrom is not checked here)");
            let local = match value.strip_prefix(&format!("{secret_mount}/")) {
                Some(key) => secrets_dir.join(key).display().to_string(),
                None => value.to_string(),
            };
            check.env(str_of(&variable["name"], "an env name"), local);
        }
        let out = check.output().expect("run tally check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: tally check refused it:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("The configuration is valid: "), "{name}: {stdout}");
        checked += 1;
    }
    assert_eq!(checked, 2, "the setup and the tally container");

    let tally =
        pod["containers"].as_array().and_then(|cs| cs.iter().find(|c| c["name"] == "tally")).expect("container tally");
    let state_mount = tally["volumeMounts"]
        .as_array()
        .and_then(|ms| {
            ms.iter().find(|m| m["name"] == stateful_set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"])
        })
        .expect("the PVC is mounted");
    assert!(
        state_path.starts_with(&format!("{}/", str_of(&state_mount["mountPath"], "mountPath"))),
        "state.path {state_path} is on the PVC"
    );
    let port = &tally["ports"][0];
    assert_eq!(
        listen,
        format!("0.0.0.0:{}", port["containerPort"]),
        "http.listen is the container port on all interfaces"
    );
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(tally[probe]["httpGet"]["port"], port["name"], "{probe} uses the HTTP port");
    }
    assert_eq!(tally["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(tally["livenessProbe"]["httpGet"]["path"], "/healthz");
    for service in yaml_documents(&manifests_dir().join("service.yaml")) {
        assert_eq!(service["spec"]["ports"][0]["targetPort"], port["name"], "{}", service["metadata"]["name"]);
    }
    let headless = stateful_set["spec"]["serviceName"].as_str().expect("serviceName");
    let services = yaml_documents(&manifests_dir().join("service.yaml"));
    assert!(
        services.iter().any(|s| s["metadata"]["name"] == headless && s["spec"]["clusterIP"] == "None"),
        "{headless} is headless"
    );

    // The ServiceMonitor selects exactly one Service, and scrapes its port by name.
    let monitor = resource("servicemonitor.yaml", "ServiceMonitor");
    let wanted = monitor["spec"]["selector"]["matchLabels"].as_object().expect("matchLabels");
    let selected: Vec<&Value> =
        services.iter().filter(|s| wanted.iter().all(|(k, v)| &s["metadata"]["labels"][k] == v)).collect();
    assert_eq!(selected.len(), 1, "the ServiceMonitor selects one Service: {selected:?}");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], selected[0]["spec"]["ports"][0]["name"]);
}
