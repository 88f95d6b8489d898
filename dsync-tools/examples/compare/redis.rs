//! Local `redis-server` processes on loopback for the Redlock rows: OS-chosen ports, no persistence, killed
//! when the handle drops (also on an error or Ctrl-C, which unwinds through it).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Running `redis-server` processes; dropping this kills and reaps them.
pub struct Servers {
    children: Vec<Child>,
    /// Where they listen, in start order.
    pub addrs: Vec<SocketAddr>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether `binary` runs at all: `Err` with a message for the user when it is missing.
pub fn check(binary: &str) -> Result<String, String> {
    match Command::new(binary).arg("--version").stderr(Stdio::null()).output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        Ok(out) => Err(format!("`{binary} --version` failed ({})", out.status)),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err(format!("{binary} not found (Debian: `apt-get install redis-server`); skipping the Redlock rows"))
        }
        Err(e) => Err(format!("cannot run {binary}: {e}")),
    }
}

/// Starts `n` servers and waits until each answers PING.
pub fn start(binary: &str, n: usize) -> Result<Servers, String> {
    let mut servers = Servers { children: Vec::new(), addrs: Vec::new() };
    for _ in 0..n {
        // The port is free when picked but could be taken before redis binds it: pick again a few times.
        let mut last = String::new();
        let started = (0..5).find_map(|_| match start_one(binary) {
            Ok(s) => Some(s),
            Err(e) => {
                last = e;
                None
            }
        });
        let (child, addr) = started.ok_or(last)?;
        servers.children.push(child);
        servers.addrs.push(addr);
    }
    Ok(servers)
}

fn start_one(binary: &str) -> Result<(Child, SocketAddr), String> {
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))?;
    let mut child = Command::new(binary)
        .args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1"])
        // Memory only, like dsync: no snapshots, no append-only file (nothing written to disk).
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {binary}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if ping(addr) {
            return Ok((child, addr));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{binary} on {addr} exited at start ({status})"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{binary} on {addr} did not answer PING within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
