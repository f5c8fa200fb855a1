//! Just enough of a BTF reader to find struct member offsets in the running
//! kernel (/sys/kernel/btf/vmlinux): aya 0.14 cannot emit CO-RE field
//! relocations, so the probes get the offsets they need through their
//! config map.

use anyhow::{anyhow, bail, Context as _};
use llamux_common::Offsets;

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

struct Ty {
    name_off: u32,
    kind: u32,
    vlen: u32,
    kind_flag: bool,
    /// size for structs, type id for modifiers
    size_type: u32,
    /// byte offset of the trailing data in the type section
    data: usize,
}

pub struct Btf {
    types: Vec<Ty>, // index = type id (0 = void)
    tsec: Vec<u8>,
    strs: Vec<u8>,
}

fn u32_at(b: &[u8], o: usize) -> anyhow::Result<u32> {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
        .context("BTF truncated")
}

impl Btf {
    pub fn parse(b: &[u8]) -> anyhow::Result<Btf> {
        if b.len() < 24 || u16::from_le_bytes([b[0], b[1]]) != 0xeb9f {
            bail!("not little-endian BTF");
        }
        let hdr_len = u32_at(b, 4)? as usize;
        let (type_off, type_len) = (u32_at(b, 8)? as usize, u32_at(b, 12)? as usize);
        let (str_off, str_len) = (u32_at(b, 16)? as usize, u32_at(b, 20)? as usize);
        let tsec = b
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .context("BTF type section out of range")?
            .to_vec();
        let strs = b
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .context("BTF string section out of range")?
            .to_vec();
        let mut types = vec![Ty {
            name_off: 0,
            kind: 0,
            vlen: 0,
            kind_flag: false,
            size_type: 0,
            data: 0,
        }];
        let mut o = 0;
        while o + 12 <= tsec.len() {
            let name_off = u32_at(&tsec, o)?;
            let info = u32_at(&tsec, o + 4)?;
            let size_type = u32_at(&tsec, o + 8)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = info & 0xffff;
            let data = o + 12;
            let extra = match kind {
                1 => 4,                      // INT
                3 => 12,                     // ARRAY
                4 | 5 => 12 * vlen as usize, // STRUCT, UNION
                6 => 8 * vlen as usize,      // ENUM
                13 => 8 * vlen as usize,     // FUNC_PROTO
                14 => 4,                     // VAR
                15 => 12 * vlen as usize,    // DATASEC
                17 => 4,                     // DECL_TAG
                19 => 12 * vlen as usize,    // ENUM64
                2 | 7..=12 | 16 | 18 => 0,
                k => bail!("unknown BTF kind {k}"),
            };
            types.push(Ty {
                name_off,
                kind,
                vlen,
                kind_flag: info >> 31 != 0,
                size_type,
                data,
            });
            o = data + extra;
        }
        Ok(Btf { types, tsec, strs })
    }

    fn name(&self, off: u32) -> &str {
        let s = self.strs.get(off as usize..).unwrap_or(&[]);
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    fn struct_id(&self, name: &str) -> anyhow::Result<usize> {
        self.types
            .iter()
            .position(|t| t.kind == KIND_STRUCT && t.vlen > 0 && self.name(t.name_off) == name)
            .with_context(|| format!("struct {name} not in the kernel's BTF"))
    }

    fn resolve(&self, mut id: usize) -> usize {
        for _ in 0..16 {
            let t = &self.types[id];
            if matches!(
                t.kind,
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
            ) {
                id = t.size_type as usize;
            } else {
                break;
            }
        }
        id
    }

    /// (byte offset, type id) of `member` in struct/union `id`, looking
    /// into anonymous struct and union members.
    fn member(&self, id: usize, member: &str) -> Option<(u32, usize)> {
        let t = self.types.get(id)?;
        if !matches!(t.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for i in 0..t.vlen as usize {
            let m = t.data + 12 * i;
            let name_off = u32_at(&self.tsec, m).ok()?;
            let ty = u32_at(&self.tsec, m + 4).ok()? as usize;
            let off = u32_at(&self.tsec, m + 8).ok()?;
            let bits = if t.kind_flag { off & 0xff_ffff } else { off };
            let name = self.name(name_off);
            if name == member {
                return Some((bits / 8, ty));
            }
            if name.is_empty() {
                if let Some((o, ty)) = self.member(self.resolve(ty), member) {
                    return Some((bits / 8 + o, ty));
                }
            }
        }
        None
    }

    /// Byte offset of a dotted member path (`f_path.dentry`) in `struct name`.
    pub fn offset(&self, name: &str, path: &str) -> anyhow::Result<u32> {
        let mut id = self.struct_id(name)?;
        let mut total = 0;
        for part in path.split('.') {
            let (o, ty) = self
                .member(self.resolve(id), part)
                .with_context(|| format!("struct {name} has no member {path}"))?;
            total += o;
            id = ty;
        }
        Ok(total)
    }
}

/// The offsets the probes need, from the running kernel.
pub fn kernel_offsets() -> anyhow::Result<Offsets> {
    let raw = std::fs::read("/sys/kernel/btf/vmlinux")
        .map_err(|e| anyhow!("/sys/kernel/btf/vmlinux: {e} (kernel without BTF?)"))?;
    let btf = Btf::parse(&raw)?;
    Ok(Offsets {
        bprm_filename: btf.offset("linux_binprm", "filename")?,
        file_dentry: btf.offset("file", "f_path.dentry")?,
        dentry_name: btf.offset("dentry", "d_name.name")?,
        task_real_parent: btf.offset("task_struct", "real_parent")?,
        task_tgid: btf.offset("task_struct", "tgid")?,
        task_comm: btf.offset("task_struct", "comm")?,
        task_pid: btf.offset("task_struct", "pid")?,
        task_static_prio: btf.offset("task_struct", "static_prio")?,
        bprm_file: btf.offset("linux_binprm", "file")?,
        file_inode: btf.offset("file", "f_inode")?,
        file_mnt: btf.offset("file", "f_path.mnt")?,
        inode_ino: btf.offset("inode", "i_ino")?,
        inode_sb: btf.offset("inode", "i_sb")?,
        inode_generation: btf.offset("inode", "i_generation")?,
        // 6.11+: i_ctime_sec/i_ctime_nsec; 6.6-6.10: a timespec64 __i_ctime;
        // before: i_ctime.
        inode_ctime_sec: btf
            .offset("inode", "i_ctime_sec")
            .or_else(|_| btf.offset("inode", "__i_ctime.tv_sec"))
            .or_else(|_| btf.offset("inode", "i_ctime.tv_sec"))?,
        inode_ctime_nsec: btf
            .offset("inode", "i_ctime_nsec")
            .or_else(|_| btf.offset("inode", "__i_ctime.tv_nsec"))
            .or_else(|_| btf.offset("inode", "i_ctime.tv_nsec"))?,
        sb_dev: btf.offset("super_block", "s_dev")?,
        dentry_parent: btf.offset("dentry", "d_parent")?,
        dentry_name_len: btf.offset("dentry", "d_name.len")?,
        vfsmount_root: btf.offset("vfsmount", "mnt_root")?,
        mount_mnt: btf.offset("mount", "mnt")?,
        mount_parent: btf.offset("mount", "mnt_parent")?,
        mount_mountpoint: btf.offset("mount", "mnt_mountpoint")?,
        task_mm: btf.offset("task_struct", "mm")?,
        mm_exe_file: btf.offset("mm_struct", "exe_file")?,
        bprm_interp: btf.offset("linux_binprm", "interp")?,
        inode_uid: btf.offset("inode", "i_uid")?,
        inode_mode: btf.offset("inode", "i_mode")?,
        dentry_inode: btf.offset("dentry", "d_inode")?,
        _reserved: 0,
    })
}

#[cfg(test)]
mod tests {
    /// Reads (never loads anything into) the build machine's kernel BTF.
    #[test]
    fn offsets_from_this_kernel() {
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            return;
        }
        let o = super::kernel_offsets().unwrap();
        assert!(
            o.bprm_filename > 0 && o.file_dentry > 0 && o.task_real_parent > 0,
            "{o:?}"
        );
        assert!(o.task_comm > o.task_tgid, "{o:?}");
        assert!(
            o.task_tgid == o.task_pid + 4 && o.task_static_prio > 0,
            "{o:?}"
        );
        // struct mount: mnt_hash (an hlist_node), then mnt_parent, mnt_mountpoint, mnt.
        assert_eq!(
            (o.mount_parent, o.mount_mountpoint, o.mount_mnt),
            (16, 24, 32),
            "{o:?}"
        );
        // struct qstr: hash then len (little endian), name after them.
        assert_eq!(o.dentry_name_len + 4, o.dentry_name, "{o:?}");
        // i_mode is struct inode's first member; i_uid follows i_opflags.
        assert!(
            o.inode_mode == 0 && o.inode_uid > 0 && o.dentry_inode > 0,
            "{o:?}"
        );
        assert!(
            o.inode_ctime_nsec > o.inode_ctime_sec && o.inode_generation > 0 && o.mm_exe_file > 0,
            "{o:?}"
        );
    }
}
