//! Polling intervals: start fast so a finished rollout is noticed within about a second, grow
//! exponentially to a cap so a long one costs few calls, with jitter so parallel deploys do not
//! poll in lockstep.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { next: initial, max }
    }

    /// The next delay (±20 % jitter), and grows the base by half for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next.mul_f64(1.5)).min(self.max);
        let factor = rand::rng().random_range(0.8..1.2);
        base.mul_f64(factor).min(self.max)
    }

    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_bounded_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay()).collect();
        assert!(
            delays[0] >= Duration::from_millis(800) && delays[0] <= Duration::from_millis(1200)
        );
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)));
        // After enough steps the base sits at the cap, so every delay is within the jitter band.
        assert!(delays[11] >= Duration::from_secs(8), "{delays:?}");
        let total: Duration = delays.iter().sum();
        assert!(total < Duration::from_secs(100), "{total:?}");
    }
}
