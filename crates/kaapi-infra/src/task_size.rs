//! ECS refuses to register a task definition whose containers reserve more CPU or memory than
//! the task has. In a task of several containers the config's `cpu`/`memory` become the task's
//! while each container keeps its live share, so a size that fits one container can be too
//! small for Kaapi's backend + worker task. moto registers such a definition; AWS does not.

use aws_sdk_ecs::types::TaskDefinition;

/// Why the config's size for `service` cannot be registered over `live`, with what to set, or
/// `None` when it fits (or the config leaves the task's size as it is).
pub fn problem(
    service: &str,
    cpu: Option<u32>,
    memory: Option<u32>,
    live: &TaskDefinition,
) -> Option<String> {
    let containers = live.container_definitions();
    if containers.len() < 2 {
        // A single container takes the config's size itself.
        return None;
    }
    let shares = |share: &dyn Fn(usize) -> i64| -> (i64, String) {
        let mut total = 0;
        let mut parts = Vec::new();
        for (index, container) in containers.iter().enumerate() {
            let value = share(index);
            total += value;
            parts.push(format!("{} {value}", container.name().unwrap_or("?")));
        }
        (total, parts.join(", "))
    };
    let mut problems = Vec::new();
    if let Some(cpu) = cpu {
        let (total, parts) = shares(&|i| i64::from(containers[i].cpu()));
        if total > i64::from(cpu) {
            problems.push(format!(
                "services.{service}.cpu = {cpu} is below the CPU its containers reserve ({parts}: {total}); set it to at least {total}"
            ));
        }
    }
    if let Some(memory) = memory {
        let (total, parts) = shares(&|i| i64::from(containers[i].memory().unwrap_or(0)));
        if total > i64::from(memory) {
            problems.push(format!(
                "services.{service}.memory = {memory} is below the memory its containers reserve ({parts}: {total}); set it to at least {total}"
            ));
        }
    }
    (!problems.is_empty()).then(|| {
        format!(
            "{}; ECS refuses to register such a task definition",
            problems.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::ContainerDefinition;

    use super::*;

    fn container(name: &str, cpu: i32, memory: i32) -> ContainerDefinition {
        ContainerDefinition::builder()
            .name(name)
            .cpu(cpu)
            .memory(memory)
            .build()
    }

    fn kaapi_task() -> TaskDefinition {
        TaskDefinition::builder()
            .cpu("1024")
            .memory("2048")
            .container_definitions(container("backend", 512, 1024))
            .container_definitions(container("celery_worker", 384, 768))
            .build()
    }

    #[test]
    fn a_task_size_below_its_containers_shares_is_refused_naming_the_key() {
        let problem = problem("backend", Some(512), Some(1024), &kaapi_task()).expect("too small");
        assert!(
            problem.starts_with("services.backend.cpu = 512 is below the CPU its containers reserve (backend 512, celery_worker 384: 896); set it to at least 896"),
            "{problem}"
        );
        assert!(
            problem.contains("services.backend.memory = 1024 is below the memory its containers reserve (backend 1024, celery_worker 768: 1792)"),
            "{problem}"
        );
    }

    #[test]
    fn a_size_that_fits_or_is_left_to_the_live_task_passes() {
        assert_eq!(
            problem("backend", Some(1024), Some(2048), &kaapi_task()),
            None
        );
        assert_eq!(problem("backend", None, None, &kaapi_task()), None);
        // Exactly the sum is allowed.
        assert_eq!(
            problem("backend", Some(896), Some(1792), &kaapi_task()),
            None
        );
        // One container takes the config's size itself.
        let single = TaskDefinition::builder()
            .container_definitions(container("backend", 2048, 4096))
            .build();
        assert_eq!(problem("backend", Some(256), Some(512), &single), None);
    }
}
