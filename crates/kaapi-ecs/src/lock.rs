//! The deploy lock: one item in the environment's DynamoDB table `{stem}-deploy-lock` (e.g.
//! `kaapi-staging-deploy-lock`; partition key `pk` = the environment name), changed only by conditional writes so that the table,
//! not a read-then-write in our process, decides who holds it:
//!
//! - acquire: PutItem if `attribute_not_exists(pk) OR expires_at < :now` (free or expired);
//! - renew: UpdateItem of `expires_at` if `lock_id = :id` (still ours), on a timer ([`Lease`]);
//! - release: DeleteItem if `lock_id = :id` (never someone else's lock);
//! - `unlock --force`: DeleteItem without a condition.
//!
//! `expires_at` is in epoch milliseconds (the condition's clock); `purge_at` is the same instant in
//! epoch seconds, the table's TTL attribute, so DynamoDB tidies up locks whose owner vanished.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, TimeZone, Utc};
use kaapi_core::engine::{EngineError, EngineResult, LockOwner, LockToken};
use kaapi_core::progress::Progress;
use tokio::task::JoinHandle;

use crate::error::{aws_error, error_code};
use crate::session::Ctx;

const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

/// The table's attribute names (the CloudFormation template creates `pk` and `purge_at`).
pub const PARTITION_KEY: &str = "pk";
pub const TTL_ATTRIBUTE: &str = "purge_at";

/// Who holds the lock, as the item says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecord {
    pub id: String,
    pub owner: String,
    pub url: Option<String>,
    pub since: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

impl LockRecord {
    fn holder_text(&self) -> String {
        match &self.url {
            Some(url) => format!("{} ({url})", self.owner),
            None => self.owner.clone(),
        }
    }
}

fn new_id() -> String {
    let n: u128 = rand::random();
    format!("{n:032x}")
}

/// Where one environment's lock lives.
#[derive(Debug, Clone)]
struct Slot {
    client: aws_sdk_dynamodb::Client,
    table: String,
    environment: String,
}

impl Slot {
    fn of(ctx: &Ctx) -> Self {
        Self {
            client: ctx.clients.dynamodb.clone(),
            table: ctx.target.names().lock_table.clone(),
            environment: ctx.target.environment().to_owned(),
        }
    }

    fn key(&self) -> AttributeValue {
        AttributeValue::S(self.environment.clone())
    }

    fn what(&self, call: &str) -> String {
        format!("dynamodb:{call} on table {}", self.table)
    }

    /// The current holder (a consistent read), or `None` when there is no lock.
    async fn read(&self) -> EngineResult<Option<LockRecord>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, self.key())
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| missing_table_hint(self, aws_error(&self.what("GetItem"), e)))?;
        Ok(out.item().map(record_of))
    }

    /// Writes our item if the lock is free or expired; the replaced (expired) item, if any.
    async fn put_if_free(&self, record: &LockRecord) -> EngineResult<Option<Option<LockRecord>>> {
        let mut item = HashMap::from([
            (PARTITION_KEY.to_owned(), self.key()),
            ("lock_id".to_owned(), AttributeValue::S(record.id.clone())),
            ("owner".to_owned(), AttributeValue::S(record.owner.clone())),
            (
                "since".to_owned(),
                AttributeValue::S(record.since.to_rfc3339()),
            ),
        ]);
        item.extend(expiry_attributes(record.expires));
        if let Some(url) = &record.url {
            item.insert("url".to_owned(), AttributeValue::S(url.clone()));
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", millis(Utc::now()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(out.attributes().map(record_of))),
            Err(e) if error_code(&e) == Some(CONDITION_FAILED) => Ok(None),
            Err(e) => Err(missing_table_hint(
                self,
                aws_error(&self.what("PutItem"), e),
            )),
        }
    }

    /// Moves our expiry to `expires`; `Ok(false)` when the lock is no longer ours.
    async fn renew(&self, id: &str, expires: DateTime<Utc>) -> EngineResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, self.key())
            .update_expression("SET expires_at = :expires, purge_at = :purge")
            .condition_expression("lock_id = :id")
            .expression_attribute_values(":expires", millis(expires))
            .expression_attribute_values(":purge", seconds(expires))
            .expression_attribute_values(":id", AttributeValue::S(id.to_owned()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if error_code(&e) == Some(CONDITION_FAILED) => Ok(false),
            Err(e) => Err(aws_error(&self.what("UpdateItem"), e)),
        }
    }

    /// Deletes the item, only if it holds `id` when given; `Ok(false)` when it did not.
    async fn delete(&self, id: Option<&str>) -> EngineResult<bool> {
        let mut call = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, self.key());
        if let Some(id) = id {
            call = call
                .condition_expression("lock_id = :id")
                .expression_attribute_values(":id", AttributeValue::S(id.to_owned()));
        }
        match call.send().await {
            Ok(_) => Ok(true),
            Err(e) if error_code(&e) == Some(CONDITION_FAILED) => Ok(false),
            Err(e) => Err(missing_table_hint(
                self,
                aws_error(&self.what("DeleteItem"), e),
            )),
        }
    }

    fn locked(&self, held: Option<&LockRecord>) -> EngineError {
        EngineError::Locked {
            environment: self.environment.clone(),
            holder: held
                .map(LockRecord::holder_text)
                .unwrap_or_else(|| "another deploy".to_owned()),
            since: held.map(|h| h.since).unwrap_or_else(Utc::now),
        }
    }
}

fn millis(at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(at.timestamp_millis().to_string())
}

fn seconds(at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(at.timestamp().to_string())
}

fn expiry_attributes(expires: DateTime<Utc>) -> [(String, AttributeValue); 2] {
    [
        ("expires_at".to_owned(), millis(expires)),
        (TTL_ATTRIBUTE.to_owned(), seconds(expires)),
    ]
}

/// Reads an item; a field we cannot read makes the lock look expired long ago, so that a corrupted
/// item is taken over with a warning rather than blocking deploys forever.
fn record_of(item: &HashMap<String, AttributeValue>) -> LockRecord {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
    };
    LockRecord {
        id: text("lock_id").unwrap_or_default(),
        owner: text("owner").unwrap_or_else(|| "an unreadable lock".to_owned()),
        url: text("url"),
        since: text("since")
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        expires: number("expires_at")
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
    }
}

fn missing_table_hint(slot: &Slot, error: EngineError) -> EngineError {
    if !error.to_string().contains("ResourceNotFoundException") {
        return error;
    }
    EngineError::not_found(format!(
        "the deploy lock table `{}` does not exist: deploy the template of `kaapi-deploy infra template {}` (it creates the table), or create it with partition key `{PARTITION_KEY}` (String) and TTL attribute `{TTL_ATTRIBUTE}`; `kaapi-deploy check {}` lists what is missing",
        slot.table, slot.environment, slot.environment
    ))
}

fn lease_length(ctx: &Ctx) -> chrono::Duration {
    chrono::Duration::from_std(ctx.tuning.lock_ttl)
        .unwrap_or_else(|_| chrono::Duration::minutes(10))
}

/// Takes the lock when it is free or expired, and starts renewing it.
pub async fn acquire(
    ctx: &Ctx,
    owner: &LockOwner,
    progress: &dyn Progress,
) -> EngineResult<(LockToken, Lease)> {
    let slot = Slot::of(ctx);
    let now = Utc::now();
    let record = LockRecord {
        id: new_id(),
        owner: owner.holder.clone(),
        url: owner.url.clone(),
        since: now,
        expires: now + lease_length(ctx),
    };
    // Two attempts: the holder may release between our failed write and our read.
    for _ in 0..2 {
        if let Some(replaced) = slot.put_if_free(&record).await? {
            if let Some(old) = replaced {
                progress.warning(format!(
                    "took over the expired deploy lock of `{}`: {} took it at {} and it expired at {}",
                    slot.environment,
                    old.holder_text(),
                    old.since,
                    old.expires
                ));
            }
            let token = LockToken {
                environment: slot.environment.clone(),
                id: record.id.clone(),
            };
            let lease = Lease::start(slot, record, ctx.tuning.lock_ttl, ctx.tuning.lock_renew);
            return Ok((token, lease));
        }
        if let Some(held) = slot.read().await? {
            return Err(slot.locked(Some(&held)));
        }
    }
    Err(slot.locked(None))
}

/// Deletes the lock if it is still ours; someone who took it over keeps it (and we say so).
pub async fn release(ctx: &Ctx, token: &LockToken) -> EngineResult<()> {
    let slot = Slot::of(ctx);
    if slot.delete(Some(&token.id)).await? {
        return Ok(());
    }
    match slot.read().await? {
        Some(held) => Err(EngineError::failed(format!(
            "the deploy lock of `{}` is now held by {}; left it in place",
            token.environment,
            held.holder_text()
        ))),
        None => Ok(()),
    }
}

/// Removes the lock whoever holds it (`unlock --force`).
pub async fn force_unlock(ctx: &Ctx) -> EngineResult<()> {
    Slot::of(ctx).delete(None).await.map(|_| ())
}

/// The current holder, or `None` when the environment is not locked.
pub async fn read(ctx: &Ctx) -> EngineResult<Option<LockRecord>> {
    Slot::of(ctx).read().await
}

/// The renewal of a held lock: a background task that moves the expiry forward every `renew`
/// interval while the deploy runs. Dropping the lease stops it.
pub struct Lease {
    task: JoinHandle<()>,
    lost: Arc<Mutex<Option<String>>>,
}

impl Lease {
    fn start(slot: Slot, record: LockRecord, ttl: Duration, renew: Duration) -> Self {
        let lost = Arc::new(Mutex::new(None));
        let report = Arc::clone(&lost);
        let task = tokio::spawn(async move {
            let length =
                chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::minutes(10));
            let mut valid_until = record.expires;
            let mut last_error: Option<String> = None;
            loop {
                tokio::time::sleep(renew).await;
                let expires = Utc::now() + length;
                let why = match slot.renew(&record.id, expires).await {
                    Ok(true) => {
                        valid_until = expires;
                        last_error = None;
                        continue;
                    }
                    Ok(false) => match slot.read().await {
                        Ok(Some(held)) => format!("it is now held by {}", held.holder_text()),
                        _ => "it was removed (`unlock --force`?)".to_owned(),
                    },
                    // A passing failure: the lock stays ours until it expires; try again.
                    Err(e) if Utc::now() < valid_until => {
                        last_error = Some(e.to_string());
                        continue;
                    }
                    Err(e) => format!("it expired at {valid_until} while renewing failed: {e}"),
                };
                let why = match last_error.take() {
                    Some(earlier) => format!("{why} (earlier renewal failure: {earlier})"),
                    None => why,
                };
                if let Ok(mut lost) = report.lock() {
                    *lost = Some(format!(
                        "lost the deploy lock of `{}`: {why}",
                        slot.environment
                    ));
                }
                return;
            }
        });
        Self { task, lost }
    }

    /// Why the lock is no longer ours, once a renewal found out.
    pub fn lost(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|l| l.clone())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_items_look_long_expired() {
        let item = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("staging".to_owned())),
            ("owner".to_owned(), AttributeValue::S("alice".to_owned())),
        ]);
        let record = record_of(&item);
        assert_eq!(record.owner, "alice");
        assert_eq!(record.expires, DateTime::<Utc>::UNIX_EPOCH);
    }

    #[test]
    fn expiry_is_kept_in_milliseconds_and_in_seconds_for_ttl() {
        let at = Utc
            .timestamp_millis_opt(1_700_000_000_123)
            .single()
            .expect("valid");
        let attributes = expiry_attributes(at);
        assert_eq!(
            attributes[0].1,
            AttributeValue::N("1700000000123".to_owned())
        );
        assert_eq!(
            attributes[1],
            (
                TTL_ATTRIBUTE.to_owned(),
                AttributeValue::N("1700000000".to_owned())
            )
        );
    }
}
