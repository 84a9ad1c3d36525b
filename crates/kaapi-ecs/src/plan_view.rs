//! The ECS engine's side of `plan`: what each service's live task definition runs, and what the
//! revision a deploy would register runs, both as the core's [`ServiceView`].

use aws_sdk_ecs::types::TaskDefinition;
use kaapi_core::engine::EngineResult;
use kaapi_core::plan::ServiceView;
use kaapi_core::progress::Silent;
use kaapi_core::release::ImageRef;

use crate::revisions::{self, account_id, base_definition, main_container_index};
use crate::session::{Ctx, Described};

/// The digest of an image reference pinned by digest (`repo@sha256:…`), else the reference.
pub fn image_identity(reference: &str) -> &str {
    reference
        .split_once('@')
        .map_or(reference, |(_, digest)| digest)
}

/// The service's container of `definition` as a view with `replicas` (the desired count).
pub fn view(definition: &TaskDefinition, service: &str, replicas: u32) -> ServiceView {
    let container = main_container_index(definition, &[service])
        .and_then(|i| definition.container_definitions().get(i));
    let pairs = |c: &aws_sdk_ecs::types::ContainerDefinition| {
        c.environment()
            .iter()
            .filter_map(|p| {
                Some((
                    p.name()?.to_owned(),
                    p.value().unwrap_or_default().to_owned(),
                ))
            })
            .collect()
    };
    let secrets = |c: &aws_sdk_ecs::types::ContainerDefinition| {
        c.secrets()
            .iter()
            .map(|s| (s.name().to_owned(), s.value_from().to_owned()))
            .collect()
    };
    let health = container.and_then(|c| c.health_check()).map(|h| {
        format!(
            "{} every {}s, timeout {}s, {} retries, start period {}s",
            h.command().join(" "),
            h.interval().unwrap_or(30),
            h.timeout().unwrap_or(5),
            h.retries().unwrap_or(3),
            h.start_period().unwrap_or(0)
        )
    });
    ServiceView {
        service: service.to_owned(),
        image: container
            .and_then(|c| c.image())
            .map(|i| image_identity(i).to_owned())
            .unwrap_or_default(),
        command: container.and_then(|c| c.command.clone()),
        env: container.map(pairs).unwrap_or_default(),
        secrets: container.map(secrets).unwrap_or_default(),
        replicas,
        port: container
            .and_then(|c| c.port_mappings().first())
            .and_then(|m| m.container_port())
            .and_then(|p| u16::try_from(p).ok()),
        health,
        cpu: definition.cpu().and_then(|c| c.parse().ok()),
        memory_mib: definition.memory().and_then(|m| m.parse().ok()),
    }
}

/// What every service's live ECS service runs (services that do not exist yet are left out).
pub async fn running(ctx: &Ctx) -> EngineResult<Vec<ServiceView>> {
    let mut views = Vec::new();
    for service in ctx.target.services() {
        let Some(live) = ctx.live_service(service).await? else {
            continue;
        };
        let Some(arn) = live.task_definition() else {
            continue;
        };
        if let Some(described) = ctx.describe_task_definition(arn, &Silent).await? {
            let desired = u32::try_from(live.desired_count()).unwrap_or(0);
            views.push(view(&described.definition, service, desired));
        }
    }
    Ok(views)
}

/// What every service would run with `image`: the revision a deploy would derive, unregistered.
pub async fn planned(ctx: &Ctx, image: &ImageRef) -> EngineResult<Vec<ServiceView>> {
    let mut bases = Vec::new();
    for service in ctx.target.services() {
        bases.push((service, base_definition(ctx, service, &Silent).await?));
    }
    let known: Vec<&str> = bases
        .iter()
        .filter_map(|(_, base)| base.as_ref().map(Described::arn))
        .collect();
    let account = account_id(ctx, &known).await?;
    bases
        .iter()
        .map(|(service, base)| {
            let spec = revisions::revision_spec(ctx, service, &account, image)?;
            let definition = revisions::derive_or_create(base.as_ref(), &spec, &Silent)?;
            let replicas = ctx.target.resolved().replicas(service);
            Ok(view(&definition, service, replicas))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{ContainerDefinition, KeyValuePair, Secret};

    use super::*;

    #[test]
    fn a_definition_is_seen_by_digest_with_secret_references() {
        let definition = TaskDefinition::builder()
            .cpu("256")
            .memory("512")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("backend")
                    .image("1.dkr.ecr.eu-west-1.amazonaws.com/kaapi-repo@sha256:abc")
                    .environment(KeyValuePair::builder().name("A").value("1").build())
                    .secrets(
                        Secret::builder()
                            .name("SECRET_KEY")
                            .value_from("arn:aws:ssm:eu-west-1:1:parameter/k/SECRET_KEY")
                            .build()
                            .expect("secret"),
                    )
                    .build(),
            )
            .build();
        let view = view(&definition, "backend", 2);
        assert_eq!(view.image, "sha256:abc");
        assert_eq!(view.env.get("A").map(String::as_str), Some("1"));
        assert!(view.secrets.contains_key("SECRET_KEY"));
        assert_eq!(
            (view.cpu, view.memory_mib, view.replicas),
            (Some(256), Some(512), 2)
        );
    }
}
