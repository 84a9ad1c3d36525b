//! What a `Converge` rollout does to each service: compare the wanted spec with the one that
//! serves and keep, resize or replace. Pure: the rollout applies the decision.

use super::api::ServiceSpec;

/// What serves a service now.
#[derive(Debug, Clone, Copy)]
pub struct Serving<'a> {
    pub spec: &'a ServiceSpec,
    /// Whether traffic reaches it through an ingress (its health check depends on it).
    pub has_ingress: bool,
    /// How many of its replicas are healthy, and how many there are in all.
    pub healthy: usize,
    pub total: usize,
}

/// One service's part of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Same spec, every replica healthy: nothing to start or stop.
    Keep,
    /// Same spec except the replica count (or some replicas unhealthy): keep `keep` healthy
    /// replicas, start `start` new ones, stop every other one after the switch.
    Resize { keep: usize, start: usize },
    /// Anything else changed (or nothing serves): new replicas for all, old ones drained.
    Replace,
}

impl Action {
    /// How many new replicas the action starts for a service wanting `wanted` replicas.
    pub fn starts(self, wanted: u32) -> usize {
        match self {
            Action::Keep => 0,
            Action::Resize { start, .. } => start,
            Action::Replace => wanted as usize,
        }
    }

    /// How many serving replicas the action keeps.
    pub fn keeps(self, wanted: u32) -> usize {
        match self {
            Action::Keep => wanted as usize,
            Action::Resize { keep, .. } => keep,
            Action::Replace => 0,
        }
    }
}

/// Decides what happens to the service `wanted` given what serves it.
pub fn decide(serving: Option<Serving<'_>>, wanted: &ServiceSpec, wants_ingress: bool) -> Action {
    let Some(serving) = serving else {
        return Action::Replace;
    };
    if serving.has_ingress != wants_ingress || !same_but_replicas(serving.spec, wanted) {
        return Action::Replace;
    }
    let wanted_count = wanted.replicas as usize;
    if serving.healthy == serving.total && serving.total == wanted_count {
        return Action::Keep;
    }
    let keep = serving.healthy.min(wanted_count);
    Action::Resize {
        keep,
        start: wanted_count - keep,
    }
}

fn same_but_replicas(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    ServiceSpec {
        replicas: b.replicas,
        ..a.clone()
    } == *b
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spec(replicas: u32) -> ServiceSpec {
        ServiceSpec {
            name: "backend".to_owned(),
            image: "sha256:aaa".to_owned(),
            command: None,
            env: BTreeMap::from([("MODE".to_owned(), "web".to_owned())]),
            replicas,
            port: Some(8000),
            health: None,
            stop_timeout_secs: 10,
            cpu: None,
            memory_mib: None,
            volumes: Vec::new(),
            network: Some("net".to_owned()),
            logs: None,
            revision: Some("kaapi-local-backend:7".to_owned()),
        }
    }

    fn serving(spec: &ServiceSpec, healthy: usize, total: usize) -> Option<Serving<'_>> {
        Some(Serving {
            spec,
            has_ingress: true,
            healthy,
            total,
        })
    }

    #[test]
    fn the_same_spec_at_full_strength_is_kept() {
        let now = spec(2);
        assert_eq!(decide(serving(&now, 2, 2), &spec(2), true), Action::Keep);
    }

    #[test]
    fn only_the_replica_count_changed_starts_or_stops_the_difference() {
        let now = spec(2);
        assert_eq!(
            decide(serving(&now, 2, 2), &spec(3), true),
            Action::Resize { keep: 2, start: 1 }
        );
        assert_eq!(
            decide(serving(&now, 2, 2), &spec(1), true),
            Action::Resize { keep: 1, start: 0 }
        );
        assert_eq!(
            decide(serving(&now, 2, 2), &spec(0), true),
            Action::Resize { keep: 0, start: 0 }
        );
    }

    #[test]
    fn unhealthy_replicas_of_an_unchanged_spec_are_replaced_alone() {
        let now = spec(3);
        assert_eq!(
            decide(serving(&now, 1, 3), &spec(3), true),
            Action::Resize { keep: 1, start: 2 }
        );
    }

    #[test]
    fn any_other_change_replaces_the_service() {
        let now = spec(2);
        let mut image = spec(2);
        image.image = "sha256:bbb".to_owned();
        let mut env = spec(3);
        env.env.insert("MODE".to_owned(), "changed".to_owned());
        let mut command = spec(2);
        command.command = Some(vec!["serve".to_owned()]);
        // A new revision of the same spec (`deploy --force`) restarts the service too.
        let mut revision = spec(2);
        revision.revision = Some("kaapi-local-backend:8".to_owned());
        for wanted in [image, env, command, revision] {
            assert_eq!(decide(serving(&now, 2, 2), &wanted, true), Action::Replace);
        }
        // Gaining or losing an ingress changes its health check.
        assert_eq!(
            decide(serving(&now, 2, 2), &spec(2), false),
            Action::Replace
        );
    }

    #[test]
    fn a_service_that_does_not_serve_yet_is_started() {
        assert_eq!(decide(None, &spec(2), true), Action::Replace);
        assert_eq!(Action::Replace.starts(2), 2);
        assert_eq!(Action::Keep.starts(2), 0);
        assert_eq!(Action::Keep.keeps(2), 2);
    }
}
