//! The deploy lock against moto's DynamoDB, which evaluates the conditional writes: of two racing
//! acquirers exactly one wins and the loser names the holder; renewal keeps a short lock alive;
//! an expired lock is taken over with a warning, and the old holder's late release leaves the new
//! lock alone; `unlock --force` removes it; a missing table says how to create it.

use std::time::Duration;

use crate::support::moto::Moto;
use crate::support::{write_config, Recorder};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use kaapi_core::config::{LoadedConfig, ResolvedEnvironment};
use kaapi_core::engine::{Engine, EngineError, LockOwner};
use kaapi_ecs::{AwsClients, EcsEngine, Target, Tuning};

const TABLE: &str = "kaapi-staging-deploy-lock";

fn owner(name: &str) -> LockOwner {
    LockOwner {
        holder: format!("{name}@laptop"),
        url: Some(format!("https://ci.example.org/runs/{name}")),
    }
}

pub(crate) async fn create_table(clients: &AwsClients) {
    clients
        .dynamodb
        .create_table()
        .table_name(TABLE)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("CreateTable");
}

/// The lock item's owner, or `None` when staging is not locked.
async fn holder(clients: &AwsClients) -> Option<String> {
    let out = clients
        .dynamodb
        .get_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S("staging".to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem");
    out.item()
        .and_then(|i| i.get("owner"))
        .and_then(|v| v.as_s().ok())
        .cloned()
}

fn engine(
    loaded: &LoadedConfig,
    clients: &AwsClients,
    ttl: Duration,
    renew: Duration,
) -> EcsEngine {
    EcsEngine::with_clients(
        Target::from(ResolvedEnvironment::resolve(loaded.clone(), "staging").expect("staging")),
        clients.clone(),
        Tuning {
            lock_ttl: ttl,
            lock_renew: renew,
            ..Tuning::default()
        },
        None,
    )
}

struct World {
    moto: Moto,
    clients: AwsClients,
    loaded: LoadedConfig,
    _dir: tempfile::TempDir,
}

async fn world(with_table: bool) -> World {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let loaded = write_config(dir.path(), "");
    let clients = AwsClients::from_sdk_config(moto.sdk_config().await);
    if with_table {
        create_table(&clients).await;
    }
    World {
        moto,
        clients,
        loaded,
        _dir: dir,
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_racing_deploys_exactly_one_holds_the_lock() {
    let w = world(true).await;
    let alice = engine(&w.loaded, &w.clients, HOUR, HOUR);
    let bob = engine(&w.loaded, &w.clients, HOUR, HOUR);
    let progress = Recorder::default();
    let (alice_owner, bob_owner) = (owner("alice"), owner("bob"));
    let (a, b) = tokio::join!(
        alice.acquire_lock(&alice_owner, &progress),
        bob.acquire_lock(&bob_owner, &progress)
    );
    let (winner, token, loser_error, winner_name) = match (a, b) {
        (Ok(token), Err(e)) => (&alice, token, e, "alice"),
        (Err(e), Ok(token)) => (&bob, token, e, "bob"),
        (a, b) => panic!("exactly one must win: {a:?} / {b:?}"),
    };
    match &loser_error {
        EngineError::Locked { holder, .. } => {
            assert!(
                holder.contains(&format!("{winner_name}@laptop")),
                "{holder}"
            );
            assert!(
                holder.contains(&format!("https://ci.example.org/runs/{winner_name}")),
                "{holder}"
            );
        }
        other => panic!("expected Locked, got {other}"),
    }
    assert!(loser_error.to_string().contains("unlock staging --force"));
    assert_eq!(
        holder(&w.clients).await,
        Some(format!("{winner_name}@laptop"))
    );
    winner.release_lock(&token).await.expect("release");
    assert_eq!(holder(&w.clients).await, None, "release removes the lock");
    drop(w.moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_renews_a_short_lock_while_it_runs() {
    let w = world(true).await;
    let holder_engine = engine(
        &w.loaded,
        &w.clients,
        Duration::from_millis(600),
        Duration::from_millis(150),
    );
    let other = engine(&w.loaded, &w.clients, HOUR, HOUR);
    let progress = Recorder::default();
    let token = holder_engine
        .acquire_lock(&owner("alice"), &progress)
        .await
        .expect("free lock");
    // Four lease lengths later the lock would long have expired without renewal.
    tokio::time::sleep(Duration::from_millis(2400)).await;
    let blocked = other.acquire_lock(&owner("bob"), &progress).await;
    assert!(
        matches!(&blocked, Err(EngineError::Locked { holder, .. }) if holder.contains("alice@laptop")),
        "{blocked:?}"
    );
    holder_engine
        .release_lock(&token)
        .await
        .expect("release after renewals");
    assert_eq!(holder(&w.clients).await, None);
    drop(w.moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lock_is_taken_over_and_the_late_release_leaves_it() {
    let w = world(true).await;
    // A holder that vanished: its lock lives 200 ms and is never renewed.
    let crashed = engine(&w.loaded, &w.clients, Duration::from_millis(200), HOUR);
    let alice = engine(&w.loaded, &w.clients, HOUR, HOUR);
    let bob = engine(&w.loaded, &w.clients, HOUR, HOUR);
    let progress = Recorder::default();
    let stale = crashed
        .acquire_lock(&owner("crashed"), &progress)
        .await
        .expect("free lock");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = alice
        .acquire_lock(&owner("alice"), &progress)
        .await
        .expect("an expired lock is taken over");
    assert!(
        progress.lines().iter().any(|l| l.starts_with(
            "warning: took over the expired deploy lock of `staging`: crashed@laptop"
        )),
        "{:?}",
        progress.lines()
    );
    // The vanished holder coming back must not remove alice's lock, and says who has it.
    let late = crashed.release_lock(&stale).await;
    assert!(
        matches!(&late, Err(e) if e.to_string().contains("now held by alice@laptop")),
        "{late:?}"
    );
    assert_eq!(holder(&w.clients).await, Some("alice@laptop".to_owned()));
    let blocked = bob.acquire_lock(&owner("bob"), &progress).await;
    assert!(
        matches!(blocked, Err(EngineError::Locked { .. })),
        "{blocked:?}"
    );

    bob.force_unlock().await.expect("force unlock");
    assert_eq!(holder(&w.clients).await, None);
    alice
        .release_lock(&taken)
        .await
        .expect("releasing a removed lock is fine");
    drop(w.moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_lock_table_says_how_to_create_it() {
    let w = world(false).await;
    let alice = engine(&w.loaded, &w.clients, HOUR, HOUR);
    let error = alice
        .acquire_lock(&owner("alice"), &Recorder::default())
        .await
        .expect_err("no table");
    let text = error.to_string();
    assert!(
        text.contains("`kaapi-staging-deploy-lock` does not exist"),
        "{text}"
    );
    assert!(
        text.contains("kaapi-deploy infra template staging"),
        "{text}"
    );
    drop(w.moto);
}
