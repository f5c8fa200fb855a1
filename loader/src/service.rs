//! `llamux service`: what the systemd unit runs. Reads /etc/llamux/llamux.toml
//! (the model, the advisor, the policy folder) and runs the relay in the
//! foreground on every `*.toml` in the policy folder, in name order, in one
//! process (the same relay as `llamux load`). `--check` only validates.
//!
//! The configuration decides which model judges which events, so it is only
//! trusted when nobody but its owner (root, or the user running the command)
//! can change it: the file, the policy folder, every policy file and the
//! model must be regular files/folders owned by root or the caller and not
//! writable by group or others (as sshd's StrictModes).

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use clap::ValueEnum;
use serde::Deserialize;

use crate::bpf;
use crate::fsafe;
use crate::policy_advise::AdvisorChoice;

pub const DEFAULT_CONFIG: &str = "/etc/llamux/llamux.toml";
const DEFAULT_POLICIES_DIR: &str = "/etc/llamux/policies.d";
/// Bigger than any sane configuration; keeps a huge file out of memory.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;
/// More policy files than this is a mistake (the BPF side has a few hooks).
const MAX_POLICIES: usize = 64;
const MAX_THREADS: usize = 1024;
const MAX_CTX: usize = 1 << 20;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    model: Option<String>,
    advisor: Option<String>,
    policies_dir: Option<String>,
    threads: Option<usize>,
    ctx: Option<usize>,
    bpf_obj: Option<String>,
}

/// /etc/llamux/llamux.toml, validated.
#[derive(Debug)]
pub struct Config {
    /// GGUF for the user-space advisor; None: the module's model (module mode).
    pub model: Option<PathBuf>,
    pub advisor: AdvisorChoice,
    pub policies_dir: PathBuf,
    pub threads: Option<usize>,
    pub ctx: usize,
    pub bpf_obj: Option<PathBuf>,
}

fn abs_path(key: &str, v: &str) -> anyhow::Result<PathBuf> {
    if v.chars().any(|c| c.is_control()) {
        bail!("{key}: control characters in the path");
    }
    let p = PathBuf::from(v);
    if !p.is_absolute() {
        bail!("{key}: `{v}` is not an absolute path");
    }
    Ok(p)
}

/// Parses the text of llamux.toml (no file access).
pub fn parse_config(src: &str) -> anyhow::Result<Config> {
    let raw: RawConfig = toml::from_str(src).map_err(|e| anyhow!("{e}"))?;
    let model = match raw.model.as_deref() {
        None | Some("") => None,
        Some(m) => Some(abs_path("model", m)?),
    };
    let advisor = match raw.advisor.as_deref() {
        None => AdvisorChoice::Auto,
        Some(a) => AdvisorChoice::from_str(a, false).map_err(|_| {
            anyhow!(
                "advisor: `{}` is not one of auto, kernel, user",
                a.escape_debug()
            )
        })?,
    };
    if model.is_none() && advisor == AdvisorChoice::User {
        bail!("advisor = \"user\" needs a model");
    }
    let policies_dir = abs_path(
        "policies_dir",
        raw.policies_dir.as_deref().unwrap_or(DEFAULT_POLICIES_DIR),
    )?;
    if let Some(t) = raw.threads {
        if t == 0 || t > MAX_THREADS {
            bail!("threads: {t} is not in 1..={MAX_THREADS}");
        }
    }
    let ctx = raw.ctx.unwrap_or(512);
    if ctx == 0 || ctx > MAX_CTX {
        bail!("ctx: {ctx} is not in 1..={MAX_CTX}");
    }
    let bpf_obj = raw
        .bpf_obj
        .as_deref()
        .map(|b| abs_path("bpf_obj", b))
        .transpose()?;
    Ok(Config {
        model,
        advisor,
        policies_dir,
        threads: raw.threads,
        ctx,
        bpf_obj,
    })
}

/// Reads a trusted regular file of at most `max` bytes. O_NONBLOCK: a FIFO
/// put in its place must not hang the service; the checks run on the open
/// file, so a swapped path cannot slip between check and read.
fn read_trusted(path: &Path, max: u64) -> anyhow::Result<String> {
    let mut f = fsafe::open_nonblocking(path)?;
    let md = f.metadata().with_context(|| path.display().to_string())?;
    if !md.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    fsafe::check_owner_mode(path, &md)?;
    if md.len() > max {
        bail!("{}: {} bytes, more than {max}", path.display(), md.len());
    }
    let mut s = String::new();
    f.by_ref()
        .take(max + 1)
        .read_to_string(&mut s)
        .with_context(|| path.display().to_string())?;
    Ok(s)
}

fn check_trusted_dir(path: &Path) -> anyhow::Result<()> {
    let md = std::fs::metadata(path).with_context(|| path.display().to_string())?;
    if !md.is_dir() {
        bail!("{}: not a folder", path.display());
    }
    fsafe::check_owner_mode(path, &md)
}

/// The policy files of DIR: `*.toml`, no hidden files, in name order, each
/// a trusted regular file (a symlink is followed and its target checked).
pub fn policy_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    check_trusted_dir(dir)?;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let e = e.with_context(|| dir.display().to_string())?;
        let p = e.path();
        let name = e.file_name();
        let hidden = name.to_string_lossy().starts_with('.');
        if hidden || p.extension() != Some(OsStr::new("toml")) {
            continue;
        }
        let md = std::fs::metadata(&p).with_context(|| p.display().to_string())?;
        if !md.is_file() {
            bail!("{}: not a regular file", p.display());
        }
        fsafe::check_owner_mode(&p, &md)?;
        out.push(p);
        if out.len() > MAX_POLICIES {
            bail!("{}: more than {MAX_POLICIES} policy files", dir.display());
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("{}: no *.toml policy in it", dir.display());
    }
    Ok(out)
}

/// Config file + policy list, every file checked.
pub fn resolve(config: &Path) -> anyhow::Result<(Config, Vec<PathBuf>)> {
    if let Some(parent) = config.parent().filter(|p| !p.as_os_str().is_empty()) {
        check_trusted_dir(parent)?;
    }
    let src = read_trusted(config, MAX_CONFIG_BYTES)?;
    let cfg = parse_config(&src).with_context(|| config.display().to_string())?;
    let pols = policy_files(&cfg.policies_dir)?;
    if let Some(m) = &cfg.model {
        let md = std::fs::metadata(m).with_context(|| format!("model {}", m.display()))?;
        if !md.is_file() {
            bail!("model {}: not a regular file", m.display());
        }
        fsafe::check_owner_mode(m, &md)?;
    }
    Ok((cfg, pols))
}

/// `llamux service [--config FILE] [--check]`.
pub fn run(config: &Path, check: bool) -> anyhow::Result<()> {
    let (cfg, files) = resolve(config)?;
    let pols = bpf::validate(&files)?;
    let model = cfg
        .model
        .as_ref()
        .map(|m| m.display().to_string())
        .unwrap_or_else(|| "the kernel module's".into());
    let advisor = cfg
        .advisor
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    eprintln!(
        "llamux: service: {} with {model} model, advisor {advisor}: {}",
        config.display(),
        pols.iter()
            .map(|p| format!("{} ({})", p.name, p.file.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if check {
        println!("{}: ok ({} policies)", config.display(), pols.len());
        return Ok(());
    }
    bpf::load(bpf::LoadOpts {
        policies: files,
        model: cfg.model,
        detach: false,
        bpf_obj: cfg.bpf_obj,
        threads: cfg.threads,
        ctx: cfg.ctx,
        advisor: cfg.advisor,
    })
}

/// `llamux manpages DIR`: llamux.1 and one page per subcommand.
pub fn manpages(cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let cmd = cmd.disable_help_subcommand(true);
    let mut cmds = vec![(cmd.get_name().to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap's names are &'static str (no "string" feature): this one-shot
        // command leaks a few bytes per page.
        let name: &'static str = Box::leak(format!("llamux-{}", sub.get_name()).into_boxed_str());
        cmds.push((
            name.to_string(),
            sub.clone()
                .name(name)
                .bin_name(format!("llamux {}", sub.get_name())),
        ));
    }
    for (name, c) in cmds {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(c)
            .render(&mut buf)
            .with_context(|| name.clone())?;
        std::fs::write(&path, buf).with_context(|| path.display().to_string())?;
    }
    Ok(())
}

/// `llamux completions SHELL`: the completion script on stdout.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> anyhow::Result<()> {
    clap_complete::generate(shell, &mut cmd, "llamux", &mut std::io::stdout());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T>(r: anyhow::Result<T>) -> String {
        r.err().map(|e| format!("{e:#}")).unwrap_or_default()
    }
    use std::os::unix::fs::symlink;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("llamux-service-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn write(p: &Path, s: &str, mode: u32) {
        std::fs::write(p, s).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn config_defaults_and_values() {
        let c = parse_config("").unwrap();
        assert!(c.model.is_none());
        assert_eq!(c.advisor, AdvisorChoice::Auto);
        assert_eq!(c.policies_dir, PathBuf::from(DEFAULT_POLICIES_DIR));
        assert_eq!(c.ctx, 512);
        let c = parse_config("model = \"/m.gguf\"\nadvisor = \"user\"\nthreads = 2\nctx = 256\npolicies_dir = \"/p\"\n").unwrap();
        assert_eq!(c.model, Some(PathBuf::from("/m.gguf")));
        assert_eq!(c.advisor, AdvisorChoice::User);
        assert_eq!((c.threads, c.ctx), (Some(2), 256));
        assert!(parse_config("model = \"\"").unwrap().model.is_none());
    }

    #[test]
    fn config_rejects_bad_values() {
        for (src, want) in [
            ("modle = \"/m\"", "unknown field"),
            ("model = \"m.gguf\"", "not an absolute path"),
            ("model = \"/m\\n.gguf\"", "control characters"),
            ("advisor = \"gpu\"", "not one of"),
            ("advisor = \"user\"", "needs a model"),
            ("threads = 0", "threads"),
            ("threads = 100000", "threads"),
            ("ctx = 0", "ctx"),
            ("ctx = -1", ""),
            ("policies_dir = \"etc\"", "not an absolute path"),
            ("model = 3", ""),
        ] {
            let e = parse_config(src)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_else(|| panic!("{src} accepted"));
            assert!(e.contains(want), "{src}: {e}");
        }
    }

    #[test]
    fn policy_dir_listing() {
        let d = tmpdir("list");
        write(&d.join("b.toml"), "x", 0o644);
        write(&d.join("a.toml"), "x", 0o644);
        write(&d.join(".hidden.toml"), "x", 0o644);
        write(&d.join("notes.txt"), "x", 0o644);
        write(&d.join("c.toml.dpkg-old"), "x", 0o644);
        symlink(d.join("a.toml"), d.join("link.toml")).unwrap();
        let got = policy_files(&d).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.toml", "b.toml", "link.toml"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn policy_dir_refuses_untrusted_entries() {
        let d = tmpdir("untrusted");
        assert!(err(policy_files(&d)).contains("no *.toml"));
        write(&d.join("a.toml"), "x", 0o664);
        assert!(err(policy_files(&d)).contains("writable by group or others"));
        write(&d.join("a.toml"), "x", 0o644);
        std::fs::create_dir(d.join("sub.toml")).unwrap();
        assert!(err(policy_files(&d)).contains("not a regular file"));
        std::fs::remove_dir(d.join("sub.toml")).unwrap();
        symlink("/nonexistent/x", d.join("dangling.toml")).unwrap();
        assert!(policy_files(&d).is_err());
        std::fs::remove_file(d.join("dangling.toml")).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(err(policy_files(&d)).contains("writable by group or others"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn config_file_checks() {
        let d = tmpdir("cfg");
        let pd = d.join("policies.d");
        std::fs::create_dir(&pd).unwrap();
        std::fs::set_permissions(&pd, std::fs::Permissions::from_mode(0o755)).unwrap();
        write(&pd.join("a.toml"), "x", 0o644);
        let cfg = d.join("llamux.toml");
        write(
            &cfg,
            &format!("policies_dir = \"{}\"\n", pd.display()),
            0o644,
        );
        let (c, pols) = resolve(&cfg).unwrap();
        assert!(c.model.is_none());
        assert_eq!(pols, [pd.join("a.toml")]);
        // A world-writable config, a FIFO in its place, a huge file.
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(err(resolve(&cfg)).contains("writable by group or others"));
        std::fs::remove_file(&cfg).unwrap();
        let c = std::ffi::CString::new(cfg.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(err(resolve(&cfg)).contains("not a regular file"));
        std::fs::remove_file(&cfg).unwrap();
        write(&cfg, &"#".repeat(MAX_CONFIG_BYTES as usize + 1), 0o644);
        assert!(err(resolve(&cfg)).contains("more than"));
        // A model that others can replace.
        let m = d.join("m.gguf");
        write(&m, "GGUF", 0o666);
        write(
            &cfg,
            &format!(
                "policies_dir = \"{}\"\nmodel = \"{}\"\n",
                pd.display(),
                m.display()
            ),
            0o644,
        );
        assert!(err(resolve(&cfg)).contains("writable by group or others"));
        std::fs::set_permissions(&m, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(resolve(&cfg).unwrap().0.model, Some(m.clone()));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn check_validates_the_shipped_configuration() {
        // The package's llamux.toml with the repository's policies.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let src = std::fs::read_to_string(root.join("packaging/llamux.toml")).unwrap();
        let c = parse_config(&src).unwrap();
        assert_eq!(c.policies_dir, PathBuf::from(DEFAULT_POLICIES_DIR));
        assert!(c.model.is_none());
        let shipped: Vec<PathBuf> = ["exec-guard", "open-guard", "sched-advisor", "syscall-rate"]
            .iter()
            .map(|n| root.join("policies").join(format!("{n}.toml")))
            .collect();
        assert_eq!(bpf::validate(&shipped).unwrap().len(), 4);
    }
}
