//! Example backend for kaapi-deploy.
//!
//! From the outside it behaves like a Kaapi (FastAPI) backend: a health
//! route that depends on the database schema, a `migrate` one-off task, a
//! `worker` process and a few deliberately broken modes (`BREAK=...`) so the
//! deploy tool can be tested against failing releases.

mod config;
mod db;
mod http;
mod signals;

use std::process::ExitCode;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Instant;

use config::{Break, Config};

const USAGE: &str = "usage: kaapi-example-backend [serve | migrate | worker | exit N]

  serve      HTTP server on $BIND_HOST:$PORT (default 0.0.0.0:8000), listening
             after $STARTUP_DELAY_SECS seconds when set (a slow-starting app)
  migrate    apply the migrations (embedded, or $MIGRATIONS_DIR/*.sql) to $DATABASE_PATH
  migrate current       print the database's schema version (e.g. 0002)
  migrate down VERSION  undo the migrations after VERSION (their `-- down` sections)
  worker     print a heartbeat every $WORKER_INTERVAL_SECS seconds
  exit N     print \"exiting with N\" and exit with code N";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // `exit N` needs no configuration, so a bad environment cannot break it.
    if let ["exit", code] = args.as_slice() {
        return exit_with(code);
    }

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };

    match args.as_slice() {
        [] | ["serve"] => http::serve(&config),
        ["migrate"] => migrate(&config),
        ["migrate", "current"] => migrate_current(&config),
        ["migrate", "down", version] => migrate_down(&config, version),
        ["worker"] => worker(&config),
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("error: unexpected arguments {args:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn exit_with(code: &str) -> ExitCode {
    match code.parse::<u8>() {
        Ok(code) => {
            println!("exiting with {code}");
            ExitCode::from(code)
        }
        Err(_) => {
            eprintln!("error: exit code must be an integer from 0 to 255, got {code:?}");
            ExitCode::from(2)
        }
    }
}

fn migrate(config: &Config) -> ExitCode {
    println!(
        "kaapi-example-backend {} migrating {}",
        config.app_version,
        config.database_path.display()
    );
    let result = db::migrations(config.break_mode, config.migrations_dir.as_deref())
        .and_then(|all| db::migrate(&config.database_path, &all));
    match result {
        Ok(version) => {
            println!("database is at version {version}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints only the version, last, so deploy tools can read it from the output.
fn migrate_current(config: &Config) -> ExitCode {
    match db::current(&config.database_path) {
        Ok(version) => {
            println!("{}", db::format_version(version));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn migrate_down(config: &Config, version: &str) -> ExitCode {
    let result = db::parse_version(version).and_then(|target| {
        let all = db::migrations(config.break_mode, config.migrations_dir.as_deref())?;
        db::down(&config.database_path, &all, target).map(|from| (from, target))
    });
    match result {
        Ok((from, to)) => {
            println!(
                "database migrated down from version {} to {}",
                db::format_version(from),
                db::format_version(to)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn worker(config: &Config) -> ExitCode {
    let signals = match signals::channel() {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let interval = config.worker_interval;
    println!(
        "kaapi-example-backend {} worker started, heartbeat every {:?}",
        config.app_version, interval
    );
    if config.break_mode != Break::None {
        println!(
            "note: BREAK={} has no effect on the worker",
            config.break_mode
        );
    }

    // Ticks are scheduled from a deadline so the period does not drift with
    // the time spent printing.
    let mut next = Instant::now() + interval;
    let mut beats: u64 = 0;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        match signals.recv_timeout(wait) {
            Ok(signal) => {
                println!("worker received {signal}, exiting after {beats} heartbeats");
                return ExitCode::SUCCESS;
            }
            Err(RecvTimeoutError::Timeout) => {
                beats += 1;
                println!("heartbeat {beats}");
                next += interval;
                // After a suspension, skip missed beats instead of bursting.
                let now = Instant::now();
                if next < now {
                    next = now + interval;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                eprintln!("error: signal thread stopped");
                return ExitCode::FAILURE;
            }
        }
    }
}
