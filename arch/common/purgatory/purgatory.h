/*
 * kexec_py purgatories: declarations shared by every architecture's C files
 * (x86_64, i386, arm64, ppc64le, s390x).
 *
 * The purgatory runs with no C library, no interrupts and no kernel, so it
 * brings its own fixed-width types, string helpers and SHA-256.
 */
#ifndef KEXEC_PY_PURGATORY_H
#define KEXEC_PY_PURGATORY_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
#ifdef __LP64__			/* x86_64, arm64, ppc64le, s390x */
typedef unsigned long u64;
typedef unsigned long uptr;
typedef unsigned long size_t;
#else
typedef unsigned long long u64;
typedef unsigned long uptr;
typedef unsigned int size_t;
#endif

#define NULL ((void *)0)

/* Variables the Python loader fills in by symbol name live in .data, so they
 * have bytes in the file that it can overwrite (a .bss variable has none). */
#define LOADER_SET __attribute__((section(".data"), used))

#define SHA256_DIGEST_SIZE 32

struct sha256_ctx {
	u32 state[8];
	u64 length;		/* bytes hashed so far */
	u32 used;		/* bytes waiting in block[] */
	u8 block[64];
};

void sha256_init(struct sha256_ctx *ctx);
void sha256_update(struct sha256_ctx *ctx, const u8 *data, u64 len);
void sha256_final(struct sha256_ctx *ctx, u8 out[SHA256_DIGEST_SIZE]);

void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* Each architecture's entry code: stop for good. */
void purgatory_halt(void) __attribute__((noreturn));
/* x86 and arm64 entry code: enter the new kernel as the loader set it up. */
void purgatory_enter_kernel(void) __attribute__((noreturn));

/* verify.c: the SHA-256 check, the same on every architecture.  The loader
 * sets sha256_regions (up to SHA256_REGIONS {start, len} pairs; those with a
 * length are hashed in order as one message), sha256_digest and skip_checks.
 * purgatory_verify() returns 1 when the check passes or is skipped, and 0 on a
 * mismatch, after printing both digests through purgatory_print(), which each
 * architecture provides (it may print nothing). */
#define SHA256_REGIONS 16

struct sha256_region {
	u64 start;
	u64 len;
};

int purgatory_verify(void);
void purgatory_print(const char *s);

#endif
