//! What the crates' tests share: real services started on loopback (moto, the AWS emulator,
//! from the venv `scripts/setup-python.sh` makes, and Debian's docker-registry), each stopped
//! when its handle drops, and a scripted engine ([`fake_engine`]). Test-only code: it panics
//! with a message on failure.

#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod aws_record;
pub mod fake_engine;
pub mod moto;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn venv_tool(name: &str) -> PathBuf {
    let venv = std::env::var("KAAPI_VENV").unwrap_or_else(|_| "/opt/kaapi-venv".to_owned());
    let path = PathBuf::from(venv).join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: install the Python tools (scripts/setup-python.sh) or set KAAPI_VENV",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 60s");
}

pub struct Service {
    child: Child,
    pub port: u16,
    _dir: Option<tempfile::TempDir>,
}

impl Service {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn moto() -> Service {
    let port = free_port();
    let mut child = Command::new(venv_tool("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    wait_for_port(port, &mut child, "moto_server");
    Service {
        child,
        port,
        _dir: None,
    }
}

pub fn registry() -> Service {
    let port = free_port();
    let dir = tempfile::tempdir().expect("registry dir");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write registry config");
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry (apt-get install docker-registry)");
    wait_for_port(port, &mut child, "docker-registry");
    Service {
        child,
        port,
        _dir: Some(dir),
    }
}

/// Runs the docker CLI and returns its trimmed stdout; fails the test when docker fails.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
