//! `kaapi-deploy init [--force] [--dir D] [--app NAME]`: look at a Kaapi-shaped repository
//! (`backend/Dockerfile`, `.env.example`, …) and write a commented deploy.toml for it.

use std::path::{Path, PathBuf};

use kaapi_core::config::{self, is_valid_name, CONFIG_FILE_NAME};
use kaapi_core::envfile;
use kaapi_core::scaffold::{self, ProjectShape, DEFAULT_CELERY_APP};

use crate::cli::InitArgs;
use crate::exit::{CliError, CliResult};
use crate::output::green;

const EXAMPLE_FILE: &str = ".env.example";
/// Compose file names, in the order Docker Compose looks for them.
const COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

pub fn run(args: &InitArgs) -> CliResult {
    let dir = &args.dir;
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "{} is not a directory; pass the repository with --dir",
            dir.display()
        )));
    }
    let target = dir.join(CONFIG_FILE_NAME);
    if target.exists() && !args.force {
        return Err(CliError::Usage(format!(
            "{} already exists; pass --force to overwrite it",
            target.display()
        )));
    }
    let shape = inspect(dir, args.app.as_deref())?;
    let text = scaffold::render(&shape);
    // What init writes must load: a failure here is a bug in the template, not the user's.
    config::parse(&target, &text)
        .map_err(|e| CliError::Failed(format!("the generated config does not load: {e}")))?;
    std::fs::write(&target, &text)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", target.display())))?;
    print_summary(&target, &shape);
    if ignore_state_dir(dir)? {
        println!("{} .kaapi/ to .gitignore", green("added"));
    }
    if args.github {
        super::init_github::run(dir, None, args.force, args.github_environment.as_deref())?;
    }
    Ok(())
}

/// The local engine's state directory, beside deploy.toml.
const STATE_DIR_ENTRY: &str = ".kaapi/";

/// Adds `.kaapi/` to the `.gitignore` beside deploy.toml (creating it) unless an entry already
/// ignores it: the state directory is not source, and left untracked it makes every deploy's
/// tree, and so its image tag, `-dirty`. True when the file was changed.
fn ignore_state_dir(dir: &Path) -> CliResult<bool> {
    let path = dir.join(".gitignore");
    let existing = read(&path)?.unwrap_or_default();
    let ignored = existing
        .lines()
        .map(|line| line.trim().trim_start_matches('/').trim_end_matches('/'))
        .any(|entry| entry == STATE_DIR_ENTRY.trim_end_matches('/'));
    if ignored {
        return Ok(false);
    }
    let separator = if existing.is_empty() || existing.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let text = format!("{existing}{separator}{STATE_DIR_ENTRY}\n");
    std::fs::write(&path, text)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(true)
}

/// Reads the files `init` learns from; only the Dockerfile is required.
fn inspect(dir: &Path, app: Option<&str>) -> CliResult<ProjectShape> {
    let context = if dir.join("backend/Dockerfile").is_file() {
        "backend"
    } else if dir.join("Dockerfile").is_file() {
        "."
    } else {
        return Err(CliError::Usage(format!(
            "no backend/Dockerfile (or Dockerfile) in {}; init writes deploy.toml for a repository shaped like Kaapi: backend/Dockerfile and .env.example",
            dir.display()
        )));
    };
    let context_dir = dir.join(context);
    let dockerfile = read(&context_dir.join("Dockerfile"))?.unwrap_or_default();
    let facts = scaffold::parse_dockerfile(&dockerfile);
    let pyproject = read(&context_dir.join("pyproject.toml"))?;
    let requirements = requirement_files(&context_dir)?;
    let requirement_texts: Vec<&str> = requirements.iter().map(String::as_str).collect();
    let deps = scaffold::dependencies(pyproject.as_deref(), &requirement_texts);
    let uses_uv = context_dir.join("uv.lock").is_file()
        || pyproject.as_deref().is_some_and(|p| p.contains("[tool.uv"))
        || matches!(&facts.cmd, Some(scaffold::Cmd::Exec(argv)) if argv.first().is_some_and(|a| a == "uv"));
    let example = match read(&dir.join(EXAMPLE_FILE))? {
        Some(text) => {
            let vars = envfile::parse(&text).map_err(|e| {
                CliError::Usage(format!(
                    "{}: {e}; fix the file (one KEY=value per line) and run init again",
                    dir.join(EXAMPLE_FILE).display()
                ))
            })?;
            Some((EXAMPLE_FILE.to_owned(), vars))
        }
        None => None,
    };
    let compose = read_compose(dir, example.as_ref().map(|(_, vars)| vars))?;
    let app = match app {
        Some(app) if is_valid_name(app) => app.to_owned(),
        Some(app) => {
            return Err(CliError::Usage(format!(
                "--app `{app}` is not a valid prefix; use 1-32 lowercase letters, digits and hyphens, starting with a letter"
            )))
        }
        None => scaffold::sanitize_app_name(&directory_name(dir)),
    };
    Ok(ProjectShape {
        app,
        context: context.to_owned(),
        dockerfile: "Dockerfile".to_owned(),
        facts,
        uses_uv,
        alembic: context_dir.join("alembic.ini").is_file(),
        celery: deps.contains("celery"),
        flower: deps.contains("flower"),
        celery_app: DEFAULT_CELERY_APP.to_owned(),
        example,
        compose,
    })
}

/// The project's compose file, adopted; `None` without one.
fn read_compose(
    dir: &Path,
    example: Option<&indexmap::IndexMap<String, String>>,
) -> CliResult<Option<scaffold::ComposeShape>> {
    let Some(file) = COMPOSE_FILES.iter().find(|f| dir.join(f).is_file()) else {
        return Ok(None);
    };
    let Some(text) = read(&dir.join(file))? else {
        return Ok(None);
    };
    let empty = indexmap::IndexMap::new();
    let example = example.unwrap_or(&empty);
    let secrets = scaffold::classify(example).secrets;
    scaffold::parse_compose(file, &text, example, &secrets)
        .map(Some)
        .map_err(|e| {
            CliError::Usage(format!(
                "{e}; fix the compose file or move it aside, then run init again"
            ))
        })
}

/// The directory's own name, also for `.` (resolved to the real path).
fn directory_name(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `requirements.txt`, `requirements-*.txt` and `requirements/*.txt` of the context.
fn requirement_files(context_dir: &Path) -> CliResult<Vec<String>> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for dir in [context_dir.to_path_buf(), context_dir.join("requirements")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let in_folder = dir != context_dir;
            if name.ends_with(".txt") && (in_folder || name.starts_with("requirements")) {
                paths.push(path);
            }
        }
    }
    paths.sort();
    let mut texts = Vec::new();
    for path in paths {
        texts.extend(read(&path)?);
    }
    Ok(texts)
}

fn read(path: &Path) -> CliResult<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::Usage(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn print_summary(target: &Path, shape: &ProjectShape) {
    if let Some(compose) = &shape.compose {
        println!(
            "{} {} (from {})",
            green("wrote"),
            target.display(),
            compose.file
        );
        let services: Vec<&str> = compose.services.iter().map(|s| s.name.as_str()).collect();
        let accessories: Vec<&str> = compose
            .accessories
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        println!("  services: {}", services.join(", "));
        println!("  accessories: {}", accessories.join(", "));
        if let Some(command) = &compose.migrations {
            println!("  migrations: {}", command.join(" "));
        }
        for note in &compose.notes {
            println!("  note: {note}");
        }
        return;
    }
    let mut services = vec!["backend"];
    if shape.celery {
        services.push("worker");
        if shape.flower {
            services.push("flower");
        }
    }
    println!("{} {}", green("wrote"), target.display());
    println!("  app prefix: {}", shape.app);
    println!("  services: {}", services.join(", "));
    println!(
        "  migrations: {}",
        if shape.alembic {
            "alembic upgrade head"
        } else {
            "none (no alembic.ini)"
        }
    );
    if shape.example.is_none() {
        println!("  no {EXAMPLE_FILE}: variables are not checked");
    }
    println!("next: create .env with the secret values (`kaapi-deploy secrets generate` makes tokens), then `kaapi-deploy check local`");
}
