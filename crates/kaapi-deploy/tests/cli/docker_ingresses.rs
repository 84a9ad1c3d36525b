//! Several web services locally (Kaapi's backend and Flower's UI): each is served through an
//! ingress of its own on a stable 127.0.0.1 port, with its own health check, through deploys.

use crate::docker_support::{http_get, Project, LABEL_RELEASE};

const LABEL_SERVICE: &str = "dev.kaapi.service";

/// The replica container (short ID, as HOSTNAME in the container) that answered `/version` on
/// `port`, and the version it serves.
fn answer(port: u16) -> (String, String) {
    let (status, body) = http_get(port, "/version").expect("the ingress answers");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    (
        json["replica"].as_str().expect("replica").to_owned(),
        json["version"].as_str().expect("version").to_owned(),
    )
}

#[test]
fn every_web_service_answers_on_its_own_stable_port() {
    let mut project = Project::new("ingr");
    let flower_port = kaapi_testkit::free_port();
    // Flower: the same image serving on its own port, with its own health check.
    project.environment_extra = format!(
        r#"ingress_ports = {{ flower = {flower_port} }}

[services.flower]
command = "/app serve"
port = 5555
env = {{ PORT = "5555" }}
volumes = ["data:/data"]
health = {{ path = "/api/v1/utils/health/", interval = "1s", timeout = "900ms", retries = 3, start_period = "3s" }}
"#
    );
    project.configure("1.0.0", "");
    project.deploy();

    for version in ["1.0.0", "1.0.1"] {
        if version != "1.0.0" {
            project.configure(version, "");
            project.deploy();
        }
        let release = project.releases().len().to_string();
        for (port, service) in [(project.port, "backend"), (flower_port, "flower")] {
            let containers =
                project.containers(&[(LABEL_SERVICE, service), (LABEL_RELEASE, release.as_str())]);
            // Several answers: every one comes from a replica of that service.
            for _ in 0..4 {
                let (replica, serving) = answer(port);
                assert!(
                    containers.contains(&replica),
                    "{service} on {port}: {replica} is not among {containers:?}"
                );
                assert_eq!(serving, version, "{service} on {port}");
            }
        }
    }
}
