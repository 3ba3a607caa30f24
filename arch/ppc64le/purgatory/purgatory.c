/*
 * kexec_py ppc64le purgatory: what runs between the old kernel and the new.
 *
 * entry.S gives us a TOC and a stack and calls purgatory_main(cpu), which
 *   1. unless skip_checks is set, hashes the memory named by sha256_regions
 *      and stops for good if the result is not sha256_digest;
 *   2. for a capture kernel (backup_start != 0), copies backup_size bytes
 *      from backup_src to backup_start: the start of RAM, which the capture
 *      kernel overwrites with its exception vectors, keeps the dead kernel's
 *      contents in the dump;
 *   3. writes the id of the CPU running us into the device tree header's
 *      boot_cpuid_phys: the new kernel boots on this CPU;
 *   4. when the kernel was loaded at 0, puts its first word back (the old
 *      kernel copied our first 0x100 bytes, branch included, to address 0);
 *   5. enters the kernel with r3 = kernel_dtb, r4 = kernel_entry, r5 = 0.
 * The MMU is off: every address is physical.
 *
 * SHA-256 and the purgatory.h declarations are the x86 purgatories'
 * (arch/x86/purgatory), built again for ppc64le.
 */
#include "purgatory.h"

#define SHA256_REGIONS 16
#define FDT_MAGIC 0xd00dfeedu
#define FDT_OFF_VERSION 20
#define FDT_OFF_BOOT_CPUID 28

struct sha256_region {
	u64 start;
	u64 len;
};

/* --- filled in by the Python loader (kexec_py/arch/ppc64le.py) --- */
LOADER_SET struct sha256_region sha256_regions[SHA256_REGIONS] = { { 0, 0 } };
LOADER_SET u8 sha256_digest[SHA256_DIGEST_SIZE] = { 0 };
LOADER_SET u8 skip_checks = 0;
LOADER_SET u64 kernel_entry = 0;
LOADER_SET u64 kernel_dtb = 0;
LOADER_SET u32 kernel_word0 = 0;	/* the kernel's first instruction word */
LOADER_SET u64 backup_start = 0;	/* 0: no backup (not a capture kernel) */
LOADER_SET u64 backup_src = 0;
LOADER_SET u64 backup_size = 0;

void purgatory_flush_word(u64 addr);
void purgatory_enter_kernel_at(u64 dtb, u64 kernel) __attribute__((noreturn));

static u32 get_be32(const volatile u8 *p)
{
	return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | p[3];
}

static void put_be32(volatile u8 *p, u32 v)
{
	p[0] = (u8)(v >> 24);
	p[1] = (u8)(v >> 16);
	p[2] = (u8)(v >> 8);
	p[3] = (u8)v;
}

static int digest_matches(void)
{
	struct sha256_ctx ctx;
	u8 digest[SHA256_DIGEST_SIZE];
	unsigned int i;

	sha256_init(&ctx);
	for (i = 0; i < SHA256_REGIONS; i++) {
		const struct sha256_region *r = &sha256_regions[i];

		if (r->len)
			sha256_update(&ctx, (const u8 *)(uptr)r->start, r->len);
	}
	sha256_final(&ctx, digest);
	return memcmp(digest, sha256_digest, SHA256_DIGEST_SIZE) == 0;
}

void purgatory_main(u64 cpu) __attribute__((noreturn));

void purgatory_main(u64 cpu)
{
	volatile u8 *fdt = (volatile u8 *)(uptr)kernel_dtb;

	if (!skip_checks && !digest_matches())
		purgatory_halt();

	if (backup_start)
		memcpy((void *)(uptr)backup_start, (const void *)(uptr)backup_src, backup_size);

	if (fdt && get_be32(fdt) == FDT_MAGIC && get_be32(fdt + FDT_OFF_VERSION) >= 2)
		put_be32(fdt + FDT_OFF_BOOT_CPUID, (u32)cpu);

	if (kernel_entry == 0) {
		*(volatile u32 *)0 = kernel_word0;
		purgatory_flush_word(0);
	}
	purgatory_enter_kernel_at(kernel_dtb, kernel_entry);
}
