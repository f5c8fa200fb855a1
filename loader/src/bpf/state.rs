//! The run folder's state file (state.json: the relay's pid and what it
//! loaded) and the checks built on it.

use anyhow::bail;
use std::path::PathBuf;

use serde_json::Value;

use crate::trace;

pub fn state_path() -> PathBuf {
    trace::run_dir().join("state.json")
}

pub fn read_state() -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(state_path()).ok()?).ok()
}

/// The relay pid a state file records (0 when none).
pub fn state_pid(st: &Value) -> i32 {
    st.get("pid").and_then(Value::as_i64).unwrap_or(0) as i32
}

pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Policies, pins and the run files are root's (0600/0700): another user
/// cannot see them, so would wrongly hear "nothing loaded".
pub fn need_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "{what} needs root: the policies, pins and {} are root's",
            trace::run_dir().display()
        );
    }
    Ok(())
}
