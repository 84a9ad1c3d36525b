//! How long a rollout waits before its next `DescribeServices`, from what each deployment is
//! doing: slowly while nothing can complete soon (tasks starting, old targets draining), fast
//! once ECS can report `COMPLETED` at any moment. A pure function of what was observed and for
//! how long, so the rules are tested without a clock.

use std::time::Duration;

use aws_sdk_ecs::types::{Deployment, Service};
use rand::Rng;

/// What one service's rollout is doing, as one `DescribeServices` answer shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Our deployment does not run all its tasks yet (pulling, starting, being replaced).
    Starting,
    /// Ours runs every task and older deployments still run some: the new targets pass their
    /// health checks, then the old ones drain for the deregistration delay.
    Replacing,
    /// Ours runs every task and nothing else runs: `COMPLETED` can come at any moment.
    Finishing,
}

/// One service's rollout as the last poll saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub phase: Phase,
    /// How long the service has been in `phase` at most: since the poll before the one that
    /// first saw it (the phase began somewhere between the two).
    pub in_phase: Duration,
    /// How long ago ECS reported that it began draining the old tasks' connections, when it
    /// did during this rollout.
    pub draining_for: Option<Duration>,
    /// How long old targets drain: the target group's deregistration delay for a service
    /// behind a load balancer, zero otherwise.
    pub drain: Duration,
}

/// The pacing knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pace {
    /// While nothing can complete soon.
    pub slow: Duration,
    /// Once completion can come at any moment: bounds how late it is noticed.
    pub fast: Duration,
    /// Fast polling begins this long before the earliest possible completion (clock skew).
    pub margin: Duration,
    /// The longest single wait, so that a stalled rollout is still reported now and then.
    pub longest: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            slow: Duration::from_secs(10),
            fast: Duration::from_secs(4),
            margin: Duration::from_secs(2),
            longest: Duration::from_secs(60),
        }
    }
}

impl Pace {
    /// Every wait the same (tests on scripted responses).
    pub fn fixed(every: Duration) -> Self {
        Self {
            slow: every,
            fast: every,
            margin: Duration::ZERO,
            longest: every,
        }
    }

    /// The wait before the next poll for one service.
    pub fn next_delay(&self, observed: &Observed) -> Duration {
        let drain = observed.drain;
        match observed.phase {
            // Behind a load balancer, completion is at least a drain away: the tasks still
            // have to run, pass health checks and see the old targets drained.
            Phase::Starting if !drain.is_zero() => drain
                .saturating_sub(self.margin)
                .clamp(self.slow, self.longest.max(self.slow)),
            // Without one, tasks starting are reported at the slow pace; the old ones stop once
            // the new ones run, which the fast polls then follow.
            Phase::Starting => self.slow,
            Phase::Replacing if drain.is_zero() => self.fast,
            Phase::Replacing => {
                let remaining = self.earliest_completion(observed);
                if remaining > self.margin + self.fast {
                    (remaining - self.margin).min(self.longest)
                } else if observed.draining_for.is_some() {
                    self.fast
                } else {
                    // The drain should have begun by now, but ECS has not said so: the new
                    // targets are still in their health checks. Completion is a whole drain
                    // after ECS says so; looking again a little sooner than that is enough.
                    drain
                        .saturating_sub(self.margin + self.fast)
                        .clamp(self.slow, self.longest.max(self.slow))
                }
            }
            Phase::Finishing => self.fast,
        }
    }

    /// How soon, at the earliest, the service can complete.
    pub fn earliest_completion(&self, observed: &Observed) -> Duration {
        match observed.phase {
            Phase::Starting => observed.drain,
            // The drain began when ECS said so, else at the latest when this phase did.
            Phase::Replacing => observed
                .drain
                .saturating_sub(observed.draining_for.unwrap_or(observed.in_phase)),
            Phase::Finishing => Duration::ZERO,
        }
    }

    /// The wait before the next poll of several services, ±10 % jitter so that parallel
    /// deploys do not poll in lockstep. The rollout is done only once the last service is:
    /// a service that could complete sooner waits, like the others, until shortly before the
    /// slowest one can; the soonest wait wins.
    pub fn next_poll(&self, observed: &[Observed]) -> Duration {
        let last = observed
            .iter()
            .map(|o| self.earliest_completion(o))
            .max()
            .unwrap_or_default();
        let stretched = last.saturating_sub(self.margin).min(self.longest);
        let base = observed
            .iter()
            .map(|o| {
                let own = self.next_delay(o);
                if self.earliest_completion(o) < last {
                    own.max(stretched)
                } else {
                    own
                }
            })
            .min()
            .unwrap_or(self.fast);
        base.mul_f64(rand::rng().random_range(0.9..1.1))
    }
}

/// The phase of `ours` on `service`.
pub fn phase(service: &Service, ours: &Deployment) -> Phase {
    let others_running: i32 = service
        .deployments()
        .iter()
        .filter(|d| d.id() != ours.id())
        .map(Deployment::running_count)
        .sum();
    if ours.running_count() < ours.desired_count() {
        Phase::Starting
    } else if others_running > 0 {
        Phase::Replacing
    } else {
        Phase::Finishing
    }
}

/// The ECS service event that says old targets began draining.
pub fn is_drain_event(message: &str) -> bool {
    message.contains("has begun draining connections")
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    /// Round figures, so that the expectations read easily.
    fn pace() -> Pace {
        Pace {
            slow: S(10),
            fast: S(3),
            margin: S(3),
            longest: S(60),
        }
    }

    fn observed(phase: Phase, in_phase: u64, drain: u64) -> Observed {
        Observed {
            phase,
            in_phase: S(in_phase),
            draining_for: None,
            drain: S(drain),
        }
    }

    #[test]
    fn starting_behind_a_load_balancer_waits_most_of_a_drain() {
        let pace = pace();
        for in_phase in [0, 15, 90] {
            assert_eq!(
                pace.next_delay(&observed(Phase::Starting, in_phase, 300)),
                S(60)
            );
        }
        assert_eq!(pace.next_delay(&observed(Phase::Starting, 0, 30)), S(27));
        assert_eq!(pace.next_delay(&observed(Phase::Starting, 0, 5)), S(10));
    }

    #[test]
    fn starting_without_a_drain_polls_slowly_and_running_tasks_fast() {
        let pace = pace();
        for in_phase in [0, 25, 90] {
            assert_eq!(
                pace.next_delay(&observed(Phase::Starting, in_phase, 0)),
                S(10)
            );
        }
        assert_eq!(pace.next_delay(&observed(Phase::Replacing, 0, 0)), S(3));
    }

    #[test]
    fn replacing_sleeps_until_shortly_before_the_drain_ends() {
        let pace = pace();
        // 300 s drain, 40 s in: sleep the longest wait, never past the drain's end.
        assert_eq!(pace.next_delay(&observed(Phase::Replacing, 40, 300)), S(60));
        assert_eq!(
            pace.next_delay(&observed(Phase::Replacing, 270, 300)),
            S(27)
        );
        // A drain ECS has not announced yet: health checks still run, and completion is a
        // whole drain after the announcement.
        assert_eq!(pace.next_delay(&observed(Phase::Replacing, 29, 30)), S(24));
        assert_eq!(pace.next_delay(&observed(Phase::Replacing, 9, 10)), S(10));
        assert_eq!(
            pace.next_delay(&observed(Phase::Replacing, 295, 300)),
            S(60)
        );
        // No load balancer: old tasks stop at once, completion is near.
        assert_eq!(pace.next_delay(&observed(Phase::Replacing, 0, 0)), S(3));
    }

    #[test]
    fn a_drain_event_dates_the_drain_precisely() {
        let pace = pace();
        // The phase began 100 s ago (health checks first), the drain only 20 s ago.
        let seen = Observed {
            draining_for: Some(S(20)),
            ..observed(Phase::Replacing, 100, 60)
        };
        assert_eq!(pace.next_delay(&seen), S(37));
        assert_eq!(pace.earliest_completion(&seen), S(40));
        // Near its end: fast.
        let ending = Observed {
            draining_for: Some(S(58)),
            ..seen
        };
        assert_eq!(pace.next_delay(&ending), S(3));
    }

    fn within_jitter(delay: Duration, base: Duration) -> bool {
        delay >= base.mul_f64(0.9) && delay <= base.mul_f64(1.1)
    }

    #[test]
    fn finishing_polls_fast_unless_another_service_completes_much_later() {
        let pace = pace();
        assert_eq!(pace.next_delay(&observed(Phase::Finishing, 0, 300)), S(3));
        let alone = pace.next_poll(&[observed(Phase::Finishing, 0, 0)]);
        assert!(within_jitter(alone, S(3)), "{alone:?}");
        // The worker could finish now, but the web service drains for 100 s more: the rollout
        // cannot complete before, so the worker waits too.
        let worker = observed(Phase::Finishing, 0, 0);
        let web = observed(Phase::Replacing, 200, 300);
        let both = pace.next_poll(&[web, worker]);
        assert!(within_jitter(both, S(60)), "{both:?}");
        // The web service starting behind a 30 s drain: everyone waits for its own pace.
        let web = observed(Phase::Starting, 0, 30);
        let both = pace.next_poll(&[web, observed(Phase::Starting, 25, 0)]);
        assert!(within_jitter(both, S(27)), "{both:?}");
    }

    #[test]
    fn fixed_pacing_waits_the_same_in_every_phase() {
        let pace = Pace::fixed(Duration::from_millis(5));
        for phase in [Phase::Starting, Phase::Replacing, Phase::Finishing] {
            assert_eq!(
                pace.next_delay(&observed(phase, 1, 300)),
                Duration::from_millis(5)
            );
        }
    }

    #[test]
    fn the_phase_follows_the_task_counts() {
        let deployment = |id: &str, desired: i32, running: i32| {
            Deployment::builder()
                .id(id)
                .desired_count(desired)
                .running_count(running)
                .build()
        };
        let service = |deployments: Vec<Deployment>| {
            Service::builder()
                .set_deployments(Some(deployments))
                .build()
        };
        let ours = deployment("new", 2, 1);
        let svc = service(vec![ours.clone(), deployment("old", 2, 2)]);
        assert_eq!(phase(&svc, &ours), Phase::Starting);
        let ours = deployment("new", 2, 2);
        let svc = service(vec![ours.clone(), deployment("old", 2, 1)]);
        assert_eq!(phase(&svc, &ours), Phase::Replacing);
        let svc = service(vec![ours.clone(), deployment("old", 0, 0)]);
        assert_eq!(phase(&svc, &ours), Phase::Finishing);
        assert!(is_drain_event(
            "(service kaapi-web) has begun draining connections on 1 tasks."
        ));
    }
}
