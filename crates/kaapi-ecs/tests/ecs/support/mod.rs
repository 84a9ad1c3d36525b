//! Shared test helpers: a config, a recording progress sink, a scripted image builder (the build
//! is not the subject of these tests; the real one lives in kaapi-docker).
#![allow(dead_code)]

pub mod fake_aws;
pub use kaapi_testkit::moto;

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use kaapi_core::config::{self, LoadedConfig};
use kaapi_core::engine::{BuiltImage, EngineError, EngineResult, ImageBuilder, RegistryAuth};
use kaapi_core::progress::{Event, Progress};

/// A three-service Kaapi-like config (web backend, Celery worker, Flower) with an `ecs`
/// environment `staging`; `extra` is appended to `[environments.staging]`.
pub fn write_config(dir: &Path, extra: &str) -> LoadedConfig {
    let text = format!(
        r#"
app = "kaapi"
secrets = ["SECRET_KEY", "POSTGRES_PASSWORD"]

[image]
context = "."

[migrations]
command = "alembic upgrade head"

[env]
PROJECT_NAME = "Kaapi"

[services.backend]
port = 8000
command = "fastapi run app/main.py --port 8000"
cpu = 512
memory = 1024
health = {{ path = "/api/v1/utils/health/" }}

[services.worker]
command = "celery -A app.worker worker"
memory = 512

[services.flower]
command = "celery -A app.worker flower"
memory = 256

[environments.staging]
engine = "ecs"
region = "eu-west-1"
secrets_from = {{ ssm = "/kaapi/staging/" }}
env = {{ ENVIRONMENT = "staging" }}
{extra}
"#
    );
    let path = dir.join("deploy.toml");
    std::fs::write(&path, text).expect("write deploy.toml");
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").expect("write Dockerfile");
    config::load(&path).expect("the test config is valid")
}

/// Keeps every event for assertions.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<Event>>,
}

impl Recorder {
    pub fn lines(&self) -> Vec<String> {
        self.events
            .lock()
            .expect("recorder lock")
            .iter()
            .filter_map(|e| match e {
                Event::Info { message } => Some(format!("info: {message}")),
                Event::Warning { message } => Some(format!("warning: {message}")),
                Event::Output { source, line } => Some(format!("{source}| {line}")),
                _ => None,
            })
            .collect()
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|l| l.contains(needle))
    }
}

impl Progress for Recorder {
    fn event(&self, event: Event) {
        self.events.lock().expect("recorder lock").push(event);
    }
}

/// Builds nothing; "pushes" by answering its digest and remembering what it was asked, into the
/// scripted repository when it has one (which refuses to move an immutable tag).
pub struct ScriptedBuilder {
    pub digest: Mutex<String>,
    pub pushes: Mutex<Vec<(String, Vec<String>, bool)>>,
    pub builds: Mutex<usize>,
    repository: Option<fake_aws::FakeAws>,
}

impl ScriptedBuilder {
    pub fn new(digest: &str) -> Self {
        Self {
            digest: Mutex::new(digest.to_owned()),
            pushes: Mutex::new(Vec::new()),
            builds: Mutex::new(0),
            repository: None,
        }
    }

    /// A builder whose pushes land in `fake`'s ECR repository.
    pub fn pushing_to(digest: &str, fake: &fake_aws::FakeAws) -> Self {
        Self {
            repository: Some(fake.clone()),
            ..Self::new(digest)
        }
    }

    /// The next build gives another digest (a rebuild on a fresh runner is not reproducible).
    pub fn rebuild_as(&self, digest: &str) {
        *self.digest.lock().expect("digest lock") = digest.to_owned();
    }
}

#[async_trait]
impl ImageBuilder for ScriptedBuilder {
    async fn build(&self, tag: &str, _: &dyn Progress) -> EngineResult<BuiltImage> {
        *self.builds.lock().expect("builds lock") += 1;
        Ok(BuiltImage {
            id: "sha256:1111111111111111111111111111111111111111111111111111111111111111"
                .to_owned(),
            tags: vec![format!("kaapi-local:{tag}")],
        })
    }

    async fn push(
        &self,
        _image_id: &str,
        repository: &str,
        tags: &[String],
        auth: Option<&RegistryAuth>,
        _: &dyn Progress,
    ) -> EngineResult<String> {
        self.pushes.lock().expect("pushes lock").push((
            repository.to_owned(),
            tags.to_vec(),
            auth.is_some(),
        ));
        let digest = self.digest.lock().expect("digest lock").clone();
        if let Some(fake) = &self.repository {
            fake.push_image(&digest, tags)
                .map_err(EngineError::failed)?;
        }
        Ok(digest)
    }
}

/// Who a test's release is by: Alice, now.
pub fn release_meta(commit: &str) -> kaapi_core::release::ReleaseMeta {
    kaapi_core::release::ReleaseMeta {
        commit: commit.to_owned(),
        version: None,
        author: "alice <alice@example.org>".to_owned(),
        created_at: chrono::Utc::now(),
    }
}

/// The deploy lock's holder in a test: Alice's laptop.
pub fn lock_owner() -> kaapi_core::engine::LockOwner {
    kaapi_core::engine::LockOwner {
        holder: "alice@laptop (pid 42)".to_owned(),
        url: None,
    }
}
