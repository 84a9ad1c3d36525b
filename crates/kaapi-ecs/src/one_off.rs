//! The task definition a one-off task (migrations, `run`) runs on. A task starts every container
//! of its definition, and RunTask's overrides can neither leave a container out nor make it
//! non-essential, so in a task of several containers (Kaapi's backend and Celery worker) the
//! worker would start beside the migration, on the new code and the old schema. The one-off
//! revision keeps the app container and only what it needs to start: the containers it names in
//! `dependsOn`, `links` and `volumesFrom`, and the FireLens log router its logs go through.

use aws_sdk_ecs::types::{ContainerDefinition, LogDriver, TaskDefinition};

/// `definition` with only the container at `main` and what it needs; `None` when that is every
/// container already (the definition itself can run the task).
pub fn trimmed(definition: &TaskDefinition, main: usize) -> Option<TaskDefinition> {
    let containers = definition.container_definitions();
    let main_container = containers.get(main)?;
    let mut needed: Vec<&str> = vec![main_container.name().unwrap_or_default()];
    let mut index = 0;
    while let Some(name) = needed.get(index).copied() {
        index += 1;
        let Some(container) = containers.iter().find(|c| c.name() == Some(name)) else {
            continue;
        };
        for dependency in dependencies(container) {
            if !needed.contains(&dependency) {
                needed.push(dependency);
            }
        }
    }
    let logs_through_firelens = main_container
        .log_configuration()
        .is_some_and(|l| l.log_driver() == &LogDriver::Awsfirelens);
    let kept: Vec<ContainerDefinition> = containers
        .iter()
        .filter(|c| {
            c.name().is_some_and(|n| needed.contains(&n))
                || (logs_through_firelens && c.firelens_configuration().is_some())
        })
        .cloned()
        .collect();
    if kept.len() == containers.len() {
        return None;
    }
    let mut one_off = definition.clone();
    one_off.container_definitions = Some(kept);
    Some(one_off)
}

/// The containers `container` names as ones it needs.
fn dependencies(container: &ContainerDefinition) -> Vec<&str> {
    let depends_on = container.depends_on().iter().map(|d| d.container_name());
    // A link is `name` or `name:alias`.
    let links = container
        .links()
        .iter()
        .map(|l| l.split(':').next().unwrap_or(l));
    let volumes_from = container
        .volumes_from()
        .iter()
        .filter_map(|v| v.source_container());
    depends_on.chain(links).chain(volumes_from).collect()
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{
        ContainerCondition, ContainerDependency, FirelensConfiguration, FirelensConfigurationType,
        LogConfiguration,
    };

    use super::*;

    fn container(name: &str) -> aws_sdk_ecs::types::builders::ContainerDefinitionBuilder {
        ContainerDefinition::builder()
            .name(name)
            .image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/kaapi@sha256:1")
            .essential(true)
    }

    fn names(definition: &TaskDefinition) -> Vec<&str> {
        definition
            .container_definitions()
            .iter()
            .filter_map(|c| c.name())
            .collect()
    }

    #[test]
    fn kaapis_backend_and_worker_task_runs_the_backend_alone() {
        let definition = TaskDefinition::builder()
            .family("kaapi-backend")
            .container_definitions(container("backend").build())
            .container_definitions(container("celery-worker").build())
            .build();
        let one_off = trimmed(&definition, 0).expect("the worker is left out");
        assert_eq!(names(&one_off), ["backend"]);
        assert_eq!(one_off.family(), Some("kaapi-backend"));
        // The worker's own one-off task leaves the backend out.
        assert_eq!(
            names(&trimmed(&definition, 1).expect("trimmed")),
            ["celery-worker"]
        );
    }

    #[test]
    fn what_the_app_container_needs_is_kept() {
        let router = container("log-router")
            .firelens_configuration(
                FirelensConfiguration::builder()
                    .r#type(FirelensConfigurationType::Fluentbit)
                    .build()
                    .expect("firelens config"),
            )
            .build();
        let backend = container("backend")
            .depends_on(
                ContainerDependency::builder()
                    .container_name("proxy")
                    .condition(ContainerCondition::Start)
                    .build()
                    .expect("dependency"),
            )
            .log_configuration(
                LogConfiguration::builder()
                    .log_driver(LogDriver::Awsfirelens)
                    .build()
                    .expect("log configuration"),
            )
            .build();
        // The proxy needs a container of its own, through a link.
        let proxy = container("proxy").links("certs:certificates").build();
        let definition = TaskDefinition::builder()
            .container_definitions(router)
            .container_definitions(backend)
            .container_definitions(container("celery-worker").build())
            .container_definitions(proxy)
            .container_definitions(container("certs").build())
            .build();
        let one_off = trimmed(&definition, 1).expect("the worker is left out");
        assert_eq!(names(&one_off), ["log-router", "backend", "proxy", "certs"]);
    }

    #[test]
    fn a_single_container_task_runs_as_it_is() {
        let definition = TaskDefinition::builder()
            .container_definitions(container("backend").build())
            .build();
        assert!(trimmed(&definition, 0).is_none());
    }
}
