//! `check` on an environment whose secrets are keys of one JSON secret in Secrets Manager
//! (Kaapi's production shape), against moto: present keys are ok, a missing key is named, a
//! secret that is not a JSON object is reported, and no value ever reaches the output.

use crate::support::moto::Moto;
use kaapi_infra::preflight::{self, CheckItem, CheckOptions, Status};

const SECRET: &str = "kaapi/prod";
const VALUES: [(&str, &str); 2] = [
    ("SECRET_KEY", "sk-value-never-printed"),
    ("POSTGRES_PASSWORD", "pg-value-never-printed"),
];

fn write_config(dir: &std::path::Path) -> kaapi_core::config::ResolvedEnvironment {
    let text = format!(
        r#"
app = "kaapi"
secrets = ["SECRET_KEY", "POSTGRES_PASSWORD", "OPENAI_API_KEY"]

[image]
context = "."

[services.backend]
port = 80

[environments.production]
engine = "ecs"
region = "us-east-1"
secrets_from = {{ secrets_manager = "{SECRET}", json_key = true }}
"#
    );
    let path = dir.join("deploy.toml");
    std::fs::write(&path, text).expect("write deploy.toml");
    crate::support::account::resolve(&path, "production")
}

async fn secret_items(
    target: &kaapi_core::config::ResolvedEnvironment,
    aws: &aws_config::SdkConfig,
) -> Vec<CheckItem> {
    preflight::check_prerequisites_with(target, aws, &CheckOptions::default())
        .await
        .into_iter()
        .filter(|i| i.name.starts_with("secret "))
        .collect()
}

fn assert_no_value(items: &[CheckItem]) {
    let rendered = format!("{}{items:?}", preflight::render(items));
    for (_, value) in VALUES {
        assert!(!rendered.contains(value), "a value leaked: {rendered}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_a_json_secret_are_checked_and_a_missing_one_is_named() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let target = write_config(dir.path());
    let aws = moto.sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&aws);

    let absent = secret_items(&target, &aws).await;
    assert_eq!(absent.len(), 1, "{absent:?}");
    assert_eq!(absent[0].status, Status::Missing);
    assert!(absent[0].detail.contains("does not exist"), "{absent:?}");

    let object: serde_json::Map<String, serde_json::Value> = VALUES
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect();
    client
        .create_secret()
        .name(SECRET)
        .secret_string(serde_json::Value::Object(object).to_string())
        .send()
        .await
        .expect("create the JSON secret");
    let items = secret_items(&target, &aws).await;
    let statuses: Vec<(&str, Status)> = items.iter().map(|i| (i.name.as_str(), i.status)).collect();
    assert_eq!(
        statuses,
        [
            ("secret kaapi/prod:SECRET_KEY", Status::Ok),
            ("secret kaapi/prod:POSTGRES_PASSWORD", Status::Ok),
            ("secret kaapi/prod:OPENAI_API_KEY", Status::Missing),
        ]
    );
    assert!(
        items[2]
            .detail
            .contains("key `OPENAI_API_KEY` is not in the JSON secret `kaapi/prod`"),
        "{items:?}"
    );
    assert_no_value(&items);

    client
        .put_secret_value()
        .secret_id(SECRET)
        .secret_string("sk-value-never-printed")
        .send()
        .await
        .expect("overwrite with a plain string");
    let not_json = secret_items(&target, &aws).await;
    assert_eq!(not_json.len(), 1, "{not_json:?}");
    assert_eq!(not_json[0].status, Status::Missing);
    assert!(not_json[0].detail.contains("not JSON"), "{not_json:?}");
    assert_no_value(&not_json);
}
