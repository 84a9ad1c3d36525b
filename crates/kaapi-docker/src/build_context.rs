//! The build context: the context directory as a tar archive, without what `.dockerignore`
//! leaves out (the Dockerfile and `.dockerignore` themselves are always sent, as the Docker CLI
//! does), and never with the tool's own state or env files holding secrets.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::dockerignore::DockerIgnore;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the Dockerfile {} does not exist; set image.dockerfile (relative to image.context) in deploy.toml", path.display())]
    NoDockerfile { path: PathBuf },
    #[error("build context {}: more than {limit_mib} MiB compressed; a build with build secrets hands the engine the context in one piece, held in memory: leave large files out with {}/.dockerignore", path.display(), path.display())]
    TooLarge { path: PathBuf, limit_mib: usize },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Archives `dir` (uncompressed tar), honouring `dir/.dockerignore`. `dockerfile` is relative
/// to `dir` and always included. Returns the archive and the number of files in it.
pub fn archive(dir: &Path, dockerfile: &str) -> Result<(Vec<u8>, usize), ContextError> {
    let files = files(dir, dockerfile)?;
    let bytes = write_tar(dir, &files, Vec::new())?;
    Ok((bytes, files.len()))
}

/// Relative paths of the files the context sends, sorted so the archive (and the build cache)
/// is stable.
pub fn files(dir: &Path, dockerfile: &str) -> Result<Vec<String>, ContextError> {
    let dockerfile_path = dir.join(dockerfile);
    if !dockerfile_path.is_file() {
        return Err(ContextError::NoDockerfile {
            path: dockerfile_path,
        });
    }
    let ignore_path = dir.join(".dockerignore");
    let ignore = match std::fs::read_to_string(&ignore_path) {
        Ok(text) => DockerIgnore::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(e) => return Err(io(&ignore_path)(e)),
    };
    let always = [normalize(dockerfile), ".dockerignore".to_owned()];
    let mut files = Vec::new();
    collect(dir, "", &ignore, &always, &mut files)?;
    Ok(files)
}

/// Writes `files` (relative to `dir`) as a tar stream into `out` and returns `out`.
pub fn write_tar<W: Write>(dir: &Path, files: &[String], out: W) -> Result<W, ContextError> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    for relative in files {
        let full = dir.join(relative);
        builder
            .append_path_with_name(&full, relative)
            .map_err(io(&full))?;
    }
    builder.into_inner().map_err(io(dir))
}

/// Never sent, whatever `.dockerignore` says: the tool's state directory (`.kaapi/`, its
/// release database and locks) and env files that hold secrets (`.env`, `.env.*`), at any
/// depth. `.env.example` lists names only, so it stays.
pub fn always_excluded(relative: &str) -> bool {
    relative.split('/').any(|segment| {
        segment == ".kaapi"
            || segment == ".env"
            || (segment.starts_with(".env.") && segment != ".env.example")
    })
}

fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Relative paths of the files to send, sorted so the archive (and the build cache) is stable.
fn collect(
    root: &Path,
    prefix: &str,
    ignore: &DockerIgnore,
    always: &[String],
    out: &mut Vec<String>,
) -> Result<(), ContextError> {
    let dir = root.join(prefix);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .collect::<Result<_, _>>()
        .map_err(io(&dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if always_excluded(&relative) {
            continue;
        }
        let kind = entry.file_type().map_err(io(&entry.path()))?;
        let excluded = ignore.excludes(&relative) && !always.contains(&relative);
        if kind.is_dir() {
            // An excluded directory is still walked when an exception may re-include a file
            // below it (`*` then `!dist/app`).
            let below_kept = always
                .iter()
                .any(|a| a.starts_with(&format!("{relative}/")));
            if !excluded || ignore.has_exceptions() || below_kept {
                collect(root, &relative, ignore, always, out)?;
            }
        } else if !excluded {
            out.push(relative);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(archive: &[u8]) -> Vec<String> {
        let mut reader = tar::Archive::new(archive);
        let mut names: Vec<String> = reader
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn honours_dockerignore_and_always_sends_the_dockerfile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("dist")).expect("mkdir");
        std::fs::create_dir_all(root.join("src")).expect("mkdir");
        std::fs::write(root.join("Dockerfile"), "FROM scratch\n").expect("write");
        std::fs::write(root.join(".dockerignore"), "*\n!dist/app\n").expect("write");
        std::fs::write(root.join("dist/app"), "bin").expect("write");
        std::fs::write(root.join("dist/junk"), "x").expect("write");
        std::fs::write(root.join("src/main.rs"), "fn main(){}").expect("write");
        let (bytes, count) = archive(root, "Dockerfile").expect("archive");
        assert_eq!(
            names(&bytes),
            vec![".dockerignore", "Dockerfile", "dist/app"]
        );
        assert_eq!(count, 3);
    }

    #[test]
    fn without_dockerignore_everything_is_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("docker")).expect("mkdir");
        std::fs::write(root.join("docker/Dockerfile.prod"), "FROM scratch\n").expect("write");
        std::fs::write(root.join("a.txt"), "a").expect("write");
        let (bytes, _) = archive(root, "docker/Dockerfile.prod").expect("archive");
        assert_eq!(names(&bytes), vec!["a.txt", "docker/Dockerfile.prod"]);
    }

    #[test]
    fn state_and_env_files_are_left_out_even_when_dockerignore_keeps_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join(".kaapi")).expect("mkdir");
        std::fs::create_dir_all(root.join("app")).expect("mkdir");
        std::fs::write(root.join("Dockerfile"), "FROM scratch\n").expect("write");
        std::fs::write(root.join(".dockerignore"), "!.env\n!.kaapi\n").expect("write");
        std::fs::write(root.join(".kaapi/releases.db"), "state").expect("write");
        std::fs::write(root.join(".env"), "SECRET=x").expect("write");
        std::fs::write(root.join(".env.production"), "SECRET=y").expect("write");
        std::fs::write(root.join(".env.example"), "SECRET=").expect("write");
        std::fs::write(root.join("app/.env"), "SECRET=z").expect("write");
        std::fs::write(root.join("app/.environment.py"), "x = 1").expect("write");
        let (bytes, _) = archive(root, "Dockerfile").expect("archive");
        assert_eq!(
            names(&bytes),
            vec![
                ".dockerignore",
                ".env.example",
                "Dockerfile",
                "app/.environment.py"
            ]
        );
    }

    #[test]
    fn a_missing_dockerfile_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = archive(dir.path(), "Dockerfile").expect_err("no dockerfile");
        assert!(error.to_string().contains("image.dockerfile"), "{error}");
    }
}
