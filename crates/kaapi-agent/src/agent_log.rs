//! `{state_dir}/agent.log` and `{state_dir}/ingress.log`, the detached agent's and ingress'
//! stdout and stderr: private like every file of the state directory, and rotated when the
//! process starts so that they never grow without bound (the current file and one previous one,
//! `agent.log.1`, are kept).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::private::{self, Access, PrivateError};

pub const LOG_FILE: &str = "agent.log";
pub const INGRESS_LOG_FILE: &str = "ingress.log";
/// Past this size the log is moved to `agent.log.1` at the next agent start.
pub const ROTATE_BYTES: u64 = 8 * 1024 * 1024;

/// Opens the agent's log for appending, rotating it first when it has grown past `limit`.
pub fn open(state_dir: &Path, limit: u64) -> Result<(File, PathBuf), PrivateError> {
    open_named(state_dir, LOG_FILE, limit)
}

/// Opens the log `name` of the state directory, rotated as [`open`] does.
pub fn open_named(
    state_dir: &Path,
    name: &str,
    limit: u64,
) -> Result<(File, PathBuf), PrivateError> {
    let path = state_dir.join(name);
    let file = private::open_file(&path, Access::Append)?;
    let size = file
        .metadata()
        .map_err(|source| PrivateError::Io {
            action: "inspect",
            path: path.clone(),
            source,
        })?
        .len();
    if size <= limit {
        return Ok((file, path));
    }
    drop(file);
    let previous = state_dir.join(format!("{name}.1"));
    // A rename replaces whatever is at the old name, a planted link included, without following.
    std::fs::rename(&path, &previous).map_err(|source| PrivateError::Io {
        action: "rotate",
        path: path.clone(),
        source,
    })?;
    let file = private::open_file(&path, Access::Append)?;
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_past_the_limit_is_rotated_and_one_previous_file_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(LOG_FILE), vec![b'x'; 100]).expect("write");
        std::fs::write(dir.path().join("agent.log.1"), b"oldest").expect("write");
        let (_, path) = open(dir.path(), 1000).expect("open under the limit");
        assert_eq!(std::fs::metadata(&path).expect("log").len(), 100);

        let (_, path) = open(dir.path(), 50).expect("open over the limit");
        assert_eq!(std::fs::metadata(&path).expect("log").len(), 0);
        assert_eq!(
            std::fs::metadata(dir.path().join("agent.log.1"))
                .expect("rotated")
                .len(),
            100
        );
    }
}
