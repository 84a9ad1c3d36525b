//! Logs from CloudWatch: the lines of one task's stream, and `logs [--follow]` across the
//! services' log groups with FilterLogEvents (following by polling from the last timestamp).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use kaapi_core::engine::{EngineResult, LogLine, LogQuery};
use kaapi_core::progress::Progress;

use crate::error::{aws_error, error_code};
use crate::retry::retry_throttled;
use crate::session::Ctx;

/// Pages read per poll at most, so a chatty service cannot stall the loop.
const MAX_PAGES: usize = 20;

fn time_of(millis: Option<i64>) -> Option<DateTime<Utc>> {
    millis.and_then(DateTime::from_timestamp_millis)
}

/// Every line of one log stream (a finished task's), oldest first.
pub async fn stream_lines(
    ctx: &Ctx,
    group: &str,
    stream: &str,
    progress: &dyn Progress,
) -> EngineResult<Vec<LogLine>> {
    let lines = filter(ctx, group, Some(stream), None, progress).await?;
    Ok(lines.into_iter().map(|(_, line)| line).collect())
}

/// FilterLogEvents on one group from `start` (ms); returns (event id, line). A group that does
/// not exist yet has no lines.
async fn filter(
    ctx: &Ctx,
    group: &str,
    stream: Option<&str>,
    start: Option<i64>,
    progress: &dyn Progress,
) -> EngineResult<Vec<(String, LogLine)>> {
    let mut lines = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let result = retry_throttled(&ctx.tuning, "logs:FilterLogEvents", progress, || {
            ctx.clients
                .logs
                .filter_log_events()
                .log_group_name(group)
                .set_log_stream_names(stream.map(|s| vec![s.to_owned()]))
                .set_start_time(start)
                .set_next_token(next.clone())
                .send()
        })
        .await;
        let page = match result {
            Ok(page) => page,
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(lines),
            Err(e) => return Err(aws_error(&format!("logs:FilterLogEvents on {group}"), e)),
        };
        for event in page.events() {
            let source = event
                .log_stream_name()
                .map(|s| {
                    // `prefix/container/task-id` → `prefix/short-task-id`.
                    let mut parts = s.split('/');
                    let prefix = parts.next().unwrap_or_default();
                    let task = parts.next_back().unwrap_or_default();
                    format!("{prefix}/{}", task.get(..12).unwrap_or(task))
                })
                .unwrap_or_default();
            lines.push((
                event.event_id().unwrap_or_default().to_owned(),
                LogLine {
                    at: time_of(event.timestamp()),
                    source,
                    line: event.message().unwrap_or_default().trim_end().to_owned(),
                },
            ));
        }
        next = page.next_token().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    Ok(lines)
}

/// `logs ENV [SERVICE] [--follow] [--since D]`.
pub async fn logs(
    ctx: &Ctx,
    query: &LogQuery,
    sink: &(dyn Fn(LogLine) + Send + Sync),
    progress: &dyn Progress,
) -> EngineResult<()> {
    let services: Vec<String> = match &query.service {
        Some(s) => {
            ctx.target.log_group(s)?;
            vec![s.clone()]
        }
        None => ctx.target.services().map(str::to_owned).collect(),
    };
    let since = query
        .since
        .unwrap_or(std::time::Duration::from_secs(10 * 60));
    let mut start = Utc::now().timestamp_millis() - since.as_millis() as i64;
    let mut seen = SeenEvents::default();
    loop {
        let mut batch = Vec::new();
        for service in &services {
            let group = ctx.target.log_group(service)?.to_owned();
            batch.extend(filter(ctx, &group, None, Some(start), progress).await?);
        }
        batch.sort_by_key(|(_, l)| l.at);
        // Later polls restart from the newest timestamp; event IDs drop the overlap.
        if let Some(newest) = batch.iter().filter_map(|(_, l)| l.at).max() {
            start = newest.timestamp_millis();
        }
        for (id, line) in batch {
            if seen.first_time(id, line.at) {
                sink(line);
            }
        }
        seen.forget_before(start);
        if !query.follow {
            return Ok(());
        }
        tokio::time::sleep(ctx.tuning.follow_interval).await;
    }
}

/// The event IDs already printed while following. A poll starts at the newest timestamp seen,
/// so only events at or after it can come again: older IDs are forgotten, which keeps the set
/// as small as one timestamp's events however long `--follow` runs.
#[derive(Default)]
struct SeenEvents {
    ids: HashMap<String, i64>,
}

impl SeenEvents {
    fn first_time(&mut self, id: String, at: Option<DateTime<Utc>>) -> bool {
        let at = at.map_or(i64::MIN, |at| at.timestamp_millis());
        self.ids.insert(id, at).is_none()
    }

    fn forget_before(&mut self, start_millis: i64) {
        self.ids.retain(|_, at| *at >= start_millis);
    }
}

#[cfg(test)]
mod seen_tests {
    use super::*;

    #[test]
    fn following_forgets_event_ids_the_next_poll_cannot_return() {
        let mut seen = SeenEvents::default();
        for n in 0..10_000i64 {
            let at = DateTime::from_timestamp_millis(n);
            assert!(seen.first_time(format!("e{n}"), at));
            // The overlap of the next poll (same timestamp) is still recognised.
            assert!(!seen.first_time(format!("e{n}"), at));
            seen.forget_before(n);
            assert!(seen.ids.len() <= 1, "{} ids kept", seen.ids.len());
        }
    }
}
