//! Logs of running replicas, merged across them.

use bollard::models::ContainerSummary;
use bollard::query_parameters::LogsOptionsBuilder;
use bollard::Docker;
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
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
    let mut merged = stream::select_all(streams);
    if query.follow {
        while let Some(line) = merged.next().await {
            sink(line);
        }
    } else {
        let mut lines: Vec<LogLine> = merged.collect().await;
        lines.sort_by_key(|l| l.at);
        for line in lines {
            sink(line);
        }
    }
    Ok(())
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
