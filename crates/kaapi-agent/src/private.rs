//! The state directory and every file in it, private to their owner from the first byte: the
//! directory is created 0700 and files 0600 (never widened by the umask, tightened when found
//! wider), links are refused rather than followed, and a directory or file owned by another user
//! is refused (it may be a trap set in a shared directory, or hold someone else's secrets).
//! Whoever creates the state directory first (the CLI, the history, the agent) goes through here.

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    #[error(
        "{} is a symbolic link; the state directory and its files must not be links: \
         replace it with a real directory or file of your own (or set KAAPI_STATE_DIR)",
        path.display()
    )]
    Link { path: PathBuf },
    #[error(
        "{} belongs to uid {owner}, not to you (uid {you}); it would receive your secrets: \
         set KAAPI_STATE_DIR to a directory of your own, or have its owner remove it",
        path.display()
    )]
    Foreign { path: PathBuf, owner: u32, you: u32 },
    #[error("{} is not a directory; move it away or set KAAPI_STATE_DIR", path.display())]
    NotADirectory { path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PrivateError + 'a {
    move |source| PrivateError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates `dir` (and missing parents) mode 0700, or checks an existing one: a real directory,
/// owned by this user, then tightened to 0700.
pub fn ensure_dir(dir: &Path) -> Result<(), PrivateError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io("create the state directory", dir))?;
    let metadata = std::fs::symlink_metadata(dir).map_err(io("inspect", dir))?;
    if metadata.file_type().is_symlink() {
        return Err(PrivateError::Link {
            path: dir.to_owned(),
        });
    }
    if !metadata.is_dir() {
        return Err(PrivateError::NotADirectory {
            path: dir.to_owned(),
        });
    }
    check_owner(dir, metadata.uid())?;
    if metadata.mode() & 0o7777 != DIR_MODE {
        std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
            .map_err(io("restrict the permissions of", dir))?;
    }
    Ok(())
}

fn check_owner(path: &Path, owner: u32) -> Result<(), PrivateError> {
    let you = effective_uid();
    if owner == you {
        Ok(())
    } else {
        Err(PrivateError::Foreign {
            path: path.to_owned(),
            owner,
            you,
        })
    }
}

/// How a private file is opened.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Read and write, created when absent, content kept.
    ReadWrite,
    /// Appended to, created when absent.
    Append,
}

/// Opens (creating it 0600 when absent) a file in the state directory without following a link,
/// refusing one owned by another user and tightening a wider mode.
pub fn open_file(path: &Path, access: Access) -> Result<File, PrivateError> {
    let mut options = OpenOptions::new();
    match access {
        Access::ReadWrite => options.read(true).write(true),
        Access::Append => options.append(true),
    };
    let file = options
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| refused_link(path, e, "open"))?;
    settle_file(path, &file)?;
    Ok(file)
}

fn settle_file(path: &Path, file: &File) -> Result<(), PrivateError> {
    let metadata = file.metadata().map_err(io("inspect", path))?;
    check_owner(path, metadata.uid())?;
    if metadata.mode() & 0o777 != FILE_MODE {
        file.set_permissions(Permissions::from_mode(FILE_MODE))
            .map_err(io("restrict the permissions of", path))?;
    }
    Ok(())
}

/// `O_NOFOLLOW` on a link fails with ELOOP: say what it means.
fn refused_link(path: &Path, e: std::io::Error, action: &'static str) -> PrivateError {
    if e.raw_os_error() == Some(libc::ELOOP) {
        PrivateError::Link {
            path: path.to_owned(),
        }
    } else {
        io(action, path)(e)
    }
}

/// Writes `bytes` to `path` through a new 0600 temporary file and a rename, so that readers
/// never see a partial file, other users never see the content, and a link planted at either
/// name is replaced, never written through.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PrivateError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove", &tmp)(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| refused_link(&tmp, e, "create"))?;
    settle_file(&tmp, &file)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("replace", path))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The permission bits of `path` itself (not of what a link points to).
    pub(crate) fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn a_new_directory_and_its_files_are_private_whatever_the_umask() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("a/state");
        ensure_dir(&dir).expect("create");
        assert_eq!(mode(&dir), 0o700);
        open_file(&dir.join("log"), Access::Append).expect("open");
        assert_eq!(mode(&dir.join("log")), 0o600);
        write_file(&dir.join("state.json"), b"{}").expect("write");
        assert_eq!(mode(&dir.join("state.json")), 0o600);
        assert_eq!(
            std::fs::read(dir.join("state.json")).expect("read"),
            b"{}".to_vec()
        );
    }

    #[test]
    fn a_wider_directory_or_file_is_tightened() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("state");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(dir.join("releases.db"), b"").expect("write");
        std::fs::set_permissions(dir.join("releases.db"), Permissions::from_mode(0o644))
            .expect("chmod");
        ensure_dir(&dir).expect("existing dir");
        open_file(&dir.join("releases.db"), Access::ReadWrite).expect("open");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("releases.db")), 0o600);
    }

    #[test]
    fn a_directory_or_file_owned_by_another_user_is_refused() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("state");
        std::fs::create_dir(&dir).expect("mkdir");
        // The tests run as root, which may give the directory away.
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown (run as root)");
        let refused = ensure_dir(&dir);
        assert!(
            matches!(refused, Err(PrivateError::Foreign { owner: 65534, .. })),
            "{refused:?}"
        );
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains(&dir.display().to_string()), "{message}");
        assert!(message.contains("KAAPI_STATE_DIR"), "{message}");
    }

    #[test]
    fn links_are_refused_not_followed() {
        let root = tempfile::tempdir().expect("temp dir");
        let target = root.path().join("elsewhere");
        std::fs::create_dir(&target).expect("mkdir");
        let linked_dir = root.path().join("state");
        std::os::unix::fs::symlink(&target, &linked_dir).expect("symlink");
        assert!(matches!(
            ensure_dir(&linked_dir),
            Err(PrivateError::Link { .. })
        ));

        let dir = root.path().join("real");
        ensure_dir(&dir).expect("create");
        let victim = target.join("victim");
        std::fs::write(&victim, b"untouched").expect("write");
        std::os::unix::fs::symlink(&victim, dir.join("agent.log")).expect("symlink");
        let refused = open_file(&dir.join("agent.log"), Access::Append);
        assert!(
            matches!(refused, Err(PrivateError::Link { .. })),
            "{refused:?}"
        );
        // A link at the final name is replaced by the rename, the file it points to untouched.
        std::os::unix::fs::symlink(&victim, dir.join("agent.json")).expect("symlink");
        write_file(&dir.join("agent.json"), b"secret").expect("write");
        assert_eq!(std::fs::read(&victim).expect("read"), b"untouched".to_vec());
        assert!(!std::fs::symlink_metadata(dir.join("agent.json"))
            .expect("metadata")
            .file_type()
            .is_symlink());
    }
}
