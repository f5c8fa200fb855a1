//! User-space engine commands: run, tokenize, logits, info.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use llamux_engine::gguf::Gguf;
use llamux_engine::model::{repack_weights, ContextParams, KvType, Model};
use llamux_engine::quant::{self, Isa};
use llamux_engine::sample::{Param, SamplerParams};
use llamux_engine::session::{Session, Specials, Step};
use llamux_engine::tokenizer::{Tokenizer, Utf8Stream};
use serde_json::json;

use crate::pool::Pool;
use crate::{EngineArgs, SampleArgs};

pub type Res = anyhow::Result<()>;

/// A model file mapped for the life of the process.
pub struct Loaded {
    pub model: Model<'static>,
    pub tokenizer: Tokenizer,
}

/// Opens a model file: a regular file or a block device. Anything else is
/// refused by name (a directory used to give mmap's "No such device"); the
/// open does not block on a FIFO (O_NONBLOCK, then fstat).
pub fn open_model(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::FileTypeExt;
    let f = crate::fsafe::open_nonblocking(path)?;
    let t = f
        .metadata()
        .with_context(|| path.display().to_string())?
        .file_type();
    let what = if t.is_file() || t.is_block_device() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    };
    if let Some(what) = what {
        bail!(
            "{}: is {what}, not a model file (give a GGUF file or a block device)",
            path.display()
        );
    }
    // Reads wait for data again (a block device honours O_NONBLOCK).
    // SAFETY: F_GETFL/F_SETFL on a descriptor this function owns.
    unsafe {
        use std::os::fd::AsRawFd;
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
    Ok(f)
}

pub fn map_file(path: &Path) -> anyhow::Result<&'static [u8]> {
    use std::os::unix::fs::FileTypeExt;
    let ctx = || path.display().to_string();
    let f = open_model(path)?;
    if f.metadata()
        .with_context(ctx)?
        .file_type()
        .is_block_device()
    {
        // A model on a raw disk is read, not mapped (a device whose size is
        // not a multiple of the page size faults with SIGBUS on its last
        // mapped page).
        return read_file(path).map(|b| &*b);
    }
    // SAFETY: the mapping is read-only and private; the file is a model the
    // user handed us and we do not defend against it changing underneath
    // (truncation would fault, as for any mmap reader).
    let m = unsafe { memmap2::Mmap::map(&f) }.with_context(ctx)?;
    Ok(Box::leak(Box::new(m)))
}

/// The bytes of `path` (a file or a block device, whose size is where a
/// seek to the end lands) read into memory for the life of the process,
/// writable. Not a copy-on-write mapping: repacking writes most of it,
/// and that costs a page fault per page (docs/speed.md, "Reading the model").
fn read_file(path: &Path) -> anyhow::Result<&'static mut [u8]> {
    use std::io::{Read, Seek};
    let ctx = || path.display().to_string();
    let mut f = open_model(path)?;
    let len = f.seek(std::io::SeekFrom::End(0)).with_context(ctx)?;
    let Ok(len) = usize::try_from(len) else {
        bail!("{}: too large", path.display());
    };
    f.rewind().with_context(ctx)?;
    if len == 0 {
        return Ok(&mut []);
    }
    // Anonymous memory, in huge pages where the kernel allows (fewer faults
    // and TLB misses).
    let m = memmap2::MmapMut::map_anon(len).with_context(ctx)?;
    let _ = m.advise(memmap2::Advice::HugePage);
    // Leaked for the life of the process, like a mapping.
    let buf: &'static mut [u8] = &mut Box::leak(Box::new(m))[..];
    f.read_exact(buf).with_context(ctx)?;
    Ok(buf)
}

pub fn parse(path: &Path) -> anyhow::Result<Gguf<'static>> {
    let bytes = map_file(path)?;
    Gguf::parse(bytes).map_err(|e| anyhow!("{}: not a valid GGUF file: {e}", path.display()))
}

/// Whether `load_model` may repack (`--no-repack` clears it).
static REPACK: AtomicBool = AtomicBool::new(true);

pub fn set_repack(on: bool) {
    REPACK.store(on, Ordering::Relaxed);
}

/// The file parsed and its model, with the Q4_K and Q6_K matrices repacked
/// for the AVX2 or AVX-512 kernels when those run (`--isa scalar` and
/// `--no-repack` keep the file's layout, and its read-only mapping).
pub fn load_model(path: &Path) -> anyhow::Result<(Gguf<'static>, Model<'static>)> {
    let ctx = |e: &dyn std::fmt::Display| anyhow!("{}: {e}", path.display());
    if quant::isa() == Isa::Scalar || !REPACK.load(Ordering::Relaxed) {
        let gguf = parse(path)?;
        let model = Model::from_gguf(&gguf).map_err(|e| ctx(&e))?;
        return Ok((gguf, model));
    }
    let t0 = Instant::now();
    let bytes = read_file(path)?;
    let t1 = Instant::now();
    let n = repack_weights(bytes).map_err(|e| ctx(&e))?;
    // Said when it takes a while (a large model) or when asked.
    let (read, repack) = ((t1 - t0).as_secs_f64(), t1.elapsed().as_secs_f64());
    if read + repack > 2.0 || std::env::var_os("LLAMUX_VERBOSE").is_some() {
        eprintln!(
            "llamux: read {} MiB in {read:.1} s, repacked {n} Q4_K/Q6_K matrices for the {} kernels in {repack:.1} s",
            bytes.len() >> 20,
            quant::isa().name()
        );
    }
    let bytes: &'static [u8] = bytes;
    let gguf = Gguf::parse(bytes).map_err(|e| ctx(&format!("not a valid GGUF file: {e}")))?;
    let model = Model::from_repacked_gguf(&gguf).map_err(|e| ctx(&e))?;
    Ok((gguf, model))
}

pub fn load(path: &Path) -> anyhow::Result<Loaded> {
    let (gguf, model) = load_model(path)?;
    let tokenizer =
        Tokenizer::from_gguf(&gguf).map_err(|e| anyhow!("{}: tokenizer: {e}", path.display()))?;
    Ok(Loaded { model, tokenizer })
}

/// The most worker threads `-t` takes: far beyond the cores of any machine
/// the engine runs on (more threads than cores only slow it down).
pub const MAX_THREADS: usize = 1024;

/// `-t`'s parser: 1 to MAX_THREADS.
pub fn threads_arg(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from 1 to {MAX_THREADS}")),
    }
}

pub fn pool(threads: Option<usize>) -> anyhow::Result<Pool> {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Pool::new(n.clamp(1, MAX_THREADS))
}

/// A parser for a sampling flag: the engine's range for `p`, so the flags,
/// the sampler and /proc/llamux/params accept the same values.
pub fn sample_arg<T: std::str::FromStr + Into<f64> + Copy>(
    p: Param,
) -> impl Fn(&str) -> Result<T, String> + Clone {
    move |v: &str| {
        let x: T = v
            .trim()
            .parse()
            .map_err(|_| format!("not a number (must be {})", p.range()))?;
        p.check(x.into())
            .map_err(|_| format!("must be {}", p.range()))?;
        Ok(x)
    }
}

/// A count flag (top-k, repeat-last-n) checked against the engine's range.
pub fn sample_count_arg(p: Param) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |v: &str| {
        let x: usize = v
            .trim()
            .parse()
            .map_err(|_| format!("not a whole number (must be {})", p.range()))?;
        p.check(x as f64)
            .map_err(|_| format!("must be {}", p.range()))?;
        Ok(x)
    }
}

/// The flags as the engine's parameters, checked once more by the engine
/// (the message names the flag).
pub fn sampler_params(s: &SampleArgs) -> anyhow::Result<SamplerParams> {
    let p = SamplerParams {
        temperature: s.temperature,
        top_k: i32::try_from(s.top_k).unwrap_or(i32::MAX),
        top_p: s.top_p,
        min_p: 0.0,
        repeat_penalty: s.repeat_penalty,
        penalty_last_n: s.repeat_last_n,
        seed: s.seed,
        ..SamplerParams::default()
    };
    p.validate().map_err(|e| {
        let flag = match e.param {
            Param::Temperature => "--temperature",
            Param::TopK => "--top-k",
            Param::TopP => "--top-p",
            Param::RepeatPenalty => "--repeat-penalty",
            Param::PenaltyLastN => "--repeat-last-n",
            other => other.name(),
        };
        anyhow!("{flag} must be {} (got {})", e.param.range(), e.value)
    })?;
    Ok(p)
}

fn ctx_params(e: &EngineArgs, logits_all: bool) -> ContextParams {
    ContextParams {
        n_ctx: e.ctx,
        logits_all,
        kv_type: if e.kv_f16 { KvType::F16 } else { KvType::F32 },
        ..ContextParams::default()
    }
}

/// How special-token texts in the user's own text are read: as plain text
/// unless `--special` (llama.cpp's behaviour for prompts) is given.
pub fn specials(special: bool) -> Specials {
    if special {
        Specials::Parse
    } else {
        Specials::Plain
    }
}

pub fn run(
    e: &EngineArgs,
    prompt: Option<String>,
    prompt_file: Option<std::path::PathBuf>,
    s: &SampleArgs,
    instruct: bool,
    special: bool,
    json_out: bool,
) -> Res {
    let params = sampler_params(s)?;
    let prompt = match (prompt, prompt_file) {
        (Some(p), _) => p,
        (None, Some(f)) => std::fs::read_to_string(&f).with_context(|| f.display().to_string())?,
        (None, None) => bail!("give --prompt TEXT or --prompt-file FILE"),
    };
    let l = load(&e.model)?;
    let mut exec = pool(e.threads)?;
    let mut sess = Session::new(
        &l.model,
        &l.tokenizer,
        ctx_params(e, false),
        params,
        prompt.len(),
    )
    .map_err(|err| anyhow!("{err}"))?;
    let t0 = Instant::now();
    let (m, tk, text) = (&l.model, &l.tokenizer, prompt.as_bytes());
    let n_prompt = if instruct {
        sess.start_instruct(m, tk, text, specials(special), &mut exec)
    } else {
        sess.start_with(m, tk, text, specials(special), &mut exec)
    }
    .map_err(|err| anyhow!("{err}"))?;
    let t_prefill = t0.elapsed().as_secs_f64();
    let mut utf8 = Utf8Stream::default();
    let mut generated = Vec::new();
    let mut text_out = String::new();
    let t1 = Instant::now();
    for _ in 0..s.n_predict {
        match sess
            .step(&l.model, &l.tokenizer, &mut exec)
            .map_err(|err| anyhow!("{err}"))?
        {
            Step::Token(t) => {
                generated.push(t);
                let piece = utf8.push_string(l.tokenizer.token_piece(t));
                text_out.push_str(&piece);
                if !json_out {
                    // A closed stdout ends the command here (stdio).
                    crate::stdio::out_bytes(piece.as_bytes());
                }
            }
            Step::End => break,
        }
    }
    let t_decode = t1.elapsed().as_secs_f64();
    let tail = utf8.finish_string();
    text_out.push_str(&tail);
    // The last sampled token is fed lazily; decode speed counts the forward
    // passes that ran (one per generated token after the first).
    let n_decode_fwd = generated.len().saturating_sub(1);
    if json_out {
        let v = json!({
            "prompt": prompt,
            "prompt_tokens": sess.prompt_tokens(),
            "generated_tokens": generated,
            "text": text_out,
            "timings": {
                "prefill_tokens": n_prompt,
                "prefill_s": t_prefill,
                "prefill_tokens_per_s": n_prompt as f64 / t_prefill.max(1e-9),
                "decode_tokens": n_decode_fwd,
                "decode_s": t_decode,
                "decode_tokens_per_s": n_decode_fwd as f64 / t_decode.max(1e-9),
                "threads": exec_threads(&exec),
            }
        });
        println!("{v}");
    } else {
        println!("{tail}");
        eprintln!(
            "\nllamux: prompt {n_prompt} tokens at {:.2} tok/s, generated {} tokens at {:.2} tok/s",
            n_prompt as f64 / t_prefill.max(1e-9),
            generated.len(),
            n_decode_fwd as f64 / t_decode.max(1e-9)
        );
    }
    Ok(())
}

fn exec_threads(p: &Pool) -> usize {
    use llamux_engine::exec::Exec;
    p.parallelism()
}

pub fn tokenize(model: &Path, text: &str, add_bos: bool, special: bool, json_out: bool) -> Res {
    let g = parse(model)?;
    let tok =
        Tokenizer::from_gguf(&g).map_err(|e| anyhow!("{}: tokenizer: {e}", model.display()))?;
    let ids = encode_with(&tok, text.as_bytes(), add_bos, special)?;
    if json_out {
        let pieces: Vec<String> = ids
            .iter()
            .map(|&t| String::from_utf8_lossy(tok.token_text(t)).into_owned())
            .collect();
        println!("{}", json!({ "tokens": ids, "pieces": pieces }));
    } else {
        let s: Vec<String> = ids.iter().map(|t| t.to_string()).collect();
        println!("{}", s.join(","));
    }
    Ok(())
}

/// Tokenizes with a scratch sized for `text` (user space can allocate).
/// `special`: special-token texts become their tokens (`--special`).
pub fn encode_with(
    tok: &Tokenizer,
    text: &[u8],
    add_bos: bool,
    special: bool,
) -> anyhow::Result<Vec<u32>> {
    let mut scratch = tok.scratch(text.len()).map_err(|e| anyhow!("{e}"))?;
    // Invalid UTF-8 can take up to 3 ids per byte (BPE).
    let mut ids = vec![0u32; 3 * text.len() + 2];
    let n = tok
        .encode_with(text, add_bos, special, &mut scratch, &mut ids)
        .map_err(|e| anyhow!("{e}"))?;
    ids.truncate(n);
    Ok(ids)
}

pub fn logits(e: &EngineArgs, tokens: &[u32], out: &Path) -> Res {
    if tokens.is_empty() {
        bail!("--tokens needs at least one id");
    }
    let l = load(&e.model)?;
    let mut exec = pool(e.threads)?;
    let n_vocab = l.model.hp.n_vocab;
    let mut params = ctx_params(e, true);
    params.n_ctx = params.n_ctx.max(tokens.len());
    let mut ctx =
        llamux_engine::model::Context::new(&l.model.hp, params).map_err(|err| anyhow!("{err}"))?;
    let mut bytes = Vec::with_capacity(tokens.len() * n_vocab * 4);
    for chunk in tokens.chunks(ctx.params.n_batch) {
        ctx.forward(&l.model, chunk, &mut exec)
            .map_err(|err| anyhow!("{err}"))?;
        for v in ctx.logits() {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(out, &bytes).with_context(|| out.display().to_string())?;
    eprintln!(
        "llamux: wrote {} x {} logits to {}",
        tokens.len(),
        n_vocab,
        out.display()
    );
    Ok(())
}

pub fn info(path: &Path, json_out: bool) -> Res {
    let g = parse(path)?;
    let model = Model::from_gguf(&g);
    let mut counts: std::collections::BTreeMap<&str, (usize, u64)> = Default::default();
    for t in &g.tensors {
        let c = counts.entry(t.type_name()).or_default();
        c.0 += 1;
        c.1 += t.n_bytes;
    }
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let meta: Vec<(String, String)> = g
        .metadata
        .iter()
        .map(|kv| (kv.key.to_string(), show_value(&kv.value)))
        .collect();
    let hp = model.as_ref().ok().map(|m| m.hp.clone());
    let kv_per_token = hp.as_ref().map(|h| 2 * h.n_layer * h.kv_dim() * 4);
    if json_out {
        let v = json!({
            "file": path.display().to_string(),
            "file_bytes": file_len,
            "version": g.version,
            "metadata": meta.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            "tensors": g.tensors.iter().map(|t| json!({
                "name": t.name, "type": t.type_name(), "dims": &t.dims[..t.n_dims as usize],
                "offset": t.start, "bytes": t.n_bytes})).collect::<Vec<_>>(),
            "type_counts": counts.iter().map(|(k, (n, b))| (k.to_string(), json!({"tensors": n, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
            "supported": model.is_ok(),
            "error": model.as_ref().err().map(|e| e.to_string()),
            "kv_cache_bytes_per_token_f32": kv_per_token,
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "{}: GGUF v{}, {} bytes, {} tensors, {} metadata keys",
        path.display(),
        g.version,
        file_len,
        g.tensors.len(),
        g.metadata.len()
    );
    for (k, v) in &meta {
        println!("  {k} = {v}");
    }
    println!("tensors:");
    for t in &g.tensors {
        println!(
            "  {:<32} {:<6} {:?} {} bytes",
            t.name,
            t.type_name(),
            &t.dims[..t.n_dims as usize],
            t.n_bytes
        );
    }
    println!("types:");
    for (k, (n, b)) in &counts {
        println!("  {k:<6} {n:>4} tensors {:>12} bytes", b);
    }
    match &model {
        Ok(m) => {
            let h = &m.hp;
            println!(
                "model: {} n_embd {} n_layer {} n_head {} n_head_kv {} n_ff {} n_vocab {} ctx_train {} rope_theta {} eps {}",
                h.arch, h.n_embd, h.n_layer, h.n_head, h.n_head_kv, h.n_ff, h.n_vocab, h.n_ctx_train, h.rope_theta, h.rms_eps
            );
            let kv = kv_per_token.unwrap_or(0);
            println!(
                "memory: weights {} bytes; KV cache {} bytes/token f32 ({} MiB at 512 tokens, {} MiB at {} tokens)",
                m.weight_bytes(),
                kv,
                (kv * 512) >> 20,
                (kv * h.n_ctx_train) >> 20,
                h.n_ctx_train
            );
        }
        Err(e) => println!("model: not runnable: {e}"),
    }
    Ok(())
}

fn show_value(v: &llamux_engine::gguf::Value<'_>) -> String {
    use llamux_engine::gguf::Value::*;
    match v {
        Str(s) => format!("{:?}", String::from_utf8_lossy(s)),
        Array(a) => {
            let first: Vec<String> = a.iter().take(4).map(|x| show_value(&x)).collect();
            format!(
                "[{}; {}] {}{}",
                a.elem_type.name(),
                a.len,
                first.join(", "),
                if a.len > 4 { ", ..." } else { "" }
            )
        }
        U8(x) => x.to_string(),
        I8(x) => x.to_string(),
        U16(x) => x.to_string(),
        I16(x) => x.to_string(),
        U32(x) => x.to_string(),
        I32(x) => x.to_string(),
        U64(x) => x.to_string(),
        I64(x) => x.to_string(),
        F32(x) => x.to_string(),
        F64(x) => x.to_string(),
        Bool(x) => x.to_string(),
    }
}
