//! The Debian package (README "Install"): built with cargo-deb from the `tally` binary under
//! test (no release build), installed with `dpkg -i` into a scratch root, and checked there:
//! files and modes, the binary runs, the configuration it installs is valid, and the systemd
//! unit passes `systemd-analyze verify` and `security`.
//!
//! The scratch root is a temp dir (`dpkg --root`), so the machine running the tests is left as
//! it was; its maintainer scripts run outside a chroot with DPKG_ROOT set, which
//! deb-systemd-helper honours (on a host that runs systemd they also reload it, harmlessly).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tally_tests::{tally_bin, workspace_root};
use tempfile::TempDir;

/// Where the unit keeps its state (StateDirectory=tally) and the packaged config points.
const STATE_DIR: &str = "/var/lib/tally";
const CONFIG: &str = "/etc/tally/tally.toml";
const UNIT: &str = "usr/lib/systemd/system/tally.service";

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed ({}):\n{}", out.status, text(out));
}

/// `tally` with only PATH set, so that no TALLY_* variable of the test run leaks in.
fn tally(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    command.env_clear().env("PATH", "/usr/bin:/bin");
    command
}

/// Runs `command` to its end, or kills it after `limit` and fails.
fn run_within(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait for the child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect the output")
}

// Proves: the packaged /etc/tally/tally.toml is the example configuration with only state.path
// changed (scripts/deb-config.sh writes it), so the two cannot drift apart.
#[test]
fn packaged_config_is_the_example_with_the_state_directory() {
    let dir = TempDir::new().unwrap();
    let fresh = dir.path().join("tally.toml");
    assert_ok(
        &run(Command::new("bash").arg(workspace_root().join("scripts/deb-config.sh")).arg(&fresh)),
        "deb-config.sh",
    );
    let committed = fs::read_to_string(workspace_root().join("deploy/debian/tally.toml")).unwrap();
    assert!(
        fs::read_to_string(&fresh).unwrap() == committed,
        "deploy/debian/tally.toml is out of date with deploy/tally.example.toml: run scripts/deb-config.sh"
    );
    assert!(committed.lines().any(|line| line == format!("path = \"{STATE_DIR}\"")), "state.path is {STATE_DIR}");
}

// Proves: `tally check` accepts a valid configuration without connecting to NATS (the
// configured server does not exist, and a connect would wait for it), and refuses an invalid
// one naming the key.
#[test]
fn config_check_validates_without_connecting() {
    let dir = TempDir::new().unwrap();
    let example = fs::read_to_string(workspace_root().join("deploy/tally.example.toml")).unwrap();
    let good = dir.path().join("good.toml");
    let dead_url = format!("url = \"nats://127.0.0.1:{}\"", tally_tests::free_port());
    fs::write(&good, example.replacen("url = \"nats://127.0.0.1:4222\"", &dead_url, 1)).unwrap();
    let mut command = tally(&tally_bin());
    command.args(["check", "--config"]).arg(&good);
    let out = run_within(command, Duration::from_secs(30));
    assert_ok(&out, "tally check of the example");
    assert!(text(&out).contains("(state.path ./tally-data,"), "{}", text(&out));

    let bad = dir.path().join("bad.toml");
    assert!(example.contains("format = \"json\""), "the example sets output.format");
    fs::write(&bad, example.replacen("format = \"json\"", "format = \"xml\"", 1)).unwrap();
    let mut command = tally(&tally_bin());
    command.args(["check", "--config"]).arg(&bad);
    let out = run_within(command, Duration::from_secs(30));
    assert!(!out.status.success(), "an invalid output.format passed:\n{}", text(&out));
    assert!(text(&out).contains("output.format"), "the error names the key:\n{}", text(&out));
}

/// Builds the package from the binary under test: cargo-deb takes `target/release/tally` of
/// the target dir it is given, which here holds a copy of that binary (`--no-build`).
fn build_package(dir: &Path) -> PathBuf {
    let release = dir.join("target/release");
    fs::create_dir_all(&release).unwrap();
    fs::copy(tally_bin(), release.join("tally")).expect("copy the tally binary under test");
    let deb = dir.join("tally.deb");
    let out = run(Command::new("cargo")
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .args(["deb", "-p", "tally-processor", "--no-build", "--fast", "--strip", "-o"])
        .arg(&deb));
    assert!(
        out.status.success(),
        "cargo deb failed (is cargo-deb installed? scripts/install-deps.sh installs it):\n{}",
        text(&out)
    );
    deb
}

/// Installs `deb` with dpkg into `root`, an empty directory given a dpkg database. The
/// package's Depends (libc6, …) are not in that database, hence --force-depends.
fn dpkg_install(root: &Path, deb: &Path) {
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    fs::write(root.join("var/lib/dpkg/available"), "").unwrap();
    let out = run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-not-root", "--force-script-chrootless", "--force-depends", "-i"])
        .arg(deb));
    assert_ok(&out, "dpkg -i");
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|err| panic!("{}: {err}", path.display())).permissions().mode() & 0o7777
}

/// The value of `key=` in the unit (the first one).
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
}

/// Copies the host's own units into the scratch root (not ours, were tally installed on the
/// host): the unit's default dependencies (sysinit.target, …) must resolve for `verify`.
fn add_host_units(root: &Path) {
    let units = root.join("lib/systemd/system");
    fs::create_dir_all(&units).unwrap();
    assert_ok(&run(Command::new("cp").arg("-a").arg("/usr/lib/systemd/system/.").arg(&units)), "copy the host's units");
    match fs::remove_file(units.join("tally.service")) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => panic!("remove the host's tally.service copy: {err}"),
        _ => {}
    }
}

// Proves: the package built from the binary under test installs with dpkg -i, puts every file
// where the docs say with the right mode, leaves the service disabled, and its binary, its
// configuration and its unit work together; systemd-analyze accepts the unit as installed.
#[test]
fn deb_installs_into_a_scratch_root_and_its_unit_verifies() {
    let dir = TempDir::new().unwrap();
    let deb = build_package(dir.path());
    let root = dir.path().join("root");
    dpkg_install(&root, &deb);

    let status = run(Command::new("dpkg").arg(format!("--root={}", root.display())).args(["-s", "tally"]));
    assert_ok(&status, "dpkg -s tally");
    let status = text(&status);
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains(&format!("Conffiles:\n {CONFIG} ")), "{CONFIG} is a conffile:\n{status}");

    for (path, expected) in [
        ("usr/bin/tally", 0o755),
        ("etc/tally/tally.toml", 0o644),
        (UNIT, 0o644),
        ("usr/share/doc/tally/README.md", 0o644),
        ("usr/share/doc/tally/docs/operations.md", 0o644),
        ("usr/share/doc/tally/docs/configuration.md", 0o644),
        ("usr/share/doc/tally/examples/tally.example.toml", 0o644),
    ] {
        assert_eq!(mode(&root.join(path)), expected, "mode of /{path}");
    }
    assert!(
        !root.join("etc/systemd/system/multi-user.target.wants/tally.service").exists(),
        "installing must not enable the service"
    );

    let binary = root.join("usr/bin/tally");
    let out = run(tally(&binary).arg("--version"));
    assert_ok(&out, "tally --version");
    assert!(text(&out).starts_with(&format!("tally {}", env!("CARGO_PKG_VERSION"))), "{}", text(&out));

    // The unit runs `tally run --config <file>` on the file the package installed, whose
    // state.path is the unit's StateDirectory; that file is valid as installed.
    let unit = fs::read_to_string(root.join(UNIT)).unwrap();
    assert_eq!(unit_value(&unit, "ExecStart"), format!("/usr/bin/tally run --config {CONFIG}"));
    assert_eq!(format!("/var/lib/{}", unit_value(&unit, "StateDirectory")), STATE_DIR);
    // What docs/operations.md promises of the unit, as installed.
    for setting in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "Restart=on-failure",
        "TimeoutStopSec=60s",
        "LimitNOFILE=65536",
    ] {
        assert!(unit.lines().any(|line| line == setting), "the unit lacks {setting}");
    }
    assert!(!unit.lines().any(|line| line.starts_with("ExecReload=")), "tally cannot reload: no ExecReload");
    let mut check = tally(&binary);
    check.args(["check", "--config"]).arg(root.join(CONFIG.trim_start_matches('/')));
    let out = run_within(check, Duration::from_secs(30));
    assert_ok(&out, "tally check of the installed configuration");
    assert!(text(&out).contains(&format!("(state.path {STATE_DIR},")), "{}", text(&out));

    // verify exits 0 on warnings (an unknown key, a bad value): any output is a failure too.
    add_host_units(&root);
    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("tally.service"));
    assert!(out.status.success() && text(&out).trim().is_empty(), "systemd-analyze verify:\n{}", text(&out));

    // The hardening holds: systemd's own exposure score stays at "OK" (2.0 or less; 1.4 today).
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(format!("--root={}", root.display()))
        .arg("tally.service"));
    assert_ok(&out, "systemd-analyze security --threshold=20 (exposure above 2.0)");
}
