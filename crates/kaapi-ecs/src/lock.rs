//! The deploy lock: an SSM parameter `/kaapi-deploy/locks/{app}/{env}` created with
//! `Overwrite=false`, so exactly one of two racing deploys creates it. It holds the owner, a
//! link and an expiry; an expired lock is taken over with a warning; release deletes it only if
//! we still own it.

use aws_sdk_ssm::types::ParameterType;
use chrono::{DateTime, Utc};
use kaapi_core::engine::{EngineError, EngineResult, LockOwner, LockToken};
use kaapi_core::progress::Progress;
use serde::{Deserialize, Serialize};

use crate::error::{aws_error, error_code};
use crate::session::Ctx;

/// What the parameter holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    pub id: String,
    pub owner: String,
    pub url: Option<String>,
    pub since: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

pub fn parameter_name(app: &str, environment: &str) -> String {
    format!("/kaapi-deploy/locks/{app}/{environment}")
}

fn new_id() -> String {
    let n: u128 = rand::random();
    format!("{n:032x}")
}

fn name(ctx: &Ctx) -> String {
    parameter_name(ctx.target.app(), ctx.target.environment())
}

/// Creates the parameter if absent; `Ok(false)` when it already exists.
async fn create(ctx: &Ctx, record: &LockRecord) -> EngineResult<bool> {
    let value = serde_json::to_string(record)
        .map_err(|e| EngineError::failed(format!("cannot encode the lock: {e}")))?;
    let result = ctx
        .clients
        .ssm
        .put_parameter()
        .name(name(ctx))
        .value(value)
        .r#type(ParameterType::String)
        .overwrite(false)
        .description("kaapi-deploy: deploy lock (delete with `kaapi-deploy unlock ENV --force`)")
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) if error_code(&e) == Some("ParameterAlreadyExists") => Ok(false),
        Err(e) => Err(aws_error(&format!("ssm:PutParameter {}", name(ctx)), e)),
    }
}

/// The current holder, or `None` when there is no lock.
pub async fn read(ctx: &Ctx) -> EngineResult<Option<LockRecord>> {
    let result = ctx.clients.ssm.get_parameter().name(name(ctx)).send().await;
    let out = match result {
        Ok(out) => out,
        Err(e) if error_code(&e) == Some("ParameterNotFound") => return Ok(None),
        Err(e) => return Err(aws_error(&format!("ssm:GetParameter {}", name(ctx)), e)),
    };
    let value = out.parameter().and_then(|p| p.value()).unwrap_or_default();
    // A value we cannot read is someone else's (or corrupted): treat it as expired long ago so
    // it is taken over with a warning rather than blocking deploys forever.
    Ok(Some(serde_json::from_str(value).unwrap_or(LockRecord {
        id: String::new(),
        owner: format!("an unreadable lock ({value})"),
        url: None,
        since: DateTime::<Utc>::UNIX_EPOCH,
        expires: DateTime::<Utc>::UNIX_EPOCH,
    })))
}

async fn delete(ctx: &Ctx) -> EngineResult<()> {
    match ctx
        .clients
        .ssm
        .delete_parameter()
        .name(name(ctx))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some("ParameterNotFound") => Ok(()),
        Err(e) => Err(aws_error(&format!("ssm:DeleteParameter {}", name(ctx)), e)),
    }
}

fn holder_text(record: &LockRecord) -> String {
    match &record.url {
        Some(url) => format!("{} ({url})", record.owner),
        None => record.owner.clone(),
    }
}

pub async fn acquire(
    ctx: &Ctx,
    owner: &LockOwner,
    progress: &dyn Progress,
) -> EngineResult<LockToken> {
    let now = Utc::now();
    let ttl = chrono::Duration::from_std(ctx.tuning.lock_ttl)
        .unwrap_or_else(|_| chrono::Duration::hours(1));
    let record = LockRecord {
        id: new_id(),
        owner: owner.holder.clone(),
        url: owner.url.clone(),
        since: now,
        expires: now + ttl,
    };
    let token = LockToken {
        environment: ctx.target.environment().to_owned(),
        id: record.id.clone(),
    };
    if create(ctx, &record).await? {
        return Ok(token);
    }
    let Some(held) = read(ctx).await? else {
        // Released between our two calls: one more try, then report whoever won.
        if create(ctx, &record).await? {
            return Ok(token);
        }
        return Err(locked(ctx, read(ctx).await?.as_ref()));
    };
    if held.expires > Utc::now() {
        return Err(locked(ctx, Some(&held)));
    }
    progress.warning(format!(
        "taking over the deploy lock of `{}`: {} took it at {} and it expired at {}",
        ctx.target.environment(),
        holder_text(&held),
        held.since,
        held.expires
    ));
    // Delete only what we read, then create-if-absent again: of several deploys taking over
    // the same expired lock, only one create succeeds.
    if read(ctx).await?.as_ref() == Some(&held) {
        delete(ctx).await?;
    }
    if create(ctx, &record).await? {
        return Ok(token);
    }
    Err(locked(ctx, read(ctx).await?.as_ref()))
}

fn locked(ctx: &Ctx, held: Option<&LockRecord>) -> EngineError {
    EngineError::Locked {
        environment: ctx.target.environment().to_owned(),
        holder: held
            .map(holder_text)
            .unwrap_or_else(|| "another deploy".to_owned()),
        since: held.map(|h| h.since).unwrap_or_else(Utc::now),
    }
}

/// Deletes the lock if it is still ours; someone who took it over keeps it.
pub async fn release(ctx: &Ctx, token: &LockToken, progress: &dyn Progress) -> EngineResult<()> {
    match read(ctx).await? {
        Some(held) if held.id == token.id => delete(ctx).await,
        Some(held) => {
            progress.warning(format!(
                "the deploy lock of `{}` is now held by {}; leaving it",
                token.environment,
                holder_text(&held)
            ));
            Ok(())
        }
        None => Ok(()),
    }
}

pub async fn force_unlock(ctx: &Ctx) -> EngineResult<()> {
    delete(ctx).await
}
