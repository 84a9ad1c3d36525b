//! `kaapi-deploy init`: from the facts of a Kaapi-shaped repository (its Dockerfile, Python
//! dependencies, `.env.example`), a commented `deploy.toml`. Pure: the CLI reads the files.

mod compose;
mod dockerfile;
mod python;
mod render;
mod render_compose;
mod variables;

pub use compose::{
    is_localhost, parse_compose, ComposeAccessory, ComposeError, ComposeHealth, ComposeService,
    ComposeShape,
};
pub use dockerfile::{parse_dockerfile, port_in_command, Cmd, DockerfileFacts};
pub use python::dependencies;
pub use render::render;
pub use variables::{classify, looks_secret, Variables};

use indexmap::IndexMap;

/// The health path of Kaapi's backend.
pub const HEALTH_PATH: &str = "/api/v1/utils/health/";
/// Kaapi's Celery application module.
pub const DEFAULT_CELERY_APP: &str = "app.celery.celery_app";
/// The port used when neither EXPOSE nor the command names one.
pub const DEFAULT_PORT: u16 = 8000;

/// What `init` found in the repository.
#[derive(Debug, Clone)]
pub struct ProjectShape {
    /// Resource prefix (already a valid name).
    pub app: String,
    /// Build context relative to the repository root (`backend`, or `.`).
    pub context: String,
    /// Dockerfile relative to the context.
    pub dockerfile: String,
    pub facts: DockerfileFacts,
    /// Commands run through `uv run` (uv.lock, `[tool.uv]`, or a `uv` CMD).
    pub uses_uv: bool,
    /// `alembic.ini` next to the Dockerfile: migrations run `alembic upgrade head`.
    pub alembic: bool,
    pub celery: bool,
    pub flower: bool,
    /// Module given to `celery -A`.
    pub celery_app: String,
    /// `.env.example`: its file name (relative to the root) and variables with their values.
    pub example: Option<(String, IndexMap<String, String>)>,
    /// The project's `docker-compose.yml`, adopted: services, accessories, migrations and
    /// local values come from it when present.
    pub compose: Option<ComposeShape>,
}

/// A resource prefix from a directory name: lowercase letters, digits and single hyphens,
/// starting with a letter, at most 32 characters (`My_Project.v2` → `my-project-v2`).
pub fn sanitize_app_name(raw: &str) -> String {
    let mut name = String::new();
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    let mut name = name.trim_matches('-').to_owned();
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "app-");
    }
    name.truncate(32);
    let name = name.trim_end_matches('-').to_owned();
    if name == "app" || name.is_empty() {
        "app".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::is_valid_name;

    #[test]
    fn sanitizes_directory_names() {
        assert_eq!(sanitize_app_name("kaapi"), "kaapi");
        assert_eq!(sanitize_app_name("AI_Platform"), "ai-platform");
        assert_eq!(sanitize_app_name("--My..Project--"), "my-project");
        assert_eq!(sanitize_app_name("2fast"), "app-2fast");
        assert_eq!(sanitize_app_name("...."), "app");
        assert_eq!(sanitize_app_name("ünïcode"), "n-code");
        let long = sanitize_app_name(&"a-".repeat(40));
        assert!(long.len() <= 32 && is_valid_name(&long), "{long}");
        for raw in ["", "-", "A", "x y z", "9", "tmp.Xyz12_AB"] {
            assert!(is_valid_name(&sanitize_app_name(raw)), "{raw}");
        }
    }
}
