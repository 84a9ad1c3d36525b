//! Median and spread of a handful of samples.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

/// `None` for no samples. The median of an even count is the mean of the middle two.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    };
    Some(Summary {
        median,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        count: sorted.len(),
    })
}

impl Summary {
    /// `1.23 (1.10–1.40)` with `decimals` places; just the value when all samples agree.
    pub fn render(&self, decimals: usize) -> String {
        let median = format!("{:.*}", decimals, self.median);
        let min = format!("{:.*}", decimals, self.min);
        let max = format!("{:.*}", decimals, self.max);
        if min == max {
            median
        } else {
            format!("{median} ({min}–{max})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_and_spread() {
        let s = summarize(&[3.0, 1.0, 2.0]).expect("samples");
        assert_eq!((s.median, s.min, s.max, s.count), (2.0, 1.0, 3.0, 3));
        let s = summarize(&[4.0, 1.0, 2.0, 3.0]).expect("samples");
        assert_eq!(s.median, 2.5);
        assert_eq!(s.render(1), "2.5 (1.0–4.0)");
        assert_eq!(
            summarize(&[0.0, 0.0]).map(|s| s.render(0)),
            Some("0".to_owned())
        );
        assert!(summarize(&[]).is_none());
        assert!(summarize(&[f64::NAN]).is_none());
    }
}
