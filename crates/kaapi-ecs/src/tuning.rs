//! Timings of the engine. Defaults suit AWS; tests shrink them.

use std::time::Duration;

use crate::pacing::Pace;

#[derive(Debug, Clone)]
pub struct Tuning {
    /// How rollouts pace their polls (see [`Pace`]).
    pub pace: Pace,
    /// How long a load balancer drains old targets (env `deregistration_delay`).
    pub deregistration_delay: Duration,
    /// First poll interval of one-off tasks and throttled calls.
    pub poll_initial: Duration,
    /// Poll interval cap.
    pub poll_max: Duration,
    /// How long a rollout may take before we roll back ourselves (env `rollout_timeout`).
    pub rollout_timeout: Duration,
    /// How long migrations may run (config `migrations.timeout`).
    pub task_timeout: Duration,
    /// Attempts of one call that AWS keeps throttling.
    pub throttle_attempts: u32,
    /// Health-check attempts of `verify`, and the pause between them.
    pub verify_attempts: u32,
    pub verify_interval: Duration,
    /// How long a deploy lock lives without renewal (its owner vanished without releasing it).
    pub lock_ttl: Duration,
    /// How often the holder renews its lock; well under `lock_ttl`, so that a passing failure
    /// leaves time for another try.
    pub lock_renew: Duration,
    /// Pause between `logs --follow` polls.
    pub follow_interval: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            pace: Pace::default(),
            // AWS's default deregistration delay of a target group.
            deregistration_delay: Duration::from_secs(300),
            poll_initial: Duration::from_secs(1),
            poll_max: Duration::from_secs(10),
            rollout_timeout: Duration::from_secs(15 * 60),
            task_timeout: Duration::from_secs(30 * 60),
            throttle_attempts: 8,
            verify_attempts: 5,
            verify_interval: Duration::from_secs(3),
            lock_ttl: Duration::from_secs(10 * 60),
            lock_renew: Duration::from_secs(2 * 60),
            follow_interval: Duration::from_secs(2),
        }
    }
}
