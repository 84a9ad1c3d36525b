//! SIGTERM/SIGINT delivery as channel messages.
//!
//! As PID 1 in a `FROM scratch` container the kernel ignores SIGTERM unless
//! a handler is installed, so `docker stop` would wait for its SIGKILL
//! timeout; installing handlers here is what makes shutdown prompt.

use std::io;
use std::sync::mpsc::{self, Receiver};
use std::thread;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Installs the handlers and returns a receiver that gets the name of every
/// SIGTERM or SIGINT the process receives from now on.
pub fn channel() -> io::Result<Receiver<&'static str>> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                let name = if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                if tx.send(name).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}
