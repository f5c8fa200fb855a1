//! The decision writer: a verdict into the pinned decisions map (where the
//! probes enforce or count it) and, for renice answers, onto the task.

use anyhow::{anyhow, Context as _};
use std::collections::HashMap as StdMap;

use aya::maps::{HashMap as BpfHashMap, MapData};
use aya::Ebpf;
use llamux_common as c;

use crate::policy::Action;

pub struct DecisionWriter {
    map: BpfHashMap<MapData, c::DecisionKey, c::Decision>,
    /// Decision key -> (policy, key as shown), for hits and hit counters.
    pub names: StdMap<c::DecisionKey, (String, String)>,
}

/// What `DecisionWriter::apply` did.
pub struct Applied {
    /// For the trace: "" (map written), "nice N", or what failed.
    pub text: String,
    pub map_failed: bool,
}

impl DecisionWriter {
    pub fn new(bpf: &mut Ebpf) -> anyhow::Result<Self> {
        let map = BpfHashMap::try_from(
            bpf.take_map("LLAMUX_DECISIONS")
                .context("no LLAMUX_DECISIONS map")?,
        )
        .map_err(|e| anyhow!("{e}"))?;
        Ok(DecisionWriter {
            map,
            names: StdMap::new(),
        })
    }

    /// Writes decision `d` under `key`; a renice action is also applied
    /// to `pid` now.
    pub fn apply(
        &mut self,
        key: c::DecisionKey,
        d: c::Decision,
        action: Action,
        pid: u32,
    ) -> Applied {
        let mut out = Applied {
            text: String::new(),
            map_failed: false,
        };
        if let Err(e) = self.map.insert(key, d, 0) {
            out.map_failed = true;
            out.text = format!("map write failed: {e}");
        }
        if let Action::Renice(n) = action {
            // SAFETY: plain syscall on a pid; failure is reported.
            let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, pid, n) };
            out.text = if r == 0 {
                format!("nice {n}")
            } else {
                format!("renice failed: {}", std::io::Error::last_os_error())
            };
        }
        out
    }

    /// Remembers who decided `key` and how it is shown.
    pub fn remember(&mut self, key: c::DecisionKey, policy: &str, shown: &str) {
        self.names
            .insert(key, (policy.to_string(), shown.to_string()));
    }
}
