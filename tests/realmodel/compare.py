#!/usr/bin/env python3
"""The real-model profile's checks: llamux against llama.cpp (Python bindings
on the libraries build-llama.sh built) on Qwen2.5-Coder-1.5B-Instruct Q4_K_M.

1. tokenizer: `llamux tokenize` vs llama_tokenize(add_special, parse_special
   = false) on a set of texts (code, prose, Unicode, whitespace runs,
   ChatML markers as text, and a source file of this repo);
2. logits: `llamux logits` over a prompt vs llama.cpp's logits at every
   position (one batch, F32 KV cache, flash attention off): top-1 agreement
   (must be >= 99% of positions) and max |dlogit|;
3. greedy: `llamux run --temperature 0 -n 32 --json` vs llama.cpp's greedy
   32 tokens (argmax, one token per decode).
Prints a summary; exits 1 if a check fails.

usage: compare.py LLAMUX_BIN MODEL.gguf THREADS
"""
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import llama_cpp as L

llamux, model_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
here = os.path.dirname(os.path.abspath(__file__))
N_GEN = 32
N_CTX = 512

TEXTS = [
    "def fibonacci(n):",
    "Hello world",
    " Hello  World!\n\n\tTabs and   spaces   ",
    "I'm sure they've said you'LL see it's done; we'd REALLY like that.",
    "int main(void) { printf(\"%d\\n\", 42); return 0; } // naïve",
    "Ünïcödé 日本語 中文 한국어 العربية 🦙🦀 ١٢٣ Ⅻ",
    "3.14159 + 2718281828 = 1e10\r\n\r\n",
    "<|im_start|>user\nnot special here<|im_end|>",
    "    if x:\n        return [i * 2 for i in range(10)]\n",
]
with open(os.path.join(here, "..", "..", "kmod", "engine", "src", "tokenizer", "bpe.rs"), encoding="utf-8") as f:
    TEXTS.append(f.read()[:6000])

PROMPT = (
    "# Python: a small LRU cache with a dictionary and a doubly linked list.\n"
    "class Node:\n"
    "    def __init__(self, key, value):\n"
    "        self.key = key\n"
    "        self.value = value\n"
    "        self.prev = None\n"
    "        self.next = None\n\n"
    "class LRUCache:\n"
    "    def __init__(self, capacity: int):\n"
    "        self.capacity = capacity\n"
    "        self.map = {}\n"
)
GEN_PROMPT = "def quicksort(arr):\n    \"\"\"Sort a list of numbers.\"\"\"\n"


def quiet_logs():
    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def cb(level, text, data):
        pass
    quiet_logs.cb = cb
    L.llama_log_set(cb, ctypes.c_void_p(0))


L.llama_backend_init()
quiet_logs()
mp = L.llama_model_default_params()
mp.n_gpu_layers = 0
model = L.llama_model_load_from_file(model_path.encode(), mp)
assert model, "llama.cpp could not load the model"
vocab = L.llama_model_get_vocab(model)
n_vocab = L.llama_vocab_n_tokens(vocab)


def ref_tokenize(text, add_special=True, parse_special=False):
    b = text.encode("utf-8")
    cap = 3 * len(b) + 8
    buf = (L.llama_token * cap)()
    n = L.llama_tokenize(vocab, b, len(b), buf, cap, add_special, parse_special)
    assert n >= 0, n
    return [int(buf[i]) for i in range(n)]


def context():
    cp = L.llama_context_default_params()
    cp.n_ctx = N_CTX
    cp.n_batch = N_CTX
    cp.n_ubatch = N_CTX
    cp.n_seq_max = 1
    cp.n_threads = threads
    cp.n_threads_batch = threads
    cp.type_k = 0  # F32 like llamux's default KV cache
    cp.type_v = 0
    cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = L.llama_init_from_model(model, cp)
    assert ctx
    return ctx


def ref_run(tokens, n_gen):
    ctx = context()
    batch = L.llama_batch_init(max(len(tokens), 1), 0, 1)
    get = lambda i: np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,)).astype(np.float32).copy()
    for i, t in enumerate(tokens):
        batch.token[i] = t
        batch.pos[i] = i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1
    batch.n_tokens = len(tokens)
    assert L.llama_decode(ctx, batch) == 0
    logits = np.stack([get(i) for i in range(len(tokens))])
    last, gen = logits[-1], []
    for step in range(n_gen):
        nxt = int(np.argmax(last))
        gen.append(nxt)
        if step == n_gen - 1:
            break
        batch.token[0] = nxt
        batch.pos[0] = len(tokens) + step
        batch.n_seq_id[0] = 1
        batch.seq_id[0][0] = 0
        batch.logits[0] = 1
        batch.n_tokens = 1
        assert L.llama_decode(ctx, batch) == 0
        last = get(0)
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    return logits, gen


def piece_text(ids):
    out = b""
    for t in ids:
        buf = ctypes.create_string_buffer(256)
        n = L.llama_token_to_piece(vocab, t, buf, 256, 0, True)
        out += buf.raw[:n]
    return out.decode("utf-8", errors="replace")


ok = True
summary = {}

# 1. tokenizer
tok_fail = []
n_ids = 0
for text in TEXTS:
    want = ref_tokenize(text)
    r = subprocess.run([llamux, "tokenize", "-m", model_path, "--json", text], capture_output=True, text=True)
    got = json.loads(r.stdout)["tokens"] if r.returncode == 0 else r.stderr.strip()
    n_ids += len(want)
    if got != want:
        tok_fail.append((text[:60], got if isinstance(got, str) else got[:20], want[:20]))
summary["tokenizer"] = "%d/%d texts identical (%d ids)" % (len(TEXTS) - len(tok_fail), len(TEXTS), n_ids)
for f in tok_fail:
    print("tokenizer mismatch:", f)
ok &= not tok_fail

# 2. logits over a prompt
ptoks = ref_tokenize(PROMPT)
t0 = time.time()
ref_logits, _ = ref_run(ptoks, 0)
t_ref = time.time() - t0
with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "logits.f32")
    t0 = time.time()
    subprocess.run([llamux, "logits", "-m", model_path, "-t", str(threads), "--ctx", str(N_CTX),
                    "--tokens", ",".join(map(str, ptoks)), "-o", out], check=True, capture_output=True)
    t_ours = time.time() - t0
    ours = np.fromfile(out, dtype="<f4").reshape(len(ptoks), n_vocab)
agree = float(np.mean(ours.argmax(1) == ref_logits.argmax(1)))
maxd = float(np.abs(ours - ref_logits).max())
meand = float(np.abs(ours - ref_logits).mean())
summary["logits"] = ("%d positions: top-1 agreement %.2f%% (%d/%d), max |dlogit| %.4f, mean |dlogit| %.5f "
                     "(llamux %.1fs, llama.cpp %.1fs)" % (
                         len(ptoks), 100 * agree, int(round(agree * len(ptoks))), len(ptoks), maxd, meand, t_ours, t_ref))
ok &= agree >= 0.99

# 3. greedy 32 tokens
gtoks = ref_tokenize(GEN_PROMPT)
_, ref_gen = ref_run(gtoks, N_GEN)
t0 = time.time()
r = subprocess.run([llamux, "run", "-m", model_path, "-t", str(threads), "--ctx", str(N_CTX), "-n", str(N_GEN),
                    "--temperature", "0", "--json", "-p", GEN_PROMPT], capture_output=True, text=True, check=True)
t_gen = time.time() - t0
res = json.loads(r.stdout)
our_gen = res["generated_tokens"]
same_prompt = res["prompt_tokens"] == gtoks if "prompt_tokens" in res else None
# llamux stops at an end-of-generation token; llama.cpp's loop here does not.
n = len(our_gen)
greedy_ok = our_gen == ref_gen[:n] and (n == N_GEN or L.llama_vocab_is_eog(vocab, our_gen[-1]))
summary["greedy"] = "%s: %d/%d tokens equal (prompt tokens equal: %s; %.1fs, %.2f tok/s decode)" % (
    "identical" if greedy_ok else "DIFFERENT", sum(a == b for a, b in zip(our_gen, ref_gen)), N_GEN, same_prompt,
    t_gen, res["timings"]["decode_tokens_per_s"])
summary["greedy_text"] = repr(res["text"])
if not greedy_ok:
    print("llamux   :", our_gen)
    print("llama.cpp:", ref_gen)
    print("llama.cpp text:", repr(piece_text(ref_gen)))
ok &= greedy_ok

L.llama_model_free(model)
print("== real model: %s" % os.path.basename(model_path))
for k, v in summary.items():
    print("%-12s %s" % (k + ":", v))
print("result:      %s" % ("PASS" if ok else "FAIL"))
sys.exit(0 if ok else 1)
