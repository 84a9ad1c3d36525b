//! The agent's side of the ingress: find the running ingress process of the state directory
//! (adopt it), start one when none answers or it speaks another protocol, and send it requests.
//! Every request opens its own connection to the control socket, so a replaced ingress is
//! simply the next connection's peer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::process::InProcess;
use super::protocol::{self, Answer, Backend, Hello, Record, Request};
use crate::error::AgentError;
use crate::metrics::RawCounts;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`IngressLink::ensure`] waits for `hello`: answering it takes no work, so a live
/// ingress that stays silent this long is busy beyond use or hung.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Consecutive unanswered checks after which the ingress counts as hung and is replaced (its
/// listeners serve nothing meanwhile; a check follows an unanswered one at once, so about 3 s).
const HUNG_AFTER: u32 = 3;

/// How the agent runs its ingress.
#[derive(Debug, Clone)]
pub enum IngressCommand {
    /// `{program} agent ingress --state-dir D`, a process of its own that outlives the agent.
    Program(PathBuf),
    /// Inside the agent's process, stopping with it (the agent's own tests, where the current
    /// executable is a test binary).
    InProcess,
}

pub struct IngressLink {
    state_dir: PathBuf,
    command: IngressCommand,
    socket: PathBuf,
    /// Serializes adoption and starts.
    starting: tokio::sync::Mutex<()>,
    /// The pid of the ingress last adopted or started.
    pid: AtomicU32,
    /// Bumped whenever another ingress process is adopted or started: its tables must be
    /// pushed again.
    generation: AtomicU64,
    /// Checks in a row the ingress did not answer in time.
    unanswered: AtomicU32,
    in_process: Mutex<Option<InProcess>>,
}

impl IngressLink {
    pub fn new(state_dir: &Path, command: IngressCommand) -> Self {
        IngressLink {
            state_dir: state_dir.to_owned(),
            command,
            socket: state_dir.join(protocol::SOCKET_FILE),
            starting: tokio::sync::Mutex::new(()),
            pid: AtomicU32::new(0),
            generation: AtomicU64::new(0),
            unanswered: AtomicU32::new(0),
            in_process: Mutex::new(None),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// How many checks in a row the running ingress did not answer in time (0: it answers).
    pub fn unanswered(&self) -> u32 {
        self.unanswered.load(Ordering::SeqCst)
    }

    /// Replaces the table of the listener on `port` (0: a new listener on any free port),
    /// starting the ingress first when none answers; the port it listens on.
    pub async fn put(
        &self,
        port: u16,
        label: &str,
        backends: Vec<Backend>,
    ) -> Result<u16, AgentError> {
        let request = Request::Put {
            port,
            label: label.to_owned(),
            backends,
        };
        match self.call_ensured(&request).await? {
            Answer::Port { port } => Ok(port),
            other => Err(unexpected(&other)),
        }
    }

    /// Closes the listener on `port`; nothing to do when no ingress runs.
    pub async fn remove(&self, port: u16) -> Result<(), AgentError> {
        match self.call(&Request::Remove { port }).await {
            Ok(_) => Ok(()),
            Err(AgentError::Network(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Requests in flight per backend name; never starts an ingress.
    pub async fn in_flight(&self) -> Result<BTreeMap<String, u64>, AgentError> {
        match self.call(&Request::InFlight).await? {
            Answer::InFlight { backends } => Ok(backends),
            other => Err(unexpected(&other)),
        }
    }

    /// Cumulative counters per listener port; never starts an ingress.
    pub async fn counters(
        &self,
    ) -> Result<BTreeMap<u16, Vec<(Option<u64>, RawCounts)>>, AgentError> {
        match self.call(&Request::Counters).await? {
            Answer::Counters { listeners } => Ok(listeners),
            other => Err(unexpected(&other)),
        }
    }

    /// The running ingress, if one answers.
    pub async fn hello(&self) -> Result<Hello, AgentError> {
        match self.call(&Request::Hello).await? {
            Answer::Hello(hello) => Ok(hello),
            other => Err(unexpected(&other)),
        }
    }

    /// Stops the ingress (every listener closes) and waits for its process to end.
    pub async fn stop(&self) -> Result<(), AgentError> {
        let _starting = self.starting.lock().await;
        if let Some(in_process) = self.take_in_process() {
            drop(in_process);
            return Ok(());
        }
        let Ok(hello) = self.hello().await else {
            return Ok(());
        };
        self.stop_process(&hello).await
    }

    /// Closes an ingress run inside this process (a separate process keeps serving).
    pub fn close_in_process(&self) {
        drop(self.take_in_process());
    }

    fn take_in_process(&self) -> Option<InProcess> {
        self.in_process
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Adopts the running ingress, or starts one: when none answers, when it speaks another
    /// protocol (replaced: a short outage), or when a recorded ingress process hangs (it has
    /// not answered [`HUNG_AFTER`] checks in a row: killed).
    pub async fn ensure(&self) -> Result<Ensured, AgentError> {
        let _starting = self.starting.lock().await;
        let hello = match self.exchange(&Request::Hello, CHECK_TIMEOUT).await {
            Ok(Answer::Hello(hello)) => Ok(hello),
            Ok(_) => Err(Failure::Garbled(String::new())),
            Err(failure) => Err(failure),
        };
        if !matches!(hello, Err(Failure::Timeout)) {
            self.unanswered.store(0, Ordering::SeqCst);
        }
        match hello {
            Ok(hello) if hello.protocol == protocol::PROTOCOL => {
                self.adopted(hello.pid);
                return Ok(Ensured::Answered);
            }
            Ok(hello) => {
                eprintln!(
                    "agent: replacing the ingress (pid {}): it speaks protocol {}, this agent {}",
                    hello.pid,
                    hello.protocol,
                    protocol::PROTOCOL
                );
                self.stop_process(&hello).await?;
            }
            Err(Failure::Timeout) => {
                if let Some(pid) = self.recorded_ingress() {
                    return self.replace_if_hung(pid).await;
                }
                self.stop_hung().await?;
            }
            Err(_) => self.stop_hung().await?,
        }
        self.start().await?;
        Ok(Ensured::Started)
    }

    /// The live ingress `pid` did not answer a check: once more in a row than a busy moment
    /// explains (replacing it cuts its open connections), it is killed and a new one started.
    async fn replace_if_hung(&self, pid: u32) -> Result<Ensured, AgentError> {
        let times = self.unanswered.fetch_add(1, Ordering::SeqCst) + 1;
        if times < HUNG_AFTER {
            return Err(AgentError::Network(format!(
                "the ingress (pid {pid}) did not answer within {} ms ({times} time(s) in a row); trying again",
                CHECK_TIMEOUT.as_millis()
            )));
        }
        eprintln!(
            "agent: killing the ingress (pid {pid}): it did not answer {times} checks in a row"
        );
        // SIGKILL: a hung process may never act on SIGTERM (a stopped one does not until resumed).
        crate::process::kill(pid)
            .map_err(|e| AgentError::Start(format!("cannot kill ingress pid {pid}: {e}")))?;
        wait_gone(pid).await?;
        self.unanswered.store(0, Ordering::SeqCst);
        self.start().await?;
        Ok(Ensured::ReplacedHung { pid })
    }

    /// The pid of `ingress.json` when it is this directory's live ingress process.
    fn recorded_ingress(&self) -> Option<u32> {
        let bytes = std::fs::read(self.state_dir.join(protocol::RECORD_FILE)).ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        let ours = record.pid != std::process::id()
            && crate::process::alive(record.pid)
            && crate::process::is_ingress_of(record.pid, &self.state_dir);
        ours.then_some(record.pid)
    }

    fn adopted(&self, pid: u32) {
        if self.pid.swap(pid, Ordering::SeqCst) != pid {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn start(&self) -> Result<(), AgentError> {
        match &self.command {
            IngressCommand::InProcess => {
                let started = InProcess::start(&self.state_dir)?;
                *self
                    .in_process
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(started);
            }
            IngressCommand::Program(program) => self.spawn(program)?,
        }
        let begun = Instant::now();
        while begun.elapsed() < START_TIMEOUT {
            if let Ok(hello) = self.hello().await {
                eprintln!("agent: ingress runs (pid {})", hello.pid);
                self.adopted(hello.pid);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(AgentError::Start(format!(
            "the ingress did not answer on {} within {} s; see {}",
            self.socket.display(),
            START_TIMEOUT.as_secs(),
            self.state_dir
                .join(crate::agent_log::INGRESS_LOG_FILE)
                .display()
        )))
    }

    /// `{program} agent ingress --state-dir D`, detached in its own process group (a signal to
    /// the agent's group does not reach it), logging to `D/ingress.log`.
    fn spawn(&self, program: &Path) -> Result<(), AgentError> {
        use std::os::unix::process::CommandExt;
        let (log, log_path) = crate::agent_log::open_named(
            &self.state_dir,
            crate::agent_log::INGRESS_LOG_FILE,
            crate::agent_log::ROTATE_BYTES,
        )?;
        let log_err = log
            .try_clone()
            .map_err(|e| AgentError::io("cannot open", &log_path, e))?;
        let mut child = std::process::Command::new(program)
            .args(["agent", "ingress", "--state-dir"])
            .arg(&self.state_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                AgentError::Start(format!("cannot run the ingress {}: {e}", program.display()))
            })?;
        // Reaped when it exits while this agent runs (else it would linger as a zombie).
        std::thread::spawn(move || child.wait());
        Ok(())
    }

    /// Asks the ingress of `hello` to stop and waits for its process to end.
    async fn stop_process(&self, hello: &Hello) -> Result<(), AgentError> {
        let _ = self.call(&Request::Stop).await;
        if hello.pid == std::process::id() {
            return Ok(());
        }
        // One that did not take the request is asked with SIGTERM, when it is ours.
        let asked = Instant::now();
        while crate::process::alive(hello.pid) && asked.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if crate::process::alive(hello.pid)
            && crate::process::is_ingress_of(hello.pid, &self.state_dir)
        {
            let _ = crate::process::terminate(hello.pid);
        }
        wait_gone(hello.pid).await
    }

    /// A recorded ingress process that does not answer is stopped with SIGTERM, when its command
    /// line shows it is this directory's ingress (a reused pid is left alone).
    async fn stop_hung(&self) -> Result<(), AgentError> {
        let Some(pid) = self.recorded_ingress() else {
            return Ok(());
        };
        eprintln!("agent: stopping the ingress (pid {pid}): it does not answer its protocol");
        crate::process::terminate(pid)
            .map_err(|e| AgentError::Start(format!("cannot stop ingress pid {pid}: {e}")))?;
        wait_gone(pid).await
    }

    /// Sends `request`; when no ingress answers, starts one and sends it again.
    async fn call_ensured(&self, request: &Request) -> Result<Answer, AgentError> {
        match self.call(request).await {
            Err(AgentError::Network(_)) => {
                self.ensure().await?;
                self.call(request).await
            }
            other => other,
        }
    }

    /// One request on a connection of its own. `Network`: nothing (sane) answered.
    async fn call(&self, request: &Request) -> Result<Answer, AgentError> {
        match self.exchange(request, REQUEST_TIMEOUT).await {
            Ok(Answer::Error { message }) => Err(AgentError::Invalid(message)),
            Ok(answer) => Ok(answer),
            Err(failure) => Err(AgentError::Network(failure.describe(&self.socket))),
        }
    }

    async fn exchange(&self, request: &Request, timeout: Duration) -> Result<Answer, Failure> {
        let mut line = serde_json::to_vec(request).map_err(|e| Failure::Garbled(e.to_string()))?;
        line.push(b'\n');
        let exchange = async {
            let mut stream = UnixStream::connect(&self.socket).await?;
            stream.write_all(&line).await?;
            let mut answer = String::new();
            BufReader::new(stream).read_line(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let answer = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        if answer.is_empty() {
            return Err(Failure::Unreachable("it closed the connection".to_owned()));
        }
        serde_json::from_str::<Answer>(&answer).map_err(|e| Failure::Garbled(e.to_string()))
    }
}

/// What [`IngressLink::ensure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The running ingress answered.
    Answered,
    /// None answered (or it spoke another protocol): a new one was started.
    Started,
    /// The ingress `pid` was alive but hung: it was killed and a new one started.
    ReplacedHung { pid: u32 },
}

/// Why a request got no usable answer.
#[derive(Debug)]
enum Failure {
    /// Nothing listens (the process is gone) or the connection broke.
    Unreachable(String),
    /// Connected, but no answer in time.
    Timeout,
    /// An answer this agent does not understand (another protocol).
    Garbled(String),
}

impl Failure {
    fn describe(&self, socket: &Path) -> String {
        match self {
            Failure::Unreachable(e) => {
                format!("cannot reach the ingress on {}: {e}", socket.display())
            }
            Failure::Timeout => "the ingress did not answer in time".to_owned(),
            Failure::Garbled(e) => {
                format!("the ingress answered something this agent does not understand ({e})")
            }
        }
    }
}

fn unexpected(answer: &Answer) -> AgentError {
    AgentError::Network(format!("unexpected answer from the ingress: {answer:?}"))
}

async fn wait_gone(pid: u32) -> Result<(), AgentError> {
    let asked = Instant::now();
    while crate::process::alive(pid) {
        if asked.elapsed() > START_TIMEOUT {
            return Err(AgentError::Start(format!(
                "the ingress (pid {pid}) did not stop within {} s; stop it with `kill {pid}`",
                START_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
