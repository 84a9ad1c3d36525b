//! Logs of running replicas, merged across them.

use bollard::models::ContainerSummary;
use bollard::query_parameters::LogsOptionsBuilder;
use bollard::Docker;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, Stream, StreamExt};
use kaapi_core::engine::{EngineResult, LogLine, LogQuery};

use crate::containers::source_name;

/// Sends the log lines of `containers` to `sink`: sorted by time when not following, as they
/// come when following.
pub async fn logs(
    docker: &Docker,
    containers: &[ContainerSummary],
    query: &LogQuery,
    sink: &(dyn Fn(LogLine) + Send + Sync),
) -> EngineResult<()> {
    let since = query
        .since
        .map(|d| Utc::now().timestamp() - i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
        .and_then(|t| i32::try_from(t.max(0)).ok());
    let streams = containers.iter().filter_map(|container| {
        let id = container.id.clone()?;
        let source = source_name(container);
        let mut options = LogsOptionsBuilder::default()
            .follow(query.follow)
            .stdout(true)
            .stderr(true)
            .timestamps(true);
        if let Some(since) = since {
            options = options.since(since);
        }
        let chunks = docker.logs(&id, Some(options.build()));
        Some(
            chunks
                .filter_map(|chunk| async move { chunk.ok() })
                .flat_map(move |chunk| {
                    let source = source.clone();
                    let lines: Vec<LogLine> = chunk
                        .to_string()
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(|l| parse_line(&source, l))
                        .collect();
                    stream::iter(lines)
                })
                .boxed(),
        )
    });
    if query.follow {
        let mut merged = stream::select_all(streams);
        while let Some(line) = merged.next().await {
            sink(line);
        }
    } else {
        merge_by_time(streams.collect(), sink).await;
    }
    Ok(())
}

/// Merges streams that are each in time order (as Docker sends one container's log) into one
/// time-ordered sequence, holding one line per stream: memory does not grow with the logs.
pub async fn merge_by_time<S>(mut streams: Vec<S>, sink: &(dyn Fn(LogLine) + Send + Sync))
where
    S: Stream<Item = LogLine> + Unpin,
{
    let mut heads = Vec::with_capacity(streams.len());
    for stream in &mut streams {
        heads.push(stream.next().await);
    }
    loop {
        // The earliest head; on equal times the first stream, so that the order is stable.
        let earliest = heads
            .iter()
            .enumerate()
            .filter_map(|(index, head)| head.as_ref().map(|line| (line.at, index)))
            .min();
        let Some((_, index)) = earliest else {
            return;
        };
        if let Some(line) = heads[index].take() {
            sink(line);
        }
        heads[index] = streams[index].next().await;
    }
}

/// `2024-05-01T10:00:00.123456789Z message` (Docker's `timestamps`) into a line.
fn parse_line(source: &str, raw: &str) -> LogLine {
    let (at, line) = match raw.split_once(' ') {
        Some((stamp, rest)) => match DateTime::parse_from_rfc3339(stamp) {
            Ok(at) => (Some(at.with_timezone(&Utc)), rest),
            Err(_) => (None, raw),
        },
        None => (None, raw),
    };
    LogLine {
        at,
        source: source.to_owned(),
        line: line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    /// A lazily generated log of `count` lines, one every `step` ms from `start`, counting
    /// lines taken from it in `taken`.
    fn generated(
        source: &'static str,
        start: i64,
        step: i64,
        count: i64,
        taken: Arc<AtomicI64>,
    ) -> impl Stream<Item = LogLine> + Unpin {
        stream::iter(0..count).map(move |n| {
            taken.fetch_add(1, Ordering::SeqCst);
            LogLine {
                at: DateTime::from_timestamp_millis(start + n * step),
                source: source.to_owned(),
                line: format!("{source} line {n} {}", "x".repeat(100)),
            }
        })
    }

    #[tokio::test]
    async fn a_large_log_is_merged_in_time_order_holding_one_line_per_stream() {
        const LINES: i64 = 200_000;
        let taken = Arc::new(AtomicI64::new(0));
        let streams = vec![
            generated("a", 0, 3, LINES, Arc::clone(&taken)),
            generated("b", 1, 2, LINES, Arc::clone(&taken)),
            generated("c", 2, 5, LINES, Arc::clone(&taken)),
        ];
        let emitted = AtomicI64::new(0);
        let most_held = AtomicI64::new(0);
        let last = std::sync::Mutex::new(None);
        let in_order = std::sync::atomic::AtomicBool::new(true);
        let sink = |line: LogLine| {
            let held = taken.load(Ordering::SeqCst) - emitted.fetch_add(1, Ordering::SeqCst);
            most_held.fetch_max(held, Ordering::SeqCst);
            let mut last = last.lock().expect("last");
            if *last > line.at {
                in_order.store(false, Ordering::SeqCst);
            }
            *last = line.at;
        };
        merge_by_time(streams, &sink).await;
        assert_eq!(emitted.load(Ordering::SeqCst), 3 * LINES);
        assert!(in_order.load(Ordering::SeqCst), "lines out of time order");
        // Taken but not yet written: never more than one per stream.
        assert!(
            most_held.load(Ordering::SeqCst) <= 3,
            "held {} lines at once",
            most_held.load(Ordering::SeqCst)
        );
    }

    #[test]
    fn parses_docker_timestamps() {
        let line = parse_line("web/abc", "2024-05-01T10:00:00.123456789Z hello world");
        assert_eq!(line.line, "hello world");
        assert_eq!(line.source, "web/abc");
        assert!(line.at.is_some());
        let plain = parse_line("web/abc", "no stamp here");
        assert_eq!(plain.at, None);
        assert_eq!(plain.line, "no stamp here");
    }
}
