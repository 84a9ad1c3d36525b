//! Copying an image between two real registries (Debian's docker-registry on loopback) streams
//! its blobs: a layer far larger than the upload chunk arrives intact while the process holds
//! only a bounded part of it.

use std::time::Duration;

use kaapi_aws::registry::{sha256_digest, RegistryClient, Repository, UPLOAD_CHUNK};
use kaapi_testkit::{docker, registry};

/// Random bytes do not compress: the pushed layer is about this big.
const LAYER_BYTES: usize = 96 * 1024 * 1024;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .expect("VmRSS in /proc/self/status")
}

/// Builds a `FROM scratch` image with one random layer and pushes it to `host/name:big`.
fn push_big_image(host: &str, name: &str) {
    let dir = tempfile::tempdir().expect("build context");
    let mut random = std::io::Read::take(
        std::fs::File::open("/dev/urandom").expect("open /dev/urandom"),
        LAYER_BYTES as u64,
    );
    let mut layer = std::fs::File::create(dir.path().join("big")).expect("create layer");
    std::io::copy(&mut random, &mut layer).expect("write layer");
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY big /big\n",
    )
    .expect("write Dockerfile");
    let tag = format!("{host}/{name}:big");
    docker(&["build", "-q", "-t", &tag, &dir.path().display().to_string()]);
    docker(&["push", &tag]);
    docker(&["rmi", &tag]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_larger_than_the_chunk_is_copied_in_bounded_memory() {
    let source = registry();
    let target = registry();
    push_big_image(&source.host(), "app");
    let from = Repository::new(&source.host(), "app", None);
    let to = Repository::new(&target.host(), "copy", None);
    let client = RegistryClient::new().expect("client");
    let digest = client
        .manifest_digest(&from, "big")
        .await
        .expect("ask for the digest")
        .expect("the pushed image has a digest");

    let baseline = resident_bytes();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                peak.fetch_max(resident_bytes(), std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let report = client
        .copy_image(&from, &to, &digest, &["v1".to_owned()])
        .await
        .expect("copy");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    sampler.join().expect("sampler");
    assert!(report.uploaded >= 1, "{report:?}");

    // The copy is byte for byte: same manifest digest, and the big layer hashes to its digest.
    let copied = client
        .get_manifest(&to, "v1")
        .await
        .expect("copied manifest");
    assert_eq!(sha256_digest(&copied.bytes), digest);
    let manifest: serde_json::Value =
        serde_json::from_slice(&copied.bytes).expect("the manifest is JSON");
    let layer_size = manifest["layers"][0]["size"]
        .as_u64()
        .expect("the image has a layer with a size");
    assert!(
        layer_size > (4 * UPLOAD_CHUNK) as u64,
        "the layer ({layer_size} bytes) is too small to show anything"
    );
    let grown = peak.load(std::sync::atomic::Ordering::SeqCst) - baseline;
    eprintln!(
        "layer of {} MiB copied; resident memory grew by at most {} MiB",
        layer_size >> 20,
        grown >> 20
    );
    assert!(
        grown < (4 * UPLOAD_CHUNK) as u64,
        "memory grew by {} MiB for a {} MiB layer: the blob was held whole",
        grown >> 20,
        layer_size >> 20
    );
}
