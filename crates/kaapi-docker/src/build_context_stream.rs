//! The build context as a gzipped tar, either streamed to the engine while a blocking thread
//! writes it (so a large context never sits whole in memory) or as one buffer for the API that
//! only takes bytes.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::build_context::{self, ContextError};

/// Chunks handed to the engine; the writer waits when this many are in flight.
const CHUNKS_IN_FLIGHT: usize = 8;
const CHUNK_SIZE: usize = 64 * 1024;

/// What the writer thread reports once the whole context is written: the compressed size.
pub type Written = JoinHandle<Result<u64, ContextError>>;

/// Streams `files` of `dir` as a gzipped tar. The handle ends with the writer's outcome; a
/// writer that fails ends the stream early (the engine then sees a truncated archive).
pub fn gzip_stream(dir: PathBuf, files: Vec<String>) -> (impl Stream<Item = Bytes>, Written) {
    let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let written = tokio::task::spawn_blocking(move || {
        let sender = ChannelWriter { tx, sent: 0 };
        let gz = GzEncoder::new(
            BufWriter::with_capacity(CHUNK_SIZE, sender),
            Compression::fast(),
        );
        let buffered = build_context::write_tar(&dir, &files, gz)?
            .finish()
            .map_err(|e| io_error(&dir, e))?;
        let sender = buffered
            .into_inner()
            .map_err(|e| io_error(&dir, e.into_error()))?;
        Ok(sender.sent)
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (body, written)
}

/// The most [`gzip_bytes`] holds: the API that takes the context as one buffer (builds with
/// build secrets) gets at most this much compressed context.
pub const BUFFER_LIMIT: usize = 256 * 1024 * 1024;

/// The same archive in memory, refused once it would exceed `limit` bytes compressed (the
/// buffer never grows past it).
pub fn gzip_bytes(
    dir: &std::path::Path,
    files: &[String],
    limit: usize,
) -> Result<Vec<u8>, ContextError> {
    let buffer = CappedBuffer {
        bytes: Vec::new(),
        limit,
    };
    let gz = GzEncoder::new(buffer, Compression::fast());
    let too_large = |error: ContextError| match error {
        ContextError::Io { source, .. }
            if source.get_ref().is_some_and(|e| e.is::<OverLimit>()) =>
        {
            ContextError::TooLarge {
                path: dir.to_path_buf(),
                limit_mib: limit / (1024 * 1024),
            }
        }
        other => other,
    };
    let written = build_context::write_tar(dir, files, gz).map_err(too_large)?;
    written
        .finish()
        .map(|buffer| buffer.bytes)
        .map_err(|e| too_large(io_error(dir, e)))
}

/// A `Vec` that refuses a write taking it past its limit.
struct CappedBuffer {
    bytes: Vec<u8>,
    limit: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("the build context exceeds its in-memory limit")]
struct OverLimit;

impl Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            return Err(std::io::Error::other(OverLimit));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn io_error(dir: &std::path::Path, source: std::io::Error) -> ContextError {
    ContextError::Io {
        path: dir.to_path_buf(),
        source,
    }
}

/// Whether a writer error only says that the engine stopped reading (its own error explains
/// why), as opposed to a file that could not be read.
pub fn is_reader_gone(error: &ContextError) -> bool {
    matches!(error, ContextError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    sent: u64,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the engine stopped reading the build context",
                )
            })?;
        self.sent += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use futures_util::StreamExt;

    use super::*;

    fn tar_names(gz: &[u8]) -> Vec<String> {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut tar)
            .expect("gunzip");
        let mut archive = tar::Archive::new(tar.as_slice());
        archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[tokio::test]
    async fn the_stream_carries_the_same_archive_as_the_buffer() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").expect("write");
        // Larger than one chunk, so the archive crosses several sends.
        let big: Vec<u8> = (0..300_000u32).flat_map(|n| n.to_le_bytes()).collect();
        std::fs::write(dir.path().join("big.bin"), &big).expect("write");
        let files = build_context::files(dir.path(), "Dockerfile").expect("files");

        let (body, written) = gzip_stream(dir.path().to_path_buf(), files.clone());
        let streamed: Vec<u8> = body
            .collect::<Vec<Bytes>>()
            .await
            .into_iter()
            .flat_map(|b| b.to_vec())
            .collect();
        let sent = written.await.expect("join").expect("written");
        assert_eq!(sent, streamed.len() as u64);
        assert_eq!(tar_names(&streamed), vec!["Dockerfile", "big.bin"]);
        let buffered = gzip_bytes(dir.path(), &files, BUFFER_LIMIT).expect("bytes");
        assert_eq!(tar_names(&buffered), tar_names(&streamed));
    }

    #[test]
    fn the_buffered_archive_is_refused_past_its_limit_without_growing_past_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Incompressible: 4 MB of pseudo-random bytes stay about 4 MB gzipped.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..4_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        std::fs::write(dir.path().join("noise.bin"), &noise).expect("write");
        let files = vec!["noise.bin".to_owned()];

        let error = gzip_bytes(dir.path(), &files, 1024 * 1024).expect_err("over the limit");
        assert!(
            matches!(error, ContextError::TooLarge { limit_mib: 1, .. }),
            "{error}"
        );
        assert!(error.to_string().contains(".dockerignore"), "{error}");
        let fits = gzip_bytes(dir.path(), &files, 8 * 1024 * 1024).expect("under the limit");
        assert!(fits.len() > 3_000_000 && fits.len() <= 8 * 1024 * 1024);

        let mut capped = CappedBuffer {
            bytes: Vec::new(),
            limit: 10,
        };
        capped.write_all(b"0123456789").expect("up to the limit");
        assert!(capped.write_all(b"x").is_err());
        assert_eq!(capped.bytes.len(), 10);
    }

    #[tokio::test]
    async fn a_reader_that_goes_away_is_told_apart_from_a_bad_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big: Vec<u8> = (0..2_000_000u32).flat_map(|n| n.to_le_bytes()).collect();
        std::fs::write(dir.path().join("big.bin"), &big).expect("write");
        let (body, written) = gzip_stream(dir.path().to_path_buf(), vec!["big.bin".to_owned()]);
        drop(body);
        let error = written.await.expect("join").expect_err("nobody reads");
        assert!(is_reader_gone(&error), "{error}");

        let (body, written) = gzip_stream(dir.path().to_path_buf(), vec!["gone.txt".to_owned()]);
        let _ = body.collect::<Vec<Bytes>>().await;
        let error = written.await.expect("join").expect_err("missing file");
        assert!(!is_reader_gone(&error), "{error}");
    }
}
