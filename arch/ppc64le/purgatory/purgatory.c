/*
 * kexec_py ppc64le purgatory: what runs between the old kernel and the new.
 *
 * entry.S gives us a TOC and a stack and calls purgatory_main(cpu), which
 *   1. makes the SHA-256 check (../../common/purgatory/verify.c) and stops
 *      for good if it fails;
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
 * SHA-256, the check and purgatory.h are every purgatory's
 * (arch/common/purgatory), built for ppc64le.
 */
#include "purgatory.h"

#define FDT_MAGIC 0xd00dfeedu
#define FDT_OFF_VERSION 20
#define FDT_OFF_BOOT_CPUID 28

/* --- filled in by the Python loader (kexec_py/arch/ppc64le.py), with the
 * SHA-256 check's own (../../common/purgatory/verify.c) --- */
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

/* No console: nothing is printed (a mismatch only halts). */
void purgatory_print(const char *s)
{
	(void)s;
}

void purgatory_main(u64 cpu) __attribute__((noreturn));

void purgatory_main(u64 cpu)
{
	volatile u8 *fdt = (volatile u8 *)(uptr)kernel_dtb;

	if (!purgatory_verify())
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
