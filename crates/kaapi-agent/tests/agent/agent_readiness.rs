//! Readiness that means the application answers: a web service without a health path, whose
//! process listens only seconds after its container starts, takes traffic only then.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::agent_support::{
    containers_of, docker, docker_build, images, ingress_url, roll_out, start_agent, version,
    Fixture, Load,
};
use kaapi_agent::api::{LogLimits, RolloutPhase};

/// How long the late image waits before it listens.
const LISTEN_DELAY_SECS: u64 = 3;

/// A `FROM scratch` image around the static busybox: `sleep 3`, then `httpd` serving
/// `/version` as `{"version":"late"}`. While it sleeps, Docker's proxy accepts connections on
/// its published port and resets them.
fn late_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp build context");
        std::fs::copy("/bin/busybox", dir.path().join("busybox"))
            .expect("busybox-static is installed (/bin/busybox)");
        std::fs::create_dir(dir.path().join("www")).expect("mkdir www");
        std::fs::write(dir.path().join("www/version"), r#"{"version":"late"}"#)
            .expect("write version");
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCOPY www /www\n",
        )
        .expect("write Dockerfile");
        docker_build(dir.path(), "kaapi-agent-test-late:1", &[])
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn web_service_without_health_path_takes_traffic_only_once_it_answers() {
    let images = images();
    let late = late_image();
    let fixture = Fixture::new("late");
    fixture.migrate(&images.v1);
    let (_agent, client) = start_agent(fixture.state_dir.path()).await;
    let first = roll_out(&client, &fixture.spec(1, &images.v1, 2, 0)).await;
    assert_eq!(first.phase, RolloutPhase::Completed, "{first:?}");
    let url = ingress_url(&client, &fixture.environment).await;

    let mut spec = fixture.spec(2, late, 2, 0);
    for service in &mut spec.services {
        service.logs = Some(LogLimits {
            max_size_mb: 2,
            max_files: 4,
        });
        service.health = None;
        service.volumes.clear();
        service.command = Some(
            [
                "/bin/sh",
                "-c",
                &format!("sleep {LISTEN_DELAY_SECS}; exec httpd -f -p 8000 -h /www"),
            ]
            .map(str::to_owned)
            .to_vec(),
        );
    }
    let load = Load::start(&url, 4, 50_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let begun = Instant::now();
    let second = roll_out(&client, &spec).await;
    let took = begun.elapsed();
    assert_eq!(second.phase, RolloutPhase::Completed, "{second:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = load.finish().await;
    eprintln!("load: {report:?}; rollout took {took:?}");

    assert_eq!(report.failed, 0, "failed requests: {:?}", report.failures);
    assert!(
        report.versions.contains_key("v1") && report.versions.contains_key("late"),
        "the load did not span the switch: {report:?}"
    );
    assert!(
        took >= Duration::from_secs(LISTEN_DELAY_SECS),
        "switched after {took:?}, before the new replicas listened"
    );
    let ready = second
        .messages
        .iter()
        .filter(|m| m.contains("the application answers"))
        .count();
    assert_eq!(ready, 2, "{:?}", second.messages);
    assert_eq!(version(&url).await, "late");
    // Every replica's log is bounded as the spec says.
    let replicas = containers_of(&fixture.environment, &["label=dev.kaapi.release=2"]);
    assert_eq!(replicas.len(), 2);
    for id in &replicas {
        let log_config = docker(&["inspect", "--format", "{{json .HostConfig.LogConfig}}", id]);
        let log_config: serde_json::Value =
            serde_json::from_str(&log_config).expect("LogConfig is JSON");
        assert_eq!(log_config["Type"], "json-file", "{log_config}");
        assert_eq!(log_config["Config"]["max-size"], "2m", "{log_config}");
        assert_eq!(log_config["Config"]["max-file"], "4", "{log_config}");
    }
    client
        .remove_environment(&fixture.environment)
        .await
        .expect("remove environment");
    client.shutdown().await.expect("shutdown");
}
