//! Rendering for people: colours unless `NO_COLOR` or not a terminal, progress lines on stderr,
//! reports as tables or JSON on stdout.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

use kaapi_core::progress::{Event, Progress};
use serde::Serialize;

use crate::exit::{CliError, CliResult};

/// Whether to colour stderr: a terminal, and `NO_COLOR` unset (https://no-color.org).
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

pub fn paint(text: &str, code: &str) -> String {
    if color_enabled() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

pub fn green(text: &str) -> String {
    paint(text, "32")
}
pub fn red(text: &str) -> String {
    paint(text, "31")
}
pub fn yellow(text: &str) -> String {
    paint(text, "33")
}
pub fn bold(text: &str) -> String {
    paint(text, "1")
}

pub fn print_json<T: Serialize>(value: &T) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Failed(format!("cannot render JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Prints progress events as lines on stderr, so stdout stays clean for `--json`.
pub struct ProgressPrinter {
    started: Instant,
    lock: Mutex<()>,
}

impl ProgressPrinter {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            lock: Mutex::new(()),
        }
    }
}

impl Default for ProgressPrinter {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for ProgressPrinter {
    fn event(&self, event: Event) {
        let _guard = self.lock.lock();
        let at = format!("[{:>6.1}s]", self.started.elapsed().as_secs_f64());
        let line = match event {
            Event::PhaseStarted { phase } => format!("{at} {} {}", bold("==>"), phase.as_str()),
            Event::PhaseFinished { phase, elapsed, ok } => {
                let mark = if ok { green("ok") } else { red("failed") };
                format!(
                    "{at}     {} {mark} in {:.1}s",
                    phase.as_str(),
                    elapsed.as_secs_f64()
                )
            }
            Event::Info { message } => format!("{at}     {message}"),
            Event::Warning { message } => format!("{at}     {} {message}", yellow("warning:")),
            Event::Output { source, line } => format!("{at}     {source} | {line}"),
        };
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{line}");
    }
}

/// Left-aligned columns, for tables on stdout.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let render = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![render(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| render(r.clone())));
    out.join("\n")
}

/// Prints why each failed replica or task failed, with its last lines and a hint, on stderr.
pub fn print_diagnoses(diagnoses: &[kaapi_core::diagnosis::Diagnosis]) {
    if diagnoses.is_empty() {
        return;
    }
    eprintln!("\n{}", bold("why it failed:"));
    for diagnosis in diagnoses {
        eprint!("{}", diagnosis.render());
    }
}
