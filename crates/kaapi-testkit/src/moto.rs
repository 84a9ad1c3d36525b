//! A moto server of a test's own on a free loopback port, stopped when dropped, with what points
//! an AWS client at it: variables for a child process, or an SDK config (never the process's
//! own environment, which the tests of one binary share).

use std::net::TcpStream;

use std::process::Command;

use crate::{venv_tool, Service};

pub const REGION: &str = "eu-west-1";
/// moto's default account.
pub const ACCOUNT: &str = "123456789012";

pub struct Moto {
    _server: Service,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let server = crate::moto();
        Moto {
            endpoint: server.url(),
            _server: server,
        }
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

/// The deploy lock's DynamoDB table as `infra template` creates it: key `pk`, on demand.
pub async fn create_lock_table(aws: &aws_config::SdkConfig, table: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    aws_sdk_dynamodb::Client::new(aws)
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("create the lock table");
}
