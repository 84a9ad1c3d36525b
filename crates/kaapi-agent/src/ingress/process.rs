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
