// SPDX-License-Identifier: GPL-2.0
/*
 * llamux.ko: host of the hard-float engine object (engine_hf.o, built by
 * build-engine.sh from kmod/kengine). This file holds what the engine needs
 * from the kernel and what 6.12 gives Rust modules no abstraction for:
 * the engine's callbacks (allocator, panic hook, parallel runner), per-CPU
 * worker kthreads, chunked model loading, and the /proc/llamux files
 * generate, load, model, params, advise (status is shown by llamux_main.rs, which
 * calls llamux_core_status()).
 *
 * FPU rule: every engine entry (llx_*) runs between
 * kernel_fpu_begin_mask(KFPU_MXCSR) and kernel_fpu_end(), in process
 * context. The engine's allocator and llx_parallel_run callbacks arrive
 * inside such a section and leave it while they may sleep; that is sound
 * because the SysV ABI makes every xmm/ymm register caller-saved across
 * these extern "C" calls (the engine holds no vector state in registers
 * over them) and KFPU_MXCSR reloads the default MXCSR the engine assumes.
 * Nothing in this file allocates or sleeps inside a section.
 */
#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/cpumask.h>
#include <linux/fadvise.h>
#include <linux/fs.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/proc_fs.h>
#include <linux/sched.h>
#include <linux/sched/clock.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>
#include <asm/fpu/api.h>

/* ---- The engine's C ABI (kmod/kengine/src/lib.rs, LLX_ABI_VERSION 3) ---- */
#define LLX_ABI 3

struct llx_load_params {
	u32 n_ctx, n_batch, kv_f16, max_prompt_bytes, parallelism, advise_slots;
	u32 repacked;
	void *exec_ctx;
};

struct llx_sampling {
	u32 temperature_milli, top_k, top_p_milli, min_p_milli;
	u32 repeat_penalty_milli, repeat_last_n, n_predict, reserved;
	u64 seed;
};

u32 llx_abi_version(void);
int llx_parse_params(const u8 *text, size_t len, struct llx_sampling *s);
int llx_load(const u8 *file, size_t len, const struct llx_load_params *p,
	     void **out, char *err, size_t err_cap);
void llx_free(void *h);
ssize_t llx_info(void *h, char *buf, size_t cap);
int llx_prepare(void *h, const struct llx_sampling *s, char *err, size_t err_cap);
s64 llx_start(void *h, const u8 *prompt, size_t len,
	      const struct llx_sampling *s, char *err, size_t err_cap);
int llx_step(void *h, u8 *out, size_t cap, size_t *out_len, u32 *token);
void llx_task(const void *data, size_t i);
ssize_t llx_advise(void *h, const u8 *req, size_t len, u8 *resp, size_t cap);

struct llx_advise_stats {
	u64 prefills, reuses;
	u32 slots_used, slots;
};
void llx_advise_stats(void *h, struct llx_advise_stats *out);
int llx_repack_begin(const u8 *file, size_t len, void **out, char *err, size_t err_cap);
int llx_repack_step(void *r, u8 *file, size_t len, size_t budget, u64 *progress);
void llx_repack_free(void *r);

/* Callbacks the engine calls (declared extern "C" in kengine). */
void *llx_kmalloc(size_t size, size_t align);
void llx_kfree(void *p, size_t size, size_t align);
void __noreturn llx_panic(const u8 *msg, size_t len);
void llx_parallel_run(void *exec_ctx, size_t n,
		      void (*task_fn)(const void *, size_t), const void *data);

/* Called by llamux_main.rs / llamux_proc.c. */
int llamux_core_init(struct proc_dir_entry *dir);
void llamux_core_stop(void);
void llamux_core_exit(void);
void llamux_core_status(struct seq_file *m);

/* ---- Module parameters ---- */
static char *model;
module_param(model, charp, 0444);
MODULE_PARM_DESC(model, "GGUF model file to load at module init");

static unsigned int threads;
module_param(threads, uint, 0444);
MODULE_PARM_DESC(threads, "Inference threads including the caller (0 = max_threads or all online CPUs)");

static unsigned int chunk_kb = 1024;
module_param(chunk_kb, uint, 0644);
MODULE_PARM_DESC(chunk_kb, "Model file read chunk in KiB");

static unsigned int n_ctx = 512;
module_param(n_ctx, uint, 0644);
MODULE_PARM_DESC(n_ctx, "KV cache positions (prompt + generated tokens); a change applies at the next load");

/* KV cache element type: 0 f32, 1 f16 (half the memory). */
static int kv_f16;

static int kv_type_set(const char *val, const struct kernel_param *kp)
{
	if (sysfs_streq(val, "f32"))
		*(int *)kp->arg = 0;
	else if (sysfs_streq(val, "f16"))
		*(int *)kp->arg = 1;
	else
		return -EINVAL;
	return 0;
}

static int kv_type_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%s\n", *(int *)kp->arg ? "f16" : "f32");
}

static const struct kernel_param_ops kv_type_ops = {
	.set = kv_type_set,
	.get = kv_type_get,
};
module_param_cb(kv_type, &kv_type_ops, &kv_f16, 0644);
MODULE_PARM_DESC(kv_type, "KV cache type: f32 or f16; a change applies at the next load");

static unsigned int max_model_mb = 65536;
module_param(max_model_mb, uint, 0644);
MODULE_PARM_DESC(max_model_mb, "Largest model file in MiB; bigger files fail with EFBIG");

static bool drop_cache = true;
module_param(drop_cache, bool, 0644);
MODULE_PARM_DESC(drop_cache, "Drop each chunk's page cache after copying it, so the model is not held twice");

static unsigned int n_batch = 32;
module_param(n_batch, uint, 0444);
MODULE_PARM_DESC(n_batch, "Prefill batch size");

static bool repack = true;
module_param(repack, bool, 0644);
MODULE_PARM_DESC(repack, "Repack Q4_K/Q6_K matrices at load for the 8-row SIMD kernels (as llamux does); a change applies at the next load");

static unsigned int spin_us = 50;
module_param(spin_us, uint, 0644);
MODULE_PARM_DESC(spin_us, "Workers and the caller spin this long for the next job / the job's end before sleeping");

static unsigned int max_prompt = 4096;
module_param(max_prompt, uint, 0444);
MODULE_PARM_DESC(max_prompt, "Longest prompt in bytes (longer writes fail with E2BIG)");

static unsigned int advise_slots = 4;
module_param(advise_slots, uint, 0444);
MODULE_PARM_DESC(advise_slots, "Advisor policy prefixes kept prefilled (1-8; each holds a KV cache)");

static char *params;
module_param(params, charp, 0444);
MODULE_PARM_DESC(params, "Default sampling, e.g. \"temperature=0 top_k=40 seed=1 n_predict=32\"");

unsigned int llamux_param_max_threads(void);

#define KFPU_MXCSR_ONLY 2 /* KFPU_MXCSR: the engine uses SSE/AVX, never x87 */

static inline void fpu_enter(void)
{
	kernel_fpu_begin_mask(KFPU_MXCSR_ONLY);
}

/* ---- Allocator and panic hook ---- */
static atomic64_t engine_mem = ATOMIC64_INIT(0);

void *llx_kmalloc(size_t size, size_t align)
{
	void *p;

	/* Called inside the engine's FPU section: leave it, kvmalloc may sleep. */
	kernel_fpu_end();
	p = kvmalloc(size ? size : 1, GFP_KERNEL | __GFP_NOWARN);
	if (p)
		atomic64_add(size, &engine_mem);
	fpu_enter();
	return p;
}

void llx_kfree(void *p, size_t size, size_t align)
{
	kernel_fpu_end();	/* kvfree of vmalloc memory may sleep */
	kvfree(p);
	atomic64_sub(size, &engine_mem);
	fpu_enter();
}

void __noreturn llx_panic(const u8 *msg, size_t len)
{
	kernel_fpu_end();
	pr_emerg("llamux: engine panic: %.*s\n", (int)min_t(size_t, len, 256), msg);
	BUG();
}

/* ---- Workers ---- */
struct llx_pool {
	int n_workers;
	struct task_struct **tasks;
	/* The current job, published by a release store of gen. */
	void (*fn)(const void *, size_t);
	const void *data;
	size_t n;
	atomic_long_t next;
	atomic_t busy;		/* workers still in the current job */
	unsigned long gen;
	wait_queue_head_t wake;
	wait_queue_head_t done;
	bool stop;
};

static struct llx_pool pool;
static unsigned int n_threads = 1;	/* workers + the calling thread */

/* Claims and runs task indices until none are left; each task in its own
 * short FPU section, a chance to reschedule between tasks. */
static void pool_take(void (*fn)(const void *, size_t), const void *data, size_t n)
{
	for (;;) {
		long i = atomic_long_inc_return(&pool.next) - 1;

		if (i >= (long)n)
			break;
		fpu_enter();
		fn(data, i);
		kernel_fpu_end();
		cond_resched();
	}
}

/* Spins up to spin_us until cond() holds; false if it did not (then sleep).
 * A forward pass hands out jobs in quick bursts, and a wake-up costs more
 * than a short spin; need_resched() keeps the spin polite under
 * PREEMPT_NONE. */
static bool spin_until(bool (*cond)(unsigned long), unsigned long arg)
{
	u64 end = local_clock() + (u64)READ_ONCE(spin_us) * 1000;

	while (!cond(arg)) {
		if (need_resched() || local_clock() > end)
			return false;
		cpu_relax();
	}
	return true;
}

static bool new_job(unsigned long seen)
{
	return smp_load_acquire(&pool.gen) != seen || kthread_should_stop();
}

static bool job_done(unsigned long unused)
{
	return atomic_read(&pool.busy) == 0;
}

static int pool_worker(void *arg)
{
	unsigned long seen = 0;

	for (;;) {
		unsigned long g;

		if (!spin_until(new_job, seen))
			wait_event_interruptible(pool.wake, new_job(seen));
		if (kthread_should_stop())
			break;
		g = smp_load_acquire(&pool.gen);
		if (g == seen)
			continue;
		seen = g;
		pool_take(READ_ONCE(pool.fn), READ_ONCE(pool.data), READ_ONCE(pool.n));
		if (atomic_dec_and_test(&pool.busy))
			wake_up(&pool.done);
	}
	return 0;
}

void llx_parallel_run(void *exec_ctx, size_t n,
		      void (*task_fn)(const void *, size_t), const void *data)
{
	/* Inside the caller's FPU section: leave it while tasks run and we wait. */
	kernel_fpu_end();
	if (pool.n_workers == 0 || n == 1) {
		atomic_long_set(&pool.next, 0);
		pool_take(task_fn, data, n);
	} else {
		pool.fn = task_fn;
		pool.data = data;
		pool.n = n;
		atomic_long_set(&pool.next, 0);
		atomic_set(&pool.busy, pool.n_workers);
		smp_store_release(&pool.gen, pool.gen + 1);
		if (wq_has_sleeper(&pool.wake))
			wake_up_all(&pool.wake);
		pool_take(task_fn, data, n);
		/* Tasks and `data` live on the engine's stack: wait for all. */
		if (!spin_until(job_done, 0))
			wait_event(pool.done, atomic_read(&pool.busy) == 0);
	}
	fpu_enter();
}

static int pool_start(unsigned int nthreads)
{
	int i, cpu, ncpu = num_online_cpus();

	init_waitqueue_head(&pool.wake);
	init_waitqueue_head(&pool.done);
	pool.n_workers = 0;
	if (nthreads <= 1)
		return 0;
	pool.tasks = kcalloc(nthreads - 1, sizeof(*pool.tasks), GFP_KERNEL);
	if (!pool.tasks)
		return -ENOMEM;
	/* Worker i on the i-th online CPU after the first (the caller's
	 * usual place is free to move anywhere). */
	i = 0;
	for_each_online_cpu(cpu) {
		struct task_struct *t;

		if (i >= (int)nthreads - 1)
			break;
		if (ncpu > 1 && cpu == cpumask_first(cpu_online_mask))
			continue;
		t = kthread_create_on_cpu(pool_worker, NULL, cpu, "llamux/%u");
		if (IS_ERR(t)) {
			pr_err("llamux: worker on cpu %d: error %ld\n", cpu, PTR_ERR(t));
			break;
		}
		pool.tasks[i++] = t;
		wake_up_process(t);
	}
	pool.n_workers = i;
	return 0;
}

static void pool_stop(void)
{
	int i;

	for (i = 0; i < pool.n_workers; i++)
		kthread_stop(pool.tasks[i]);
	pool.n_workers = 0;
	kfree(pool.tasks);
	pool.tasks = NULL;
}

/* ---- Stack-hungry engine setup on a fresh kernel stack ----
 * Building a model, tokenizer or session moves KiB-sized engine values
 * through frames of up to ~11 KiB (see build-engine.sh's report). A syscall
 * path has already used part of the 16 KiB stack, so run them in a
 * short-lived kthread whose stack is empty, and wait for it. */
struct fresh_call {
	int (*fn)(void *arg);
	void *arg;
	int ret;
	struct completion done;
};

static int fresh_thread(void *p)
{
	struct fresh_call *c = p;

	c->ret = c->fn(c->arg);
	complete(&c->done);
	return 0;
}

static int run_on_fresh_stack(int (*fn)(void *), void *arg)
{
	struct fresh_call c = { .fn = fn, .arg = arg };
	struct task_struct *t;

	init_completion(&c.done);
	t = kthread_run(fresh_thread, &c, "llamux-setup");
	if (IS_ERR(t))
		return PTR_ERR(t);
	/* Uninterruptible: `c` lives on this stack until the thread is done. */
	wait_for_completion(&c.done);
	return c.ret;
}

struct load_call {
	const u8 *buf;
	size_t len;
	const struct llx_load_params *lp;
	void *h;
	char *err_buf, *info;
	ssize_t ilen;
};

static int load_fn(void *arg)
{
	struct load_call *c = arg;
	int err;

	fpu_enter();
	err = llx_load(c->buf, c->len, c->lp, &c->h, c->err_buf, 256);
	if (!err)
		c->ilen = llx_info(c->h, c->info, 4095);
	kernel_fpu_end();
	return err;
}

struct prepare_call {
	void *h;
	const struct llx_sampling *s;
	char *err_buf;
	size_t err_cap;
};

static int prepare_fn(void *arg)
{
	struct prepare_call *c = arg;
	int err;

	fpu_enter();
	err = llx_prepare(c->h, c->s, c->err_buf, c->err_cap);
	kernel_fpu_end();
	return err;
}

/* ---- Model and request state, under llx_lock ---- */
static DEFINE_MUTEX(llx_lock);
static bool stopping;		/* module exit began: requests quit */

static void *engine;		/* llx handle */
static u8 *file_buf;		/* the model file; the engine borrows it */
static size_t file_len;
static char *model_path;
static char *model_info;
static size_t model_info_len;
static u64 load_ns;

static struct llx_sampling sampling;	/* defaults for the next request */

enum { REQ_IDLE, REQ_PENDING, REQ_RUNNING };
static int req_state;
static u8 *req_prompt;
static size_t req_len;
static struct llx_sampling req_sampling;
static struct file *req_reader;
static u8 req_piece[512];
static size_t req_piece_len, req_piece_off;

#define MAX_IDS 4096
static u32 *last_ids;
static unsigned int last_n_ids;
static s64 last_n_prompt;
static u64 last_prefill_ns, last_decode_ns;
static int last_error;
static unsigned long n_requests;
static unsigned long n_advise, n_advise_errors;
/* Engine's advisor counters, copied after every request (llx_lock). */
static struct llx_advise_stats adv_stats;
static u64 last_advise_ns;

static void req_finish(void);
/* Woken when a request ends: a load waiting to swap models. */
static DECLARE_WAIT_QUEUE_HEAD(req_idle_wq);

static void engine_drop(void)
{
	if (engine) {
		fpu_enter();
		llx_free(engine);
		kernel_fpu_end();
		engine = NULL;
	}
	/* Its advisors went with it. */
	memset(&adv_stats, 0, sizeof(adv_stats));
	vfree(file_buf);
	file_buf = NULL;
	file_len = 0;
	kfree(model_path);
	model_path = NULL;
	kfree(model_info);
	model_info = NULL;
	model_info_len = 0;
}

/* ---- Model loading ----
 * A load reads the whole file into vmalloc memory in chunk_kb pieces
 * without llx_lock (the old model keeps answering, status shows progress),
 * then builds the engine on it and swaps it in under llx_lock. Until the
 * swap nothing can see the new bytes, so a failed or interrupted load
 * leaves the old model (or none) in place. */
static DEFINE_MUTEX(load_lock);	/* one load at a time */
static atomic_t load_seq;	/* bumped by every new load: a running one stops */

/* Progress for status, under load_stat_lock (read without llx_lock). */
static DEFINE_SPINLOCK(load_stat_lock);
static struct {
	bool active;
	char file[128];
	u64 done, total, start_ns;
	u64 repack_done, repack_total;	/* after the read: bytes repacked */
	int last_err;			/* last finished load: 0 or -errno */
	u64 last_bytes, last_ns;	/* last successful load */
} load_stat;

/* Memory a load leaves free beyond the file (KV cache, scratch, the rest
 * of the system): 1/32 of RAM, at least 32 MiB. */
static u64 load_reserve(void)
{
	return max_t(u64, (totalram_pages() << PAGE_SHIFT) / 32, 32ULL << 20);
}

static u64 mb_per_s(u64 bytes, u64 ns)
{
	return ns ? div64_u64(bytes * 1000, ns) : 0;	/* bytes/ns*1000 = MB/s */
}

static void load_stat_end(int err, u64 bytes, u64 ns)
{
	spin_lock(&load_stat_lock);
	load_stat.active = false;
	load_stat.last_err = err;
	if (!err) {
		load_stat.last_bytes = bytes;
		load_stat.last_ns = ns;
	}
	spin_unlock(&load_stat_lock);
}

/* 0, or why this load (number `seq`, asked for by `writer`) must stop:
 * -EINTR on a fatal signal to the writer; -ECANCELED on rmmod or a newer
 * load written to /proc/llamux/load (not EINTR: writers such as echo retry
 * a write that fails with EINTR, and two of them would then cancel each
 * other for ever). */
static int load_cancelled(struct task_struct *writer, int seq)
{
	if (fatal_signal_pending(writer))
		return -EINTR;
	if (READ_ONCE(stopping) || atomic_read(&load_seq) != seq)
		return -ECANCELED;
	return 0;
}

/* Reads `path` into vmalloc memory. With drop_cache, each chunk's pages
 * leave the page cache once copied (POSIX_FADV_DONTNEED), so the file is
 * not held twice. A block device works too (its size is its bdev inode's). */
static int read_model_file(const char *path, int seq, u8 **out, size_t *len)
{
	struct file *f;
	loff_t size, pos = 0;
	size_t chunk = (size_t)max(chunk_kb, 1u) * 1024;
	u64 avail, t0;
	u8 *buf;
	int err = 0;

	f = filp_open(path, O_RDONLY | O_LARGEFILE, 0);
	if (IS_ERR(f))
		return PTR_ERR(f);
	size = i_size_read(f->f_mapping->host);
	if (size <= 0) {
		err = -EINVAL;
		goto out;
	}
	if (size > ((loff_t)READ_ONCE(max_model_mb) << 20)) {
		pr_err("llamux: %s: %lld bytes is over max_model_mb=%u\n",
		       path, size, READ_ONCE(max_model_mb));
		err = -EFBIG;
		goto out;
	}
	/* vmalloc would reclaim and then OOM-kill to satisfy us (it has no
	 * RETRY_MAYFAIL): refuse up front what clearly does not fit. */
	avail = (u64)si_mem_available() << PAGE_SHIFT;
	if ((u64)size + load_reserve() > avail) {
		pr_err("llamux: %s: %lld bytes do not fit: %llu bytes available, %llu kept in reserve\n",
		       path, size, avail, load_reserve());
		err = -ENOMEM;
		goto out;
	}
	err = load_cancelled(current, seq);	/* superseded while waiting for load_lock */
	if (err)
		goto out;
	buf = __vmalloc(size, GFP_KERNEL | __GFP_NOWARN);
	if (!buf) {
		err = fatal_signal_pending(current) ? -EINTR : -ENOMEM;
		pr_err("llamux: %s: cannot allocate %lld bytes (errno %d)\n", path, size, err);
		goto out;
	}
	t0 = ktime_get_ns();
	spin_lock(&load_stat_lock);
	load_stat.active = true;
	strscpy(load_stat.file, path, sizeof(load_stat.file));
	load_stat.done = 0;
	load_stat.total = size;
	load_stat.start_ns = t0;
	load_stat.repack_done = load_stat.repack_total = 0;
	spin_unlock(&load_stat_lock);
	pr_info("llamux: loading %s (%lld bytes, chunk %zu KiB, drop_cache=%d)\n",
		path, size, chunk / 1024, READ_ONCE(drop_cache));
	while (pos < size) {
		loff_t from = pos;
		ssize_t r = kernel_read(f, buf + pos, min_t(loff_t, chunk, size - pos), &pos);

		if (r < 0) {
			err = r;
			break;
		}
		if (r == 0) {	/* file shrank underneath us */
			err = -EIO;
			break;
		}
		if (READ_ONCE(drop_cache))
			vfs_fadvise(f, from, r, POSIX_FADV_DONTNEED);
		spin_lock(&load_stat_lock);
		load_stat.done = pos;
		spin_unlock(&load_stat_lock);
		err = load_cancelled(current, seq);
		if (err) {
			pr_info("llamux: load of %s interrupted after %lld of %lld bytes (errno %d)\n",
				path, pos, size, err);
			break;
		}
		cond_resched();
	}
	if (err) {
		vfree(buf);
		goto out;
	}
	*out = buf;
	*len = size;
out:
	filp_close(f, NULL);
	return err;
}

/* ---- Repacking ----
 * With repack=1 the engine's Q4_K/Q6_K matrices are rearranged in place in
 * the vmalloc copy, 8 rows at a time, for its 8-row SIMD kernels (what
 * `llamux` does in user space, so both run the same kernels on the same
 * layout). The bytes are still private to this load. Each step repacks
 * REPACK_STEP bytes in its own FPU section (preemption is off in one). */
#define REPACK_STEP (1u << 20)

struct repack_call {
	u8 *buf;
	size_t len;
	int seq;
	struct task_struct *writer;	/* the task that asked for the load */
	char *err_buf;
	bool repacked;
};

static int repack_fn(void *arg)
{
	struct repack_call *c = arg;
	u64 prog[2] = { 0, 0 }, t0 = ktime_get_ns();
	void *r = NULL;
	int err;

	fpu_enter();
	err = llx_repack_begin(c->buf, c->len, &r, c->err_buf, 256);
	kernel_fpu_end();
	if (err || !r)
		return err;
	/* On the llamux-setup thread: a signal goes to the writer. */
	while (!(err = load_cancelled(c->writer, c->seq))) {
		fpu_enter();
		err = llx_repack_step(r, c->buf, c->len, REPACK_STEP, prog);
		kernel_fpu_end();
		spin_lock(&load_stat_lock);
		load_stat.repack_done = prog[0];
		load_stat.repack_total = prog[1];
		spin_unlock(&load_stat_lock);
		if (err)
			break;
		cond_resched();
	}
	fpu_enter();
	llx_repack_free(r);
	kernel_fpu_end();
	if (err < 0) {
		if (err != -EINTR && err != -ECANCELED)
			snprintf(c->err_buf, 256, "repack failed after %llu of %llu bytes", prog[0], prog[1]);
		else
			snprintf(c->err_buf, 256, "load interrupted while repacking");
		return err;
	}
	c->repacked = true;
	pr_info("llamux: repacked %llu bytes of Q4_K/Q6_K matrices in %llu ms\n",
		prog[1], (ktime_get_ns() - t0) / 1000000);
	return 0;
}

/* The "kv_cache: ..." line of the engine's info text, without newline. */
static const char *kv_line(const char *info, int *n)
{
	const char *p = info ? strstr(info, "kv_cache: ") : NULL;

	*n = p ? (int)strcspn(p, "\n") : 0;
	return p ? p : "";
}

/* Loads `path` (load number `seq`), replacing the current model on
 * success. load_lock held, llx_lock not. */
static int model_load(const char *path, int seq)
{
	struct llx_load_params lp = {
		.n_ctx = READ_ONCE(n_ctx), .n_batch = n_batch, .kv_f16 = READ_ONCE(kv_f16),
		.max_prompt_bytes = max_prompt, .parallelism = n_threads,
		.advise_slots = clamp(advise_slots, 1u, 8u), .exec_ctx = &pool,
	};
	struct load_call lc;
	char *err_buf, *info = NULL, *p;
	const char *kv;
	void *h = NULL;
	u8 *buf = NULL;
	size_t len = 0;
	ssize_t ilen;
	u64 t0 = ktime_get_ns(), ns;
	int err, kvn;

	p = kstrdup(path, GFP_KERNEL);
	err_buf = kzalloc(256, GFP_KERNEL);
	info = kzalloc(4096, GFP_KERNEL);
	if (!p || !err_buf || !info) {
		err = -ENOMEM;
		goto fail;
	}
	err = read_model_file(path, seq, &buf, &len);
	if (err) {
		pr_err("llamux: %s: cannot read model file (errno %d)\n", path, err);
		goto fail;
	}
	if (READ_ONCE(repack)) {
		struct repack_call rc = { .buf = buf, .len = len, .seq = seq,
					  .writer = current, .err_buf = err_buf };

		err = run_on_fresh_stack(repack_fn, &rc);
		if (err) {
			pr_err("llamux: %s: %s (errno %d)\n", path, err_buf, err);
			goto fail;
		}
		lp.repacked = rc.repacked;
	}
	for (;;) {
		err = mutex_lock_interruptible(&llx_lock);
		if (err)
			goto fail;
		/* A newer load or rmmod came while we read: theirs wins. */
		if (stopping || atomic_read(&load_seq) != seq) {
			mutex_unlock(&llx_lock);
			err = -ECANCELED;
			goto fail;
		}
		if (req_state != REQ_RUNNING)
			break;
		mutex_unlock(&llx_lock);
		/* A generation began while we read: its answer comes from the
		 * model it started on, the swap waits for it to end. */
		err = wait_event_killable(req_idle_wq, READ_ONCE(req_state) != REQ_RUNNING ||
					  READ_ONCE(stopping) || atomic_read(&load_seq) != seq);
		if (err) {
			err = -EINTR;
			goto fail;
		}
	}
	lc = (struct load_call){ .buf = buf, .len = len, .lp = &lp,
				 .err_buf = err_buf, .info = info };
	err = run_on_fresh_stack(load_fn, &lc);
	h = lc.h;
	ilen = lc.ilen;
	if (err) {
		mutex_unlock(&llx_lock);
		pr_err("llamux: %s: %s (errno %d)\n", path, err_buf, err);
		goto fail;
	}
	info[clamp_t(ssize_t, ilen, 0, 4095)] = 0;
	/* Nothing runs on the old model now (a pending prompt has not started:
	 * the new model answers it). */
	engine_drop();
	engine = h;
	file_buf = buf;
	file_len = len;
	model_path = p;
	model_info = info;
	model_info_len = strlen(info);
	ns = ktime_get_ns() - t0;
	load_ns = ns;
	mutex_unlock(&llx_lock);
	kfree(err_buf);
	kv = kv_line(info, &kvn);
	pr_info("llamux: loaded %s (%zu bytes, %llu ms, %llu MB/s, %u threads)\n", path, len,
		ns / 1000000, mb_per_s(len, ns), n_threads);
	pr_info("llamux: %.*s\n", kvn, kv);
	load_stat_end(0, len, ns);
	return 0;
fail:
	load_stat_end(err, 0, 0);
	vfree(buf);
	kfree(p);
	kfree(err_buf);
	kfree(info);
	return err;
}

/* A load from /proc/llamux/load or model=: stops any load in progress,
 * waits for it to go, then loads. */
static int load_model_file(const char *path)
{
	int seq = atomic_inc_return(&load_seq);
	int err;

	wake_up_all(&req_idle_wq);	/* an older load waiting to swap quits */
	err = mutex_lock_interruptible(&load_lock);

	if (err)
		return err;
	err = model_load(path, seq);
	mutex_unlock(&load_lock);
	return err;
}

static void req_finish(void)
{
	kfree(req_prompt);
	req_prompt = NULL;
	req_len = 0;
	req_reader = NULL;
	req_piece_len = req_piece_off = 0;
	req_state = REQ_IDLE;
	wake_up_all(&req_idle_wq);
}

/* ---- /proc/llamux/generate ---- */
static ssize_t gen_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	size_t len = count;
	u8 *p;
	int err;

	if (count > max_prompt)
		return -E2BIG;
	if (count == 0)
		return -EINVAL;
	p = memdup_user(ubuf, count);
	if (IS_ERR(p))
		return PTR_ERR(p);
	err = mutex_lock_interruptible(&llx_lock);
	if (err) {
		kfree(p);
		return err;
	}
	if (stopping)
		err = -ESHUTDOWN;
	else if (!engine)
		err = -ENODEV;
	else if (req_state != REQ_IDLE)
		err = -EBUSY;
	if (err) {
		mutex_unlock(&llx_lock);
		kfree(p);
		return err;
	}
	/* `echo` adds a newline the user did not mean as part of the prompt. */
	if (len > 1 && p[len - 1] == '\n')
		len--;
	req_prompt = p;
	req_len = len;
	req_sampling = sampling;
	req_state = REQ_PENDING;
	mutex_unlock(&llx_lock);
	return count;
}

/* Starts the pending request (prefill). llx_lock held. */
static int req_begin(struct file *file)
{
	char err_buf[128];
	u64 t0;
	s64 n;

	req_reader = file;
	req_state = REQ_RUNNING;
	last_n_ids = 0;
	last_error = 0;
	last_prefill_ns = last_decode_ns = 0;
	n_requests++;
	t0 = ktime_get_ns();
	{
		struct prepare_call pc = { .h = engine, .s = &req_sampling,
					   .err_buf = err_buf, .err_cap = sizeof(err_buf) };
		int e = run_on_fresh_stack(prepare_fn, &pc);

		if (e) {
			err_buf[sizeof(err_buf) - 1] = 0;
			pr_info("llamux: generate: %s (errno %d)\n", err_buf, e);
			last_error = e;
			req_finish();
			return e;
		}
	}
	fpu_enter();
	n = llx_start(engine, req_prompt, req_len, &req_sampling, err_buf, sizeof(err_buf));
	kernel_fpu_end();
	last_prefill_ns = ktime_get_ns() - t0;
	last_n_prompt = n;
	if (n < 0) {
		err_buf[sizeof(err_buf) - 1] = 0;
		pr_info("llamux: generate: %s (errno %lld)\n", err_buf, n);
		last_error = n;
		req_finish();
		return n;
	}
	return 0;
}

static ssize_t gen_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	size_t n, out_len = 0;
	u32 tok = 0;
	int r;

	if (count == 0)
		return 0;
	r = mutex_lock_interruptible(&llx_lock);
	if (r)
		return r;
	if (req_state == REQ_IDLE || stopping) {
		if (req_state != REQ_IDLE)
			req_finish();
		mutex_unlock(&llx_lock);
		return stopping ? -ESHUTDOWN : 0;
	}
	if (req_state == REQ_RUNNING && req_reader != file) {
		mutex_unlock(&llx_lock);
		return -EBUSY;
	}
	if (req_state == REQ_PENDING) {
		r = req_begin(file);
		if (r) {
			mutex_unlock(&llx_lock);
			return r;
		}
	}
	if (req_piece_off >= req_piece_len) {
		u64 t0;

		/* One token per read: signals and rmmod are noticed between. */
		if (signal_pending(current)) {
			mutex_unlock(&llx_lock);
			return -ERESTARTSYS;
		}
		t0 = ktime_get_ns();
		fpu_enter();
		r = llx_step(engine, req_piece, sizeof(req_piece), &out_len, &tok);
		kernel_fpu_end();
		last_decode_ns += ktime_get_ns() - t0;
		if (r <= 0) {
			if (r < 0) {
				pr_info("llamux: generate: step failed (errno %d)\n", r);
				last_error = r;
			}
			req_finish();
			mutex_unlock(&llx_lock);
			return r;
		}
		if (last_n_ids < MAX_IDS)
			last_ids[last_n_ids++] = tok;
		req_piece_len = out_len;
		req_piece_off = 0;
	}
	n = min(count, req_piece_len - req_piece_off);
	if (copy_to_user(ubuf, req_piece + req_piece_off, n)) {
		mutex_unlock(&llx_lock);
		return -EFAULT;
	}
	req_piece_off += n;
	mutex_unlock(&llx_lock);
	return n;
}

static int gen_release(struct inode *inode, struct file *file)
{
	mutex_lock(&llx_lock);
	/* A reader that goes away (Ctrl-C) ends its request. */
	if (req_state == REQ_RUNNING && req_reader == file)
		req_finish();
	mutex_unlock(&llx_lock);
	return 0;
}

static const struct proc_ops gen_ops = {
	.proc_read = gen_read,
	.proc_write = gen_write,
	.proc_release = gen_release,
	.proc_lseek = noop_llseek,
};

/* ---- /proc/llamux/advise ----
 * The module side of the loader's kernel advisor. One write() carries one
 * whole request record; the decision is computed during that write, and
 * read() on the same open file then returns the response record (at EOF
 * after it; the next write replaces it). Records (defined in
 * kmod/kengine/src/lib.rs, llx_advise):
 *   request:  "llxa1 CTX PREFIX_LEN EVENT_LEN N A_LEN_1 .. A_LEN_N\n"
 *             followed by the prefix, event and answer bytes back to back
 *   response: "BEST EVENT_TOKENS PREFIX_TOKENS N BITS_1 .. BITS_N\n"
 *             (BITS_i: answer i's score as raw f32 bits, 8 hex digits)
 * This file only checks the size (0 bytes: EINVAL; over ADVISE_MAX: E2BIG);
 * the engine parses the record (malformed: EINVAL).
 * Serialization: one engine user at a time under llx_lock (a writer waits
 * for the lock, interruptibly); while a /proc/llamux/generate request is
 * pending or running, a write fails with EBUSY instead of waiting for the
 * reader to finish it. No model: ENODEV. The engine keeps the prefilled
 * prefixes of the last advise_slots policies (LRU), so requests of those
 * only run the event and the answers (status: advise_prefills). */
#define ADVISE_MAX 16384	/* LLX_ADVISE_MAX in kengine */
#define ADVISE_RESP 1024

struct advise_file {
	size_t len;		/* response bytes, 0: none */
	size_t off;		/* read offset into resp */
	u8 resp[ADVISE_RESP];
};

struct advise_call {
	const u8 *req;
	size_t len;
	u8 *resp;
	size_t cap;
	ssize_t ret;
};

/* On a fresh stack: a request may rebuild the advisor and prefill. */
static int advise_fn(void *arg)
{
	struct advise_call *c = arg;

	fpu_enter();
	c->ret = llx_advise(engine, c->req, c->len, c->resp, c->cap);
	llx_advise_stats(engine, &adv_stats);
	kernel_fpu_end();
	return 0;
}

static int advise_open(struct inode *inode, struct file *file)
{
	struct advise_file *af = kzalloc(sizeof(*af), GFP_KERNEL);

	if (!af)
		return -ENOMEM;
	file->private_data = af;
	return 0;
}

static ssize_t advise_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	struct advise_file *af = file->private_data;
	struct advise_call c;
	u8 *req;
	u64 t0;
	int err;

	if (count == 0)
		return -EINVAL;
	if (count > ADVISE_MAX)
		return -E2BIG;
	req = memdup_user(ubuf, count);
	if (IS_ERR(req))
		return PTR_ERR(req);
	err = mutex_lock_interruptible(&llx_lock);
	if (err) {
		kfree(req);
		return err;
	}
	af->len = af->off = 0;
	if (stopping)
		err = -ESHUTDOWN;
	else if (!engine)
		err = -ENODEV;
	else if (req_state != REQ_IDLE)
		err = -EBUSY;
	if (err)
		goto out;
	c = (struct advise_call){ .req = req, .len = count, .resp = af->resp,
				  .cap = sizeof(af->resp) };
	t0 = ktime_get_ns();
	err = run_on_fresh_stack(advise_fn, &c);
	last_advise_ns = ktime_get_ns() - t0;
	n_advise++;
	if (!err && c.ret < 0)
		err = c.ret;
	if (err) {
		n_advise_errors++;
		af->resp[sizeof(af->resp) - 1] = 0;
		if (c.ret < 0)
			pr_info("llamux: advise: %s (errno %d)\n", af->resp, err);
		goto out;
	}
	af->len = min_t(size_t, c.ret, sizeof(af->resp));
out:
	mutex_unlock(&llx_lock);
	kfree(req);
	return err ? err : count;
}

static ssize_t advise_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	struct advise_file *af = file->private_data;
	size_t n;
	int err;

	/* The lock also orders this read after a write on the same file. */
	err = mutex_lock_interruptible(&llx_lock);
	if (err)
		return err;
	n = min(count, af->len - af->off);
	if (n && copy_to_user(ubuf, af->resp + af->off, n)) {
		mutex_unlock(&llx_lock);
		return -EFAULT;
	}
	af->off += n;
	mutex_unlock(&llx_lock);
	return n;
}

static int advise_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

static const struct proc_ops advise_ops = {
	.proc_open = advise_open,
	.proc_read = advise_read,
	.proc_write = advise_write,
	.proc_release = advise_release,
	.proc_lseek = noop_llseek,
};

/* ---- /proc/llamux/load ---- */
static ssize_t load_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	char *path;
	int err;

	if (count == 0 || count >= PATH_MAX)
		return -EINVAL;
	path = memdup_user_nul(ubuf, count);
	if (IS_ERR(path))
		return PTR_ERR(path);
	strim(path);
	/* Like generate and advise: EBUSY while a prompt is pending or
	 * generating, rather than taking the model away from it. */
	err = mutex_lock_interruptible(&llx_lock);
	if (err) {
		kfree(path);
		return err;
	}
	err = stopping ? -ESHUTDOWN : req_state != REQ_IDLE ? -EBUSY : 0;
	mutex_unlock(&llx_lock);
	/* Not under llx_lock: the current model keeps working while the new
	 * one is read, and a later load or rmmod interrupts this one. */
	if (!err)
		err = load_model_file(path);
	kfree(path);
	return err ? err : count;
}

static const struct proc_ops load_ops = {
	.proc_write = load_write,
	.proc_lseek = noop_llseek,
};

/* ---- /proc/llamux/model ---- */
static int model_show(struct seq_file *m, void *v)
{
	mutex_lock(&llx_lock);
	if (model_info) {
		seq_printf(m, "path: %s\n", model_path);
		seq_write(m, model_info, model_info_len);
	} else {
		seq_puts(m, "none\n");
	}
	mutex_unlock(&llx_lock);
	return 0;
}

/* ---- /proc/llamux/params ---- */
static void show_sampling(struct seq_file *m, const struct llx_sampling *s)
{
	seq_printf(m, "temperature=%u.%03u top_k=%u top_p=%u.%03u min_p=%u.%03u repeat_penalty=%u.%03u repeat_last_n=%u seed=%llu n_predict=%u\n",
		   s->temperature_milli / 1000, s->temperature_milli % 1000, s->top_k,
		   s->top_p_milli / 1000, s->top_p_milli % 1000,
		   s->min_p_milli / 1000, s->min_p_milli % 1000,
		   s->repeat_penalty_milli / 1000, s->repeat_penalty_milli % 1000,
		   s->repeat_last_n, s->seed, s->n_predict);
}

static int params_show(struct seq_file *m, void *v)
{
	mutex_lock(&llx_lock);
	show_sampling(m, &sampling);
	mutex_unlock(&llx_lock);
	return 0;
}

static int params_open(struct inode *inode, struct file *file)
{
	return single_open(file, params_show, NULL);
}

static ssize_t params_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	struct llx_sampling s;
	char *text;
	int err;

	if (count == 0)
		return -EINVAL;
	if (count > 1024)	/* too long, as generate/advise: not malformed */
		return -E2BIG;
	text = memdup_user_nul(ubuf, count);
	if (IS_ERR(text))
		return PTR_ERR(text);
	err = mutex_lock_interruptible(&llx_lock);
	if (!err) {
		s = sampling;
		fpu_enter();
		err = llx_parse_params(text, count, &s);
		kernel_fpu_end();
		if (!err)
			sampling = s;
		mutex_unlock(&llx_lock);
	}
	kfree(text);
	return err ? err : count;
}

static const struct proc_ops params_ops = {
	.proc_open = params_open,
	.proc_read = seq_read,
	.proc_write = params_write,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
};

/* ---- Status (appended to /proc/llamux/status by llamux_main.rs) ---- */
static void show_rate(struct seq_file *m, const char *name, u64 tokens, u64 ns)
{
	u64 milli = ns ? div64_u64(tokens * 1000000000000ULL, ns) : 0;

	seq_printf(m, "%s: %llu.%03llu\n", name, milli / 1000, milli % 1000);
}

void llamux_core_status(struct seq_file *m)
{
	static const char *const states[] = { "idle", "pending", "running" };
	unsigned int i;
	const char *kv;
	int kvn;

	/* Load progress first, without llx_lock: a load does not hold it
	 * while it reads (seq_file buffers, so copy under the spinlock). */
	{
		typeof(load_stat) ls;
		u64 now = ktime_get_ns();

		spin_lock(&load_stat_lock);
		ls = load_stat;
		spin_unlock(&load_stat_lock);
		seq_printf(m, "load_state: %s\n", ls.active ? "loading" : "idle");
		if (ls.active) {
			seq_printf(m, "load_file: %s\n", ls.file);
			seq_printf(m, "load_bytes: %llu / %llu\n", ls.done, ls.total);
			seq_printf(m, "load_mb_per_s: %llu\n", mb_per_s(ls.done, now - ls.start_ns));
			if (ls.repack_total)
				seq_printf(m, "load_repack_bytes: %llu / %llu\n", ls.repack_done, ls.repack_total);
		}
		seq_printf(m, "last_load_error: %d\n", ls.last_err);
		seq_printf(m, "last_load_mb_per_s: %llu\n", mb_per_s(ls.last_bytes, ls.last_ns));
	}
	seq_printf(m, "kv_type: %s\nmax_model_mb: %u\ndrop_cache: %d\n",
		   READ_ONCE(kv_f16) ? "f16" : "f32", READ_ONCE(max_model_mb), READ_ONCE(drop_cache));

	mutex_lock(&llx_lock);
	seq_printf(m, "model_loaded: %s\n", engine ? "yes" : "no");
	if (engine) {
		seq_printf(m, "model_path: %s\n", model_path);
		seq_printf(m, "model_file_bytes: %zu\n", file_len);
		seq_printf(m, "model_load_ms: %llu\n", load_ns / 1000000);
		kv = kv_line(model_info, &kvn);
		seq_printf(m, "%.*s\n", kvn, kv);
	}
	seq_printf(m, "engine_alloc_bytes: %lld\n", (long long)atomic64_read(&engine_mem));
	seq_printf(m, "threads: %u\n", n_threads);
	seq_printf(m, "n_ctx: %u\nn_batch: %u\nmax_prompt: %u\nchunk_kb: %u\n",
		   n_ctx, n_batch, max_prompt, chunk_kb);
	seq_puts(m, "params: ");
	show_sampling(m, &sampling);
	seq_printf(m, "state: %s\n", states[req_state]);
	seq_printf(m, "requests: %lu\n", n_requests);
	seq_printf(m, "last_error: %d\n", last_error);
	seq_printf(m, "advise_requests: %lu\nadvise_errors: %lu\nlast_advise_ms: %llu\n",
		   n_advise, n_advise_errors, last_advise_ns / 1000000);
	seq_printf(m, "advise_prefills: %llu\nadvise_reuses: %llu\nadvise_slots: %u/%u\n",
		   adv_stats.prefills, adv_stats.reuses, adv_stats.slots_used,
		   adv_stats.slots);
	seq_printf(m, "last_prompt_tokens: %lld\n", last_n_prompt);
	seq_printf(m, "last_generated_tokens: %u\n", last_n_ids);
	show_rate(m, "last_prefill_tokens_per_s", last_n_prompt > 0 ? last_n_prompt : 0, last_prefill_ns);
	/* As `llamux run`: the first token comes from the prefill's logits,
	 * so decode speed counts n - 1 forward passes. */
	show_rate(m, "last_decode_tokens_per_s", last_n_ids > 1 ? last_n_ids - 1 : 0, last_decode_ns);
	seq_printf(m, "last_prefill_ms: %llu\nlast_decode_ms: %llu\n",
		   last_prefill_ns / 1000000, last_decode_ns / 1000000);
	seq_puts(m, "last_ids:");
	for (i = 0; i < last_n_ids; i++)
		seq_printf(m, " %u", last_ids[i]);
	seq_putc(m, '\n');
	mutex_unlock(&llx_lock);
}

/* ---- Init and exit ---- */
static int model_open(struct inode *inode, struct file *file)
{
	return single_open(file, model_show, NULL);
}

static const struct proc_ops model_ops = {
	.proc_open = model_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
};

int llamux_core_init(struct proc_dir_entry *dir)
{
	unsigned int want, ncpu = num_online_cpus();
	u32 abi;
	int err;

	fpu_enter();
	abi = llx_abi_version();
	sampling.n_predict = 0;
	err = llx_parse_params("defaults", 8, &sampling);
	if (!err && params)
		err = llx_parse_params(params, strlen(params), &sampling);
	kernel_fpu_end();
	if (abi != LLX_ABI) {
		pr_err("llamux: engine ABI %u, module expects %u\n", abi, LLX_ABI);
		return -EINVAL;
	}
	if (err) {
		pr_err("llamux: bad params= \"%s\" (errno %d)\n", params, err);
		return err;
	}
	last_ids = kcalloc(MAX_IDS, sizeof(*last_ids), GFP_KERNEL);
	if (!last_ids)
		return -ENOMEM;
	want = threads ? threads : llamux_param_max_threads();
	n_threads = clamp(want ? want : ncpu, 1u, ncpu);
	err = pool_start(n_threads);
	if (err)
		goto fail_ids;
	n_threads = pool.n_workers + 1;

	if (!proc_create("generate", 0600, dir, &gen_ops) ||
	    !proc_create("load", 0600, dir, &load_ops) ||
	    !proc_create("model", 0600, dir, &model_ops) ||
	    !proc_create("params", 0600, dir, &params_ops) ||
	    !proc_create("advise", 0600, dir, &advise_ops)) {
		err = -ENOMEM;
		goto fail_pool;	/* the caller removes the directory tree */
	}
	if (model) {
		err = load_model_file(model);
		/* A bad model leaves the module loaded and usable without one. */
		if (err)
			pr_err("llamux: model=%s not loaded (errno %d)\n", model, err);
	}
	return 0;
fail_pool:
	pool_stop();
fail_ids:
	kfree(last_ids);
	last_ids = NULL;
	return err;
}

/* First half of exit: make a running generation quit at its next step.
 * The caller then removes /proc/llamux (which waits for readers in flight)
 * and calls llamux_core_exit(). */
void llamux_core_stop(void)
{
	mutex_lock(&llx_lock);
	stopping = true;
	mutex_unlock(&llx_lock);
	wake_up_all(&req_idle_wq);	/* a load waiting to swap quits */
}

void llamux_core_exit(void)
{
	mutex_lock(&llx_lock);
	stopping = true;
	if (req_state != REQ_IDLE)
		req_finish();
	mutex_unlock(&llx_lock);
	pool_stop();
	engine_drop();
	kfree(last_ids);
	last_ids = NULL;
	/* Every engine allocation goes through llx_kmalloc/llx_kfree: the
	 * tests read this line to prove an unload leaks nothing. */
	pr_info("llamux: engine memory outstanding at unload: %lld bytes\n",
		(long long)atomic64_read(&engine_mem));
}
