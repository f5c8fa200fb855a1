#!/usr/bin/env python3
"""Writes a CodeLlama-13B-shaped random-weight GGUF in Q4_K_M's type layout
(bench only: the weights mean nothing, the shapes and bytes are real).

n_embd 5120, 40 layers, 40 heads (40 KV heads), n_ff 13824, vocab 32016,
rope theta 1e6. Q4_K everywhere except Q6_K for output.weight and for
attn_v/ffn_down in the layers llama.cpp's use_more_bits picks (20 of 40);
norms F32. Each type's blocks come from quantizing one small random matrix
with libgguf (ggml's quantizer) and tiling it: valid blocks, fast to write.
Vocab: llama.cpp's SPM test vocab (32000) plus 16 filler tokens.

Usage: make-13b.py --vocab ggml-vocab-llama-spm.gguf --out FILE
"""
import argparse
import os
import sys

import numpy as np
import gguf
import libgguf
from gguf import GGMLQuantizationType as T

N_VOCAB, N_EMBD, N_LAYER, N_HEAD, N_FF = 32016, 5120, 40, 40, 13824
ROPE_BASE, RMS_EPS, N_CTX = 1e6, 1e-5, 16384


def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def layout():
    """(name, (rows, cols), type) in file order."""
    out = [("token_embd.weight", (N_VOCAB, N_EMBD), T.Q4_K)]
    for i in range(N_LAYER):
        p = f"blk.{i}."
        hi = T.Q6_K if use_more_bits(i, N_LAYER) else T.Q4_K
        out += [
            (p + "attn_norm.weight", (N_EMBD,), T.F32),
            (p + "attn_q.weight", (N_EMBD, N_EMBD), T.Q4_K),
            (p + "attn_k.weight", (N_EMBD, N_EMBD), T.Q4_K),
            (p + "attn_v.weight", (N_EMBD, N_EMBD), hi),
            (p + "attn_output.weight", (N_EMBD, N_EMBD), T.Q4_K),
            (p + "ffn_norm.weight", (N_EMBD,), T.F32),
            (p + "ffn_gate.weight", (N_FF, N_EMBD), T.Q4_K),
            (p + "ffn_up.weight", (N_FF, N_EMBD), T.Q4_K),
            (p + "ffn_down.weight", (N_EMBD, N_FF), hi),
        ]
    out += [("output_norm.weight", (N_EMBD,), T.F32), ("output.weight", (N_VOCAB, N_EMBD), T.Q6_K)]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    r = gguf.GGUFReader(a.vocab)
    toks = list(r.fields["tokenizer.ggml.tokens"].contents())
    scores = list(r.fields["tokenizer.ggml.scores"].contents())
    types = list(r.fields["tokenizer.ggml.token_type"].contents())
    assert len(toks) <= N_VOCAB
    for i in range(N_VOCAB - len(toks)):
        toks.append(f"<pad_{i}>")
        scores.append(0.0)
        types.append(4)  # USER_DEFINED, like CodeLlama's FIM tokens

    rng = np.random.default_rng(13)
    # One quantized tile per type: 64 rows of 5120 random values (~0.02 std).
    tiles = {}
    for t in (T.Q4_K, T.Q6_K):
        m = (0.02 * rng.standard_normal((64, N_EMBD))).astype(np.float32)
        tiles[t] = np.ascontiguousarray(libgguf.quantize_rows(m, int(t)), dtype=np.uint8).reshape(64, -1)

    def data(shape, t):
        if t == T.F32:
            return (1 + 0.01 * rng.standard_normal(shape)).astype(np.float32)
        rows, cols = shape
        rb = libgguf.row_size(int(t), cols)
        tile = tiles[t].reshape(-1)  # 64 * 5120 values
        n = rows * rb
        return np.resize(tile, n).reshape(rows, rb)  # repeats the tile bytes

    tmp = a.out + ".tmp"
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_name("codellama-13b-shape-random")
    w.add_file_type(15)  # MOSTLY_Q4_K_M
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(N_VOCAB)
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_freq_base(ROPE_BASE)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    lay = layout()
    for name, shape, t in lay:
        if t == T.F32:
            w.add_tensor_info(name, shape, np.dtype(np.float32), shape[0] * 4)
        else:
            rb = libgguf.row_size(int(t), shape[1])
            w.add_tensor_info(name, (shape[0], rb), np.dtype(np.uint8), shape[0] * rb, raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shape, t in lay:  # one tensor in memory at a time
        w.write_tensor_data(data(shape, t))
    w.close()
    os.replace(tmp, a.out)
    print(a.out, os.path.getsize(a.out))


if __name__ == "__main__":
    sys.exit(main())
