/*
 * kexec_py ppc64le purgatory: entry and exit.
 *
 * The old kernel (kexec_sequence in arch/powerpc/kernel/misc_64.S) copies the
 * first 0x100 bytes at the entry point to physical address 0, sends the other
 * CPUs to physical 0x60 (in big-endian mode) and branches here with the MMU
 * off, in 64-bit little-endian mode, r3 = this CPU's physical id.
 *
 * So the 0x100 bytes from purgatory_start are two things at once: the first
 * word branches to our own code, and the loader fills the rest with the new
 * kernel's own first 0x100 bytes, whose code at 0x60 (__secondary_hold, which
 * fixes its endianness itself) holds the other CPUs until the new kernel
 * releases them.
 *
 * The new kernel is entered as Documentation/arch/powerpc/booting.rst asks
 * (method b, a flattened device tree): r3 = the device tree's physical
 * address, r4 = the kernel's physical start, r5 = 0, relocation off.
 * The kernel sets up its own TOC and stack.
 *
 * The C code addresses its data relative to the TOC pointer r2: .TOC. is a
 * point the Python linker (kexec_py/arch/relocs_ppc64le.py) fixes inside the
 * segment; we load it PC-relatively, so the object runs wherever it is linked.
 */

#define STACK_SIZE	16384
#define MIN_FRAME	32	/* ELFv2: back chain, CR save, LR save, TOC save */

	.text

	.globl	purgatory_start
	.type	purgatory_start, @function
purgatory_start:
	b	master
	.space	0x100 - 4	/* the new kernel's bytes 4..0xff (the loader copies them) */
	.size	purgatory_start, . - purgatory_start

master:
	mr	%r31, %r3				/* our physical CPU id */
	bcl	20, 31, 1f			/* r12 = address of 1: */
1:	mflr	%r12
	addis	%r2, %r12, (.TOC. - 1b)@ha
	addi	%r2, %r2, (.TOC. - 1b)@l
	addis	%r1, %r2, stack_end@toc@ha
	addi	%r1, %r1, stack_end@toc@l
	li	%r0, 0
	stdu	%r0, -MIN_FRAME(%r1)		/* an empty back chain */
	mr	%r3, %r31
	bl	purgatory_main			/* does not return */
	nop
	b	purgatory_halt

	.globl	purgatory_enter_kernel_at
	.type	purgatory_enter_kernel_at, @function
/* purgatory_enter_kernel_at(dtb, kernel): %r3 = dtb, %r4 = kernel, %r5 = 0, branch to %r4. */
purgatory_enter_kernel_at:
	mtctr	%r4
	li	%r5, 0
	sync
	isync
	bctr
	.size	purgatory_enter_kernel_at, . - purgatory_enter_kernel_at

	.globl	purgatory_flush_word
	.type	purgatory_flush_word, @function
/* purgatory_flush_word(addr): make a store of code at addr visible to fetches. */
purgatory_flush_word:
	dcbst	0, %r3
	sync
	icbi	0, %r3
	sync
	isync
	blr
	.size	purgatory_flush_word, . - purgatory_flush_word

	.globl	purgatory_halt
	.type	purgatory_halt, @function
purgatory_halt:
1:	or	%r1, %r1, %r1			/* low thread priority */
	b	1b
	.size	purgatory_halt, . - purgatory_halt

	.bss
	.balign	16
stack:
	.space	STACK_SIZE
	.globl	stack_end
stack_end:

	.section .note.GNU-stack, "", @progbits
