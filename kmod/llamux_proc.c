// SPDX-License-Identifier: GPL-2.0
/*
 * C glue for llamux.ko: what Linux 6.12 offers Rust modules no abstraction
 * for. Module parameters (module_param) and /proc/llamux/ (proc_fs +
 * seq_file). The content of each file is produced by Rust callbacks.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>

static unsigned int max_threads;
module_param(max_threads, uint, 0444);
MODULE_PARM_DESC(max_threads, "Maximum inference worker threads (0 = one per online CPU)");

/* Called from Rust (llamux_main.rs). */
unsigned int llamux_param_max_threads(void);
int llamux_proc_init(void);
void llamux_proc_exit(void);

/* Implemented in Rust: write the text of /proc/llamux/status into m. */
int llamux_status_show(struct seq_file *m);

/* llamux_core.c: engine host (workers, model, generate/load/model/params). */
int llamux_core_init(struct proc_dir_entry *dir);
void llamux_core_stop(void);
void llamux_core_exit(void);

static struct proc_dir_entry *llamux_dir;

unsigned int llamux_param_max_threads(void)
{
	return max_threads;
}

static int llamux_status_open_show(struct seq_file *m, void *v)
{
	return llamux_status_show(m);
}

int llamux_proc_init(void)
{
	int err;

	llamux_dir = proc_mkdir("llamux", NULL);
	if (!llamux_dir)
		return -ENOMEM;
	if (!proc_create_single("status", 0600, llamux_dir, llamux_status_open_show)) {
		proc_remove(llamux_dir);
		llamux_dir = NULL;
		return -ENOMEM;
	}
	err = llamux_core_init(llamux_dir);
	if (err) {
		proc_remove(llamux_dir);
		llamux_dir = NULL;
	}
	return err;
}

void llamux_proc_exit(void)
{
	/* A running generation quits at its next token; proc_remove then
	 * waits for readers and writers in flight, and only after that the
	 * workers, the engine and the model go away. */
	llamux_core_stop();
	proc_remove(llamux_dir);
	llamux_dir = NULL;
	llamux_core_exit();
}
