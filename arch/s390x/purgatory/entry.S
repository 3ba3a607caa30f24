/*
 * kexec_py s390x purgatory: entry and exit (z/Architecture, big-endian).
 *
 * Only a capture kernel (-p) loaded with kexec_load uses it: it is the image's entry, and
 * the old kernel (arch/s390/kernel/machine_kexec.c) calls it as a C function taking one
 * argument, with DAT off and 64-bit addressing, twice:
 *
 *   r2 == 0  when the kexec is about to happen, to ask whether the loaded segments are
 *            intact: we return 0 in r2 when the SHA-256 check passes, non-zero when it
 *            fails (the kernel then does not jump), to the caller's r14, with r6-r15 as
 *            we found them;
 *   r2 != 0  after the system reset, to start the capture kernel: nothing returns.
 *
 * Our own stack (the caller's may be anywhere) is in this object; the old one's r6-r15
 * are kept in saved_regs for the way back.
 */

#define STACK_SIZE	8192
#define FRAME		160	/* the s390x ELF ABI's register save area of a frame */

	.text

	.globl	purgatory_start
	.type	purgatory_start, @function
purgatory_start:
	larl	%r1, saved_regs
	stmg	%r6, %r15, 0(%r1)
	larl	%r15, stack_end - FRAME
	lghi	%r0, 0
	stg	%r0, 0(%r15)			/* an empty back chain */
	brasl	%r14, purgatory_main		/* r2 passes through; returns only for r2 == 0 */
	larl	%r1, saved_regs
	lmg	%r6, %r15, 0(%r1)
	br	%r14
	.size	purgatory_start, . - purgatory_start

	.globl	purgatory_enter_kernel_at
	.type	purgatory_enter_kernel_at, @function
/* purgatory_enter_kernel_at(address): branch there, 64-bit addressing as we run. */
purgatory_enter_kernel_at:
	br	%r2
	.size	purgatory_enter_kernel_at, . - purgatory_enter_kernel_at

	.globl	purgatory_halt
	.type	purgatory_halt, @function
/* Stop for good: a disabled wait PSW (no interrupt can end it). */
purgatory_halt:
	larl	%r1, halt_psw
	lpswe	0(%r1)
	j	purgatory_halt
	.size	purgatory_halt, . - purgatory_halt

	.section .data
	.balign	8
halt_psw:
	.quad	0x0002000180000000		/* wait, 64-bit addressing */
	.quad	0
saved_regs:
	.fill	10, 8, 0			/* r6-r15 of the caller */

	.section .bss
	.balign	8
stack:
	.skip	STACK_SIZE
stack_end:

	.section .note.GNU-stack, "", @progbits
