//! What the agent measures: requests through each environment's ingress (per release and status
//! class, with a latency histogram), replica restarts and rollout durations. Counting is lock-free
//! atomics on the request path; a sampler keeps a short per-second series for the dashboard.
//!
//! Exposed as `GET /metrics` (Prometheus text format 0.0.4, see [`render`]) and
//! `GET /v1/environments/{env}/metrics` ([`crate::api::MetricsSeries`]).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use serde::{Deserialize, Serialize};

use super::api::{MetricsSample, MetricsSeries};
use super::runtime::{lock, Agent};

/// Upper bounds (seconds) of the request latency buckets; `+Inf` follows.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds (seconds) of the rollout duration buckets; `+Inf` follows.
const ROLLOUT_BUCKETS: [f64; 8] = [1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
/// How often the series takes a sample, and how many it keeps (10 minutes).
pub const SAMPLE_PERIOD: Duration = Duration::from_secs(1);
const SAMPLES_KEPT: usize = 600;

/// How the ingress answered one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Success,
    Redirect,
    ClientError,
    ServerError,
    /// The ingress answered itself: no serving replica, upstream failure or timeout.
    IngressError,
}

impl StatusClass {
    const ALL: [StatusClass; 5] = [
        StatusClass::Success,
        StatusClass::Redirect,
        StatusClass::ClientError,
        StatusClass::ServerError,
        StatusClass::IngressError,
    ];

    pub fn of(status: u16) -> Self {
        match status {
            0..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirect,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }

    fn label(self) -> &'static str {
        match self {
            StatusClass::Success => "2xx",
            StatusClass::Redirect => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::IngressError => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A fixed-bucket histogram of atomics (non-cumulative counts; the last bucket is `+Inf`).
struct Histogram<const N: usize> {
    bounds: &'static [f64],
    counts: [AtomicU64; N],
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: &'static [f64]) -> Self {
        debug_assert_eq!(bounds.len() + 1, N);
        Histogram {
            bounds,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let index = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn counts(&self) -> [u64; N] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

/// What the ingress counted for one release.
pub struct ReleaseStats {
    by_class: [AtomicU64; 5],
    latency: Histogram<13>,
}

impl Default for ReleaseStats {
    fn default() -> Self {
        ReleaseStats {
            by_class: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: Histogram::new(&LATENCY_BUCKETS),
        }
    }
}

impl ReleaseStats {
    pub fn observe(&self, class: StatusClass, elapsed: Duration) {
        self.by_class[class.index()].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(elapsed);
    }

    /// Its cumulative counts, as the ingress reports them to the agent.
    pub fn raw(&self) -> RawCounts {
        RawCounts {
            by_class: std::array::from_fn(|i| self.by_class[i].load(Ordering::Relaxed)),
            buckets: self.latency.counts(),
            sum_micros: self.latency.sum_micros.load(Ordering::Relaxed),
        }
    }

    fn add(&self, delta: &RawCounts) {
        for (counter, value) in self.by_class.iter().zip(delta.by_class) {
            counter.fetch_add(value, Ordering::Relaxed);
        }
        for (counter, value) in self.latency.counts.iter().zip(delta.buckets) {
            counter.fetch_add(value, Ordering::Relaxed);
        }
        self.latency
            .sum_micros
            .fetch_add(delta.sum_micros, Ordering::Relaxed);
    }
}

/// One release's cumulative request counters, as read from the ingress process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawCounts {
    pub by_class: [u64; 5],
    pub buckets: [u64; 13],
    pub sum_micros: u64,
}

impl RawCounts {
    fn requests(&self) -> u64 {
        self.by_class.iter().sum()
    }

    /// What happened since `earlier`; everything when the counts dropped (the ingress
    /// restarted and counts again from zero: a new base).
    fn since(&self, earlier: &RawCounts) -> RawCounts {
        if self.requests() < earlier.requests() || self.sum_micros < earlier.sum_micros {
            return *self;
        }
        RawCounts {
            by_class: std::array::from_fn(|i| self.by_class[i].saturating_sub(earlier.by_class[i])),
            buckets: std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i])),
            sum_micros: self.sum_micros - earlier.sum_micros,
        }
    }
}

/// Everything measured for one environment; lives as long as the agent manages it.
pub struct Metrics {
    /// Written only when a release first serves; the request path holds its `Arc` directly.
    releases: RwLock<BTreeMap<u64, Arc<ReleaseStats>>>,
    /// Requests answered while no release served.
    unrouted: Arc<ReleaseStats>,
    restarts: Mutex<BTreeMap<String, u64>>,
    rollouts: Mutex<BTreeMap<&'static str, u64>>,
    rollout_durations: Histogram<9>,
    series: Mutex<Series>,
    /// The ingress' cumulative counts last added, by listener port and release.
    absorbed: Mutex<BTreeMap<(u16, Option<u64>), RawCounts>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            releases: RwLock::new(BTreeMap::new()),
            unrouted: Arc::default(),
            restarts: Mutex::new(BTreeMap::new()),
            rollouts: Mutex::new(BTreeMap::new()),
            rollout_durations: Histogram::new(&ROLLOUT_BUCKETS),
            series: Mutex::new(Series::default()),
            absorbed: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// The counters of `release`, created on first use.
    pub fn release(&self, release: u64) -> Arc<ReleaseStats> {
        if let Some(stats) = self
            .releases
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&release)
        {
            return Arc::clone(stats);
        }
        let mut releases = self
            .releases
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(releases.entry(release).or_default())
    }

    pub fn unrouted(&self) -> &ReleaseStats {
        &self.unrouted
    }

    /// Every release's cumulative counts (`None`: answered while no release served).
    pub fn raw_counts(&self) -> Vec<(Option<u64>, RawCounts)> {
        let releases = self.releases.read().unwrap_or_else(PoisonError::into_inner);
        releases
            .iter()
            .map(|(release, stats)| (Some(*release), stats.raw()))
            .chain(std::iter::once((None, self.unrouted.raw())))
            .collect()
    }

    /// Adds what the ingress listener on `port` counted since the last call.
    pub fn absorb(&self, port: u16, counts: &[(Option<u64>, RawCounts)]) {
        let mut absorbed = lock(&self.absorbed);
        for (release, now) in counts {
            let before = absorbed.insert((port, *release), *now).unwrap_or_default();
            let delta = now.since(&before);
            match release {
                Some(release) => self.release(*release).add(&delta),
                None => self.unrouted.add(&delta),
            }
        }
    }

    pub fn replica_restarted(&self, service: &str) {
        *lock(&self.restarts).entry(service.to_owned()).or_default() += 1;
    }

    pub fn rollout_ended(&self, succeeded: bool, elapsed: Duration) {
        let outcome = if succeeded { "completed" } else { "failed" };
        *lock(&self.rollouts).entry(outcome).or_default() += 1;
        self.rollout_durations.observe(elapsed);
    }

    /// The per-second series kept so far.
    pub fn series(&self, environment: &str) -> MetricsSeries {
        let series = lock(&self.series);
        MetricsSeries {
            environment: environment.to_owned(),
            period_ms: u64::try_from(SAMPLE_PERIOD.as_millis()).unwrap_or(u64::MAX),
            samples: series.samples.iter().cloned().collect(),
        }
    }

    /// Adds one sample: requests, errors and latency quantiles since the previous sample.
    pub fn sample(&self, serving: Option<u64>) {
        let totals = self.totals();
        let mut series = lock(&self.series);
        let previous = series.last.replace(totals);
        let Some(previous) = previous else {
            return;
        };
        let delta = totals.since(&previous);
        series.samples.push_back(MetricsSample {
            at: Utc::now(),
            release: serving,
            requests: delta.requests(),
            errors: delta.by_class[StatusClass::ServerError.index()]
                + delta.by_class[StatusClass::IngressError.index()],
            p50_ms: quantile(&delta.buckets, 0.5).map(|s| s * 1000.0),
            p99_ms: quantile(&delta.buckets, 0.99).map(|s| s * 1000.0),
        });
        while series.samples.len() > SAMPLES_KEPT {
            series.samples.pop_front();
        }
    }

    fn all_stats(&self) -> Vec<Arc<ReleaseStats>> {
        let releases = self.releases.read().unwrap_or_else(PoisonError::into_inner);
        releases
            .values()
            .cloned()
            .chain(std::iter::once(Arc::clone(&self.unrouted)))
            .collect()
    }

    fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for stats in self.all_stats() {
            for class in StatusClass::ALL {
                totals.by_class[class.index()] +=
                    stats.by_class[class.index()].load(Ordering::Relaxed);
            }
            for (total, count) in totals.buckets.iter_mut().zip(stats.latency.counts()) {
                *total += count;
            }
        }
        totals
    }
}

#[derive(Default)]
struct Series {
    last: Option<Totals>,
    samples: VecDeque<MetricsSample>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    by_class: [u64; 5],
    buckets: [u64; 13],
}

impl Totals {
    fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            by_class: std::array::from_fn(|i| self.by_class[i].saturating_sub(earlier.by_class[i])),
            buckets: std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i])),
        }
    }

    fn requests(&self) -> u64 {
        self.by_class.iter().sum()
    }
}

/// The `q` quantile (seconds) of non-cumulative bucket counts, interpolating linearly within
/// the bucket as Prometheus' `histogram_quantile` does; `None` without observations.
fn quantile(buckets: &[u64; 13], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (index, count) in buckets.iter().enumerate() {
        let before = seen;
        seen += count;
        if (seen as f64) >= rank && *count > 0 {
            let Some(upper) = LATENCY_BUCKETS.get(index) else {
                // In `+Inf`: the highest finite bound is all that is known.
                return LATENCY_BUCKETS.last().copied();
            };
            let lower = if index == 0 {
                0.0
            } else {
                LATENCY_BUCKETS[index - 1]
            };
            let within = (rank - before as f64) / *count as f64;
            return Some(lower + (upper - lower) * within);
        }
    }
    LATENCY_BUCKETS.last().copied()
}

/// Samples every environment's series once per [`SAMPLE_PERIOD`] until shutdown.
pub async fn run_sampler(agent: Arc<Agent>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_PERIOD) => {}
            _ = shutdown.changed() => return,
        }
        refresh(&agent).await;
        for environment in agent.environments() {
            let serving = environment
                .current
                .lock()
                .await
                .spec
                .as_ref()
                .map(|s| s.release);
            environment.metrics.sample(serving);
        }
    }
}

/// Adds what the ingress process counted since the last refresh to each environment's metrics.
/// Serialized: two overlapping reads would otherwise look like a counter drop (a new base).
pub async fn refresh(agent: &Agent) {
    static REFRESH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = REFRESH.lock().await;
    let environments = agent.environments();
    let ports: Vec<(Arc<super::runtime::Environment>, Vec<u16>)> = environments
        .into_iter()
        .map(|environment| {
            let ports = environment.ingress_ports();
            (environment, ports)
        })
        .filter(|(_, ports)| !ports.is_empty())
        .collect();
    if ports.is_empty() {
        return;
    }
    // A missing answer (the ingress is being replaced) is caught up by the next refresh.
    let Ok(counters) = agent.ingress.counters().await else {
        return;
    };
    for (environment, ports) in ports {
        for port in ports {
            if let Some(counts) = counters.get(&port) {
                environment.metrics.absorb(port, counts);
            }
        }
    }
}

/// Every environment's metrics in the Prometheus text exposition format (version 0.0.4): one
/// `# HELP` and `# TYPE` line per family, then all of its samples.
pub fn render(environments: &[(String, Arc<Metrics>)]) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "kaapi_ingress_requests_total",
        "counter",
        "Requests the ingress answered, by release and status class (error: answered by the ingress itself).",
    );
    for (env, metrics) in environments {
        for (release, stats) in labelled_stats(metrics) {
            for class in StatusClass::ALL {
                let value = stats.by_class[class.index()].load(Ordering::Relaxed);
                line(
                    &mut out,
                    "kaapi_ingress_requests_total",
                    &[
                        ("environment", env.as_str()),
                        ("release", release.as_str()),
                        ("class", class.label()),
                    ],
                    value as f64,
                );
            }
        }
    }
    family(
        &mut out,
        "kaapi_ingress_request_duration_seconds",
        "histogram",
        "Time from a request's arrival at the ingress to its response headers.",
    );
    for (env, metrics) in environments {
        for (release, stats) in labelled_stats(metrics) {
            histogram(
                &mut out,
                "kaapi_ingress_request_duration_seconds",
                &[("environment", env.as_str()), ("release", release.as_str())],
                &stats.latency,
            );
        }
    }
    counts(
        &mut out,
        ("kaapi_replica_restarts_total", "service"),
        "Replicas replaced after they exited, vanished or failed their health check.",
        environments,
        |m| lock(&m.restarts).clone(),
    );
    counts(
        &mut out,
        ("kaapi_rollouts_total", "outcome"),
        "Rollouts the agent ran, by outcome.",
        environments,
        |m| {
            lock(&m.rollouts)
                .iter()
                .map(|(outcome, count)| ((*outcome).to_owned(), *count))
                .collect()
        },
    );
    family(
        &mut out,
        "kaapi_rollout_duration_seconds",
        "histogram",
        "How long rollouts took, from the request to serving (or failing).",
    );
    for (env, metrics) in environments {
        histogram(
            &mut out,
            "kaapi_rollout_duration_seconds",
            &[("environment", env.as_str())],
            &metrics.rollout_durations,
        );
    }
    out
}

/// A counter family with one label besides `environment`: `(name, label)`.
fn counts(
    out: &mut String,
    (name, label): (&str, &str),
    help: &str,
    environments: &[(String, Arc<Metrics>)],
    values: impl Fn(&Metrics) -> BTreeMap<String, u64>,
) {
    family(out, name, "counter", help);
    for (env, metrics) in environments {
        for (value, count) in values(metrics) {
            line(
                out,
                name,
                &[("environment", env.as_str()), (label, value.as_str())],
                count as f64,
            );
        }
    }
}

fn labelled_stats(metrics: &Metrics) -> Vec<(String, Arc<ReleaseStats>)> {
    let releases = metrics
        .releases
        .read()
        .unwrap_or_else(PoisonError::into_inner);
    releases
        .iter()
        .map(|(release, stats)| (release.to_string(), Arc::clone(stats)))
        .chain(std::iter::once((
            "none".to_owned(),
            Arc::clone(&metrics.unrouted),
        )))
        .collect()
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram<const N: usize>(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    histogram: &Histogram<N>,
) {
    let counts = histogram.counts();
    let mut cumulative = 0u64;
    for (index, count) in counts.iter().enumerate() {
        cumulative += count;
        let le = histogram
            .bounds
            .get(index)
            .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
        let mut with_le = labels.to_vec();
        with_le.push(("le", le.as_str()));
        line(out, &format!("{name}_bucket"), &with_le, cumulative as f64);
    }
    let sum = histogram.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
    line(out, &format!("{name}_sum"), labels, sum);
    line(out, &format!("{name}_count"), labels, cumulative as f64);
}

fn line(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
}

/// Label values escape `\`, `"` and newlines; HELP text escapes `\` and newlines.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strict reader of the text format: every sample belongs to the family declared by the
    /// `# TYPE` line before it, label sets are well formed, histogram buckets are cumulative
    /// and end at `+Inf` = `_count`. Returns `(name, labels, value)` per sample.
    fn parse(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
        let mut declared: BTreeMap<String, String> = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
                assert!(
                    declared.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "family {name} declared twice"
                );
                current = Some((name.to_owned(), kind.to_owned()));
                continue;
            }
            if line.starts_with("# HELP ") || line.is_empty() {
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment {line}");
            let (head, value) = line.rsplit_once(' ').expect("sample value");
            let value: f64 = value.parse().expect("numeric value");
            let (name, labels) = head.split_once('{').expect("labels");
            let labels = labels.strip_suffix('}').expect("closing brace");
            let mut parsed = BTreeMap::new();
            let mut rest = labels;
            while !rest.is_empty() {
                let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "label name {key}"
                );
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().expect("unterminated label value") {
                        (_, '\\') => match chars.next().expect("escape").1 {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        (i, '"') => break i,
                        (_, c) => value.push(c),
                    }
                };
                parsed.insert(key.to_owned(), value);
                rest = after[end + 1..].trim_start_matches(',');
            }
            let (family, kind) = current.as_ref().expect("sample before any TYPE");
            let allowed = if kind == "histogram" {
                [
                    format!("{family}_bucket"),
                    format!("{family}_sum"),
                    format!("{family}_count"),
                ]
                .contains(&name.to_owned())
            } else {
                name == family
            };
            assert!(allowed, "sample {name} outside its family {family}");
            samples.push((name.to_owned(), parsed, value));
        }
        samples
    }

    #[test]
    fn the_exposition_parses_and_its_histograms_are_cumulative() {
        let metrics = Arc::new(Metrics::default());
        let one = metrics.release(1);
        one.observe(StatusClass::Success, Duration::from_millis(3));
        one.observe(StatusClass::Success, Duration::from_millis(40));
        one.observe(StatusClass::ServerError, Duration::from_secs(20));
        metrics
            .release(2)
            .observe(StatusClass::Redirect, Duration::ZERO);
        metrics
            .unrouted()
            .observe(StatusClass::IngressError, Duration::ZERO);
        metrics.replica_restarted("web");
        metrics.rollout_ended(true, Duration::from_secs(7));
        let text = render(&[("a\"b".to_owned(), Arc::clone(&metrics))]);
        let samples = parse(&text);

        let value = |name: &str, want: &[(&str, &str)]| -> f64 {
            samples
                .iter()
                .find(|(n, labels, _)| {
                    n == name
                        && want
                            .iter()
                            .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
                })
                .map(|(_, _, v)| *v)
                .unwrap_or_else(|| panic!("no {name} {want:?} in\n{text}"))
        };
        let env = ("environment", "a\"b");
        assert_eq!(
            value(
                "kaapi_ingress_requests_total",
                &[env, ("release", "1"), ("class", "2xx")]
            ),
            2.0
        );
        assert_eq!(
            value(
                "kaapi_ingress_requests_total",
                &[env, ("release", "1"), ("class", "5xx")]
            ),
            1.0
        );
        assert_eq!(
            value(
                "kaapi_ingress_requests_total",
                &[env, ("release", "none"), ("class", "error")]
            ),
            1.0
        );
        let bucket = |le: &str| {
            value(
                "kaapi_ingress_request_duration_seconds_bucket",
                &[env, ("release", "1"), ("le", le)],
            )
        };
        assert_eq!(
            (bucket("0.005"), bucket("0.05"), bucket("10")),
            (1.0, 2.0, 2.0)
        );
        assert_eq!(bucket("+Inf"), 3.0);
        assert_eq!(
            value(
                "kaapi_ingress_request_duration_seconds_count",
                &[env, ("release", "1")]
            ),
            3.0
        );
        let sum = value(
            "kaapi_ingress_request_duration_seconds_sum",
            &[env, ("release", "1")],
        );
        assert!((sum - 20.043).abs() < 1e-9, "{sum}");
        assert_eq!(
            value("kaapi_replica_restarts_total", &[env, ("service", "web")]),
            1.0
        );
        assert_eq!(
            value("kaapi_rollouts_total", &[env, ("outcome", "completed")]),
            1.0
        );
        assert_eq!(
            value("kaapi_rollout_duration_seconds_bucket", &[env, ("le", "5")]),
            0.0
        );
        assert_eq!(
            value(
                "kaapi_rollout_duration_seconds_bucket",
                &[env, ("le", "10")]
            ),
            1.0
        );
    }

    #[test]
    fn samples_count_what_happened_since_the_previous_one_with_quantiles() {
        let metrics = Metrics::default();
        metrics.sample(Some(1));
        let stats = metrics.release(1);
        for _ in 0..98 {
            stats.observe(StatusClass::Success, Duration::from_millis(2));
        }
        stats.observe(StatusClass::ServerError, Duration::from_millis(700));
        metrics
            .unrouted()
            .observe(StatusClass::IngressError, Duration::from_millis(700));
        metrics.sample(Some(1));
        metrics.sample(Some(2));
        let series = metrics.series("local");
        assert_eq!(
            series.samples.len(),
            2,
            "the first call only sets the baseline"
        );
        let busy = &series.samples[0];
        assert_eq!(
            (busy.requests, busy.errors, busy.release),
            (100, 2, Some(1))
        );
        let p50 = busy.p50_ms.expect("p50");
        let p99 = busy.p99_ms.expect("p99");
        assert!((1.0..=5.0).contains(&p50), "p50 {p50}");
        assert!((500.0..=1000.0).contains(&p99), "p99 {p99}");
        let idle = &series.samples[1];
        assert_eq!(
            (idle.requests, idle.p50_ms, idle.release),
            (0, None, Some(2))
        );
    }

    #[test]
    fn ingress_counts_are_added_once_and_a_drop_starts_a_new_base() {
        let ingress = Metrics::default();
        let one = ingress.release(1);
        one.observe(StatusClass::Success, Duration::from_millis(1));
        one.observe(StatusClass::Success, Duration::from_millis(1));
        let agent = Metrics::default();
        agent.absorb(8080, &ingress.raw_counts());
        agent.absorb(8080, &ingress.raw_counts());
        let requests = |m: &Metrics| m.release(1).raw().requests();
        assert_eq!(requests(&agent), 2, "read twice, counted once");
        one.observe(StatusClass::ServerError, Duration::from_millis(1));
        agent.absorb(8080, &ingress.raw_counts());
        assert_eq!(requests(&agent), 3);
        // The ingress restarted: its counts begin again from zero.
        let restarted = Metrics::default();
        restarted
            .release(1)
            .observe(StatusClass::Success, Duration::from_millis(1));
        agent.absorb(8080, &restarted.raw_counts());
        assert_eq!(requests(&agent), 4);
        // Another listener of the same environment counts on its own.
        agent.absorb(8081, &restarted.raw_counts());
        assert_eq!(requests(&agent), 5);
    }

    #[test]
    fn the_series_keeps_only_the_last_ten_minutes() {
        let metrics = Metrics::default();
        for _ in 0..SAMPLES_KEPT + 20 {
            metrics.sample(None);
        }
        assert_eq!(metrics.series("x").samples.len(), SAMPLES_KEPT);
    }
}
