//! Policies: TOML files naming the probe, filters, the question put to the
//! model, its answer set and what each answer does.
//!
//! ```toml
//! name = "exec-guard"
//! hook = "exec"            # exec | open | syscall | sched
//! key = "exe"              # exe | pid | comm | file
//! default = "allow"        # on a miss: allow (fail-open) | deny (fail-closed)
//! ttl = 600                # seconds a decision lives (0: forever)
//! rate_limit = 20          # decisions per second at most
//! [filter]
//! path_prefix = "/tmp/"
//! [prompt]
//! prefix = "..."           # fixed: prefilled once, its KV cache reused
//! event = "Program: {path}\nVerdict:"
//! [[answer]]
//! text = " ALLOW"
//! action = "allow"
//! ```
//!
//! Errors name the file, the line and the field.
//!
//! parse.rs reads the TOML (errors with line and field), validate.rs
//! checks every field and builds the `Policy`, decide.rs renders events
//! and turns answer scores into a verdict.

mod decide;
mod parse;
mod validate;

use std::path::PathBuf;

use llamux_common as c;

use crate::policy_template::ChatPrompt;

pub use parse::{load, parse, PolicyError};

/// Longest decision lifetime a policy may ask for (one year): `ttl` is
/// turned into nanoseconds of CLOCK_MONOTONIC, which must not overflow.
pub const MAX_TTL_S: u64 = 365 * 24 * 3600;

/// When a decision made at `now_ns` (CLOCK_MONOTONIC) with `ttl_s` expires
/// (0: never). Saturating: no TTL can wrap into the past.
pub fn expiry_ns(now_ns: u64, ttl_s: u64) -> u64 {
    if ttl_s == 0 {
        return 0;
    }
    now_ns
        .saturating_add(ttl_s.saturating_mul(1_000_000_000))
        .max(1)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Exec,
    Open,
    Syscall,
    Sched,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Exec => "exec",
            Hook::Open => "open",
            Hook::Syscall => "syscall",
            Hook::Sched => "sched",
        }
    }
    /// The decision map's hook id.
    pub fn id(self) -> u32 {
        match self {
            Hook::Exec => c::HOOK_EXEC,
            Hook::Open => c::HOOK_OPEN,
            Hook::Syscall => c::HOOK_SYSCALL,
            Hook::Sched => c::HOOK_SCHED,
        }
    }
    /// Fields an event of this hook offers to the prompt template.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Hook::Exec => &[
                "pid",
                "uid",
                "comm",
                "time",
                "path",
                "exe",
                "ppid",
                "parent_comm",
            ],
            Hook::Open => &["pid", "uid", "comm", "time", "path"],
            Hook::Syscall => &["pid", "uid", "comm", "time", "nr", "count", "rate"],
            Hook::Sched => &[
                "pid",
                "uid",
                "comm",
                "time",
                "runtime_ms",
                "switches",
                "involuntary",
                "involuntary_pct",
                "cpu_pct",
            ],
        }
    }
    /// Fields a richer probe may add; templates name them `{field?}` and
    /// a line whose optional field is missing is left out.
    pub fn optional_fields(self) -> &'static [&'static str] {
        match self {
            Hook::Exec => &[
                "argv",
                "file_uid",
                "file_mode",
                "file_age_s",
                "dir_world_writable",
                "dir_sticky",
                "parent_chain",
            ],
            _ => &[],
        }
    }
    fn keys(self) -> &'static [KeyKind] {
        match self {
            Hook::Exec => &[KeyKind::Exe, KeyKind::Pid, KeyKind::Comm],
            Hook::Open => &[KeyKind::File, KeyKind::Pid, KeyKind::Comm],
            Hook::Syscall | Hook::Sched => &[KeyKind::Pid, KeyKind::Comm],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Exe,
    Pid,
    Comm,
    File,
}

impl KeyKind {
    pub fn id(self) -> u32 {
        match self {
            KeyKind::Exe => c::KEY_EXE,
            KeyKind::Pid => c::KEY_PID,
            KeyKind::Comm => c::KEY_COMM,
            KeyKind::File => c::KEY_FILE,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Exe => "exe",
            KeyKind::Pid => "pid",
            KeyKind::Comm => "comm",
            KeyKind::File => "file",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
    Audit,
    /// setpriority(PRIO_PROCESS, pid, nice)
    Renice(i32),
    None,
}

impl Action {
    pub fn name(self) -> String {
        match self {
            Action::Allow => "allow".into(),
            Action::Deny => "deny".into(),
            Action::Audit => "audit".into(),
            Action::Renice(n) => format!("renice({n})"),
            Action::None => "none".into(),
        }
    }
    /// The decision map's action code.
    pub fn code(self) -> u32 {
        match self {
            Action::Deny => c::ACT_DENY,
            Action::Audit => c::ACT_AUDIT,
            _ => c::ACT_ALLOW,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub text: String,
    pub action: Action,
    /// Calibration of the chat prompt: nats added to this answer's score
    /// before deciding (the model's lean, measured on a tune split); plain
    /// prompts (other models, the kernel advisor) are not biased.
    pub bias: f32,
    /// Its text in a chat prompt (default: `text` without leading space).
    pub chat: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub file: PathBuf,
    pub name: String,
    pub description: String,
    pub hook: Hook,
    pub key: KeyKind,
    /// Fail-closed when true.
    pub default_deny: bool,
    pub ttl_s: u64,
    pub rate_limit: u32,
    pub path_prefix: String,
    pub min_rate: f64,
    pub sample: u32,
    pub exclude_comm: Vec<String>,
    pub prefix: String,
    pub template: String,
    pub answers: Vec<Answer>,
    /// Calibration: when the best answer's score leads the next by less
    /// than this (nats), the policy default applies ("uncertain").
    pub margin: f32,
    /// `[prompt.chat]`: the prompt for models with a chat template.
    pub chat: Option<ChatPrompt>,
}

/// What `Policy::decide` makes of the answers' scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    /// The best answer (scores plus the answers' biases).
    pub best: usize,
    /// Its lead over the next answer (nats).
    pub margin: f32,
    /// The lead is under the policy's margin: the default applies.
    pub uncertain: bool,
    pub action: Action,
}

#[cfg(test)]
mod tests;
