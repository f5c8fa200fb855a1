// SPDX-License-Identifier: GPL-2.0
/*
 * procio: exact write()/read() calls on a /proc/llamux file for the guest
 * stress tests (busybox tools hide errnos and split or merge writes).
 *
 *   procio w FILE STR...    open once (O_WRONLY); one write() per STR; prints
 *                           "ok:N" (bytes written) or the errno name per write
 *   procio rw FILE STR      open O_RDWR, one write(), then read to EOF on the
 *                           same descriptor (the advise file's protocol)
 *   procio r FILE [-b SIZE] [-i MS] [-R] [-c BYTES]
 *                           read to EOF (or until BYTES were read, then close)
 *                           in SIZE-byte read() calls (default 4096), data to
 *                           stdout; with -i a SIGALRM every MS ms whose handler
 *                           has no SA_RESTART (each interrupted read returns
 *                           EINTR and is retried; -R: SA_RESTART instead);
 *                           prints "eintr N" and a failing read's errno name
 *                           on stderr
 * Exit status: 0, or 1 when open() or a read failed (after printing the
 * errno name), 2 on bad usage. Link it static for the guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static const char *ename(int e)
{
	switch (e) {
	case EINVAL: return "EINVAL";
	case E2BIG: return "E2BIG";
	case EBUSY: return "EBUSY";
	case EINTR: return "EINTR";
	case ENODEV: return "ENODEV";
	case ENOENT: return "ENOENT";
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case EFAULT: return "EFAULT";
	case ENOMEM: return "ENOMEM";
	case ESHUTDOWN: return "ESHUTDOWN";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case EIO: return "EIO";
	case EISDIR: return "EISDIR";
	case ECANCELED: return "ECANCELED";
	case EFBIG: return "EFBIG";
	default: return "E?";
	}
}

static void on_alarm(int sig) { (void)sig; }

static int open_or_say(const char *path, int flags)
{
	int fd = open(path, flags);

	if (fd < 0)
		printf("open %s\n", ename(errno));
	return fd;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "w")) {
		int fd = open_or_say(argv[2], O_WRONLY);

		if (fd < 0)
			return 1;
		for (int i = 3; i < argc; i++) {
			ssize_t n = write(fd, argv[i], strlen(argv[i]));

			if (i > 3)
				putchar(' ');
			if (n < 0)
				fputs(ename(errno), stdout);
			else
				printf("ok:%zd", n);
		}
		putchar('\n');
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "rw")) {
		char buf[4096];
		ssize_t n;
		int fd = open_or_say(argv[2], O_RDWR);

		if (fd < 0)
			return 1;
		if (write(fd, argv[3], strlen(argv[3])) < 0) {
			printf("write %s\n", ename(errno));
			return 1;
		}
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			fwrite(buf, 1, n, stdout);
		if (n < 0) {
			printf("read %s\n", ename(errno));
			return 1;
		}
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "r")) {
		size_t size = 4096, total = 0, limit = 0;
		long ms = 0, eintr = 0;
		int restart = 0, fd, err = 0;
		char *buf;

		for (int i = 3; i < argc; i++) {
			if (!strcmp(argv[i], "-R"))
				restart = 1;
			else if (i + 1 < argc && !strcmp(argv[i], "-b"))
				size = strtoul(argv[++i], NULL, 0);
			else if (i + 1 < argc && !strcmp(argv[i], "-i"))
				ms = strtol(argv[++i], NULL, 0);
			else if (i + 1 < argc && !strcmp(argv[i], "-c"))
				limit = strtoul(argv[++i], NULL, 0);
			else
				return 2;
		}
		buf = malloc(size ? size : 1);
		fd = open(argv[2], O_RDONLY);
		if (!buf || fd < 0) {
			fprintf(stderr, "open %s\n", ename(errno));
			return 1;
		}
		if (ms > 0) {
			struct sigaction sa = { .sa_handler = on_alarm,
						.sa_flags = restart ? SA_RESTART : 0 };
			struct itimerval it = { { ms / 1000, ms % 1000 * 1000 },
						{ ms / 1000, ms % 1000 * 1000 } };

			sigemptyset(&sa.sa_mask);
			sigaction(SIGALRM, &sa, NULL);
			setitimer(ITIMER_REAL, &it, NULL);
		}
		for (;;) {
			size_t want = limit ? (limit - total < size ? limit - total : size) : size;
			ssize_t n;

			if (limit && total >= limit)
				break;
			n = read(fd, buf, want);
			if (n < 0 && errno == EINTR) {
				eintr++;
				continue;
			}
			if (n < 0) {
				err = errno;
				break;
			}
			if (n == 0)
				break;
			fwrite(buf, 1, n, stdout);
			total += n;
		}
		fflush(stdout);
		if (ms > 0)
			fprintf(stderr, "eintr %ld\n", eintr);
		if (err) {
			fprintf(stderr, "read %s\n", ename(err));
			return 1;
		}
		close(fd);
		return 0;
	}
	fprintf(stderr, "usage: procio w FILE STR... | rw FILE STR | r FILE [-b N] [-i MS] [-R] [-c N]\n");
	return 2;
}
