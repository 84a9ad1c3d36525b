//! A moto server of our own on a free loopback port, stopped when dropped; and the process
//! environment that points the standard AWS chain at it (dummy credentials, region,
//! `AWS_ENDPOINT_URL`). Each test binary that uses it holds one server, so setting the process
//! environment once is safe.

use std::process::Command;

use kaapi_testkit::{venv_tool, Service};

pub struct Moto {
    _server: Service,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Self {
        let server = kaapi_testkit::moto();
        let endpoint = server.url();
        std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "eu-west-1");
        std::env::remove_var("AWS_PROFILE");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        Self {
            _server: server,
            endpoint,
        }
    }

    /// Runs a boto3 snippet against this moto (for resources our SDK set does not cover, such
    /// as a VPC); returns its stdout.
    pub fn boto3(&self, script: &str) -> String {
        let out = Command::new(venv_tool("python"))
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
