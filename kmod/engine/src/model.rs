//! LLaMA-family transformer: hyperparameters and weights from GGUF, and the
//! forward pass over a [`Context`] that owns every buffer it needs.
//!
//! `Model` borrows the file's bytes (weights are never copied or
//! dequantized as a whole); `Context::new` allocates the KV cache and all
//! scratch once, so `Context::forward` allocates nothing: the property the
//! kernel module relies on.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::exec::{Disjoint, Exec};
use crate::fallible::{self, zeroed};
use crate::gguf::{Gguf, GgufError, TensorInfo};
use crate::ops::{self, OpError};
use crate::quant::{self, q4_k_x8, GgmlType, Layout, QuantError};

#[derive(Clone, Debug, PartialEq)]
pub enum ModelError {
    UnsupportedArchitecture(String),
    MissingKey(String),
    BadKey(String),
    MissingTensor(String),
    /// A tensor whose shape is not what the hyperparameters imply.
    BadShape(String),
    UnsupportedType {
        tensor: String,
        type_name: &'static str,
    },
    OutOfMemory,
    /// More tokens than the context holds, or a batch over its size.
    ContextFull {
        pos: usize,
        n_tokens: usize,
        n_ctx: usize,
    },
    BatchTooLarge {
        n_tokens: usize,
        n_batch: usize,
    },
    TokenOutOfRange(u32),
    Quant(QuantError),
    Op(OpError),
    Gguf(GgufError),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ModelError::*;
        match self {
            UnsupportedArchitecture(a) => write!(
                f,
                "unsupported architecture '{a}' (supported: llama, qwen2)"
            ),
            MissingKey(k) => write!(f, "missing metadata key {k}"),
            BadKey(k) => write!(f, "metadata key {k} has an invalid value"),
            MissingTensor(t) => write!(f, "missing tensor {t}"),
            BadShape(t) => write!(f, "tensor {t} has the wrong shape"),
            UnsupportedType { tensor, type_name } => {
                write!(f, "tensor {tensor}: type {type_name} is not supported")
            }
            OutOfMemory => write!(f, "out of memory"),
            ContextFull {
                pos,
                n_tokens,
                n_ctx,
            } => {
                write!(f, "context full: {pos} + {n_tokens} tokens > {n_ctx}")
            }
            BatchTooLarge { n_tokens, n_batch } => {
                write!(f, "batch of {n_tokens} tokens > {n_batch}")
            }
            TokenOutOfRange(t) => write!(f, "token id {t} out of range"),
            Quant(e) => write!(f, "{e}"),
            Op(e) => write!(f, "{e}"),
            Gguf(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ModelError {}

impl From<QuantError> for ModelError {
    fn from(e: QuantError) -> Self {
        ModelError::Quant(e)
    }
}

impl From<GgufError> for ModelError {
    fn from(e: GgufError) -> Self {
        ModelError::Gguf(e)
    }
}

impl From<OpError> for ModelError {
    fn from(e: OpError) -> Self {
        ModelError::Op(e)
    }
}

/// Which elements RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// LLaMA: adjacent pairs (x[2i], x[2i+1]).
    Norm,
    /// GPT-NeoX / Qwen2: halves (x[i], x[i + d/2]).
    Neox,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Hparams {
    pub arch: String,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub rope: RopeStyle,
}

impl Hparams {
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Self, ModelError> {
        let arch = g
            .architecture()
            .ok_or_else(|| ModelError::MissingKey("general.architecture".into()))?;
        let rope = match arch {
            "llama" => RopeStyle::Norm,
            "qwen2" => RopeStyle::Neox,
            a => return Err(ModelError::UnsupportedArchitecture(a.into())),
        };
        let key = |k: &str| alloc::format!("{arch}.{k}");
        let int = |k: &str| -> Result<Option<usize>, ModelError> {
            match g.get(&key(k)) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|x| usize::try_from(x).ok())
                    .filter(|&x| x > 0 && x <= 1 << 24)
                    .map(Some)
                    .ok_or_else(|| ModelError::BadKey(key(k))),
            }
        };
        let req = |k: &str| int(k)?.ok_or_else(|| ModelError::MissingKey(key(k)));
        let float = |k: &str, default: f32| -> Result<f32, ModelError> {
            match g.get(&key(k)) {
                None => Ok(default),
                Some(v) => v
                    .as_f32()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| ModelError::BadKey(key(k))),
            }
        };
        let n_embd = req("embedding_length")?;
        let n_head = req("attention.head_count")?;
        let n_head_kv = int("attention.head_count_kv")?.unwrap_or(n_head);
        if n_embd % n_head != 0 || n_head % n_head_kv != 0 {
            return Err(ModelError::BadKey(key("attention.head_count")));
        }
        let head_dim = n_embd / n_head;
        let n_rot = int("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(ModelError::BadKey(key("rope.dimension_count")));
        }
        let tok = g
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        let n_vocab = tok.dims[1] as usize;
        Ok(Hparams {
            arch: arch.into(),
            n_vocab,
            n_ctx_train: req("context_length")?,
            n_embd,
            n_layer: req("block_count")?,
            n_head,
            n_head_kv,
            n_ff: req("feed_forward_length")?,
            head_dim,
            n_rot,
            rope_theta: float("rope.freq_base", 10000.0)?,
            rms_eps: float("attention.layer_norm_rms_epsilon", 1e-5)?,
            rope,
        })
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

/// A weight matrix of `rows` rows of `cols` values, borrowed from the file.
#[derive(Clone, Copy, Debug)]
pub struct Weight<'a> {
    pub ty: GgmlType,
    /// Rows as in the file, or repacked by [`repack_weights`].
    pub layout: Layout,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

pub struct Layer<'a> {
    pub attn_norm: Vec<f32>,
    pub wq: Weight<'a>,
    pub wk: Weight<'a>,
    pub wv: Weight<'a>,
    pub wo: Weight<'a>,
    /// Qwen2's q/k/v biases.
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub w_gate: Weight<'a>,
    pub w_up: Weight<'a>,
    pub w_down: Weight<'a>,
}

pub struct Model<'a> {
    pub hp: Hparams,
    pub tok_embd: Weight<'a>,
    pub layers: Vec<Layer<'a>>,
    pub output_norm: Vec<f32>,
    /// `output.weight`, or the embedding when the model ties them.
    pub output: Weight<'a>,
}

impl<'a> Model<'a> {
    /// Checks every tensor the architecture needs (name, type, shape) and
    /// copies the small float vectors (norms, biases) out of the file.
    pub fn from_gguf(g: &Gguf<'a>) -> Result<Self, ModelError> {
        Self::from_gguf_with(g, false)
    }

    /// [`Model::from_gguf`] on bytes [`repack_weights`] has repacked: the
    /// matrices [`repackable`] names are read in their x8 layout.
    pub fn from_repacked_gguf(g: &Gguf<'a>) -> Result<Self, ModelError> {
        Self::from_gguf_with(g, true)
    }

    fn from_gguf_with(g: &Gguf<'a>, repacked: bool) -> Result<Self, ModelError> {
        let weight = |g: &Gguf<'a>, name: &str, cols, rows| weight(g, name, cols, rows, repacked);
        let hp = Hparams::from_gguf(g)?;
        let (e, kv, ff) = (hp.n_embd, hp.kv_dim(), hp.n_ff);
        let tok_embd = weight(g, "token_embd.weight", e, hp.n_vocab)?;
        let mut layers = fallible::with_capacity(hp.n_layer)?;
        for i in 0..hp.n_layer {
            let name = |t: &str| alloc::format!("blk.{i}.{t}");
            let bias = |t: &str, n| match g.tensor(&name(t)) {
                Some(_) => vector(g, &name(t), n).map(Some),
                None => Ok(None),
            };
            layers.push(Layer {
                attn_norm: vector(g, &name("attn_norm.weight"), e)?,
                wq: weight(g, &name("attn_q.weight"), e, e)?,
                wk: weight(g, &name("attn_k.weight"), e, kv)?,
                wv: weight(g, &name("attn_v.weight"), e, kv)?,
                wo: weight(g, &name("attn_output.weight"), e, e)?,
                bq: bias("attn_q.bias", e)?,
                bk: bias("attn_k.bias", kv)?,
                bv: bias("attn_v.bias", kv)?,
                ffn_norm: vector(g, &name("ffn_norm.weight"), e)?,
                w_gate: weight(g, &name("ffn_gate.weight"), e, ff)?,
                w_up: weight(g, &name("ffn_up.weight"), e, ff)?,
                w_down: weight(g, &name("ffn_down.weight"), ff, e)?,
            });
        }
        let output = match g.tensor("output.weight") {
            Some(_) => weight(g, "output.weight", e, hp.n_vocab)?,
            None => tok_embd,
        };
        Ok(Model {
            output_norm: vector(g, "output_norm.weight", e)?,
            hp,
            tok_embd,
            layers,
            output,
        })
    }

    /// Whether any matrix is in an x8 layout (see [`repack_weights`]).
    pub fn repacked(&self) -> bool {
        let w = self
            .layers
            .iter()
            .flat_map(|l| [l.wq, l.wk, l.wv, l.wo, l.w_gate, l.w_up, l.w_down]);
        w.chain([self.output]).any(|w| w.layout == Layout::X8)
    }

    /// Bytes of weights the forward pass reads per token.
    pub fn weight_bytes(&self) -> usize {
        let l: usize = self
            .layers
            .iter()
            .map(|l| {
                [l.wq, l.wk, l.wv, l.wo, l.w_gate, l.w_up, l.w_down]
                    .iter()
                    .map(|w| w.data.len())
                    .sum::<usize>()
            })
            .sum();
        l + self.output.data.len()
    }
}

fn tensor<'a, 'g>(g: &'g Gguf<'a>, name: &str) -> Result<&'g TensorInfo<'a>, ModelError> {
    g.tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(name.into()))
}

fn weight<'a>(
    g: &Gguf<'a>,
    name: &str,
    cols: usize,
    rows: usize,
    repacked: bool,
) -> Result<Weight<'a>, ModelError> {
    let t = tensor(g, name)?;
    if t.n_dims != 2 || t.dims[0] != cols as u64 || t.dims[1] != rows as u64 {
        return Err(ModelError::BadShape(name.into()));
    }
    let ty =
        t.ty.filter(|&ty| ty != GgmlType::Q8K)
            .ok_or_else(|| ModelError::UnsupportedType {
                tensor: name.into(),
                type_name: t.type_name(),
            })?;
    let layout = if repacked && repackable(t) {
        Layout::X8
    } else {
        Layout::Rows
    };
    Ok(Weight {
        ty,
        layout,
        rows,
        cols,
        data: g.tensor_data(t),
    })
}

/// Whether [`repack_weights`] repacks tensor `t`: Q4_K and Q6_K matrices
/// with a multiple of 8 rows that are multiplied (not the embedding table,
/// whose rows are looked up one by one).
pub fn repackable(t: &TensorInfo<'_>) -> bool {
    matches!(t.ty, Some(GgmlType::Q4K | GgmlType::Q6K))
        && t.n_dims == 2
        && t.dims[1].is_multiple_of(q4_k_x8::ROWS as u64)
        && t.dims[0].is_multiple_of(quant::QK_K as u64)
        && t.name != "token_embd.weight"
}

/// Repacks in place, in a GGUF file's bytes, every matrix [`repackable`]
/// names into its x8 layout (`quant::q4_k_x8`, `quant::q6_k_x8`) for the
/// AVX2 and AVX-512 kernels; parse the result with
/// [`Model::from_repacked_gguf`]. Without AVX2 the layouts run their scalar
/// references, so only repack where `quant::isa()` is not `Scalar`.
/// Returns the matrices repacked.
pub fn repack_weights(bytes: &mut [u8]) -> Result<usize, ModelError> {
    let mut r = Repacker::new(bytes)?;
    while !r.step(bytes, usize::MAX)? {}
    Ok(r.matrices())
}

/// [`repack_weights`] in steps of bounded work, for the kernel module,
/// which may only compute in short sections: each [`Repacker::step`]
/// repacks whole 8-row slabs until it has moved about `budget` bytes.
pub struct Repacker {
    /// (offset, bytes, rows, cols, type) of each matrix.
    plan: Vec<(usize, usize, usize, usize, GgmlType)>,
    /// Room for one slab of the widest matrix.
    tmp: Vec<u8>,
    /// The matrix and the byte offset in it where the next step starts.
    next: (usize, usize),
    /// Bytes of the file planned for.
    len: usize,
    done: usize,
    total: usize,
}

impl Repacker {
    /// The plan for `bytes` (a GGUF file, not yet repacked).
    pub fn new(bytes: &[u8]) -> Result<Self, ModelError> {
        let mut plan = Vec::new();
        let (mut tmp_len, mut total) = (0, 0);
        let g = Gguf::parse(bytes)?;
        for t in g.tensors.iter().filter(|t| repackable(t)) {
            let Some(ty) = t.ty else { continue };
            let (rows, cols) = (t.dims[1] as usize, t.dims[0] as usize);
            plan.try_reserve(1).map_err(|_| ModelError::OutOfMemory)?;
            plan.push((t.start as usize, t.n_bytes as usize, rows, cols, ty));
            tmp_len = tmp_len.max(q4_k_x8::ROWS * cols / quant::QK_K * ty.block_bytes());
            total += t.n_bytes as usize;
        }
        let tmp = fallible::zeroed(tmp_len)?;
        Ok(Repacker {
            plan,
            tmp,
            next: (0, 0),
            len: bytes.len(),
            done: 0,
            total,
        })
    }

    /// Matrices the plan repacks.
    pub fn matrices(&self) -> usize {
        self.plan.len()
    }

    /// Bytes repacked so far, and in all.
    pub fn progress(&self) -> (usize, usize) {
        (self.done, self.total)
    }

    /// Repacks the next slabs of `bytes` (the buffer `new` planned) until
    /// about `budget` bytes have moved (at least one slab); true when every
    /// matrix is done.
    pub fn step(&mut self, bytes: &mut [u8], budget: usize) -> Result<bool, ModelError> {
        // Errors without a String: this runs in the module too.
        let length = |what, expected, actual| {
            ModelError::Quant(QuantError::Length {
                what,
                expected,
                actual,
            })
        };
        if bytes.len() != self.len {
            return Err(length("repack buffer", self.len, bytes.len()));
        }
        let mut moved = 0;
        while let Some(&(start, len, rows, cols, ty)) = self.plan.get(self.next.0) {
            if moved >= budget.max(1) {
                return Ok(false);
            }
            let rb = len.checked_div(rows).unwrap_or(0);
            let Some(slab) = rb.checked_mul(q4_k_x8::ROWS).filter(|&s| s != 0) else {
                self.next = (self.next.0 + 1, 0);
                continue;
            };
            let off = self.next.1;
            let n = (len - off).min(budget.saturating_sub(moved).max(slab) / slab * slab);
            // The parser checked every tensor's range against the file.
            let end = start + off + n;
            let data =
                bytes
                    .get_mut(start + off..end)
                    .ok_or(length("tensor range", end, self.len))?;
            quant::repack_x8(
                ty,
                data,
                n.checked_div(rb).unwrap_or(0),
                cols,
                &mut self.tmp,
            )?;
            moved += n;
            self.done += n;
            self.next = if off + n >= len {
                (self.next.0 + 1, 0)
            } else {
                (self.next.0, off + n)
            };
        }
        Ok(true)
    }
}

/// A 1-D tensor of `n` values as f32 (norm weights and biases).
fn vector(g: &Gguf<'_>, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
    let t = tensor(g, name)?;
    if t.n_elements != n as u64 || t.dims[0] != n as u64 {
        return Err(ModelError::BadShape(name.into()));
    }
    let ty = t.ty.ok_or_else(|| ModelError::UnsupportedType {
        tensor: name.into(),
        type_name: t.type_name(),
    })?;
    let mut v = zeroed(n)?;
    quant::dequantize_row(ty, g.tensor_data(t), &mut v)?;
    Ok(v)
}

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    F32,
    /// Half the memory; values are rounded to f16 as llama.cpp's default does.
    F16,
}

#[derive(Clone, Copy, Debug)]
pub struct ContextParams {
    /// Positions the KV cache holds.
    pub n_ctx: usize,
    /// Most tokens one `forward` call takes (prefill batch).
    pub n_batch: usize,
    /// Keep the logits of every position of a batch, not just the last.
    pub logits_all: bool,
    pub kv_type: KvType,
}

impl Default for ContextParams {
    fn default() -> Self {
        ContextParams {
            n_ctx: 512,
            n_batch: 32,
            logits_all: false,
            kv_type: KvType::F32,
        }
    }
}

/// The KV cache: [layer][position][kv_dim], in the chosen element type.
enum KvCache {
    F32 { k: Vec<f32>, v: Vec<f32> },
    F16 { k: Vec<u16>, v: Vec<u16> },
}

/// Everything one sequence needs: KV cache and every scratch buffer.
pub struct Context {
    pub params: ContextParams,
    /// Tokens already in the KV cache.
    pub pos: usize,
    kv: KvCache,
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    scores: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// Quantized activations of a batch (the largest row format fits).
    acts: Vec<u8>,
    /// Matmul results in the kernels' [row][batch] order, before they are
    /// scattered to [batch][row].
    mm: Vec<f32>,
    rope: Vec<f32>,
    logits: Vec<f32>,
    n_logits: usize,
}

/// Bytes of one activation row of `n` values in any activation format
/// (f32 is the largest).
fn act_row_bytes(n: usize) -> usize {
    n * 4
}

impl Context {
    /// Bytes `Context::new(hp, params)` allocates (what `memory_bytes`
    /// then reports), computed without allocating; None on overflow. Lets a
    /// caller refuse a context that does not fit before trying it.
    pub fn bytes_for(hp: &Hparams, params: &ContextParams) -> Option<usize> {
        let b = params.n_batch.max(1);
        let elem = match params.kv_type {
            KvType::F32 => 4,
            KvType::F16 => 2,
        };
        let kv = hp
            .n_layer
            .checked_mul(params.n_ctx)?
            .checked_mul(hp.kv_dim())?
            .checked_mul(2 * elem)?;
        let n_logit_rows = if params.logits_all { b } else { 1 };
        let wide = hp.n_embd.max(hp.n_ff);
        let floats = [
            b.checked_mul(hp.n_embd)?.checked_mul(4)?,
            b.checked_mul(hp.kv_dim())?.checked_mul(2)?,
            b.checked_mul(hp.n_head)?.checked_mul(params.n_ctx)?,
            b.checked_mul(hp.n_ff)?.checked_mul(2)?,
            b.checked_mul(wide)?
                .max(n_logit_rows.checked_mul(hp.n_vocab)?),
            b.checked_mul(hp.n_rot)?,
            n_logit_rows.checked_mul(hp.n_vocab)?,
        ];
        let mut n: usize = 0;
        for f in floats {
            n = n.checked_add(f)?;
        }
        let acts = b.checked_mul(act_row_bytes(wide))?;
        kv.checked_add(n.checked_mul(4)?)?.checked_add(acts)
    }

    /// Allocates the KV cache and all scratch for `params`. The only
    /// allocation of a sequence's lifetime.
    pub fn new(hp: &Hparams, params: ContextParams) -> Result<Self, ModelError> {
        let b = params.n_batch.max(1);
        let kv_len = hp
            .n_layer
            .checked_mul(params.n_ctx)
            .and_then(|x| x.checked_mul(hp.kv_dim()))
            .ok_or(ModelError::OutOfMemory)?;
        let kv = match params.kv_type {
            KvType::F32 => KvCache::F32 {
                k: zeroed(kv_len)?,
                v: zeroed(kv_len)?,
            },
            KvType::F16 => KvCache::F16 {
                k: zeroed(kv_len)?,
                v: zeroed(kv_len)?,
            },
        };
        let n_logit_rows = if params.logits_all { b } else { 1 };
        Ok(Context {
            params: ContextParams {
                n_batch: b,
                ..params
            },
            pos: 0,
            kv,
            x: zeroed(b * hp.n_embd)?,
            xn: zeroed(b * hp.n_embd)?,
            q: zeroed(b * hp.n_embd)?,
            k: zeroed(b * hp.kv_dim())?,
            v: zeroed(b * hp.kv_dim())?,
            att: zeroed(b * hp.n_embd)?,
            scores: zeroed(b * hp.n_head * params.n_ctx)?,
            gate: zeroed(b * hp.n_ff)?,
            up: zeroed(b * hp.n_ff)?,
            acts: zeroed(b * act_row_bytes(hp.n_embd.max(hp.n_ff)))?,
            mm: zeroed((b * hp.n_embd.max(hp.n_ff)).max(n_logit_rows * hp.n_vocab))?,
            rope: zeroed(b * hp.n_rot)?,
            logits: zeroed(n_logit_rows * hp.n_vocab)?,
            n_logits: 0,
        })
    }

    /// Bytes of the KV cache alone (n_layer * n_ctx * kv_dim * 2 * element size).
    pub fn kv_bytes(&self) -> usize {
        match &self.kv {
            KvCache::F32 { k, v } => (k.len() + v.len()) * 4,
            KvCache::F16 { k, v } => (k.len() + v.len()) * 2,
        }
    }

    /// Bytes this context holds (KV cache and scratch).
    pub fn memory_bytes(&self) -> usize {
        let kv = self.kv_bytes();
        let f = [
            &self.x,
            &self.xn,
            &self.q,
            &self.k,
            &self.v,
            &self.att,
            &self.scores,
            &self.gate,
            &self.up,
            &self.logits,
            &self.mm,
        ];
        kv + f.iter().map(|b| b.len() * 4).sum::<usize>() + self.acts.len()
    }

    /// Forgets the sequence (keeps the memory).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.n_logits = 0;
    }

    /// Rewinds to `pos` tokens (e.g. back to a cached prompt prefix).
    pub fn truncate(&mut self, pos: usize) {
        self.pos = self.pos.min(pos);
    }

    /// Logits of the last `forward`: one row per position when
    /// `logits_all`, else the last position's row.
    pub fn logits(&self) -> &[f32] {
        &self.logits[..self.n_logits]
    }

    /// Runs `tokens` (at most `n_batch`) at positions `pos..`, appending to
    /// the KV cache. Allocates nothing.
    pub fn forward(
        &mut self,
        m: &Model<'_>,
        tokens: &[u32],
        exec: &mut dyn Exec,
    ) -> Result<(), ModelError> {
        let hp = &m.hp;
        let n = tokens.len();
        if n == 0 || n > self.params.n_batch {
            return Err(ModelError::BatchTooLarge {
                n_tokens: n,
                n_batch: self.params.n_batch,
            });
        }
        if self.pos + n > self.params.n_ctx {
            return Err(ModelError::ContextFull {
                pos: self.pos,
                n_tokens: n,
                n_ctx: self.params.n_ctx,
            });
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= hp.n_vocab) {
            return Err(ModelError::TokenOutOfRange(t));
        }
        let (e, kvd) = (hp.n_embd, hp.kv_dim());
        for (i, &t) in tokens.iter().enumerate() {
            ops::embedding_row(
                m.tok_embd.data,
                m.tok_embd.ty,
                t as usize,
                &mut self.x[i * e..(i + 1) * e],
            )?;
        }
        // RoPE angles depend only on the position: once per token, not per layer.
        let nr = hp.n_rot;
        for i in 0..n {
            ops::rope_cache(
                self.pos + i,
                nr,
                hp.rope_theta,
                1.0,
                &mut self.rope[i * nr..(i + 1) * nr],
            )?;
        }
        for (li, l) in m.layers.iter().enumerate() {
            // Attention block.
            for i in 0..n {
                ops::rms_norm_mul(
                    &self.x[i * e..(i + 1) * e],
                    &l.attn_norm,
                    hp.rms_eps,
                    &mut self.xn[i * e..(i + 1) * e],
                )?;
            }
            matmul(
                exec,
                &l.wq,
                &self.xn[..n * e],
                n,
                &mut self.acts,
                &mut self.mm,
                &mut self.q[..n * e],
            )?;
            matmul(
                exec,
                &l.wk,
                &self.xn[..n * e],
                n,
                &mut self.acts,
                &mut self.mm,
                &mut self.k[..n * kvd],
            )?;
            matmul(
                exec,
                &l.wv,
                &self.xn[..n * e],
                n,
                &mut self.acts,
                &mut self.mm,
                &mut self.v[..n * kvd],
            )?;
            for (bias, out, d) in [
                (&l.bq, &mut self.q, e),
                (&l.bk, &mut self.k, kvd),
                (&l.bv, &mut self.v, kvd),
            ] {
                if let Some(b) = bias {
                    out[..n * d]
                        .chunks_exact_mut(d)
                        .for_each(|r| add_assign(r, b));
                }
            }
            for i in 0..n {
                let (q, k) = (
                    &mut self.q[i * e..(i + 1) * e],
                    &mut self.k[i * kvd..(i + 1) * kvd],
                );
                let rope = &self.rope[i * nr..(i + 1) * nr];
                match hp.rope {
                    RopeStyle::Norm => {
                        ops::rope_normal(q, hp.head_dim, rope)?;
                        ops::rope_normal(k, hp.head_dim, rope)?;
                    }
                    RopeStyle::Neox => {
                        rope_neox(q, hp.head_dim, rope);
                        rope_neox(k, hp.head_dim, rope);
                    }
                }
            }
            self.store_kv(hp, li, n);
            self.attention(hp, li, n, exec);
            matmul(
                exec,
                &l.wo,
                &self.att[..n * e],
                n,
                &mut self.acts,
                &mut self.mm,
                &mut self.xn[..n * e],
            )?;
            add_assign(&mut self.x[..n * e], &self.xn[..n * e]);

            // Feed-forward block (SwiGLU).
            for i in 0..n {
                ops::rms_norm_mul(
                    &self.x[i * e..(i + 1) * e],
                    &l.ffn_norm,
                    hp.rms_eps,
                    &mut self.xn[i * e..(i + 1) * e],
                )?;
            }
            let ff = hp.n_ff;
            matmul(
                exec,
                &l.w_gate,
                &self.xn[..n * e],
                n,
                &mut self.acts,
                &mut self.mm,
                &mut self.gate[..n * ff],
            )?;
            matmul(
                exec,
                &l.w_up,
                &self.xn[..n * e],
                n,
                &mut self.acts,
                &mut self.mm,
                &mut self.up[..n * ff],
            )?;
            ops::swiglu_in_place(&mut self.gate[..n * ff], &self.up[..n * ff])?;
            matmul(
                exec,
                &l.w_down,
                &self.gate[..n * ff],
                n,
                &mut self.acts,
                &mut self.mm,
                &mut self.xn[..n * e],
            )?;
            add_assign(&mut self.x[..n * e], &self.xn[..n * e]);
        }
        // Output: every position, or only the last.
        let first = if self.params.logits_all { 0 } else { n - 1 };
        let rows = n - first;
        for i in first..n {
            let j = i - first;
            ops::rms_norm_mul(
                &self.x[i * e..(i + 1) * e],
                &m.output_norm,
                hp.rms_eps,
                &mut self.xn[j * e..(j + 1) * e],
            )?;
        }
        let nv = hp.n_vocab;
        matmul(
            exec,
            &m.output,
            &self.xn[..rows * e],
            rows,
            &mut self.acts,
            &mut self.mm,
            &mut self.logits[..rows * nv],
        )?;
        self.n_logits = rows * nv;
        self.pos += n;
        Ok(())
    }

    fn store_kv(&mut self, hp: &Hparams, layer: usize, n: usize) {
        let kvd = hp.kv_dim();
        let at = (layer * self.params.n_ctx + self.pos) * kvd;
        match &mut self.kv {
            KvCache::F32 { k, v } => {
                k[at..at + n * kvd].copy_from_slice(&self.k[..n * kvd]);
                v[at..at + n * kvd].copy_from_slice(&self.v[..n * kvd]);
            }
            KvCache::F16 { k, v } => {
                quant::f32_to_f16(&self.k[..n * kvd], &mut k[at..at + n * kvd]);
                quant::f32_to_f16(&self.v[..n * kvd], &mut v[at..at + n * kvd]);
            }
        }
    }

    /// Causal self-attention of the batch's queries over the cache, one task
    /// per (token, head).
    fn attention(&mut self, hp: &Hparams, layer: usize, n: usize, exec: &mut dyn Exec) {
        let (hd, kvd, n_ctx) = (hp.head_dim, hp.kv_dim(), self.params.n_ctx);
        let group = hp.n_head / hp.n_head_kv;
        let base = layer * n_ctx * kvd;
        let scale = 1.0 / libm::sqrtf(hd as f32);
        let pos0 = self.pos;
        let q = &self.q;
        let kv = &self.kv;
        let out = Disjoint::new(&mut self.att[..n * hp.n_embd]);
        let scores = Disjoint::new(&mut self.scores[..n * hp.n_head * n_ctx]);
        exec.run(n * hp.n_head, &|task| {
            let (i, h) = (task / hp.n_head, task % hp.n_head);
            let len = pos0 + i + 1;
            let off = (h / group) * hd;
            let qh = &q[i * hp.n_embd + h * hd..][..hd];
            // SAFETY: task (i, h) owns scores[task * n_ctx..][..n_ctx] and
            // att[i * n_embd + h * hd..][..hd]; tasks are distinct.
            let (s, o) = unsafe {
                (
                    scores.slice_mut(task * n_ctx, len),
                    out.slice_mut(i * hp.n_embd + h * hd, hd),
                )
            };
            match kv {
                KvCache::F32 { k, v } => {
                    for (j, sj) in s.iter_mut().enumerate() {
                        *sj = dot(qh, &k[base + j * kvd + off..][..hd]);
                    }
                    ops::soft_max(s, scale);
                    o.fill(0.0);
                    for (j, &sj) in s.iter().enumerate() {
                        axpy(o, sj, &v[base + j * kvd + off..][..hd]);
                    }
                }
                KvCache::F16 { k, v } => {
                    for (j, sj) in s.iter_mut().enumerate() {
                        *sj = dot_f16(qh, &k[base + j * kvd + off..][..hd]);
                    }
                    ops::soft_max(s, scale);
                    o.fill(0.0);
                    for (j, &sj) in s.iter().enumerate() {
                        axpy_f16(o, sj, &v[base + j * kvd + off..][..hd]);
                    }
                }
            }
        });
    }
}

/// Token `i` of the fixed pseudo-random sequence `llamux bench` feeds the
/// model in both homes (llama-bench uses random ids too).
pub fn bench_token(i: usize, n_vocab: usize) -> u32 {
    ((i as u64).wrapping_mul(2_654_435_761).wrapping_add(17) % (n_vocab.max(1) as u64)) as u32
}

/// Rows per task: enough work to amortize dispatch, enough tasks to keep
/// every worker busy, and short enough for one FPU section in the kernel:
/// at most 2^20 multiply-adds (weight values times the batch's `n`
/// tokens), or 8 rows where one row is more.
fn rows_per_task(rows: usize, cols: usize, n: usize, parallelism: usize) -> usize {
    const MAX_VALUES_PER_TASK: usize = 1 << 20;
    let max_rows = (MAX_VALUES_PER_TASK / cols.max(1).saturating_mul(n.max(1))).max(1);
    let even = rows.div_ceil(parallelism.max(1) * 4).max(1);
    even.min(max_rows).max(8.min(rows))
}

/// out[b][r] = dot(w row r, x[b]) for a batch of `n` activation rows:
/// activations are quantized once to the weight type's activation format,
/// then row ranges run as tasks, each reading its weight rows once for the
/// whole batch.
fn matmul(
    exec: &mut dyn Exec,
    w: &Weight<'_>,
    x: &[f32],
    n: usize,
    acts: &mut [u8],
    mm: &mut [f32],
    out: &mut [f32],
) -> Result<(), ModelError> {
    let arow = quant::act_row_bytes(w.ty, w.cols)?;
    let acts = &mut acts[..n * arow];
    quant::quantize_acts_batch(w.ty, &x[..n * w.cols], w.cols, acts)?;
    let acts = &*acts;
    let mut chunk = rows_per_task(w.rows, w.cols, n, exec.parallelism());
    if w.layout == Layout::X8 {
        chunk = chunk.div_ceil(q4_k_x8::ROWS).max(1) * q4_k_x8::ROWS;
    }
    let isa = quant::fastest_isa(w.ty, w.layout);
    let mul = |r, n, out: &mut [f32]| {
        quant::matmul_rows_with(isa, w.layout, w.data, w.ty, w.cols, r, acts, n, out)
    };
    let n_tasks = w.rows.div_ceil(chunk.max(1));
    let rows = w.rows;
    let (mm, out) = (
        Disjoint::new(&mut mm[..n * rows]),
        Disjoint::new(&mut out[..n * rows]),
    );
    let failed = AtomicBool::new(false);
    exec.run(n_tasks, &|t| {
        let r0 = t * chunk;
        let r1 = (r0 + chunk).min(rows);
        if n == 1 {
            // One token: [row][batch] is [batch][row], no scatter needed.
            // SAFETY: task t alone owns out[r0..r1].
            let o = unsafe { out.slice_mut(r0, r1 - r0) };
            if mul(r0..r1, 1, o).is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            return;
        }
        // SAFETY: task t alone owns mm[r0 * n..r1 * n] and, in `out`, rows
        // r0..r1 of every batch row.
        let tmp = unsafe { mm.slice_mut(r0 * n, (r1 - r0) * n) };
        if mul(r0..r1, n, tmp).is_err() {
            failed.store(true, Ordering::Relaxed);
            return;
        }
        // tmp is token-major: one contiguous copy per token.
        for (b, t) in tmp.chunks_exact(r1 - r0).enumerate() {
            // SAFETY: as above.
            unsafe { out.slice_mut(b * rows + r0, r1 - r0) }.copy_from_slice(t);
        }
    });
    if failed.load(Ordering::Relaxed) {
        // Shapes were checked at load, so this is a bug, reported not hidden.
        return Err(ModelError::BadShape("matmul".into()));
    }
    Ok(())
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

// Attention's vector helpers: AVX2 when the CPU has it (quant::isa()).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    quant::dot_f32(a, b)
}

#[inline]
fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
    quant::dot_f16(a, b)
}

/// o += s * v
#[inline]
fn axpy(o: &mut [f32], s: f32, v: &[f32]) {
    quant::axpy_f32(o, s, v)
}

#[inline]
fn axpy_f16(o: &mut [f32], s: f32, v: &[u16]) {
    quant::axpy_f16(o, s, v)
}

/// RoPE, NeoX mode (Qwen2): rotates (x[i], x[i + n_dims/2]) in each head.
fn rope_neox(x: &mut [f32], head_dim: usize, cache: &[f32]) {
    let half = cache.len() / 2;
    for head in x.chunks_exact_mut(head_dim) {
        for i in 0..half {
            let (cos, sin) = (cache[2 * i], cache[2 * i + 1]);
            let (x0, x1) = (head[i], head[i + half]);
            head[i] = x0 * cos - x1 * sin;
            head[i + half] = x0 * sin + x1 * cos;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_for_is_what_new_allocates() {
        let hp = Hparams {
            arch: "llama".into(),
            n_vocab: 300,
            n_ctx_train: 128,
            n_embd: 64,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 96,
            head_dim: 16,
            n_rot: 16,
            rope_theta: 10000.0,
            rms_eps: 1e-5,
            rope: RopeStyle::Norm,
        };
        for (n_ctx, n_batch, logits_all, kv_type) in [
            (64, 8, false, KvType::F32),
            (100, 33, true, KvType::F16),
            (1, 1, true, KvType::F32),
        ] {
            let p = ContextParams {
                n_ctx,
                n_batch,
                logits_all,
                kv_type,
            };
            let c = Context::new(&hp, p).unwrap();
            // memory_bytes leaves out the rope table.
            assert_eq!(
                Context::bytes_for(&hp, &p),
                Some(c.memory_bytes() + c.rope.len() * 4)
            );
        }
        let huge = ContextParams {
            n_ctx: usize::MAX / 2,
            ..ContextParams::default()
        };
        assert_eq!(Context::bytes_for(&hp, &huge), None);
    }
}
