//! BuildKit status messages as progress lines, in the shape of `docker build --progress=plain`
//! (`#N step`, `#N log line`, `#N DONE`), and the failing step with its last log lines.

use std::collections::{HashMap, VecDeque};

use bollard::moby::buildkit::v1::StatusResponse;
use kaapi_core::progress::Progress;

/// Log lines kept per step for the error message of a failed build.
const TAIL: usize = 15;

/// The step a failed build stopped at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedStep {
    pub name: String,
    pub error: String,
    pub last_lines: Vec<String>,
}

#[derive(Default)]
struct Step {
    number: usize,
    name: String,
    started: bool,
    completed: bool,
    error: String,
    tail: VecDeque<String>,
    /// A log chunk may end mid-line; the rest arrives in the next message.
    partial: String,
}

pub struct StepTracker<'a> {
    progress: &'a dyn Progress,
    steps: HashMap<String, Step>,
    failed: Option<String>,
}

impl<'a> StepTracker<'a> {
    pub fn new(progress: &'a dyn Progress) -> Self {
        Self {
            progress,
            steps: HashMap::new(),
            failed: None,
        }
    }

    pub fn update(&mut self, status: &StatusResponse) {
        let mut out = Vec::new();
        for vertex in &status.vertexes {
            let step = self.step(&vertex.digest);
            if !vertex.name.is_empty() {
                step.name.clone_from(&vertex.name);
            }
            let number = step.number;
            if vertex.cached && !step.completed {
                step.completed = true;
                out.push(format!("#{number} CACHED {}", step.name));
                continue;
            }
            if vertex.started.is_some() && !step.started {
                step.started = true;
                out.push(format!("#{number} {}", step.name));
            }
            if vertex.completed.is_some() && !step.completed {
                step.completed = true;
                if vertex.error.is_empty() {
                    out.push(format!("#{number} DONE"));
                } else {
                    step.error.clone_from(&vertex.error);
                    out.push(format!("#{number} ERROR: {}", vertex.error));
                    self.failed.get_or_insert_with(|| vertex.digest.clone());
                }
            }
        }
        for log in &status.logs {
            let step = self.step(&log.vertex);
            step.partial.push_str(&String::from_utf8_lossy(&log.msg));
            let Some(end) = step.partial.rfind('\n') else {
                continue;
            };
            let complete: String = step.partial.drain(..=end).collect();
            for line in complete.lines().filter(|l| !l.trim().is_empty()) {
                if step.tail.len() == TAIL {
                    step.tail.pop_front();
                }
                step.tail.push_back(line.to_owned());
                out.push(format!("#{} {line}", step.number));
            }
        }
        for line in out {
            self.progress.output("build", &line);
        }
    }

    /// The first step that failed, with its last log lines (and a trailing partial line).
    pub fn failure(&self) -> Option<FailedStep> {
        let step = self.steps.get(self.failed.as_ref()?)?;
        let mut last_lines: Vec<String> = step.tail.iter().cloned().collect();
        if !step.partial.trim().is_empty() {
            last_lines.push(step.partial.trim_end().to_owned());
        }
        Some(FailedStep {
            name: step.name.clone(),
            error: step.error.clone(),
            last_lines,
        })
    }

    /// The step of `digest`, numbered in the order steps are first seen.
    fn step(&mut self, digest: &str) -> &mut Step {
        let next = self.steps.len() + 1;
        let step = self.steps.entry(digest.to_owned()).or_default();
        if step.number == 0 {
            step.number = next;
        }
        step
    }
}

impl FailedStep {
    /// "step `NAME` failed: ERROR" and the step's last log lines, one per line.
    pub fn describe(&self) -> String {
        let mut text = format!("step `{}` failed: {}", self.name, self.error);
        if !self.last_lines.is_empty() {
            text.push_str("\nlast log lines:");
            for line in &self.last_lines {
                text.push_str("\n  ");
                text.push_str(line);
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use bollard::moby::buildkit::v1::{Vertex, VertexLog};
    use kaapi_core::progress::Event;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl Progress for Lines {
        fn event(&self, event: kaapi_core::progress::Event) {
            if let Event::Output { line, .. } = event {
                self.0.lock().expect("lines").push(line);
            }
        }
    }

    fn vertex(digest: &str, name: &str, started: bool, completed: bool, error: &str) -> Vertex {
        let at = Some(Default::default());
        Vertex {
            digest: digest.to_owned(),
            name: name.to_owned(),
            started: if started { at } else { None },
            completed: if completed { at } else { None },
            error: error.to_owned(),
            ..Default::default()
        }
    }

    fn log(digest: &str, text: &str) -> VertexLog {
        VertexLog {
            vertex: digest.to_owned(),
            msg: text.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn steps_are_shown_once_as_they_start_and_complete_and_the_failure_keeps_its_log() {
        let lines = Lines::default();
        let mut tracker = StepTracker::new(&lines);
        tracker.update(&StatusResponse {
            vertexes: vec![
                vertex("a", "[base 1/1] COPY app /", true, true, ""),
                vertex("b", "[stage-1 2/2] RUN make", true, false, ""),
            ],
            ..Default::default()
        });
        tracker.update(&StatusResponse {
            vertexes: vec![vertex("b", "[stage-1 2/2] RUN make", true, false, "")],
            logs: vec![log("b", "compiling\nlinking fa"), log("b", "iled\n")],
            ..Default::default()
        });
        assert!(tracker.failure().is_none());
        tracker.update(&StatusResponse {
            vertexes: vec![vertex(
                "b",
                "[stage-1 2/2] RUN make",
                true,
                true,
                "exit code: 2",
            )],
            ..Default::default()
        });
        let shown = lines.0.lock().expect("lines").clone();
        assert_eq!(
            shown,
            vec![
                "#1 [base 1/1] COPY app /",
                "#1 DONE",
                "#2 [stage-1 2/2] RUN make",
                "#2 compiling",
                "#2 linking failed",
                "#2 ERROR: exit code: 2",
            ]
        );
        let failed = tracker.failure().expect("a step failed");
        assert_eq!(failed.name, "[stage-1 2/2] RUN make");
        assert_eq!(failed.last_lines, vec!["compiling", "linking failed"]);
        let text = failed.describe();
        assert!(
            text.starts_with("step `[stage-1 2/2] RUN make` failed: exit code: 2")
                && text.ends_with("  compiling\n  linking failed"),
            "{text}"
        );
    }

    #[test]
    fn cached_steps_say_so_and_only_the_last_lines_are_kept() {
        let lines = Lines::default();
        let mut tracker = StepTracker::new(&lines);
        let mut status = StatusResponse {
            vertexes: vec![
                Vertex {
                    cached: true,
                    ..vertex("c", "[1/2] RUN apt-get update", true, true, "")
                },
                vertex("d", "[2/2] RUN ./test.sh", true, true, "exit code: 1"),
            ],
            ..Default::default()
        };
        status.logs = (0..40).map(|n| log("d", &format!("line {n}\n"))).collect();
        tracker.update(&status);
        assert_eq!(
            lines.0.lock().expect("lines")[0],
            "#1 CACHED [1/2] RUN apt-get update"
        );
        let failed = tracker.failure().expect("failed");
        assert_eq!(failed.last_lines.len(), TAIL);
        assert_eq!(
            failed.last_lines.last().map(String::as_str),
            Some("line 39")
        );
    }
}
