//! Files and folders the policy loader trusts or writes as root: nobody
//! else may have made them, be able to change them, or read what the relay
//! records (prompts, paths, pids).
//!
//! - `private_dir`: a folder we own that nobody else can write (made 0700
//!   when missing); anything else is refused with a message.
//! - `write_private` / `open_private`: files made 0600, never through a
//!   symbolic link, re-chmodded when they exist already.
//! - `read_trusted`: a file (the BPF object) owned by root or by us, not
//!   writable by group or others, in folders nobody else can rename it in.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{anyhow, bail, Context as _};

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Owned by root or by us?
fn owner_ok(uid: u32) -> bool {
    uid == 0 || uid == euid()
}

/// Why the folder `p` (lstat'ed as `md`) is not ours alone, if it is not.
fn dir_problem(p: &Path, md: &std::fs::Metadata) -> Option<String> {
    if md.file_type().is_symlink() || !md.is_dir() {
        return Some(format!(
            "{} is not a directory (a symbolic link or a file)",
            p.display()
        ));
    }
    if md.uid() != euid() {
        return Some(format!(
            "{} is owned by uid {}, not by uid {}",
            p.display(),
            md.uid(),
            euid()
        ));
    }
    if md.mode() & 0o022 != 0 {
        return Some(format!(
            "{} is writable by group or others (mode {:04o})",
            p.display(),
            md.mode() & 0o7777
        ));
    }
    None
}

/// Makes `p` a folder of ours with `mode` (0700, 0755) or checks that the
/// existing one is ours and not writable by others.
pub fn private_dir(p: &Path, mode: u32) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(md) => match dir_problem(p, &md) {
            Some(why) => Err(anyhow!(why)),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
            }
            std::fs::DirBuilder::new()
                .mode(mode)
                .create(p)
                .with_context(|| p.display().to_string())?;
            // The umask may have taken bits away; set exactly `mode`.
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .with_context(|| p.display().to_string())?;
            let md = std::fs::symlink_metadata(p).with_context(|| p.display().to_string())?;
            dir_problem(p, &md).map_or(Ok(()), |why| Err(anyhow!(why)))
        }
        Err(e) => Err(anyhow::Error::new(e).context(p.display().to_string())),
    }
}

/// Opens `p` for writing as a 0600 file of ours (created, truncated or
/// appended), refusing a symbolic link or somebody else's file.
pub fn open_private(p: &Path, append: bool) -> anyhow::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    let f = o.open(p).with_context(|| p.display().to_string())?;
    let md = f.metadata().with_context(|| p.display().to_string())?;
    if !md.is_file() || md.uid() != euid() {
        bail!("{}: not a regular file of uid {}", p.display(), euid());
    }
    if md.mode() & 0o777 != 0o600 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| p.display().to_string())?;
    }
    Ok(f)
}

/// Writes `data` to `p` as a 0600 file of ours.
pub fn write_private(p: &Path, data: &[u8]) -> anyhow::Result<()> {
    open_private(p, false)?
        .write_all(data)
        .with_context(|| p.display().to_string())
}

/// Why `p` cannot be trusted as code to load into the kernel, if so:
/// every folder above it must be owned by root or us and not writable by
/// others (unless sticky, like /tmp: then nobody else can rename in it).
fn ancestors_problem(p: &Path) -> Option<String> {
    let abs = std::fs::canonicalize(p).ok()?;
    for d in abs.ancestors().skip(1) {
        let md = match std::fs::metadata(d) {
            Ok(m) => m,
            Err(e) => return Some(format!("{}: {e}", d.display())),
        };
        if !owner_ok(md.uid()) {
            return Some(format!(
                "folder {} is owned by uid {}",
                d.display(),
                md.uid()
            ));
        }
        if md.mode() & 0o022 != 0 && md.mode() & 0o1000 == 0 {
            return Some(format!(
                "folder {} is writable by others (mode {:04o})",
                d.display(),
                md.mode() & 0o7777
            ));
        }
    }
    None
}

/// Owned by root or by us, not writable by group or others: the check for
/// every file the loader trusts (the BPF object, the service's config and
/// policies).
pub fn check_owner_mode(p: &Path, md: &std::fs::Metadata) -> anyhow::Result<()> {
    if !owner_ok(md.uid()) {
        bail!(
            "{}: owned by uid {}, not by root or uid {}: refusing it",
            p.display(),
            md.uid(),
            euid()
        );
    }
    if md.mode() & 0o022 != 0 {
        bail!(
            "{}: writable by group or others (mode {:04o}): refusing it (chmod go-w)",
            p.display(),
            md.mode() & 0o7777
        );
    }
    Ok(())
}

/// Opens `p` for reading without blocking on a FIFO or a device put in a
/// file's place (the checks then run on the open file).
pub fn open_nonblocking(p: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(p)
        .with_context(|| p.display().to_string())
}

/// Reads `p` when it is a regular file owned by root or us, not writable
/// by group or others, in trusted folders.
pub fn read_trusted(p: &Path) -> anyhow::Result<Vec<u8>> {
    let mut f = open_nonblocking(p)?;
    let md = f.metadata().with_context(|| p.display().to_string())?;
    if !md.is_file() {
        bail!("{}: not a regular file", p.display());
    }
    check_owner_mode(p, &md)?;
    if let Some(why) = ancestors_problem(p) {
        bail!("{}: {why}", p.display());
    }
    let mut b = Vec::new();
    f.read_to_end(&mut b)
        .with_context(|| p.display().to_string())?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("llamux-fsafe-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    #[test]
    fn private_files_are_0600_and_never_links() {
        let d = tmp("files");
        let f = d.join("state.json");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, b"new").unwrap();
        let md = std::fs::metadata(&f).unwrap();
        assert_eq!(
            (
                md.mode() & 0o777,
                std::fs::read_to_string(&f).unwrap().as_str()
            ),
            (0o600, "new")
        );
        let l = d.join("relay.log");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        assert!(open_private(&l, true).is_err());
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
        let n = d.join("trace.jsonl");
        drop(open_private(&n, false).unwrap());
        assert_eq!(std::fs::metadata(&n).unwrap().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn private_dir_is_made_0700_and_others_refused() {
        let d = tmp("dir");
        let p = d.join("pins");
        private_dir(&p, 0o700).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o700);
        private_dir(&p, 0o700).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = format!("{:#}", private_dir(&p, 0o700).unwrap_err());
        assert!(e.contains("writable by group or others"), "{e}");
        let l = d.join("link");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        assert!(format!("{:#}", private_dir(&l, 0o700).unwrap_err()).contains("not a directory"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn trusted_files_only() {
        let d = tmp("trust");
        let f = d.join("llamux-probes.o");
        std::fs::write(&f, b"\x7fELF").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        // temp_dir's own ancestors may be shared (a CI runner's TMPDIR):
        // only judge the file's own bits when they are fine.
        if ancestors_problem(&f).is_none() {
            assert_eq!(read_trusted(&f).unwrap(), b"\x7fELF");
        }
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(
            format!("{:#}", read_trusted(&f).unwrap_err()).contains("writable by group or others")
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(format!("{:#}", read_trusted(&f).unwrap_err()).contains("writable by others"));
        // A FIFO in the object's place is refused at once, not waited on.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let fifo = d.join("fifo.o");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(format!("{:#}", read_trusted(&fifo).unwrap_err()).contains("not a regular file"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
