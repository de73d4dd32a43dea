//! The fuzz targets without libFuzzer: a deterministic, mutation-based loop for machines with
//! no nightly toolchain. It has no coverage feedback, so it finds less per execution than
//! cargo-fuzz, but it runs on stable and replays exactly from its seed.
//!
//! `TALLY_FUZZ_TARGET=decode_input TALLY_FUZZ_SECS=60 cargo test --release --no-default-features
//! --test mutation_loop -- --ignored --nocapture` (scripts/fuzz.sh does this when it must).
//! `TALLY_FUZZ_RNG_SEED` changes the mutation sequence. Crashers go to fuzz/artifacts/<target>/.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Xorshift64*: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn read_dir_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    // Sorted, so that the run is deterministic whatever order the file system lists.
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// The dictionary of fuzz/dict/tally.dict, unescaped.
fn dictionary() -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(fuzz_dir().join("dict/tally.dict")).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with('"') && l.ends_with('"') && l.len() >= 2)
        .map(|l| unescape(&l[1..l.len() - 1]))
        .collect()
}

fn unescape(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'x' && i + 3 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
            out.push(bytes[i + 1]);
            i += 2;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

const INTERESTING: &[&[u8]] = &[
    b"79228162514264337593543950335",
    b"-79228162514264337593543950335",
    b"1000000000000000000000000000000",
    b"0.00000000000000000000000000001",
    b"1e28",
    b"1e-29",
    b"18446744073709551616",
    b"-1",
    b"0",
    b"null",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"\\ud800",
];

fn mutate(rng: &mut Rng, corpus: &[Vec<u8>], dict: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let at = rng.below(len);
                input[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                input[at] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                input.insert(at, rng.next() as u8);
            }
            3 if len > 1 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(16));
                input.drain(at..at + n);
            }
            4 if len > 1 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                let chunk = input[at..at + n].to_vec();
                let to = rng.below(len + 1);
                input.splice(to..to, chunk);
            }
            5 if !dict.is_empty() => {
                let token = &dict[rng.below(dict.len())];
                let at = rng.below(len + 1);
                input.splice(at..at, token.iter().copied());
            }
            6 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let at = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            7 => {
                // Replace a run of digits (or insert) with a number at Decimal's edges.
                let token = INTERESTING[rng.below(INTERESTING.len())];
                match input.iter().position(|b| b.is_ascii_digit()) {
                    Some(start) if rng.below(2) == 0 => {
                        let end = input[start..]
                            .iter()
                            .position(|b| !b.is_ascii_digit())
                            .map_or(len, |n| start + n);
                        input.splice(start..end, token.iter().copied());
                    }
                    _ => {
                        let at = rng.below(len + 1);
                        input.splice(at..at, token.iter().copied());
                    }
                }
            }
            _ if len > 0 => {
                // Repeat a short chunk many times: long strings, many lines, deep nesting.
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(8));
                let chunk = input[at..at + n].to_vec();
                for _ in 0..1 + rng.below(200) {
                    input.splice(at..at, chunk.iter().copied());
                }
            }
            _ => input.push(rng.next() as u8),
        }
        input.truncate(65_536);
    }
}

fn run_target(target: &str, seconds: u64, rng_seed: u64) -> (u64, Vec<PathBuf>) {
    let check: fn(&[u8]) = match target {
        "decode_input" => tally_fuzz::check_decode_input,
        "decode_state" => tally_fuzz::check_decode_state,
        "apply_input" => tally_fuzz::check_apply_input,
        other => panic!("unknown fuzz target {other:?}"),
    };
    let dir = fuzz_dir();
    let mut corpus = read_dir_files(&dir.join("seeds").join(target));
    corpus.extend(read_dir_files(&dir.join("corpus").join(target)));
    if target == "decode_state" {
        for day in read_dir_files(&dir.join("seeds/apply_input")) {
            corpus.extend(tally_fuzz::stored_values_after(&day));
        }
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let dict = dictionary();
    let artifacts = dir.join("artifacts").join(target);
    let mut rng = Rng(rng_seed | 1);
    let mut crashers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut executions = 0u64;
    // Panics are expected and reported below; keep the default hook from printing each one.
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    while Instant::now() < deadline {
        for _ in 0..64 {
            let mut input = corpus[rng.below(corpus.len())].clone();
            mutate(&mut rng, &corpus, &dict, &mut input);
            executions += 1;
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&input))) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                std::fs::create_dir_all(&artifacts).expect("create the artifacts dir");
                let path = artifacts.join(format!("crash-loop-{executions}"));
                std::fs::write(&path, &input).expect("write a crasher");
                eprintln!("crash: {message} (input saved to {})", path.display());
                crashers.push(path);
            }
        }
    }
    std::panic::set_hook(previous_hook);
    (executions, crashers)
}

// Proves each target survives TALLY_FUZZ_SECS (default 10) seconds of mutated inputs; ignored
// because its value grows with time: scripts/fuzz.sh runs it when libFuzzer is unavailable.
#[test]
#[ignore]
fn mutation_loop() {
    let seconds = std::env::var("TALLY_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let rng_seed = std::env::var("TALLY_FUZZ_RNG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7a11_7a11);
    let targets: Vec<String> = match std::env::var("TALLY_FUZZ_TARGET") {
        Ok(target) => vec![target],
        Err(_) => vec![
            "decode_input".into(),
            "decode_state".into(),
            "apply_input".into(),
        ],
    };
    let mut crashed = Vec::new();
    for target in &targets {
        let started = Instant::now();
        let (executions, crashers) = run_target(target, seconds, rng_seed);
        println!(
            "{target}: executions: {executions} in {:.1} s, crashes: {}",
            started.elapsed().as_secs_f64(),
            crashers.len()
        );
        crashed.extend(crashers);
    }
    assert!(crashed.is_empty(), "crashers: {crashed:?}");
}

// Writes real stored values into fuzz/seeds/decode_state/ (run once when the state format
// changes): `cargo test --no-default-features --test mutation_loop -- --ignored write_state_seeds`.
#[test]
#[ignore]
fn write_state_seeds() {
    let dir = fuzz_dir();
    let out = dir.join("seeds/decode_state");
    std::fs::create_dir_all(&out).expect("create the seeds dir");
    let mut values: Vec<Vec<u8>> = Vec::new();
    for day in read_dir_files(&dir.join("seeds/apply_input")) {
        values.extend(tally_fuzz::stored_values_after(&day));
    }
    values.sort();
    values.dedup();
    for (i, value) in values.iter().enumerate() {
        std::fs::write(out.join(format!("stored-{i:03}")), value).expect("write a seed");
    }
    println!("wrote {} seeds", values.len());
}
