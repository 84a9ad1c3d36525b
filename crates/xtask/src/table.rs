//! The one results table: rows in the order they were first measured, each a set of samples
//! (one per run) rendered as median (min–max), with a note saying how it was measured.

use crate::stats::summarize;

#[derive(Debug, Clone)]
struct Row {
    label: String,
    unit: &'static str,
    decimals: usize,
    samples: Vec<f64>,
    note: String,
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// Adds one sample to the row `label` (created on first use with `unit` and `decimals`).
    pub fn add(&mut self, label: &str, unit: &'static str, decimals: usize, value: f64) {
        self.row(label, unit, decimals).samples.push(value);
    }

    /// Sets the row's note (how it was measured, or what went wrong).
    pub fn note(&mut self, label: &str, unit: &'static str, decimals: usize, note: &str) {
        self.row(label, unit, decimals).note = note.to_owned();
    }

    fn row(&mut self, label: &str, unit: &'static str, decimals: usize) -> &mut Row {
        let index = match self.rows.iter().position(|r| r.label == label) {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    label: label.to_owned(),
                    unit,
                    decimals,
                    samples: Vec::new(),
                    note: String::new(),
                });
                self.rows.len() - 1
            }
        };
        &mut self.rows[index]
    }

    pub fn note_of(&self, label: &str) -> String {
        self.rows
            .iter()
            .find(|r| r.label == label)
            .map(|r| r.note.clone())
            .unwrap_or_default()
    }

    pub fn samples(&self, label: &str) -> &[f64] {
        self.rows
            .iter()
            .find(|r| r.label == label)
            .map(|r| r.samples.as_slice())
            .unwrap_or(&[])
    }

    /// A markdown table: measure, median (min–max), runs, how it was measured.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from(
            "| Measure | Median (min–max) | Runs | How / notes |\n|---|---:|---:|---|\n",
        );
        for row in &self.rows {
            let value = match summarize(&row.samples) {
                Some(s) => {
                    let unit = if row.unit.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", row.unit)
                    };
                    format!("{}{unit}", s.render(row.decimals))
                }
                None => "—".to_owned(),
            };
            let note = row.note.replace('|', "\\|").replace('\n', " ");
            out.push_str(&format!(
                "| {} | {value} | {} | {note} |\n",
                row.label,
                row.samples.len()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_first_seen_order_and_render_median_and_spread() {
        let mut t = Table::default();
        t.add("deploy total", "s", 1, 3.0);
        t.add("failed", "", 0, 0.0);
        t.add("deploy total", "s", 1, 1.0);
        t.add("deploy total", "s", 1, 2.0);
        t.note("failed", "", 0, "a|b");
        t.note("missing", "s", 1, "not measured");
        let md = t.to_markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[2], "| deploy total | 2.0 (1.0–3.0) s | 3 |  |");
        assert_eq!(lines[3], "| failed | 0 | 1 | a\\|b |");
        assert_eq!(lines[4], "| missing | — | 0 | not measured |");
        assert_eq!(t.samples("deploy total"), &[3.0, 1.0, 2.0]);
    }
}
