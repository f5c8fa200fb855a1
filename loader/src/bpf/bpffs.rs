//! The BPF filesystem: mounting it root-only, and the pin folder
//! (`PIN_DIR`) where the maps and, with --detach, the program links live.

use anyhow::{anyhow, bail};
use std::path::{Path, PathBuf};

use aya::maps::{Map, MapData};
use aya::Ebpf;

pub const PIN_DIR: &str = "/sys/fs/bpf/llamux";

/// Mounts bpffs on /sys/fs/bpf when it is not there yet, root-only (mode
/// 0700: the default 1777 lets any user make /sys/fs/bpf/llamux first).
pub fn ensure_bpffs() -> anyhow::Result<()> {
    let mut st: libc::statfs = zeroed_statfs();
    let p = c"/sys/fs/bpf";
    // SAFETY: p is a NUL-terminated path, st a valid out-buffer.
    let r = unsafe { libc::statfs(p.as_ptr(), &mut st) };
    if r == 0 && st.f_type == 0xcafe4a11 {
        return Ok(());
    }
    std::fs::create_dir_all("/sys/fs/bpf").map_err(|e| anyhow!("/sys/fs/bpf: {e}"))?;
    // SAFETY: all arguments are NUL-terminated strings or null data.
    let r = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            p.as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if r != 0 {
        bail!(
            "mount bpffs on /sys/fs/bpf: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn zeroed_statfs() -> libc::statfs {
    // SAFETY: statfs is a plain C struct of integers; all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// Lifts the locked-memory limit BPF maps were charged to before 5.11.
pub fn bump_memlock() {
    let r = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: r is a valid rlimit; failure only matters on pre-5.11 kernels.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) };
}

/// Pins the object's own maps (LLAMUX_*) under PIN_DIR.
pub fn pin_maps(bpf: &Ebpf) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for (name, map) in bpf.maps() {
        if !name.starts_with("LLAMUX_") {
            continue; // aya-log's own maps
        }
        let path = Path::new(PIN_DIR).join(name);
        map.pin(&path)
            .map_err(|e| anyhow!("pin {}: {e}", path.display()))?;
        out.push(path);
    }
    Ok(out)
}

/// A map pinned by a running loader.
pub fn pinned(name: &str) -> anyhow::Result<Map> {
    let p = Path::new(PIN_DIR).join(name);
    let md = MapData::from_pin(&p).map_err(|e| anyhow!("{}: {e}", p.display()))?;
    Map::from_map_data(md).map_err(|e| anyhow!("{}: {e}", p.display()))
}

/// The message for a pin folder that is not ours alone.
pub fn pin_dir_refused(why: anyhow::Error) -> anyhow::Error {
    anyhow!(
        "refusing {PIN_DIR}: {why:#}. Another user may have made it to block or spoof llamux; \
         remove it (rm -r {PIN_DIR}) and mount bpffs root-only (mount -t bpf -o mode=0700 bpf /sys/fs/bpf)"
    )
}

/// An existing pin folder must be ours (root-owned, 0700 as we make it).
pub fn check_pin_dir() -> anyhow::Result<()> {
    match std::fs::symlink_metadata(PIN_DIR) {
        Ok(_) => crate::fsafe::private_dir(Path::new(PIN_DIR), 0o700).map_err(pin_dir_refused),
        Err(_) => Ok(()),
    }
}

pub fn remove_pins() {
    if let Ok(rd) = std::fs::read_dir(PIN_DIR) {
        for e in rd.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(PIN_DIR);
}
