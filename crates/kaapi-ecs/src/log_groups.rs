//! The services' CloudWatch log groups: the `awslogs` driver does not create them, so a task of
//! a revision whose log group is missing never starts. `infra template` creates them; a deploy
//! creates the missing ones when the role may, and otherwise says exactly what to run.

use kaapi_core::engine::{EngineError, EngineResult};
use kaapi_core::progress::Progress;

use crate::error::{aws_error, error_code};
use crate::session::Ctx;

/// The longest common prefix of `names` (one DescribeLogGroups call lists them all).
fn common_prefix(names: &[String]) -> String {
    let Some(first) = names.first() else {
        return String::new();
    };
    let mut end = first.len();
    for name in &names[1..] {
        end = end.min(
            first
                .char_indices()
                .zip(name.chars())
                .find(|((_, a), b)| a != b)
                .map(|((i, _), _)| i)
                .unwrap_or(first.len().min(name.len())),
        );
    }
    first[..end].to_owned()
}

/// The log groups of `wanted` that CloudWatch does not have.
async fn missing(ctx: &Ctx, wanted: &[String]) -> EngineResult<Vec<String>> {
    let prefix = common_prefix(wanted);
    let mut existing = Vec::new();
    let mut token = None;
    loop {
        let out = ctx
            .clients
            .logs
            .describe_log_groups()
            .set_log_group_name_prefix(Some(prefix.clone()).filter(|p| !p.is_empty()))
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error(&format!("logs:DescribeLogGroups {prefix}"), e))?;
        existing.extend(
            out.log_groups()
                .iter()
                .filter_map(|g| g.log_group_name().map(str::to_owned)),
        );
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    Ok(wanted
        .iter()
        .filter(|w| !existing.contains(w))
        .cloned()
        .collect())
}

/// Creates the services' missing log groups, or fails naming the command that creates them.
pub async fn ensure(ctx: &Ctx, progress: &dyn Progress) -> EngineResult<()> {
    let mut wanted = Vec::new();
    for service in ctx.target.services() {
        wanted.push(ctx.target.log_group(service)?.to_owned());
    }
    for group in missing(ctx, &wanted).await? {
        let result = ctx
            .clients
            .logs
            .create_log_group()
            .log_group_name(&group)
            .send()
            .await;
        match result {
            Ok(_) => progress.info(format!("created the missing log group {group}")),
            Err(e) if error_code(&e) == Some("ResourceAlreadyExistsException") => {}
            Err(e) if matches!(error_code(&e), Some("AccessDeniedException" | "AccessDenied")) => {
                return Err(EngineError::failed(format!(
                    "log group {group} does not exist and this role may not create it (logs:CreateLogGroup is denied); run `aws logs create-log-group --log-group-name {group} --region {region}`, or deploy the template of `kaapi-deploy infra template {env}`, then deploy again",
                    region = ctx.region(),
                    env = ctx.target.environment(),
                )))
            }
            Err(e) => return Err(aws_error(&format!("logs:CreateLogGroup {group}"), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_prefix_covers_every_group() {
        let groups = [
            "/ecs/kaapi-staging-cluster/kaapi-staging-service".to_owned(),
            "/ecs/kaapi-staging-cluster/kaapi-staging-worker-service".to_owned(),
        ];
        assert_eq!(
            common_prefix(&groups),
            "/ecs/kaapi-staging-cluster/kaapi-staging-"
        );
        assert_eq!(common_prefix(&groups[..1]), groups[0]);
        assert_eq!(common_prefix(&[]), "");
    }
}
