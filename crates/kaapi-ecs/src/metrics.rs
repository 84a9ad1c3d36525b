//! Per-minute series of what ECS services do, from CloudWatch in one `GetMetricData` call: CPU
//! and memory utilization per service, and, when the service sits behind a target group, the
//! load balancer's request count, target 5xx count and p50/p99 target response time.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::types::{MetricDataQuery, MetricDataResult, ScanBy};
use chrono::{DateTime, Utc};
use kaapi_core::engine::{EngineResult, Traffic, TrafficSample};
use kaapi_core::progress::Progress;
use serde::Serialize;

use crate::error::aws_error;
use crate::retry::retry_throttled;
use crate::session::Ctx;
use crate::status::{ecs_metric, target_group_dimension};
use crate::tuning::Tuning;

/// One point per minute: CloudWatch's finest period for ECS service metrics.
pub const PERIOD_SECS: i32 = 60;
/// GetMetricData takes at most 500 queries per call.
const MAX_QUERIES: usize = 500;
/// Queries per service.
const PER_SERVICE: usize = 6;

/// What to ask for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceMetrics {
    pub cluster: String,
    /// The ECS service name.
    pub service: String,
    /// The target group's ARN, when the service is behind a load balancer.
    pub target_group_arn: Option<String>,
}

/// One minute of one service; `None` where CloudWatch has no value.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MetricPoint {
    pub at: DateTime<Utc>,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub requests: Option<f64>,
    pub errors_5xx: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The points of one service, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSeries {
    pub service: String,
    pub points: Vec<MetricPoint>,
}

/// Which value a query ID carries (IDs are `{kind}{service index}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cpu,
    Memory,
    Requests,
    Errors,
    P50,
    P99,
}

impl Kind {
    const ALL: [Kind; PER_SERVICE] = [
        Kind::Cpu,
        Kind::Memory,
        Kind::Requests,
        Kind::Errors,
        Kind::P50,
        Kind::P99,
    ];

    fn prefix(self) -> &'static str {
        match self {
            Kind::Cpu => "cpu",
            Kind::Memory => "mem",
            Kind::Requests => "req",
            Kind::Errors => "err",
            Kind::P50 => "pfifty",
            Kind::P99 => "pninetynine",
        }
    }

    /// `(kind, service index)` of a query ID.
    fn parse(id: &str) -> Option<(Kind, usize)> {
        Kind::ALL.into_iter().find_map(|kind| {
            let index = id.strip_prefix(kind.prefix())?.parse().ok()?;
            Some((kind, index))
        })
    }

    fn set(self, point: &mut MetricPoint, value: f64) {
        let slot = match self {
            Kind::Cpu => &mut point.cpu_percent,
            Kind::Memory => &mut point.memory_percent,
            Kind::Requests => &mut point.requests,
            Kind::Errors => &mut point.errors_5xx,
            // TargetResponseTime is in seconds.
            Kind::P50 => {
                point.p50_ms = Some(value * 1000.0);
                return;
            }
            Kind::P99 => {
                point.p99_ms = Some(value * 1000.0);
                return;
            }
        };
        *slot = Some(value);
    }
}

fn ecs_query(kind: Kind, index: usize, target: &ServiceMetrics, name: &str) -> MetricDataQuery {
    let id = format!("{}{index}", kind.prefix());
    ecs_metric(id, &target.cluster, &target.service, name, PERIOD_SECS)
}

/// An ALB metric of one target group. ALB publishes target-group metrics per (load balancer,
/// target group) pair; a SEARCH finds the pair without knowing the load balancer.
fn alb_query(
    kind: Kind,
    index: usize,
    target_group: &str,
    name: &str,
    stat: &str,
) -> MetricDataQuery {
    let combine = if stat == "Sum" { "SUM" } else { "MAX" };
    MetricDataQuery::builder()
        .id(format!("{}{index}", kind.prefix()))
        .expression(format!(
            "{combine}(SEARCH('{{AWS/ApplicationELB,LoadBalancer,TargetGroup}} MetricName=\"{name}\" TargetGroup=\"{target_group}\"', '{stat}', {PERIOD_SECS}))"
        ))
        .return_data(true)
        .build()
}

/// The queries for `services`, IDs `{kind}{index}`.
pub fn queries(services: &[ServiceMetrics]) -> Vec<MetricDataQuery> {
    queries_from(services, 0)
}

/// The queries for `services`, numbering them from `first` (one call's share of many).
fn queries_from(services: &[ServiceMetrics], first: usize) -> Vec<MetricDataQuery> {
    let mut queries = Vec::new();
    for (index, target) in (first..).zip(services) {
        queries.push(ecs_query(Kind::Cpu, index, target, "CPUUtilization"));
        queries.push(ecs_query(Kind::Memory, index, target, "MemoryUtilization"));
        let Some(tg) = target
            .target_group_arn
            .as_deref()
            .and_then(target_group_dimension)
        else {
            continue;
        };
        queries.push(alb_query(Kind::Requests, index, tg, "RequestCount", "Sum"));
        queries.push(alb_query(
            Kind::Errors,
            index,
            tg,
            "HTTPCode_Target_5XX_Count",
            "Sum",
        ));
        queries.push(alb_query(Kind::P50, index, tg, "TargetResponseTime", "p50"));
        queries.push(alb_query(Kind::P99, index, tg, "TargetResponseTime", "p99"));
    }
    queries
}

/// Folds the results into one series per service, points by timestamp, oldest first.
pub fn series(services: &[ServiceMetrics], results: &[MetricDataResult]) -> Vec<ServiceSeries> {
    let mut points: Vec<BTreeMap<i64, MetricPoint>> = vec![BTreeMap::new(); services.len()];
    for result in results {
        let Some((kind, index)) = result.id().and_then(Kind::parse) else {
            continue;
        };
        let Some(by_time) = points.get_mut(index) else {
            continue;
        };
        for (at, value) in result.timestamps().iter().zip(result.values()) {
            let point = by_time.entry(at.secs()).or_insert_with(|| MetricPoint {
                at: DateTime::from_timestamp(at.secs(), 0).unwrap_or_default(),
                ..MetricPoint::default()
            });
            kind.set(point, *value);
        }
    }
    services
        .iter()
        .zip(points)
        .map(|(service, by_time)| ServiceSeries {
            service: service.service.clone(),
            points: by_time.into_values().collect(),
        })
        .collect()
}

/// The last `window` of every service, in as few GetMetricData calls as the 500-query limit
/// allows.
pub async fn fetch(
    ctx: &Ctx,
    services: &[ServiceMetrics],
    window: Duration,
    progress: &dyn Progress,
) -> EngineResult<Vec<ServiceSeries>> {
    let mut results = Vec::new();
    let per_call = MAX_QUERIES / PER_SERVICE;
    for (chunk_index, chunk) in services.chunks(per_call).enumerate() {
        let queries = queries_from(chunk, chunk_index * per_call);
        results.extend(get_metric_data(ctx, queries, window, progress).await?);
    }
    Ok(series(services, &results))
}

/// Every result of `queries` over the last `window`, newest value first, following
/// `NextToken`.
pub(crate) async fn get_metric_data(
    ctx: &Ctx,
    queries: Vec<MetricDataQuery>,
    window: Duration,
    progress: &dyn Progress,
) -> EngineResult<Vec<MetricDataResult>> {
    let client = &ctx.clients.cloudwatch;
    metric_data(client, &ctx.tuning, queries, window, progress).await
}

async fn metric_data(
    client: &aws_sdk_cloudwatch::Client,
    tuning: &Tuning,
    queries: Vec<MetricDataQuery>,
    window: Duration,
    progress: &dyn Progress,
) -> EngineResult<Vec<MetricDataResult>> {
    let end = SystemTime::now();
    let start = end - window;
    let mut results = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = retry_throttled(tuning, "cloudwatch:GetMetricData", progress, || {
            client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(start.into())
                .end_time(end.into())
                .scan_by(ScanBy::TimestampDescending)
                .set_next_token(token.clone())
                .send()
        })
        .await
        .map_err(|e| aws_error("cloudwatch:GetMetricData", e))?;
        results.extend(out.metric_data_results().iter().cloned());
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(results);
        }
    }
}

/// The environment's web traffic: every service's load-balancer metrics summed per minute
/// (latency: the slowest service's quantile).
pub async fn traffic(
    ctx: &Ctx,
    window: Duration,
    progress: &dyn Progress,
) -> EngineResult<Traffic> {
    let target = &ctx.target;
    let ecs_names = target
        .services()
        .map(|s| target.ecs_service_name(s).map(str::to_owned))
        .collect::<EngineResult<Vec<_>>>()?;
    let live = ctx.describe_services(&ecs_names, progress).await?;
    let services: Vec<ServiceMetrics> = ecs_names
        .iter()
        .map(|name| ServiceMetrics {
            cluster: ctx.cluster().to_owned(),
            service: name.clone(),
            target_group_arn: live
                .iter()
                .find(|s| s.service_name() == Some(name.as_str()))
                .and_then(|s| {
                    s.load_balancers()
                        .iter()
                        .find_map(|lb| lb.target_group_arn().map(str::to_owned))
                }),
        })
        .collect();
    Ok(combined(&fetch(ctx, &services, window, progress).await?))
}

/// Sums requests and errors over services per minute; keeps the highest latency quantiles.
pub fn combined(series: &[ServiceSeries]) -> Traffic {
    let mut by_time: BTreeMap<DateTime<Utc>, TrafficSample> = BTreeMap::new();
    for point in series.iter().flat_map(|s| &s.points) {
        if point.requests.is_none() && point.errors_5xx.is_none() && point.p99_ms.is_none() {
            continue;
        }
        let sample = by_time.entry(point.at).or_insert_with(|| TrafficSample {
            at: point.at,
            requests: 0,
            errors: 0,
            p50_ms: None,
            p99_ms: None,
        });
        sample.requests += point.requests.unwrap_or(0.0).max(0.0) as u64;
        sample.errors += point.errors_5xx.unwrap_or(0.0).max(0.0) as u64;
        sample.p50_ms = max_of(sample.p50_ms, point.p50_ms);
        sample.p99_ms = max_of(sample.p99_ms, point.p99_ms);
    }
    Traffic {
        period_secs: PERIOD_SECS.unsigned_abs().into(),
        samples: by_time.into_values().collect(),
    }
}

fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::primitives::DateTime as AwsTime;

    const TG: &str =
        "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/kaapi-web/0123456789abcdef";

    fn services() -> Vec<ServiceMetrics> {
        vec![
            ServiceMetrics {
                cluster: "kaapi-cluster".to_owned(),
                service: "kaapi-service".to_owned(),
                target_group_arn: Some(TG.to_owned()),
            },
            ServiceMetrics {
                cluster: "kaapi-cluster".to_owned(),
                service: "kaapi-worker".to_owned(),
                target_group_arn: None,
            },
        ]
    }

    /// CloudWatch's own rules for GetMetricData, which the emulator does not enforce: an ID
    /// starts with a lowercase letter and holds only letters, digits and `_`; IDs are unique;
    /// each query has exactly one of MetricStat and Expression; a period is a multiple of 60
    /// for data older than 3 hours (and always here); at most 500 queries.
    fn check_cloudwatch_rules(queries: &[MetricDataQuery]) {
        assert!(queries.len() <= MAX_QUERIES);
        let mut ids = std::collections::HashSet::new();
        for query in queries {
            let id = query.id().expect("every query has an ID");
            let mut chars = id.chars();
            assert!(chars.next().is_some_and(|c| c.is_ascii_lowercase()), "{id}");
            assert!(chars.all(|c| c.is_ascii_alphanumeric() || c == '_'), "{id}");
            assert!(ids.insert(id.to_owned()), "duplicate ID {id}");
            assert!(
                query.metric_stat().is_some() != query.expression().is_some(),
                "{id}: exactly one of MetricStat and Expression"
            );
            if let Some(stat) = query.metric_stat() {
                assert_eq!(stat.period().map(|p| p % 60), Some(0), "{id}");
            }
        }
    }

    #[test]
    fn the_queries_ask_ecs_utilization_and_the_target_groups_alb_metrics() {
        let queries = queries(&services());
        check_cloudwatch_rules(&queries);
        let ids: Vec<&str> = queries.iter().filter_map(|q| q.id()).collect();
        assert_eq!(
            ids,
            [
                "cpu0",
                "mem0",
                "req0",
                "err0",
                "pfifty0",
                "pninetynine0",
                "cpu1",
                "mem1"
            ]
        );
        let cpu = queries[0].metric_stat().expect("cpu is a metric stat");
        let metric = cpu.metric().expect("metric");
        assert_eq!(metric.namespace(), Some("AWS/ECS"));
        assert_eq!(metric.metric_name(), Some("CPUUtilization"));
        let dimensions: Vec<(&str, &str)> = metric
            .dimensions()
            .iter()
            .map(|d| (d.name().unwrap_or(""), d.value().unwrap_or("")))
            .collect();
        assert_eq!(
            dimensions,
            [
                ("ClusterName", "kaapi-cluster"),
                ("ServiceName", "kaapi-service")
            ]
        );
        assert_eq!(cpu.stat(), Some("Average"));
        let p99 = queries[5].expression().expect("p99 is an expression");
        assert_eq!(
            p99,
            "MAX(SEARCH('{AWS/ApplicationELB,LoadBalancer,TargetGroup} MetricName=\"TargetResponseTime\" TargetGroup=\"targetgroup/kaapi-web/0123456789abcdef\"', 'p99', 60))"
        );
        assert!(queries[2]
            .expression()
            .is_some_and(|e| e.starts_with("SUM(") && e.contains("\"RequestCount\"")));
        assert!(queries[3]
            .expression()
            .is_some_and(|e| e.contains("\"HTTPCode_Target_5XX_Count\"")));
    }

    #[test]
    fn many_services_are_split_below_the_query_limit_with_unique_ids() {
        let many: Vec<ServiceMetrics> = (0..100)
            .map(|i| ServiceMetrics {
                cluster: "c".to_owned(),
                service: format!("s{i}"),
                target_group_arn: Some(TG.to_owned()),
            })
            .collect();
        let per_call = MAX_QUERIES / PER_SERVICE;
        let first = queries(&many[..per_call]);
        let second = queries_from(&many[per_call..], per_call);
        check_cloudwatch_rules(&first);
        check_cloudwatch_rules(&second);
        assert_eq!(second[0].id(), Some(format!("cpu{per_call}").as_str()));
        assert_eq!(first.len() + second.len(), 100 * PER_SERVICE);
    }

    /// The request as CloudWatch receives it (scripted responses): every query, newest first,
    /// a window ending now; a second page is asked for with the first page's token.
    #[tokio::test]
    async fn get_metric_data_sends_the_queries_and_follows_next_token() {
        use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
        use aws_sdk_cloudwatch::Client;
        use aws_smithy_mocks::{mock, mock_client, RuleMode};

        let first = mock!(Client::get_metric_data)
            .match_requests(|input| {
                let ids: Vec<&str> = input
                    .metric_data_queries()
                    .iter()
                    .filter_map(|q| q.id())
                    .collect();
                let window = input
                    .end_time()
                    .zip(input.start_time())
                    .map(|(end, start)| end.secs() - start.secs());
                input.next_token().is_none()
                    && ids.len() == 8
                    && ids[0] == "cpu0"
                    && input.scan_by() == Some(&ScanBy::TimestampDescending)
                    && window == Some(3600)
            })
            .then_output(|| {
                GetMetricDataOutput::builder()
                    .metric_data_results(
                        MetricDataResult::builder()
                            .id("req0")
                            .timestamps(AwsTime::from_secs(1_700_000_060))
                            .values(7.0)
                            .build(),
                    )
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(Client::get_metric_data)
            .match_requests(|input| input.next_token() == Some("page-2"))
            .then_output(|| {
                GetMetricDataOutput::builder()
                    .metric_data_results(
                        MetricDataResult::builder()
                            .id("req0")
                            .timestamps(AwsTime::from_secs(1_700_000_000))
                            .values(3.0)
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_cloudwatch, RuleMode::Sequential, &[&first, &second]);
        let results = metric_data(
            &client,
            &Tuning::default(),
            queries(&services()),
            Duration::from_secs(3600),
            &kaapi_core::progress::Silent,
        )
        .await
        .expect("both pages");
        let series = series(&services(), &results);
        let requests: Vec<Option<f64>> = series[0].points.iter().map(|p| p.requests).collect();
        assert_eq!(requests, [Some(3.0), Some(7.0)]);
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    }

    #[test]
    fn results_fold_into_points_per_service_and_minute() {
        let t0 = AwsTime::from_secs(1_700_000_000);
        let t1 = AwsTime::from_secs(1_700_000_060);
        let result = |id: &str, values: &[(AwsTime, f64)]| {
            MetricDataResult::builder()
                .id(id)
                .set_timestamps(Some(values.iter().map(|(t, _)| *t).collect()))
                .set_values(Some(values.iter().map(|(_, v)| *v).collect()))
                .build()
        };
        // CloudWatch answers newest first.
        let results = [
            result("cpu0", &[(t1, 40.0), (t0, 20.0)]),
            result("req0", &[(t1, 120.0)]),
            result("pninetynine0", &[(t1, 0.25)]),
            result("mem1", &[(t0, 55.0)]),
            result("other", &[(t0, 1.0)]),
        ];
        let series = series(&services(), &results);
        assert_eq!(series.len(), 2);
        let web = &series[0];
        assert_eq!(web.service, "kaapi-service");
        assert_eq!(web.points.len(), 2);
        assert_eq!(web.points[0].cpu_percent, Some(20.0));
        assert_eq!(web.points[0].requests, None);
        assert_eq!(web.points[1].requests, Some(120.0));
        assert_eq!(web.points[1].p99_ms, Some(250.0));
        assert_eq!(web.points[1].at.timestamp(), 1_700_000_060);
        assert_eq!(series[1].points[0].memory_percent, Some(55.0));
    }

    #[test]
    fn traffic_sums_requests_over_services_and_skips_minutes_without_traffic() {
        let at = |secs| DateTime::from_timestamp(secs, 0).expect("time");
        let point = |secs, requests, p99| MetricPoint {
            at: at(secs),
            requests,
            errors_5xx: requests.map(|_| 1.0),
            p99_ms: p99,
            cpu_percent: Some(10.0),
            ..MetricPoint::default()
        };
        let traffic = combined(&[
            ServiceSeries {
                service: "web".to_owned(),
                points: vec![point(60, Some(100.0), Some(80.0)), point(120, None, None)],
            },
            ServiceSeries {
                service: "api".to_owned(),
                points: vec![point(60, Some(20.0), Some(300.0))],
            },
        ]);
        assert_eq!(traffic.period_secs, 60);
        assert_eq!(traffic.samples.len(), 1, "{traffic:?}");
        let sample = &traffic.samples[0];
        assert_eq!((sample.requests, sample.errors), (120, 2));
        assert_eq!(sample.p99_ms, Some(300.0));
    }
}
