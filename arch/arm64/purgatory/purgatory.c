/*
 * kexec_py arm64 purgatory: what runs between the old kernel and the new.
 *
 * entry.S gives us a stack and calls purgatory_main(), which
 *   1. makes the SHA-256 check (../../common/purgatory/verify.c) and stops
 *      for good if it fails;
 *   2. enters the new kernel at kernel_entry with x0 = kernel_dtb.
 * With console_mmio set it writes progress, byte by byte, to that MMIO
 * address (the data register of a PL011 or of an MMIO 8250, which the old
 * kernel left set up).  The MMU is off: every address is physical.
 *
 * SHA-256, the check and purgatory.h are every purgatory's
 * (arch/common/purgatory), built for aarch64.
 */
#include "purgatory.h"

/* --- filled in by the Python loader (kexec_py/arch/arm64.py), with the
 * SHA-256 check's own (../../common/purgatory/verify.c) --- */
LOADER_SET u64 kernel_entry = 0;
LOADER_SET u64 kernel_dtb = 0;
LOADER_SET u64 console_mmio = 0;

void purgatory_print(const char *s)
{
	volatile u8 *uart = (volatile u8 *)(uptr)console_mmio;

	if (!uart)
		return;
	for (; *s; s++) {
		if (*s == '\n')
			*uart = '\r';
		*uart = (u8)*s;
	}
}

void purgatory_main(void) __attribute__((noreturn));

void purgatory_main(void)
{
	purgatory_print("kexec-py purgatory: started\n");

	if (!purgatory_verify())
		purgatory_halt();

	if (!kernel_entry) {
		purgatory_print("kexec-py purgatory: no entry point, halting\n");
		purgatory_halt();
	}
	purgatory_print("kexec-py purgatory: jumping to kernel\n");
	purgatory_enter_kernel();
}
