// SPDX-License-Identifier: GPL-2.0
/*
 * C glue of llamux.ko: only what Rust cannot express in 6.12 (the module
 * itself is Rust, src/). Module parameters (module_param has no Rust
 * support; Rust reads the variables, src/params.rs), the proc_ops tables of
 * the /proc/llamux files with more than a seq_file show (pointing at Rust
 * functions in src/proc/), and one-line wrappers of static inline
 * functions and macros (called from src/sys.rs).
 */
#include <linux/completion.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mm.h>
#include <linux/proc_fs.h>
#include <linux/sched/clock.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>

/* ---- Module parameters ---- */
char *llamux_param_model;
module_param_named(model, llamux_param_model, charp, 0444);
MODULE_PARM_DESC(model, "GGUF model file to load at module init");

unsigned int llamux_param_threads;
module_param_named(threads, llamux_param_threads, uint, 0444);
MODULE_PARM_DESC(threads, "Inference threads including the caller (0 = one per online CPU)");
/* The name of the same setting in the first versions (an alias). */
module_param_named(max_threads, llamux_param_threads, uint, 0444);
MODULE_PARM_DESC(max_threads, "Alias of threads");

unsigned int llamux_param_chunk_kb = 1024;
module_param_named(chunk_kb, llamux_param_chunk_kb, uint, 0644);
MODULE_PARM_DESC(chunk_kb, "Model file read chunk in KiB");

unsigned int llamux_param_n_ctx = 512;
module_param_named(n_ctx, llamux_param_n_ctx, uint, 0644);
MODULE_PARM_DESC(n_ctx, "KV cache positions (prompt + generated tokens); a change applies at the next load");

int llamux_param_kv_f16; /* KV cache element type: 0 f32, 1 f16 */

static int kv_type_set(const char *val, const struct kernel_param *kp)
{
	if (!sysfs_streq(val, "f32") && !sysfs_streq(val, "f16"))
		return -EINVAL;
	WRITE_ONCE(*(int *)kp->arg, sysfs_streq(val, "f16"));
	return 0;
}

static int kv_type_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", *(int *)kp->arg ? "f16" : "f32");
}

static const struct kernel_param_ops kv_type_ops = { .set = kv_type_set, .get = kv_type_get };
module_param_cb(kv_type, &kv_type_ops, &llamux_param_kv_f16, 0644);
MODULE_PARM_DESC(kv_type, "KV cache type: f32 or f16; a change applies at the next load");

unsigned int llamux_param_max_model_mb = 65536;
module_param_named(max_model_mb, llamux_param_max_model_mb, uint, 0644);
MODULE_PARM_DESC(max_model_mb, "Largest model file in MiB; bigger files fail with EFBIG");

bool llamux_param_drop_cache = true;
module_param_named(drop_cache, llamux_param_drop_cache, bool, 0644);
MODULE_PARM_DESC(drop_cache, "Drop each chunk's page cache after copying it, so the model is not held twice");

unsigned int llamux_param_n_batch = 32;
module_param_named(n_batch, llamux_param_n_batch, uint, 0444);
MODULE_PARM_DESC(n_batch, "Prefill batch size");

bool llamux_param_repack = true;
module_param_named(repack, llamux_param_repack, bool, 0644);
MODULE_PARM_DESC(repack, "Repack Q4_K/Q6_K matrices at load for the 8-row SIMD kernels (as llamux does); a change applies at the next load");

unsigned int llamux_param_spin_us = 1000;
module_param_named(spin_us, llamux_param_spin_us, uint, 0644);
MODULE_PARM_DESC(spin_us, "Workers and the caller spin this long for the next job / the job's end before sleeping");

bool llamux_param_pin_workers;
module_param_named(pin_workers, llamux_param_pin_workers, bool, 0444);
MODULE_PARM_DESC(pin_workers, "Bind worker i to the i-th online CPU after the first (default: the scheduler places them)");

unsigned int llamux_param_fpu_slice_us = 200;
module_param_named(fpu_slice_us, llamux_param_fpu_slice_us, uint, 0644);
MODULE_PARM_DESC(fpu_slice_us, "A thread runs further engine tasks in its FPU section (preemption off) only while the section is younger than this");

unsigned int llamux_param_max_prompt = 4096;
module_param_named(max_prompt, llamux_param_max_prompt, uint, 0444);
MODULE_PARM_DESC(max_prompt, "Longest prompt in bytes (longer writes fail with E2BIG)");

unsigned int llamux_param_advise_slots = 4;
module_param_named(advise_slots, llamux_param_advise_slots, uint, 0444);
MODULE_PARM_DESC(advise_slots, "Advisor policy prefixes kept prefilled (1-8; each holds a KV cache)");

unsigned int llamux_param_advise_max_ctx = 32768;
module_param_named(advise_max_ctx, llamux_param_advise_max_ctx, uint, 0644);
MODULE_PARM_DESC(advise_max_ctx, "Largest advisor context in positions (bigger requests fail with EINVAL); a change applies at the next load");

unsigned int llamux_param_prompt_timeout_s = 30;
module_param_named(prompt_timeout_s, llamux_param_prompt_timeout_s, uint, 0644);
MODULE_PARM_DESC(prompt_timeout_s, "Seconds a prompt written to generate may stay unread before it is dropped (0 = never)");

char *llamux_param_params;
module_param_named(params, llamux_param_params, charp, 0444);
MODULE_PARM_DESC(params, "Default sampling, e.g. \"temperature=0 top_k=40 seed=1 n_predict=32\"");

/* ---- proc_ops tables (the functions are Rust, src/proc/) ---- */
ssize_t llamux_generate_read(struct file *f, char __user *b, size_t n, loff_t *p);
ssize_t llamux_generate_write(struct file *f, const char __user *b, size_t n, loff_t *p);
int llamux_generate_release(struct inode *i, struct file *f);
ssize_t llamux_load_write(struct file *f, const char __user *b, size_t n, loff_t *p);
ssize_t llamux_bench_write(struct file *f, const char __user *b, size_t n, loff_t *p);
int llamux_params_open(struct inode *i, struct file *f);
ssize_t llamux_params_write(struct file *f, const char __user *b, size_t n, loff_t *p);
int llamux_advise_open(struct inode *i, struct file *f);
ssize_t llamux_advise_read(struct file *f, char __user *b, size_t n, loff_t *p);
ssize_t llamux_advise_write(struct file *f, const char __user *b, size_t n, loff_t *p);
int llamux_advise_release(struct inode *i, struct file *f);

const struct proc_ops llamux_generate_ops = {
	.proc_read = llamux_generate_read, .proc_write = llamux_generate_write,
	.proc_release = llamux_generate_release, .proc_lseek = noop_llseek,
};
const struct proc_ops llamux_load_ops = { .proc_write = llamux_load_write, .proc_lseek = noop_llseek };
const struct proc_ops llamux_bench_ops = { .proc_write = llamux_bench_write, .proc_lseek = noop_llseek };
const struct proc_ops llamux_params_ops = {
	.proc_open = llamux_params_open, .proc_read = seq_read, .proc_write = llamux_params_write,
	.proc_lseek = seq_lseek, .proc_release = single_release,
};
const struct proc_ops llamux_advise_ops = {
	.proc_open = llamux_advise_open, .proc_read = llamux_advise_read,
	.proc_write = llamux_advise_write, .proc_release = llamux_advise_release,
	.proc_lseek = noop_llseek,
};

/* ---- One-line wrappers of static inlines and macros (src/sys.rs) ----
 * Called only from Rust, which declares them: no C prototypes. */
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
bool llamux_need_resched(void) { return need_resched(); }
void llamux_cond_resched(void) { cond_resched(); }
bool llamux_fatal_signal_pending(struct task_struct *t) { return fatal_signal_pending(t); }
u64 llamux_local_clock(void) { return local_clock(); }
void llamux_init_completion(struct completion *c) { init_completion(c); }
loff_t llamux_file_size(struct file *f) { return i_size_read(f->f_mapping->host); }
umode_t llamux_file_mode(struct file *f) { return file_inode(f)->i_mode; }
u64 llamux_totalram_bytes(void) { return (u64)totalram_pages() << PAGE_SHIFT; }
int llamux_cpu(void) { return raw_smp_processor_id(); }
