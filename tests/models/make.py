#!/usr/bin/env python3
"""Deterministic generator of the tiny LLaMA GGUF test models.

All models come from the SAME f32 weights (seeded numpy); only the storage
type of the 2-D tensors differs. Quantization uses libgguf.quantize_rows,
bit-identical to ggml's reference quantizers (what llama-quantize uses without
an imatrix); F16 is numpy's round-to-nearest-even, as ggml's. Checked once:
`llama-quantize tiny-f32.gguf out.gguf {Q4_K_M,Q8_0,Q6_K}` gives the same
tensor types and byte-identical tensor data as tiny-{q4_k_m,q8_0,q6_k}.gguf,
and llama.cpp's logits on tiny-f32 equal forward() below to ~4e-6.

Shape (llama.cpp arch "llama"): n_vocab 2048 (the first 2048 pieces of
llama.cpp's models/ggml-vocab-llama-spm.gguf), n_embd 256, n_layer 2,
n_ff 512, n_head 4, n_head_kv 2 (GQA), head_dim 64, rope NORM (adjacent pairs,
as llama.cpp runs arch llama), freq_base 10000, rms eps 1e-5, n_ctx_train 256.

Weights: random, with one planted structure so that the argmax is robust to
quantization: output.weight row j carries the (scaled) embeddings of the
tokens t with succ(t) == j, so the residual stream's copy of the current
token's embedding votes for succ(t) by a wide margin. The rest of the logits
(std of a few units) comes from random attention/FFN/output weights and so
depends on context. succ maps every token to a normal (type 1) piece, never
to <unk>, <s>, </s> or a byte token.

Usage: make.py --vocab <ggml-vocab-llama-spm.gguf> --out <dir> [--stats]
"""
import argparse
import hashlib
import os
import sys

import numpy as np

import gguf
import libgguf
from gguf import GGMLQuantizationType as T

SEED = 20261127
N_VOCAB = 2048
N_EMBD = 256
N_LAYER = 2
N_FF = 512
N_HEAD = 4
N_HEAD_KV = 2
HEAD_DIM = N_EMBD // N_HEAD
N_CTX = 256
ROPE_BASE = 10000.0
RMS_EPS = 1e-5

# Scales (tuned so activations stay O(1), logits have a std of a few units and
# the top-1 margin survives Q4_K).
EMB_STD = 1.0        # token_embd entries
QK_GAIN = 0.5        # Wq, Wk std = QK_GAIN / sqrt(n_embd): scores std ~ 2
V_STD = 1.0          # Wv std = V_STD / sqrt(n_embd)
O_GAIN = 0.5         # Wo std = O_GAIN / sqrt(n_embd)
FF_GAIN = 1.0        # gate/up std = FF_GAIN / sqrt(n_embd)
DOWN_GAIN = 0.04     # down std
SUCC_GAIN = 32.0     # planted successor vote (logit units at full alignment)
OUT_RAND = 0.15      # random part of output.weight (std)
NORM_NOISE = 0.1     # norm weights = 1 + NORM_NOISE * N(0,1)


def layer_names(i):
    p = f"blk.{i}."
    return {k: p + k + ".weight" for k in
            ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
             "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")}


def read_vocab(path):
    r = gguf.GGUFReader(path)
    toks = r.fields["tokenizer.ggml.tokens"].contents()[:N_VOCAB]
    scores = np.asarray(r.fields["tokenizer.ggml.scores"].contents()[:N_VOCAB], dtype=np.float32)
    types = np.asarray(r.fields["tokenizer.ggml.token_type"].contents()[:N_VOCAB], dtype=np.int32)
    assert toks[0] == "<unk>" and toks[1] == "<s>" and toks[2] == "</s>"
    return toks, scores, types


def make_weights(types):
    """Returns {name: f32 ndarray} in numpy (rows, cols) = ggml (ne1, ne0)."""
    rng = np.random.default_rng(SEED)
    sq = np.sqrt(N_EMBD)
    w = {}
    emb = (EMB_STD * rng.standard_normal((N_VOCAB, N_EMBD))).astype(np.float32)
    w["token_embd.weight"] = emb
    for i in range(N_LAYER):
        n = layer_names(i)
        w[n["attn_norm"]] = (1 + NORM_NOISE * rng.standard_normal(N_EMBD)).astype(np.float32)
        w[n["attn_q"]] = (QK_GAIN / sq * rng.standard_normal((N_HEAD * HEAD_DIM, N_EMBD))).astype(np.float32)
        w[n["attn_k"]] = (QK_GAIN / sq * rng.standard_normal((N_HEAD_KV * HEAD_DIM, N_EMBD))).astype(np.float32)
        w[n["attn_v"]] = (V_STD / sq * rng.standard_normal((N_HEAD_KV * HEAD_DIM, N_EMBD))).astype(np.float32)
        w[n["attn_output"]] = (O_GAIN / sq * rng.standard_normal((N_EMBD, N_HEAD * HEAD_DIM))).astype(np.float32)
        w[n["ffn_norm"]] = (1 + NORM_NOISE * rng.standard_normal(N_EMBD)).astype(np.float32)
        w[n["ffn_gate"]] = (FF_GAIN / sq * rng.standard_normal((N_FF, N_EMBD))).astype(np.float32)
        w[n["ffn_up"]] = (FF_GAIN / sq * rng.standard_normal((N_FF, N_EMBD))).astype(np.float32)
        w[n["ffn_down"]] = (DOWN_GAIN * rng.standard_normal((N_EMBD, N_FF))).astype(np.float32)
    w["output_norm.weight"] = (1 + NORM_NOISE * rng.standard_normal(N_EMBD)).astype(np.float32)
    # successor map: a random permutation of the normal pieces; the other
    # tokens (unk/bos/eos/bytes) map to random normal pieces.
    normal = np.nonzero(types == 1)[0]
    succ = np.empty(N_VOCAB, dtype=np.int64)
    succ[normal] = rng.permutation(normal)
    other = np.nonzero(types != 1)[0]
    succ[other] = rng.choice(normal, size=len(other), replace=True)
    out = OUT_RAND * rng.standard_normal((N_VOCAB, N_EMBD))
    vote = np.zeros((N_VOCAB, N_EMBD))
    np.add.at(vote, succ, emb.astype(np.float64))
    out += SUCC_GAIN / N_EMBD * vote
    w["output.weight"] = out.astype(np.float32)
    return w, succ


def tensor_order():
    names = ["token_embd.weight"]
    for i in range(N_LAYER):
        n = layer_names(i)
        names += [n[k] for k in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                 "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")]
    names += ["output_norm.weight", "output.weight"]
    return names


def is_matrix(name):
    return not name.endswith("norm.weight")


def layout_uniform(t):
    return lambda name: t if is_matrix(name) else T.F32


def layout_q4_k_m(name):
    # llama.cpp llama-quant.cpp, LLAMA_FTYPE_MOSTLY_Q4_K_M, arch llama,
    # n_layer 2, no imatrix: output.weight -> Q6_K; attn_v and ffn_down ->
    # Q6_K where use_more_bits(i, n) (i < n/8 || i >= 7n/8 || (i - n/8)%3 == 2,
    # i.e. layer 1 of 2); token_embd and everything else 2-D -> Q4_K.
    if not is_matrix(name):
        return T.F32
    if name == "output.weight":
        return T.Q6_K
    n = N_LAYER

    def more_bits(i):
        return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2
    for i in range(N_LAYER):
        if name in (f"blk.{i}.attn_v.weight", f"blk.{i}.ffn_down.weight") and more_bits(i):
            return T.Q6_K
    return T.Q4_K


MIXED = {
    "token_embd.weight": T.Q5_K,
    "blk.0.attn_q.weight": T.F16,
    "blk.0.attn_k.weight": T.Q4_K,
    "blk.0.attn_v.weight": T.Q5_K,
    "blk.0.attn_output.weight": T.Q6_K,
    "blk.0.ffn_gate.weight": T.Q8_0,
    "blk.0.ffn_up.weight": T.F32,
    "blk.0.ffn_down.weight": T.Q4_K,
    "blk.1.attn_q.weight": T.Q8_0,
    "blk.1.attn_k.weight": T.F16,
    "blk.1.attn_v.weight": T.Q6_K,
    "blk.1.attn_output.weight": T.Q4_K,
    "blk.1.ffn_gate.weight": T.Q5_K,
    "blk.1.ffn_up.weight": T.Q6_K,
    "blk.1.ffn_down.weight": T.F16,
    "output.weight": T.Q8_0,
}


def layout_mixed(name):
    return MIXED.get(name, T.F32)


# name -> (layout, general.file_type (llama_ftype), write general.alignment)
MODELS = {
    "tiny-f32.gguf": (layout_uniform(T.F32), 0, False),        # ALL_F32
    "tiny-q8_0.gguf": (layout_uniform(T.Q8_0), 7, False),      # MOSTLY_Q8_0
    "tiny-q6_k.gguf": (layout_uniform(T.Q6_K), 18, False),     # MOSTLY_Q6_K
    "tiny-q4_k_m.gguf": (layout_q4_k_m, 15, False),            # MOSTLY_Q4_K_M
    # file_type of the mixed model is nominal; it alone writes general.alignment
    # (= 32, the default) explicitly, the others rely on the default.
    "tiny-mixed.gguf": (layout_mixed, 15, True),
}


def encode(a, t):
    """f32 (rows, cols) -> (array to write, raw_dtype or None)."""
    if t == T.F32:
        return a.astype(np.float32), None
    if t == T.F16:
        return a.astype(np.float16), None
    q = libgguf.quantize_rows(np.ascontiguousarray(a, dtype=np.float32), int(t))
    q = np.ascontiguousarray(q, dtype=np.uint8).reshape(a.shape[0], -1)
    assert q.shape[1] == libgguf.row_size(int(t), a.shape[1])
    return q, t


def decode(a, t):
    """Stored array -> f32 (rows, cols), as ggml dequantizes."""
    if t == T.F32:
        return a
    if t == T.F16:
        return a.astype(np.float32)
    return gguf.quants.dequantize(a, t).astype(np.float32)


def write_model(path, layout, ftype, alignment, w, vocab):
    toks, scores, types = vocab
    wr = gguf.GGUFWriter(path, "llama")
    wr.add_name("llamux-tiny")
    wr.add_file_type(ftype)
    if ftype != 0:
        wr.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if alignment:
        wr.add_custom_alignment(32)
    wr.add_vocab_size(N_VOCAB)
    wr.add_context_length(N_CTX)
    wr.add_embedding_length(N_EMBD)
    wr.add_block_count(N_LAYER)
    wr.add_feed_forward_length(N_FF)
    wr.add_head_count(N_HEAD)
    wr.add_head_count_kv(N_HEAD_KV)
    wr.add_rope_freq_base(ROPE_BASE)
    wr.add_layer_norm_rms_eps(RMS_EPS)
    wr.add_rope_dimension_count(HEAD_DIM)
    wr.add_tokenizer_model("llama")
    wr.add_tokenizer_pre("default")
    wr.add_token_list(toks)
    wr.add_token_scores(scores.tolist())
    wr.add_token_types(types.tolist())
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(2)
    wr.add_unk_token_id(0)
    wr.add_add_bos_token(True)
    wr.add_add_eos_token(False)
    stored = {}
    for name in tensor_order():
        t = layout(name)
        data, raw = encode(w[name], t)
        stored[name] = (t, data)
        if raw is None:
            wr.add_tensor(name, data)
        else:
            wr.add_tensor(name, data, raw_dtype=raw)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return stored


# ---------------------------------------------------------------- numpy model
def rms_norm(x, g):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + RMS_EPS) * g


def rope(x, pos):
    # x: (n_tok, n_heads, head_dim); NORM rope: rotate pairs (2i, 2i+1)
    d = x.shape[-1]
    inv = ROPE_BASE ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = pos[:, None].astype(np.float64) * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def forward(w, tokens):
    """float64 reference forward; returns logits (n_tok, n_vocab)."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    n = len(tokens)
    pos = np.arange(n)
    x = w["token_embd.weight"][tokens]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    grp = N_HEAD // N_HEAD_KV
    for i in range(N_LAYER):
        L = layer_names(i)
        h = rms_norm(x, w[L["attn_norm"]])
        q = (h @ w[L["attn_q"]].T).reshape(n, N_HEAD, HEAD_DIM)
        k = (h @ w[L["attn_k"]].T).reshape(n, N_HEAD_KV, HEAD_DIM)
        v = (h @ w[L["attn_v"]].T).reshape(n, N_HEAD_KV, HEAD_DIM)
        q, k = rope(q, pos), rope(k, pos)
        att = np.empty((n, N_HEAD, HEAD_DIM))
        for hd in range(N_HEAD):
            kv = hd // grp
            sc = q[:, hd] @ k[:, kv].T / np.sqrt(HEAD_DIM) + mask
            sc = np.exp(sc - sc.max(axis=1, keepdims=True))
            sc /= sc.sum(axis=1, keepdims=True)
            att[:, hd] = sc @ v[:, kv]
        x = x + att.reshape(n, -1) @ w[L["attn_output"]].T
        h = rms_norm(x, w[L["ffn_norm"]])
        g = h @ w[L["ffn_gate"]].T
        u = h @ w[L["ffn_up"]].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ w[L["ffn_down"]].T
    x = rms_norm(x, w["output_norm.weight"])
    return x @ w["output.weight"].T


def stats(w, models, succ):
    rng = np.random.default_rng(1)
    seqs = [np.concatenate([[1], rng.integers(3, N_VOCAB, 40)]) for _ in range(4)]
    ref = [forward(w, s) for s in seqs]
    allr = np.concatenate(ref)
    srt = np.sort(allr, axis=1)
    top = allr.argmax(1)
    toks = np.concatenate(seqs)
    print(f"f32: logit std {allr.std():.2f}, top1-top2 margin min {np.min(srt[:, -1] - srt[:, -2]):.2f} "
          f"median {np.median(srt[:, -1] - srt[:, -2]):.2f}, top1==succ(tok) {np.mean(top == succ[toks]) * 100:.1f}%")
    for name, stored in models.items():
        wq = {k: decode(a, t).reshape(w[k].shape) for k, (t, a) in stored.items()}
        got = np.concatenate([forward(wq, s) for s in seqs])
        agree = np.mean(got.argmax(1) == top) * 100
        print(f"{name}: max|dlogit| {np.abs(got - allr).max():.3f}, top1 agree {agree:.1f}%")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stats", action="store_true", help="numpy forward: logit spread, quantized agreement")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    vocab = read_vocab(args.vocab)
    w, succ = make_weights(vocab[2])
    models = {}
    for name, (layout, ftype, align) in MODELS.items():
        path = os.path.join(args.out, name)
        tmp = os.path.join(args.out, "." + name)  # still matches *.gguf in .gitignore
        models[name] = write_model(tmp, layout, ftype, align, w, vocab)
        os.replace(tmp, path)
        with open(path, "rb") as f:
            print(f"{hashlib.sha256(f.read()).hexdigest()}  {name}")
    if args.stats:
        stats(w, models, succ)


if __name__ == "__main__":
    sys.exit(main())
