//! What every throwaway child process needs, the local nats-server and the test harness's
//! `tally` alike: a free loopback port, a graceful stop, and the end of its log.

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago. The OS hands out ephemeral ports in
/// rotation, so two callers asking at the same time get different ones.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps. The exit status, or `None` when the
/// child had to be killed.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    send_signal(child, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Sends `signal` to `child` (SIGSTOP, SIGCONT, SIGKILL, …); a child that is gone is ignored.
pub fn send_signal(child: &Child, signal: libc::c_int) {
    // A pid is at most 2^22 on Linux, so it always fits in pid_t; a failed conversion would
    // name no process, and then there is nothing to signal.
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own unreaped child,
    // so it cannot have been recycled for another process.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// The last `lines` lines of a log file, for error messages; never fails.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}
