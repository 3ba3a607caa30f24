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
 *   r2 != 0  after the system reset, to swap the crash region with the start of memory and
 *            start the capture kernel (purgatory.c): nothing returns.
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

	.globl	purgatory_swap
	.type	purgatory_swap, @function
/* purgatory_swap(a, b, len, buffer): swap len bytes (a multiple of 256) at a and at b,
 * 256 at a time through the 256-byte buffer. */
purgatory_swap:
	ltgr	%r4, %r4
	jz	2f
1:	mvc	0(256, %r5), 0(%r2)
	mvc	0(256, %r2), 0(%r3)
	mvc	0(256, %r3), 0(%r5)
	la	%r2, 256(%r2)
	la	%r3, 256(%r3)
	aghi	%r4, -256
	jh	1b
2:	br	%r14
	.size	purgatory_swap, . - purgatory_swap

	.globl	purgatory_tail
	.type	purgatory_tail, @function
/* purgatory_tail(dst, len, src, entry): copy len bytes from src to dst, then branch to
 * entry. Position-independent: purgatory_main runs a copy of it from outside both
 * ranges, as the copy overwrites the purgatory itself (dst is where it lies). */
purgatory_tail:
	lgr	%r6, %r5
	lgr	%r0, %r2
	lgr	%r1, %r3
	lgr	%r2, %r4
1:	mvcle	%r0, %r2, 0
	jo	1b
	br	%r6
	.globl	purgatory_tail_end
purgatory_tail_end:
	.size	purgatory_tail, . - purgatory_tail

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
