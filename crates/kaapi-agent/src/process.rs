//! Whether a process still runs, read from `/proc` (the agent's pid file and the deploy lock
//! record pids that may belong to a process that is gone).

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
