//! The ingress process body: its listeners and the control socket, until `stop`, SIGTERM,
//! SIGINT, or the removal of its state directory. Run as `kaapi-deploy agent ingress
//! --state-dir D` (detached by the agent in its own process group, so it outlives the agent),
//! or inside the agent's process when the agent is told so (tests).

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::protocol::{self, Answer, Hello, Record, Request};
use super::proxy::{Listener, Shared};
use crate::error::AgentError;
use crate::private;

/// The longest control request accepted (a table of a few hundred backends fits easily).
const MAX_REQUEST: u64 = 1024 * 1024;
/// How often the process checks that its state directory still exists.
const WATCH_DIR: Duration = Duration::from_secs(2);

/// Every listener of the process, by port.
pub struct Ingress {
    listeners: Mutex<BTreeMap<u16, Listener>>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ingress {
    fn new() -> Arc<Self> {
        Arc::new(Ingress {
            listeners: Mutex::new(BTreeMap::new()),
            shared: Shared::new(),
            stop: watch::channel(false).0,
        })
    }

    /// Closes every listener (their open connections finish gracefully).
    pub fn close_all(&self) {
        lock(&self.listeners).clear();
    }

    async fn answer(&self, request: Request) -> Answer {
        match request {
            Request::Hello => Answer::Hello(Hello {
                pid: std::process::id(),
                protocol: protocol::PROTOCOL,
                listeners: lock(&self.listeners)
                    .iter()
                    .map(|(port, l)| (*port, l.label.clone()))
                    .collect(),
            }),
            Request::Put {
                port,
                label,
                backends,
            } => match self.put(port, &label, backends).await {
                Ok(port) => Answer::Port { port },
                Err(message) => Answer::Error { message },
            },
            Request::Remove { port } => {
                let removed = lock(&self.listeners).remove(&port);
                drop(removed);
                Answer::Done
            }
            Request::InFlight => Answer::InFlight {
                backends: self.shared.in_flight(),
            },
            Request::Counters => Answer::Counters {
                listeners: lock(&self.listeners)
                    .iter()
                    .map(|(port, l)| (*port, l.metrics().raw_counts()))
                    .collect(),
            },
            Request::Stop => {
                let _ = self.stop.send(true);
                Answer::Done
            }
        }
    }

    async fn put(
        &self,
        port: u16,
        label: &str,
        backends: Vec<protocol::Backend>,
    ) -> Result<u16, String> {
        {
            let listeners = lock(&self.listeners);
            if let Some(listener) = listeners.get(&port) {
                if listener.label != label {
                    return Err(format!(
                        "cannot open the ingress on 127.0.0.1:{port}: it serves {} already; set another ingress port",
                        listener.label
                    ));
                }
                listener.set(backends);
                return Ok(port);
            }
        }
        let listener = Listener::open(port, label, &self.shared)
            .await
            .map_err(|e| e.to_string())?;
        listener.set(backends);
        let port = listener.port;
        eprintln!("ingress: {label} listens on 127.0.0.1:{port}");
        lock(&self.listeners).insert(port, listener);
        Ok(port)
    }
}

/// Runs the ingress process of `state_dir` until it is told to stop.
pub async fn serve_ingress(state_dir: &Path) -> Result<(), AgentError> {
    private::ensure_dir(state_dir)?;
    let lock_file = lock_ingress(state_dir)?;
    let socket_path = state_dir.join(protocol::SOCKET_FILE);
    let socket = bind(&socket_path)?;
    let ingress = Ingress::new();
    let record = Record {
        pid: std::process::id(),
        protocol: protocol::PROTOCOL,
        socket: socket_path.clone(),
    };
    let record_path = state_dir.join(protocol::RECORD_FILE);
    private::write_file(&record_path, &serde_json::to_vec_pretty(&record)?)?;
    eprintln!(
        "ingress: control socket {} (pid {}, protocol {})",
        socket_path.display(),
        record.pid,
        record.protocol
    );
    let mut stop = ingress.stop.subscribe();
    tokio::select! {
        _ = control(socket, Arc::clone(&ingress)) => {}
        _ = stop.wait_for(|stop| *stop) => eprintln!("ingress: stop requested"),
        _ = crate::server::stop_signal() => {}
        _ = directory_removed(&socket_path) => {
            eprintln!("ingress: {} was removed; stopping", socket_path.display());
        }
    }
    ingress.close_all();
    // Only what is still ours: a newer ingress may have replaced them.
    if let Ok(bytes) = std::fs::read(&record_path) {
        if serde_json::from_slice::<Record>(&bytes).is_ok_and(|r| r == record) {
            let _ = std::fs::remove_file(&record_path);
            let _ = std::fs::remove_file(&socket_path);
        }
    }
    eprintln!("ingress: stopped");
    drop(lock_file);
    Ok(())
}

/// An ingress run inside the agent's own process (tests): it stops with the agent.
pub struct InProcess {
    ingress: Arc<Ingress>,
    task: tokio::task::JoinHandle<()>,
    _lock: std::fs::File,
}

impl InProcess {
    pub fn start(state_dir: &Path) -> Result<Self, AgentError> {
        let lock = lock_ingress(state_dir)?;
        let socket = bind(&state_dir.join(protocol::SOCKET_FILE))?;
        let ingress = Ingress::new();
        let task = tokio::spawn(control(socket, Arc::clone(&ingress)));
        Ok(InProcess {
            ingress,
            task,
            _lock: lock,
        })
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.task.abort();
        self.ingress.close_all();
    }
}

/// One ingress per state directory: the lock dies with the process, never goes stale.
fn lock_ingress(state_dir: &Path) -> Result<std::fs::File, AgentError> {
    let path = state_dir.join(protocol::LOCK_FILE);
    let lock = private::open_file(&path, private::Access::ReadWrite)?;
    if lock.try_lock().is_err() {
        return Err(AgentError::Start(format!(
            "another ingress already runs for {}",
            state_dir.display()
        )));
    }
    Ok(lock)
}

/// Binds the control socket, replacing a stale one (never a file of another kind), mode 0600.
fn bind(path: &Path) -> Result<UnixListener, AgentError> {
    // sun_path holds 108 bytes with its terminating NUL.
    if path.as_os_str().len() > 107 {
        return Err(AgentError::Invalid(format!(
            "the ingress control socket path {} is longer than 107 bytes; set KAAPI_STATE_DIR to a shorter directory",
            path.display()
        )));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() || meta.file_type().is_symlink() => {
            std::fs::remove_file(path).map_err(|e| AgentError::io("cannot remove", path, e))?;
        }
        Ok(_) => {
            return Err(AgentError::Invalid(format!(
                "{} is not a socket; move it away",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AgentError::io("cannot inspect", path, e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| AgentError::io("cannot listen on", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| AgentError::io("cannot restrict the permissions of", path, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| AgentError::io("cannot listen on", path, e))?;
    UnixListener::from_std(listener).map_err(|e| AgentError::io("cannot listen on", path, e))
}

async fn control(socket: UnixListener, ingress: Arc<Ingress>) {
    loop {
        match socket.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, Arc::clone(&ingress)));
            }
            Err(e) => {
                eprintln!("ingress: control accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Answers each request line of one control connection.
async fn connection(stream: UnixStream, ingress: Arc<Ingress>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(request) => ingress.answer(request).await,
            Err(e) => Answer::Error {
                message: format!("invalid request: {e}"),
            },
        };
        let Ok(mut bytes) = serde_json::to_vec(&answer) else {
            return;
        };
        bytes.push(b'\n');
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// Resolves once the control socket's file is gone (its state directory was removed, e.g. a
/// temporary one): nothing could reach this ingress any more.
async fn directory_removed(socket: &Path) {
    let socket: PathBuf = socket.to_owned();
    loop {
        tokio::time::sleep(WATCH_DIR).await;
        if std::fs::symlink_metadata(&socket).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::ingress::link::{IngressCommand, IngressLink};
    use crate::private::tests::mode;

    /// A raw HTTP GET on a new connection; the status code.
    async fn status_of(port: u16) -> u16 {
        use tokio::io::AsyncReadExt;
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("status line")
    }

    type Serving = tokio::task::JoinHandle<Result<(), AgentError>>;

    /// `serve_ingress` on a new state directory in a temporary one (kept alive by the guard).
    fn spawn_ingress() -> (tempfile::TempDir, PathBuf, Serving) {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("state");
        let serving = tokio::spawn({
            let dir = dir.clone();
            async move { serve_ingress(&dir).await }
        });
        (root, dir, serving)
    }

    #[tokio::test]
    async fn the_ingress_process_is_private_answers_its_protocol_and_stops_on_request() {
        let (_root, dir, serving) = spawn_ingress();
        let link = IngressLink::new(&dir, IngressCommand::InProcess);
        let mut hello = None;
        for _ in 0..100 {
            if let Ok(answer) = link.hello().await {
                hello = Some(answer);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let hello = hello.expect("the ingress answers hello");
        assert_eq!(
            (hello.pid, hello.protocol),
            (std::process::id(), protocol::PROTOCOL)
        );
        assert_eq!(mode(&dir), 0o700);
        for file in [
            protocol::SOCKET_FILE,
            protocol::RECORD_FILE,
            protocol::LOCK_FILE,
        ] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        let record: Record = serde_json::from_slice(
            &std::fs::read(dir.join(protocol::RECORD_FILE)).expect("ingress.json"),
        )
        .expect("a record");
        assert_eq!(record.pid, std::process::id());
        // A second ingress for the same directory refuses to start.
        assert!(matches!(
            serve_ingress(&dir).await,
            Err(AgentError::Start(_))
        ));

        let port = link.put(0, "local/web", Vec::new()).await.expect("opened");
        assert_eq!(status_of(port).await, 503, "no backend serves yet");
        let taken = link.put(port, "staging/web", Vec::new()).await;
        assert!(
            taken
                .as_ref()
                .is_err_and(|e| e.to_string().contains("local/web")),
            "{taken:?}"
        );
        let counters = link.counters().await.expect("counters");
        let unrouted = counters[&port]
            .iter()
            .find(|(release, _)| release.is_none())
            .map(|(_, counts)| counts.by_class.iter().sum::<u64>());
        assert_eq!(unrouted, Some(1));
        assert!(link.in_flight().await.expect("in flight").is_empty());
        assert_eq!(
            link.hello().await.expect("hello").listeners[&port],
            "local/web"
        );

        link.remove(port).await.expect("removed");
        assert!(link.hello().await.expect("hello").listeners.is_empty());
        link.stop().await.expect("stopped");
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .expect("the ingress stops")
            .expect("task")
            .expect("clean exit");
        assert!(!dir.join(protocol::RECORD_FILE).exists());
        assert!(!dir.join(protocol::SOCKET_FILE).exists());
    }

    #[tokio::test]
    async fn the_ingress_stops_by_itself_when_its_state_directory_is_removed() {
        let (_root, dir, serving) = spawn_ingress();
        let socket = dir.join(protocol::SOCKET_FILE);
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(socket.exists(), "the ingress did not start");
        std::fs::remove_dir_all(&dir).expect("remove the state directory");
        tokio::time::timeout(WATCH_DIR * 3, serving)
            .await
            .expect("the ingress stops once nothing can reach it")
            .expect("task")
            .expect("clean exit");
    }

    #[tokio::test]
    async fn an_ingress_of_another_protocol_is_told_to_stop_and_replaced() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("state");
        private::ensure_dir(&dir).expect("state dir");
        // An "older" ingress: answers hello with protocol 0 and records every request.
        let old = UnixListener::bind(dir.join(protocol::SOCKET_FILE)).expect("bind");
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = old.accept().await {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                if let Ok(Some(line)) = lines.next_line().await {
                    lock(&record).push(line);
                    let answer = format!(
                        r#"{{"hello":{{"pid":{},"protocol":0}}}}"#,
                        std::process::id()
                    );
                    let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
                }
            }
        });
        let link = IngressLink::new(&dir, IngressCommand::InProcess);
        link.ensure().await.expect("replaced");
        assert!(
            lock(&seen)
                .iter()
                .any(|line| line.contains(r#""op":"stop""#)),
            "{:?}",
            lock(&seen)
        );
        let hello = link.hello().await.expect("the new ingress answers");
        assert_eq!(hello.protocol, protocol::PROTOCOL);
        link.close_in_process();
    }
}
