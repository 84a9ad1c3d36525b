//! A moto server of our own on a free loopback port, stopped when dropped; and the process
//! environment that points the standard AWS chain at it (dummy credentials, region,
//! `AWS_ENDPOINT_URL`). Each test binary that uses it holds one server, so setting the process
//! environment once is safe.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

pub fn venv() -> PathBuf {
    PathBuf::from(std::env::var("KAAPI_VENV").unwrap_or_else(|_| "/opt/kaapi-venv".to_owned()))
}

impl Moto {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let binary = venv().join("bin/moto_server");
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run scripts/setup-python.sh or set KAAPI_VENV",
                    binary.display()
                )
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not answer within 30s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let endpoint = format!("http://127.0.0.1:{port}");
        std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "eu-west-1");
        std::env::remove_var("AWS_PROFILE");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        Self { child, endpoint }
    }

    /// Runs a boto3 snippet against this moto (for resources our SDK set does not cover, such
    /// as a VPC); returns its stdout.
    pub fn boto3(&self, script: &str) -> String {
        let out = Command::new(venv().join("bin/python"))
            .arg("-c")
            .arg(script)
            .env("MOTO_ENDPOINT", &self.endpoint)
            .output()
            .expect("run the venv's python");
        assert!(
            out.status.success(),
            "boto3 snippet failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
