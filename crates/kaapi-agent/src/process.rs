//! Whether a process still runs, read from `/proc` (the agent's and the ingress' pid files and
//! the deploy lock record pids that may belong to a process that is gone).

/// Whether `pid` runs (a zombie, ended but not yet reaped by its parent, does not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Whether `pid` is an agent process of `state_dir` (`… agent run --state-dir D`), read from
/// its command line: a recorded pid may since belong to an unrelated process.
pub fn is_agent_of(pid: u32, state_dir: &std::path::Path) -> bool {
    runs_for(pid, b"run", state_dir)
}

/// Whether `pid` is the ingress process of `state_dir` (`… agent ingress --state-dir D`).
pub fn is_ingress_of(pid: u32, state_dir: &std::path::Path) -> bool {
    runs_for(pid, b"ingress", state_dir)
}

fn runs_for(pid: u32, subcommand: &[u8], state_dir: &std::path::Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let runs_agent = args
        .windows(2)
        .any(|w| w == [b"agent".as_slice(), subcommand]);
    let wanted = std::fs::canonicalize(state_dir).ok();
    let same_dir = args.windows(2).any(|w| {
        use std::os::unix::ffi::OsStrExt;
        w[0] == b"--state-dir"
            && std::fs::canonicalize(std::ffi::OsStr::from_bytes(w[1]))
                .ok()
                .is_some_and(|dir| Some(dir) == wanted)
    });
    runs_agent && same_dir
}

/// Asks `pid` to stop with SIGTERM (the agent stops cleanly on it).
pub fn terminate(pid: u32) -> std::io::Result<()> {
    signal(pid, libc::SIGTERM)
}

/// Ends `pid` with SIGKILL (a hung process that would not act on SIGTERM).
pub fn kill(pid: u32) -> std::io::Result<()> {
    signal(pid, libc::SIGKILL)
}

fn signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill has no memory preconditions; a stale pid gives ESRCH.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
