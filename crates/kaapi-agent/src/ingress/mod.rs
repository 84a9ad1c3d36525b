//! The ingress: the data plane of the local engine, in a process of its own
//! (`kaapi-deploy agent ingress --state-dir D`) so that an agent restart or crash drops no
//! request. It owns every ingress listener of the state directory (a reverse proxy on
//! 127.0.0.1:{port}, round robin over the serving backends of its table, in-flight counts, one
//! retry on another backend, a backend marked unreachable for a moment after a failed
//! connection, per-release counters) and keeps serving its last tables while no agent runs. The
//! agent decides everything else and pushes each listener's whole table through a small JSON
//! protocol on a Unix socket in the private state directory ([`protocol`]).

pub mod link;
mod process;
pub mod protocol;
mod proxy;

pub use link::{Ensured, IngressCommand, IngressLink};
pub use process::serve_ingress;
