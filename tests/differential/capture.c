/*
 * LD_PRELOAD library for the differential tests: it stands in for the kexec
 * system calls of the program it is loaded into, and writes down what that
 * program asked for instead of asking the kernel.
 *
 * Built freestanding (gcc -ffreestanding -nostdlib -shared -fPIC, with -m64
 * or -m32, or powerpc64le-linux-gnu-gcc / arm-linux-gnueabihf-gcc for kexec-tools under
 * qemu-ppc64le / qemu-arm): it includes only the compiler's own headers and declares the few
 * libc functions it calls, which the dynamic linker finds in the program's
 * libc. So the host needs no 32-bit C library to build the i386 copy.
 *
 * Environment:
 *   KEXEC_CAPTURE_DIR  directory to write into (must exist). Without it every
 *                      intercepted call fails with EPERM and nothing is written.
 *   KEXEC_CAPTURE_PAGE_SIZE  (decimal) what getpagesize() and sysconf(_SC_PAGESIZE)
 *                      return instead of the real page size (see below).
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
#include <stdarg.h>
#include <stddef.h>

#if defined(__x86_64__)
#define NR_KEXEC_LOAD 246
#define NR_KEXEC_FILE_LOAD 320
#define NR_REBOOT 169
#elif defined(__i386__)
#define NR_KEXEC_LOAD 283
#define NR_REBOOT 88            /* i386 has no kexec_file_load */
#elif defined(__powerpc64__) && defined(__LITTLE_ENDIAN__)
#define NR_KEXEC_LOAD 268
#define NR_KEXEC_FILE_LOAD 382
#define NR_REBOOT 88
#elif defined(__arm__) && defined(__ARM_EABI__)
#define NR_KEXEC_LOAD 347        /* arch/arm/tools/syscall.tbl */
#define NR_KEXEC_FILE_LOAD 401
#define NR_REBOOT 88
#elif defined(__s390x__)
#define NR_KEXEC_LOAD 277
#define NR_KEXEC_FILE_LOAD 381
#define NR_REBOOT 88
#else
#error "capture.c knows the syscall numbers of x86_64, i386, ppc64le, arm (EABI) and s390x only"
#endif

/* From libc (declared here: no libc headers are used). */
extern char *getenv(const char *name);
extern int open(const char *path, int flags, ...);
extern long write(int fd, const void *buf, size_t len);
extern long pread64(int fd, void *buf, size_t len, long long offset);
extern int close(int fd);
extern int snprintf(char *out, size_t size, const char *fmt, ...);
extern int *__errno_location(void);
extern void abort(void);
extern void *dlsym(void *handle, const char *name);

#define RTLD_NEXT ((void *)-1L)
#define O_WRONLY 01
#define O_CREAT 0100
#define O_TRUNC 01000
#define O_APPEND 02000
#define EPERM 1

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

static void fail(const char *what, const char *name)
{
	char msg[512];
	int n = snprintf(msg, sizeof(msg), "capture: %s %s (errno %d)\n", what, name, *__errno_location());
	write(2, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
	abort();
}

static int open_out(const char *dir, const char *name, int append)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
	if (fd < 0)
		fail("cannot write", path);
	return fd;
}

static void put(int fd, const void *buf, size_t len, const char *name)
{
	const char *p = buf;
	while (len) {
		long n = write(fd, p, len);
		if (n <= 0)
			fail("short write to", name);
		p += n;
		len -= (size_t)n;
	}
}

static void write_file(const char *dir, const char *name, const void *buf, size_t len)
{
	int fd = open_out(dir, name, 0);
	put(fd, buf, len, name);
	close(fd);
}

static void append_line(const char *dir, const char *name, const char *line, int len)
{
	int fd = open_out(dir, name, 1);
	put(fd, line, (size_t)len, name);
	close(fd);
}

static long refused(void)
{
	*__errno_location() = EPERM;
	return -1;
}

static long capture_kexec_load(unsigned long entry, unsigned long nr, const struct seg *segs,
			       unsigned long flags)
{
	const char *dir = capture_dir();
	char line[256], name[64];
	int n = call_no++, len;

	if (!dir)
		return refused();
	len = snprintf(line, sizeof(line), "kexec_load n=%d entry=%#lx nr_segments=%lu flags=%#lx\n",
		       n, entry, nr, flags);
	append_line(dir, "calls.txt", line, len);
	snprintf(name, sizeof(name), "%d.segments.txt", n);
	write_file(dir, name, "", 0);
	for (unsigned long i = 0; i < nr && segs; i++) {
		len = snprintf(line, sizeof(line), "%#lx %#lx %#lx\n", (unsigned long)segs[i].mem,
			       (unsigned long)segs[i].memsz, (unsigned long)segs[i].bufsz);
		append_line(dir, name, line, len);
		char bin[64];
		snprintf(bin, sizeof(bin), "%d.seg-%lu.bin", n, i);
		write_file(dir, bin, segs[i].buf, segs[i].buf ? segs[i].bufsz : 0);
	}
	return 0;
}

#ifdef NR_KEXEC_FILE_LOAD
static void copy_fd(const char *dir, const char *name, int src)
{
	static char buf[1 << 16];
	int fd = open_out(dir, name, 0);
	long long off = 0;
	for (;;) {
		long n = pread64(src, buf, sizeof(buf), off);
		if (n < 0)
			fail("cannot read the file for", name);
		if (n == 0)
			break;
		put(fd, buf, (size_t)n, name);
		off += n;
	}
	close(fd);
}

static long capture_kexec_file_load(int kernel_fd, int initrd_fd, unsigned long cmdline_len,
				    const char *cmdline, unsigned long flags)
{
	const char *dir = capture_dir();
	char line[256], name[64];
	int n = call_no++, len;

	if (!dir)
		return refused();
	len = snprintf(line, sizeof(line),
		       "kexec_file_load n=%d kernel_fd=%d initrd_fd=%d cmdline_len=%lu flags=%#lx\n",
		       n, kernel_fd, initrd_fd, cmdline_len, flags);
	append_line(dir, "calls.txt", line, len);
	snprintf(name, sizeof(name), "%d.cmdline.bin", n);
	write_file(dir, name, cmdline, cmdline ? cmdline_len : 0);
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
#endif

static long refuse_reboot(unsigned long cmd)
{
	const char *dir = capture_dir();
	char line[128];
	int n = call_no++;

	if (dir)
		append_line(dir, "calls.txt", line, snprintf(line, sizeof(line), "reboot n=%d cmd=%#lx\n", n, cmd));
	return refused();
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
	case NR_KEXEC_LOAD:
		return capture_kexec_load((unsigned long)a[0], (unsigned long)a[1],
					  (const struct seg *)a[2], (unsigned long)a[3]);
#ifdef NR_KEXEC_FILE_LOAD
	case NR_KEXEC_FILE_LOAD:
		return capture_kexec_file_load((int)a[0], (int)a[1], (unsigned long)a[2],
					       (const char *)a[3], (unsigned long)a[4]);
#endif
	case NR_REBOOT:
		return refuse_reboot((unsigned long)a[2]);
	}
	if (!real_syscall)
		real_syscall = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	if (!real_syscall)
		fail("no libc syscall()", "");
	return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/*
 * KEXEC_CAPTURE_PAGE_SIZE (decimal): the page size the program's getpagesize() and
 * sysconf(_SC_PAGESIZE) report, in place of the one it runs with. Under qemu-user the
 * program sees the host's 4 KiB pages; the snapshot's kernel may use others (ppc64le:
 * 64 KiB, its /proc/self/auxv AT_PAGESZ), and kexec-tools rounds segments to that size.
 * (qemu-user's own -p 65536 breaks getdents on a 4 KiB host.) libc's internal uses of
 * the page size are not affected.
 */
static long page_size_override(void)
{
	const char *s = getenv("KEXEC_CAPTURE_PAGE_SIZE");
	long v = 0;
	if (!s)
		return 0;
	for (; *s >= '0' && *s <= '9'; s++)
		v = v * 10 + (*s - '0');
	return v;
}

int getpagesize(void)
{
	static int (*real)(void);
	long v = page_size_override();
	if (v)
		return (int)v;
	if (!real)
		real = (int (*)(void))dlsym(RTLD_NEXT, "getpagesize");
	if (!real)
		fail("no libc getpagesize()", "");
	return real();
}

#define SC_PAGESIZE 30          /* _SC_PAGESIZE in glibc's <bits/confname.h> */

long sysconf(int name)
{
	static long (*real)(int);
	long v = page_size_override();
	if (name == SC_PAGESIZE && v)
		return v;
	if (!real)
		real = (long (*)(int))dlsym(RTLD_NEXT, "sysconf");
	if (!real)
		fail("no libc sysconf()", "");
	return real(name);
}

long kexec_load(unsigned long entry, unsigned long nr, const struct seg *segs, unsigned long flags)
{
	return capture_kexec_load(entry, nr, segs, flags);
}

int reboot(int cmd)
{
	return (int)refuse_reboot((unsigned int)cmd);
}
