//! The deploy lock against moto's SSM: of two racing acquirers exactly one wins; release
//! removes the parameter; an expired lock is taken over with a warning; the old owner's
//! release then leaves the new lock alone; `unlock --force` removes it.

mod support;

use std::time::Duration;

use kaapi_core::engine::{Engine, EngineError, LockOwner};
use kaapi_ecs::error::error_code;
use kaapi_ecs::{AwsClients, EcsEngine, Target, Tuning};
use support::moto::Moto;
use support::{write_config, Recorder};

const PARAMETER: &str = "/kaapi-deploy/locks/kaapi/staging";

fn owner(name: &str) -> LockOwner {
    LockOwner {
        holder: format!("{name}@laptop"),
        url: Some(format!("https://ci.example.org/runs/{name}")),
    }
}

async fn parameter_exists(clients: &AwsClients) -> bool {
    match clients.ssm.get_parameter().name(PARAMETER).send().await {
        Ok(_) => true,
        Err(e) if error_code(&e) == Some("ParameterNotFound") => false,
        Err(e) => panic!("GetParameter: {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deploy_holds_the_lock_and_expired_locks_are_taken_over() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let loaded = write_config(dir.path(), "");
    let env = loaded.config.environment("staging").expect("staging");
    let shared = kaapi_aws::load(env, Some("eu-west-1"), &kaapi_aws::process_vars())
        .await
        .expect("AWS config");
    let clients = AwsClients::from_sdk_config(shared);
    let alice = EcsEngine::connect(&loaded, "staging", None)
        .await
        .expect("engine");
    let bob = EcsEngine::connect(&loaded, "staging", None)
        .await
        .expect("engine");
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
            assert!(holder.contains("https://ci.example.org/runs/"), "{holder}");
        }
        other => panic!("expected Locked, got {other}"),
    }
    assert!(loser_error.to_string().contains("unlock staging --force"));
    assert!(parameter_exists(&clients).await);
    winner.release_lock(&token).await.expect("release");
    assert!(
        !parameter_exists(&clients).await,
        "release removes the lock"
    );

    // A lock whose owner vanished: it expires at once here.
    let short_lived = EcsEngine::with_clients(
        Target::new(&loaded, "staging").expect("staging"),
        clients.clone(),
        Tuning {
            lock_ttl: Duration::ZERO,
            ..Tuning::default()
        },
        None,
    );
    let stale = short_lived
        .acquire_lock(&owner("crashed"), &progress)
        .await
        .expect("free lock");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = alice
        .acquire_lock(&owner("alice"), &progress)
        .await
        .expect("an expired lock is taken over");
    assert!(
        progress
            .lines()
            .iter()
            .any(|l| l
                .starts_with("warning: taking over the deploy lock of `staging`: crashed@laptop")),
        "{:?}",
        progress.lines()
    );
    // The vanished owner coming back must not remove alice's lock.
    short_lived.release_lock(&stale).await.expect("release");
    assert!(parameter_exists(&clients).await, "alice still holds it");
    let blocked = bob.acquire_lock(&owner("bob"), &progress).await;
    assert!(
        matches!(blocked, Err(EngineError::Locked { .. })),
        "{blocked:?}"
    );

    bob.force_unlock().await.expect("force unlock");
    assert!(!parameter_exists(&clients).await);
    alice
        .release_lock(&taken)
        .await
        .expect("releasing a removed lock is fine");
    drop(moto);
}
