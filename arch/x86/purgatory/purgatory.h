/*
 * kexec_py x86 purgatory: declarations shared by its C files.
 *
 * The same C files are built for x86_64 (with ../../x86_64/purgatory/entry64.S)
 * and for i386 (with ../../i386/purgatory/entry32.S); only the integer types
 * and the name of the entry-register block differ.
 *
 * The purgatory runs with no C library, no interrupts and no kernel, so it
 * brings its own fixed-width types and string helpers.
 */
#ifndef KEXEC_PY_PURGATORY_H
#define KEXEC_PY_PURGATORY_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
#ifdef __LP64__			/* x86_64; also arm64, which builds sha256.c from here */
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

/* entry64.S / entry32.S */
void purgatory_enter_kernel(void) __attribute__((noreturn));
void purgatory_halt(void) __attribute__((noreturn));

/* The registers the new kernel is entered with, set by the loader; the
 * instruction pointer comes last.
 *   x86_64: rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip (17 x u64)
 *   i386:   eax ebx ecx edx esi edi esp ebp eip          (9 x u32) */
#ifdef __x86_64__
extern u64 entry64_regs[17];
#define ENTRY_IP (entry64_regs[16])
#else
extern u32 entry32_regs[9];
#define ENTRY_IP (entry32_regs[8])
#endif

#endif
