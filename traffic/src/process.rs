//! What every throwaway child process needs, the local nats-server and the test harness's
//! `tally` alike: a free loopback port, a graceful stop, and the end of its log.

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use rand::Rng as _;

/// A TCP port on 127.0.0.1 that was free a moment ago, chosen at random below the kernel's
/// ephemeral range. A port the kernel handed out (`bind :0`) and that was released again is
/// soon handed to someone's outgoing connection as its local port, and a server started on it
/// then fails with "address already in use"; ports below the range are never given that way.
/// A port is handed out once per process: tests running side by side each check a port before
/// their server binds it, and two could otherwise be given the same one in between.
pub fn free_port() -> std::io::Result<u16> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let (low, high) = below_ephemeral_range();
    let mut rng = rand::rng();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..PORT_TRIES {
        let port = rng.random_range(low..high);
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Random ports tried before falling back to one the kernel picks.
const PORT_TRIES: usize = 64;

/// Where [`free_port`] draws from: 10000 up to the start of the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 by default on Linux).
fn below_ephemeral_range() -> (u16, u16) {
    const LOW: u16 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    (LOW, ephemeral_start.max(LOW + 1_000))
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

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a port is never handed out twice in one process, even while nothing has bound the
    // earlier ones yet (tests start their servers side by side).
    #[test]
    fn no_port_is_handed_out_twice() {
        let ports: Vec<u16> = (0..500).map(|_| free_port().expect("a free port")).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        let (low, high) = below_ephemeral_range();
        assert!(ports.iter().all(|p| (low..high).contains(p)), "a port outside {low}..{high}");
    }
}
