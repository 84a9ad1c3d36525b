//! A moto server of our own on a free loopback port, stopped when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGION: &str = "eu-west-1";
/// moto's default account.
pub const ACCOUNT: &str = "123456789012";

pub fn venv_bin(tool: &str) -> PathBuf {
    let venv = std::env::var("KAAPI_VENV").unwrap_or_else(|_| "/opt/kaapi-venv".to_owned());
    PathBuf::from(venv).join("bin").join(tool)
}

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind a free port")
            .local_addr()
            .expect("local address")
            .port();
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server from $KAAPI_VENV (scripts/setup-python.sh installs it)");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// Environment variables pointing an AWS client (the CLI) at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
        ]
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let credentials =
            aws_credential_types::Credentials::new("testing", "testing", None, None, "moto");
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(credentials)
            // A retried call would hide moto's first answer behind a second one.
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await
    }

    /// Forgets every resource (moto's reset API).
    pub fn reset(&self) {
        use std::io::{Read, Write};
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("connect to moto");
        stream
            .write_all(b"POST /moto-api/reset HTTP/1.1\r\nHost: moto\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .expect("send reset");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read reset answer");
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "moto reset failed: {response}"
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
