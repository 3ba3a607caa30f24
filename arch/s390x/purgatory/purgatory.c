/*
 * kexec_py s390x purgatory: what runs between the crashed kernel and its capture kernel.
 *
 * entry.S gives us a stack and calls purgatory_main(mode) with the old kernel's argument:
 *
 *   mode == 0: make the SHA-256 check (../../common/purgatory/verify.c) of the segments
 *              where the loader put them, in the crash region, and return 0 when it
 *              passes, 1 when it fails: the kernel asks before it commits to the jump.
 *   mode != 0: the system has been reset and the dump CPU's status stored at absolute 0.
 *              Check again (a mismatch stops for good), then swap the crash region
 *              [crash_base, crash_base + crash_size) with [0, crash_size): the capture
 *              kernel, laid out in the crash region as it must run, goes to the start of
 *              memory, and the crashed kernel's memory from 0 goes to the crash region,
 *              where the capture kernel's /proc/vmcore reads it back (it knows the region
 *              from OLDMEM_BASE/OLDMEM_SIZE in its parameter area). Then enter the capture
 *              kernel at kernel_entry: its kdump entry, STARTUP_KDUMP_OFFSET (0x10010) of
 *              the s390 boot ABI, in 64-bit addressing mode; found at its own linked
 *              address, the kernel knows it has been moved into place already.
 *
 * The swap must not overwrite us while we run: our own pages in the crash region are
 * swapped last, by a few instructions (purgatory_tail in entry.S) copied just below
 * where those pages go, which copy the crashed kernel's bytes from under that place
 * over us and branch to the kernel. Nothing of the crashed kernel's memory is lost.
 *
 * SHA-256, the check and purgatory.h are every purgatory's (arch/common/purgatory).
 */
#include "purgatory.h"

#define SWAP_UNIT 256		/* purgatory_swap's block: every length here is a multiple */

/* --- filled in by the Python loader (kexec_py/arch/s390x.py), with the SHA-256
 * check's own (../../common/purgatory/verify.c) --- */
LOADER_SET u64 kernel_entry = 0;	/* 0x10010: the kdump entry, after the swap */
LOADER_SET u64 crash_base = 0;		/* the crash region (OLDMEM_BASE, OLDMEM_SIZE) */
LOADER_SET u64 crash_size = 0;
LOADER_SET u64 self_start = 0;		/* this purgatory's segment, inside the crash region */
LOADER_SET u64 self_size = 0;

static u8 swap_buffer[SWAP_UNIT] __attribute__((aligned(8)));

/* entry.S */
void purgatory_swap(u64 a, u64 b, u64 len, u8 *buffer);
void purgatory_tail(u64 dst, u64 len, u64 src, u64 entry) __attribute__((noreturn));
extern const u8 purgatory_tail_end[];

/* No console: nothing is printed (a mismatch halts or is reported to the kernel). */
void purgatory_print(const char *s)
{
	(void)s;
}

static int layout_ok(void)
{
	u64 self = self_start - crash_base;
	u64 tail = (const u8 *)purgatory_tail_end - (const u8 *)purgatory_tail;

	return kernel_entry && crash_size && crash_base >= crash_size &&
	       self_start >= crash_base && self >= SWAP_UNIT && self >= tail &&
	       self + self_size <= crash_size &&
	       (crash_base | crash_size | self_start | self_size) % SWAP_UNIT == 0;
}

u64 purgatory_main(u64 mode);

u64 purgatory_main(u64 mode)
{
	int ok = purgatory_verify() && layout_ok();
	u64 self, tail_at;
	void (*tail)(u64, u64, u64, u64);

	if (mode == 0)
		return ok ? 0 : 1;
	if (!ok)
		purgatory_halt();

	self = self_start - crash_base;		/* where our pages go */
	purgatory_swap(0, crash_base, self, swap_buffer);
	purgatory_swap(self + self_size, self_start + self_size, crash_size - self - self_size, swap_buffer);

	/* Below our pages' place, after the swap, lies crash-region content nothing uses
	 * (the crashed kernel's own bytes from there are safe in the crash region now). */
	tail_at = self - ((const u8 *)purgatory_tail_end - (const u8 *)purgatory_tail);
	tail_at &= ~(u64)7;
	memcpy((void *)(uptr)tail_at, (const void *)purgatory_tail,
	       (const u8 *)purgatory_tail_end - (const u8 *)purgatory_tail);
	tail = (void (*)(u64, u64, u64, u64))(uptr)tail_at;
	tail(self_start, self_size, self, kernel_entry);
	purgatory_halt();
}
