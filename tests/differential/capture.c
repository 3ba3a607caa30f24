/*
 * LD_PRELOAD library for the differential tests: it stands in for the kexec
 * system calls of the program it is loaded into, and writes down what that
 * program asked for instead of asking the kernel.
 *
 * Environment:
 *   KEXEC_CAPTURE_DIR  directory to write into (must exist). Without it every
 *                      intercepted call fails with EPERM and nothing is written.
 *
 * Written there, for the n-th intercepted call (n = 0, 1, ...):
 *   calls.txt         one line per call:
 *                       kexec_load n=N entry=0x.. nr_segments=K flags=0x..
 *                       kexec_file_load n=N kernel_fd=F initrd_fd=F cmdline_len=L flags=0x..
 *                       reboot n=N cmd=0x..
 *   N.segments.txt    kexec_load: one line per segment "mem memsz bufsz" (hex)
 *   N.seg-I.bin       kexec_load: segment I's buffer (bufsz bytes)
 *   N.cmdline.bin     kexec_file_load: the cmdline buffer (cmdline_len bytes)
 *   N.kernel.bin / N.initrd.bin   kexec_file_load: the files behind the fds
 *
 * kexec_load and kexec_file_load then return 0 without entering the kernel;
 * reboot() (any command) and syscall(SYS_reboot, ...) fail with EPERM.
 * Every other syscall() goes to libc's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct seg {
	const void *buf;
	size_t bufsz;
	const void *mem;
	size_t memsz;
};

static int call_no;

static const char *capture_dir(void)
{
	const char *dir = getenv("KEXEC_CAPTURE_DIR");
	return (dir && *dir) ? dir : NULL;
}

static FILE *open_out(const char *dir, const char *name, const char *mode)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, mode);
	if (!f) {
		fprintf(stderr, "capture: cannot write %s: %s\n", path, strerror(errno));
		abort();
	}
	return f;
}

static void write_all(const char *dir, const char *name, const void *buf, size_t len)
{
	FILE *f = open_out(dir, name, "wb");
	if (len && fwrite(buf, 1, len, f) != len) {
		fprintf(stderr, "capture: short write to %s/%s\n", dir, name);
		abort();
	}
	fclose(f);
}

static void copy_fd(const char *dir, const char *name, int fd)
{
	char buf[1 << 16];
	FILE *f = open_out(dir, name, "wb");
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), off);
		if (n < 0) {
			fprintf(stderr, "capture: cannot read fd %d: %s\n", fd, strerror(errno));
			abort();
		}
		if (n == 0)
			break;
		fwrite(buf, 1, (size_t)n, f);
		off += n;
	}
	fclose(f);
}

static void log_line(const char *dir, const char *line)
{
	FILE *f = open_out(dir, "calls.txt", "a");
	fputs(line, f);
	fclose(f);
}

static long capture_kexec_load(unsigned long entry, unsigned long nr, const struct seg *segs,
			       unsigned long flags)
{
	const char *dir = capture_dir();
	char line[256], name[64];
	int n = call_no++;

	if (!dir) {
		errno = EPERM;
		return -1;
	}
	snprintf(line, sizeof(line), "kexec_load n=%d entry=%#lx nr_segments=%lu flags=%#lx\n",
		 n, entry, nr, flags);
	log_line(dir, line);
	snprintf(name, sizeof(name), "%d.segments.txt", n);
	FILE *f = open_out(dir, name, "w");
	for (unsigned long i = 0; i < nr && segs; i++) {
		fprintf(f, "%#lx %#zx %#zx\n", (unsigned long)(uintptr_t)segs[i].mem, segs[i].memsz,
			segs[i].bufsz);
		snprintf(name, sizeof(name), "%d.seg-%lu.bin", n, i);
		write_all(dir, name, segs[i].buf, segs[i].buf ? segs[i].bufsz : 0);
	}
	fclose(f);
	return 0;
}

static long capture_kexec_file_load(int kernel_fd, int initrd_fd, unsigned long cmdline_len,
				    const char *cmdline, unsigned long flags)
{
	const char *dir = capture_dir();
	char line[256], name[64];
	int n = call_no++;

	if (!dir) {
		errno = EPERM;
		return -1;
	}
	snprintf(line, sizeof(line),
		 "kexec_file_load n=%d kernel_fd=%d initrd_fd=%d cmdline_len=%lu flags=%#lx\n",
		 n, kernel_fd, initrd_fd, cmdline_len, flags);
	log_line(dir, line);
	snprintf(name, sizeof(name), "%d.cmdline.bin", n);
	write_all(dir, name, cmdline, cmdline ? cmdline_len : 0);
	if (kernel_fd >= 0) {
		snprintf(name, sizeof(name), "%d.kernel.bin", n);
		copy_fd(dir, name, kernel_fd);
	}
	if (initrd_fd >= 0) {
		snprintf(name, sizeof(name), "%d.initrd.bin", n);
		copy_fd(dir, name, initrd_fd);
	}
	return 0;
}

static long refuse_reboot(unsigned long cmd)
{
	const char *dir = capture_dir();
	char line[128];
	int n = call_no++;

	if (dir) {
		snprintf(line, sizeof(line), "reboot n=%d cmd=%#lx\n", n, cmd);
		log_line(dir, line);
	}
	errno = EPERM;
	return -1;
}

long syscall(long number, ...)
{
	static long (*real_syscall)(long, ...);
	va_list ap;
	long a[6];

	va_start(ap, number);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);

	switch (number) {
	case SYS_kexec_load:
		return capture_kexec_load((unsigned long)a[0], (unsigned long)a[1],
					  (const struct seg *)a[2], (unsigned long)a[3]);
#ifdef SYS_kexec_file_load
	case SYS_kexec_file_load:
		return capture_kexec_file_load((int)a[0], (int)a[1], (unsigned long)a[2],
					       (const char *)a[3], (unsigned long)a[4]);
#endif
	case SYS_reboot:
		return refuse_reboot((unsigned long)a[2]);
	}
	if (!real_syscall)
		real_syscall = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

long kexec_load(unsigned long entry, unsigned long nr, const struct seg *segs, unsigned long flags)
{
	return capture_kexec_load(entry, nr, segs, flags);
}

int reboot(int cmd)
{
	return (int)refuse_reboot((unsigned int)cmd);
}
