//! The model's description the module shows in /proc/llamux/model (and
//! copies the kv_cache line of to dmesg and status): "key: value" lines.

use alloc::string::String;
use core::fmt::{self, Write};

use crate::gguf::Gguf;
use crate::model::{KvType, Model};
use crate::session::Session;

fn kind(ty: KvType) -> &'static str {
    match ty {
        KvType::F32 => "f32",
        KvType::F16 => "f16",
    }
}

#[inline(never)]
pub(crate) fn model_info(
    g: &Gguf<'_>,
    m: &Model<'_>,
    s: &Session,
    file_len: usize,
) -> Result<String, fmt::Error> {
    let hp = &m.hp;
    let mut o = String::new();
    writeln!(o, "arch: {}", hp.arch)?;
    writeln!(o, "file_bytes: {file_len}")?;
    writeln!(o, "gguf_version: {}", g.version)?;
    // The loader's kernel advisor picks a policy's chat prompt by this.
    let chat = g
        .get("tokenizer.chat_template")
        .and_then(|v| v.as_str())
        .and_then(crate::advise::chat_format_of);
    writeln!(o, "chat_format: {}", chat.unwrap_or("none"))?;
    writeln!(
        o,
        "dims: n_vocab={} n_embd={} n_layer={} n_head={} n_head_kv={} n_ff={} head_dim={} n_ctx_train={}",
        hp.n_vocab, hp.n_embd, hp.n_layer, hp.n_head, hp.n_head_kv, hp.n_ff, hp.head_dim, hp.n_ctx_train
    )?;
    // Tensor type counts, in order of first appearance (no map in no_std
    // without extra code; a model has a handful of types).
    const MAX_TYPES: usize = 16;
    let mut types: [(&str, usize, u64); MAX_TYPES] = [("", 0, 0); MAX_TYPES];
    let mut n_types = 0;
    for t in &g.tensors {
        let name = t.type_name();
        match types[..n_types].iter_mut().find(|e| e.0 == name) {
            Some(e) => {
                e.1 += 1;
                e.2 += t.n_bytes;
            }
            None if n_types < MAX_TYPES => {
                types[n_types] = (name, 1, t.n_bytes);
                n_types += 1;
            }
            None => {}
        }
    }
    write!(o, "tensors: {}", g.tensors.len())?;
    for (name, n, bytes) in &types[..n_types] {
        write!(o, " {name}={n} ({bytes} bytes)")?;
    }
    writeln!(o)?;
    let p = &s.ctx.params;
    writeln!(o, "weights_bytes: {}", m.weight_bytes())?;
    // Which quant kernels this CPU runs (CPUID, as in user space).
    writeln!(o, "kernels: {}", crate::quant::isa().name())?;
    // x8: Q4_K/Q6_K matrices repacked at load for the 8-row kernels.
    writeln!(o, "layout: {}", if m.repacked() { "x8" } else { "rows" })?;
    writeln!(
        o,
        "context: n_ctx={} n_batch={} kv={} bytes={}",
        p.n_ctx,
        p.n_batch,
        kind(p.kv_type),
        s.ctx.memory_bytes()
    )?;
    // The module copies this line to dmesg and /proc/llamux/status.
    writeln!(
        o,
        "kv_cache: n_ctx={} type={} bytes={}",
        p.n_ctx,
        kind(p.kv_type),
        s.ctx.kv_bytes()
    )?;
    Ok(o)
}
