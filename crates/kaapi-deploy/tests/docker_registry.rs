//! Pushing to a registry: a real OCI registry (Debian's docker-registry) on 127.0.0.1; the
//! release then refers to its image by the registry's digest.

mod docker_support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use docker_support::{eventually, http_get, Project};

struct Registry {
    child: Child,
    port: u16,
    _storage: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let storage = tempfile::tempdir().expect("tempdir");
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.path().join("data").display()
            ),
        )
        .expect("write registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (apt-get install docker-registry)");
        assert!(
            eventually(Duration::from_secs(15), || http_get(port, "/v2/")
                .is_ok_and(|(s, _)| s == 200)),
            "the registry did not answer on 127.0.0.1:{port}"
        );
        Registry {
            child,
            port,
            _storage: storage,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_release_pushed_to_a_registry_runs_by_the_registry_digest() {
    let registry = Registry::start();
    let mut project = Project::new("reg");
    project.environment_extra = format!("registry = \"127.0.0.1:{}\"", registry.port);
    project.configure("1.0.0", "");
    project.deploy();
    assert_eq!(project.serving_version().as_deref(), Some("1.0.0"));

    let releases = project.releases();
    let image = &releases[0]["image"];
    let reference = image["reference"].as_str().expect("reference");
    let digest = image["digest"].as_str().expect("digest");
    let repository = format!("127.0.0.1:{}/{}-local-repo", registry.port, project.app);
    assert_eq!(reference, format!("{repository}@{digest}"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    // The registry itself serves that manifest under that digest.
    let output = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
            &format!(
                "http://127.0.0.1:{}/v2/{}-local-repo/manifests/{digest}",
                registry.port, project.app
            ),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "200");
}
