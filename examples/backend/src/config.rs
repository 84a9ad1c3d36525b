//! Configuration, read once from environment variables.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Which deliberately broken release this binary pretends to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Break {
    None,
    /// The server runs but health always answers 503.
    Health,
    /// `migrate` fails and rolls back.
    Migration,
    /// `serve` exits 1 at start.
    Crash,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Break::None => "",
            Break::Health => "health",
            Break::Migration => "migration",
            Break::Crash => "crash",
        })
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub app_version: String,
    pub release: String,
    pub replica: String,
    pub bind_host: IpAddr,
    pub port: u16,
    pub database_path: PathBuf,
    /// `NNNN_*.sql` files to use instead of the embedded migrations.
    pub migrations_dir: Option<PathBuf>,
    pub worker_interval: Duration,
    pub shutdown_grace: Duration,
    /// How long `serve` waits before it listens (unset: it listens at once).
    pub startup_delay: Option<Duration>,
    pub break_mode: Break,
}

impl Config {
    pub fn from_env() -> Result<Config, String> {
        Ok(Config {
            app_version: text("APP_VERSION"),
            release: text("KAAPI_RELEASE"),
            // Docker sets HOSTNAME to the container id, which tells replicas apart.
            replica: text("HOSTNAME"),
            bind_host: parsed("BIND_HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: parsed("PORT", 8000)?,
            database_path: var("DATABASE_PATH")
                .map_or_else(|| PathBuf::from("/data/app.db"), PathBuf::from),
            migrations_dir: var("MIGRATIONS_DIR").map(PathBuf::from),
            worker_interval: seconds("WORKER_INTERVAL_SECS", 2.0)?,
            shutdown_grace: seconds("SHUTDOWN_GRACE_SECS", 5.0)?,
            startup_delay: match var("STARTUP_DELAY_SECS") {
                Some(_) => Some(seconds("STARTUP_DELAY_SECS", 0.0)?),
                None => None,
            },
            break_mode: break_mode(),
        })
    }
}

/// A non-empty environment variable; empty counts as unset, as Docker
/// `ENV X=$ARG` yields an empty value when the build arg is not given.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn text(name: &str) -> String {
    var(name).unwrap_or_else(|| "unknown".to_owned())
}

fn parsed<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not valid")),
    }
}

fn seconds(name: &str, default: f64) -> Result<Duration, String> {
    let secs: f64 = parsed(name, default)?;
    // Bounded so that `Instant + Duration` arithmetic can never overflow.
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!(
            "{name}={secs} must be a number of seconds in (0, 86400]"
        ))
    }
}

fn break_mode() -> Break {
    match var("BREAK").as_deref().map(str::trim) {
        Some("health") => Break::Health,
        Some("migration") => Break::Migration,
        Some("crash") => Break::Crash,
        None => Break::None,
        Some(other) => {
            eprintln!("warning: ignoring unknown BREAK={other:?}; running normally");
            Break::None
        }
    }
}
