/*
 * kexec_py s390x purgatory: what runs between the crashed kernel and its capture kernel.
 *
 * entry.S gives us a stack and calls purgatory_main(mode) with the old kernel's argument:
 *
 *   mode == 0: make the SHA-256 check (../../common/purgatory/verify.c) of the segments
 *              where the loader put them, in the crash region, and return 0 when it
 *              passes, 1 when it fails: the kernel asks before it commits to the jump.
 *   mode != 0: the system has been reset and the dump CPU's status stored at absolute 0.
 *              Check again (a mismatch stops for good), then enter the capture kernel at
 *              its kdump entry (STARTUP_KDUMP_OFFSET, 0x10010, in the entry-point table
 *              of the s390 boot ABI) where it lies, in the crash region, in 64-bit
 *              addressing mode. Entered there rather than at 0x10010 itself, the kernel's
 *              kdump entry swaps the crash region with the memory from 0 (OLDMEM_BASE and
 *              OLDMEM_SIZE from its own parameter area, which the loader wrote) and then
 *              starts itself at 0x10000: the crashed kernel's low memory ends up in the
 *              crash region, where the capture kernel's /proc/vmcore reads it.
 *
 * SHA-256, the check and purgatory.h are every purgatory's (arch/common/purgatory).
 */
#include "purgatory.h"

/* --- filled in by the Python loader (kexec_py/arch/s390x.py), with the SHA-256
 * check's own (../../common/purgatory/verify.c) --- */
LOADER_SET u64 kernel_entry = 0;	/* crash base + 0x10010 */

void purgatory_enter_kernel_at(u64 address) __attribute__((noreturn));

/* No console: nothing is printed (a mismatch halts or is reported to the kernel). */
void purgatory_print(const char *s)
{
	(void)s;
}

u64 purgatory_main(u64 mode);

u64 purgatory_main(u64 mode)
{
	int ok = purgatory_verify();

	if (mode == 0)
		return ok ? 0 : 1;
	if (!ok || kernel_entry == 0)
		purgatory_halt();
	purgatory_enter_kernel_at(kernel_entry);
}
