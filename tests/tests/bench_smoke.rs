//! The end-to-end benchmark's smoke mode, so the harness cannot rot: `tally-bench e2e --smoke`
//! runs every phase on a few thousand messages against its own nats-server. No timing is
//! asserted; only that it finishes and ends with the ratio line the issue asks for.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A debug smoke run takes seconds; this is generous for a loaded CI machine.
const SMOKE_TIMEOUT: Duration = Duration::from_secs(300);

/// `$TALLY_BENCH_BIN`, else `tally-bench` in this test's profile dir, built when missing
/// (`scripts/test.sh` builds every binary before the tests, so it is normally there).
fn bench_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TALLY_BENCH_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf();
    let bin = profile_dir.join("tally-bench");
    if !bin.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(tally_tests::workspace_root()).args(["build", "-p", "tally-bench"]);
        if let Some(target_dir) = profile_dir.parent() {
            cmd.arg("--target-dir").arg(target_dir);
        }
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo to build tally-bench");
        assert!(status.success(), "building tally-bench failed: {status}");
    }
    assert!(bin.exists(), "{} does not exist; build it with `cargo build -p tally-bench`", bin.display());
    bin
}

/// The number on a line `e2e_vs_ceiling_ratio: <x>`, if that is what the line says.
fn ratio_of(line: &str) -> Option<f64> {
    let value = line.strip_prefix("e2e_vs_ceiling_ratio: ")?;
    let has_two_decimals = value.split_once('.').is_some_and(|(_, d)| d.len() == 2);
    value.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0 && has_two_decimals)
}

// Proves the line parser accepts exactly the format, so the main test can fail.
#[test]
fn ratio_line_format() {
    assert_eq!(ratio_of("e2e_vs_ceiling_ratio: 0.83"), Some(0.83));
    assert_eq!(ratio_of("e2e_vs_ceiling_ratio: 0.8"), None);
    assert_eq!(ratio_of("e2e_vs_ceiling_ratio: NaN"), None);
    assert_eq!(ratio_of("ratio: 0.83"), None);
}

/// Runs `tally-bench <args>` to its end and returns its stdout, failing the test on a
/// non-zero exit or a run longer than [`SMOKE_TIMEOUT`].
fn run_bench(args: &[&str]) -> String {
    let bin = bench_bin();
    let dir = tempfile::tempdir().expect("a temp dir for the run's output");
    let (stdout_path, stderr_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(&bin)
        .args(args)
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", bin.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for tally-bench") {
            break status;
        }
        if started.elapsed() > SMOKE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tally-bench {args:?} did not finish in {SMOKE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "tally-bench {args:?} failed with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
}

fn last_line(stdout: &str) -> &str {
    stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default()
}

/// `tally-bench <args>`, run with the `tally` binary, and the number of its last line
/// `<name>: <x>`; fails the test when that line is something else.
fn run_with_tally(args: &[&str], name: &str) -> (String, f64) {
    let tally = tally_tests::process::tally_bin();
    let tally = tally.to_str().expect("a UTF-8 path to tally");
    let stdout = run_bench(&[args, &["--tally-bin", tally]].concat());
    let value = last_value(&stdout, name);
    (stdout, value)
}

/// The number of the last line of `stdout`, which must be `<name>: <x>`.
fn last_value(stdout: &str, name: &str) -> f64 {
    let last = last_line(stdout);
    last.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(": "))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("the last line is not `{name}: <x>`: {last:?}\nstdout:\n{stdout}"))
}

// Proves `tally-bench e2e --smoke` runs all its phases, exits 0, and prints the ratio last.
#[test]
fn e2e_smoke_runs_and_prints_the_ratio_last() {
    let stdout = run_bench(&["e2e", "--smoke"]);
    let last = last_line(&stdout);
    assert!(
        ratio_of(last).is_some(),
        "the last line is not `e2e_vs_ceiling_ratio: <x.xx>`: {last:?}\nstdout:\n{stdout}"
    );
    for phase in ["(a) ceiling", "(b) tally end to end", "publish→commit", "publish→alert"] {
        assert!(stdout.contains(phase), "the output lacks {phase:?}:\n{stdout}");
    }
}

// Proves `tally-bench process --smoke` runs the real `tally` binary over its preload until every
// message is acked, stops it cleanly, and ends with the tally process's own peak RSS.
#[test]
fn process_smoke_runs_the_tally_binary_and_prints_its_peak_rss_last() {
    let (stdout, peak_mib) = run_with_tally(&["process", "--smoke"], "tally_peak_rss_mib");
    // Any running tally holds a RocksDB and a tokio runtime: a few MiB at the very least.
    assert!(peak_mib >= 1.0, "a peak RSS of {peak_mib} MiB cannot be the tally process's:\n{stdout}");
    assert!(stdout.contains("tally process: 3000 messages acked"), "not every message was acked:\n{stdout}");
}

// Proves `tally-bench failover --smoke` runs two real `tally` instances over its preload, waits
// for the killed one's partitions to commit on the other, and ends with the failover time.
#[test]
fn failover_smoke_kills_an_instance_and_prints_the_failover_time_last() {
    let (stdout, seconds) = run_with_tally(&["failover", "--smoke", "--standby"], "failover_seconds");
    // The killed instance's leases (3 s, renewed every second) must expire first: at least 2 s.
    assert!(seconds >= 1.0, "a failover of {seconds} s is shorter than the leases allow:\n{stdout}");
    assert!(stdout.contains("committing on b"), "no partition of a's commits on b:\n{stdout}");
}

// Proves `tally-bench checkpoint --smoke` checkpoints a 20 MiB state to a real nats-server's
// Object Store twice, and that the second, after a 1 % change, uploads less than the whole state.
#[test]
fn checkpoint_smoke_uploads_less_than_the_state_the_second_time() {
    let stdout = run_bench(&["checkpoint", "--smoke"]);
    let share = last_value(&stdout, "second_checkpoint_uploaded_share");
    assert!(share > 0.0 && share < 1.0, "the second checkpoint uploaded {share} of the state:\n{stdout}");
    for line in ["first checkpoint (#1", "second checkpoint (#2"] {
        assert!(stdout.contains(line), "the output lacks {line:?}:\n{stdout}");
    }
}
