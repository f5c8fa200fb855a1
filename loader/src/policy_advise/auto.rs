//! The relay's advisor: the kernel's when possible, user space otherwise.

use std::path::Path;

use anyhow::{anyhow, bail, Context as _};
use llamux::policy_template::Format;
use serde_json::{Map, Value};

use crate::policy::Policy;

use super::{kernel_available, KERNEL_ADVISE};
use super::{Advice, Advise, KernelAdvisor, UserAdvisor};

/// Which advisor `llamux load` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AdvisorChoice {
    /// The kernel module when it has a model, else user space; a kernel
    /// error falls back to user space (needs --model).
    Auto,
    /// Only the kernel module.
    Kernel,
    /// Only the user-space engine (needs --model).
    User,
}

/// The relay's advisor: the kernel's when possible, the user-space engine
/// (built on first need) otherwise. `name()` tells who decided last.
pub struct AutoAdvisor {
    kernel: Option<KernelAdvisor>,
    user: Option<UserAdvisor>,
    model: Option<std::path::PathBuf>,
    threads: Option<usize>,
    ctx: usize,
    policies: Vec<Policy>,
    last: &'static str,
}

impl AutoAdvisor {
    pub fn new(
        choice: AdvisorChoice,
        model: Option<&Path>,
        threads: Option<usize>,
        ctx: usize,
    ) -> anyhow::Result<Self> {
        let kernel_ok = kernel_available();
        let kernel = match choice {
            AdvisorChoice::User => None,
            AdvisorChoice::Kernel if !kernel_ok => {
                return Err(anyhow!(
                    "--advisor kernel: {KERNEL_ADVISE} is not there or the module has no model"
                ))
            }
            _ if kernel_ok => Some(KernelAdvisor::new(ctx)),
            _ => None,
        };
        let model = if choice == AdvisorChoice::Kernel {
            None
        } else {
            model.map(Path::to_path_buf)
        };
        if kernel.is_none() && model.is_none() {
            bail!("no --model given and the kernel module's advisor is not available (insmod llamux.ko model=...)");
        }
        let mut a = AutoAdvisor {
            kernel,
            user: None,
            model,
            threads,
            ctx,
            policies: Vec::new(),
            last: "user",
        };
        if a.kernel.is_some() {
            a.last = "kernel";
        } else {
            a.user_advisor()?;
        }
        Ok(a)
    }

    /// The user-space advisor with every policy added, built on first use.
    fn user_advisor(&mut self) -> anyhow::Result<&mut UserAdvisor> {
        if self.user.is_none() {
            let model = self
                .model
                .as_deref()
                .context("no --model for the user-space advisor")?;
            let mut u = UserAdvisor::new(model, self.threads, self.ctx)?;
            for p in &self.policies {
                u.add_policy(p)?;
            }
            self.user = Some(u);
        }
        Ok(self.user.as_mut().unwrap())
    }

    /// Asks the kernel's advisor when there is one; on its error, user
    /// space decides if a model was given. Records who answered.
    fn kernel_first<T>(
        &mut self,
        kernel: impl FnOnce(&mut KernelAdvisor) -> anyhow::Result<T>,
        user: impl FnOnce(&mut UserAdvisor) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        if let Some(k) = self.kernel.as_mut() {
            match kernel(k) {
                Ok(r) => {
                    self.last = "kernel";
                    return Ok(r);
                }
                Err(e) if self.model.is_some() => {
                    eprintln!("llamux: kernel advisor: {e:#}; deciding in user space")
                }
                Err(e) => return Err(e.context("kernel advisor")),
            }
        }
        let r = user(self.user_advisor()?)?;
        self.last = "user";
        Ok(r)
    }
}

impl Advise for AutoAdvisor {
    fn name(&self) -> &'static str {
        self.last
    }

    fn add_policy(&mut self, p: &Policy) -> anyhow::Result<usize> {
        let h = self.policies.len();
        if let Some(k) = self.kernel.as_mut() {
            k.add_policy(p)?;
        }
        if let Some(u) = self.user.as_mut() {
            u.add_policy(p)?;
        }
        self.policies.push(p.clone());
        Ok(h)
    }

    fn advise(&mut self, policy: usize, event_text: &str) -> anyhow::Result<Advice> {
        self.kernel_first(
            |k| k.advise(policy, event_text),
            |u| u.advise(policy, event_text),
        )
    }

    fn advise_event(
        &mut self,
        policy: usize,
        event: &Map<String, Value>,
    ) -> anyhow::Result<(String, Advice)> {
        self.kernel_first(
            |k| k.advise_event(policy, event),
            |u| u.advise_event(policy, event),
        )
    }

    /// The format of the advisor that decided last.
    fn format(&self, policy: usize) -> Format {
        match (self.last, &self.user, &self.kernel) {
            ("user", Some(u), _) => u.format(policy),
            ("kernel", _, Some(k)) => k.format(policy),
            _ => Format::Plain,
        }
    }
}
