/*
 * kexec_py arm64 purgatory: entry and exit.
 *
 * The old kernel (cpu_soft_restart) branches to purgatory_start at EL2 or
 * EL1 with the MMU and the caches off and interrupts masked.  There is no
 * stack we may use, so we take our own from .bss before calling C.
 *
 * The new kernel is entered as Documentation/arch/arm64/booting.rst asks:
 * x0 = physical address of the device tree, x1 = x2 = x3 = 0, at the
 * Image's first byte.  Everything here is PC-relative (ADRP + :lo12:), so
 * the object can be linked at any page-aligned address.
 */

#define STACK_SIZE 4096

	.text

	.globl	purgatory_start
	.type	purgatory_start, %function
purgatory_start:
	adrp	x9, stack_end
	add	x9, x9, :lo12:stack_end
	mov	sp, x9
	bl	purgatory_main
	b	purgatory_halt		/* purgatory_main does not return */
	.size	purgatory_start, . - purgatory_start

	.globl	purgatory_enter_kernel
	.type	purgatory_enter_kernel, %function
purgatory_enter_kernel:
	adrp	x9, kernel_entry
	ldr	x17, [x9, :lo12:kernel_entry]
	adrp	x9, kernel_dtb
	ldr	x0, [x9, :lo12:kernel_dtb]
	mov	x1, xzr
	mov	x2, xzr
	mov	x3, xzr
	br	x17
	.size	purgatory_enter_kernel, . - purgatory_enter_kernel

	.globl	purgatory_halt
	.type	purgatory_halt, %function
purgatory_halt:
	msr	daifset, #0xf
1:	wfi
	b	1b
	.size	purgatory_halt, . - purgatory_halt

	.bss
	.balign	16
stack:
	.space	STACK_SIZE
	.globl	stack_end
stack_end:

	.section .note.GNU-stack, "", %progbits
