/*
 * kexec_py x86_64 purgatory: entry and exit.
 *
 * The old kernel jumps to purgatory_start in 64-bit mode on an identity
 * mapping with interrupts off.  Nothing else is promised: the GDT it leaves
 * may be gone and there is no usable stack.  So before touching memory
 * through the stack we load our own GDT, flat segments and stack.
 *
 * The new kernel is entered the way the x86 64-bit boot protocol asks:
 * CS = 0x10 (flat 64-bit code), DS = ES = SS = 0x18 (flat data) from a
 * loaded GDT, interrupts off, and every general register (notably %rsi =
 * boot_params) taken from entry64_regs.
 *
 * Only RIP-relative addressing is used here, so this file needs no
 * absolute relocations.
 */

#define BOOT_CS 0x10
#define BOOT_DS 0x18
#define STACK_SIZE 4096

/* byte offsets in entry64_regs */
#define REG_RAX (0 * 8)
#define REG_RBX (1 * 8)
#define REG_RCX (2 * 8)
#define REG_RDX (3 * 8)
#define REG_RSI (4 * 8)
#define REG_RDI (5 * 8)
#define REG_RSP (6 * 8)
#define REG_RBP (7 * 8)
#define REG_R8 (8 * 8)
#define REG_R9 (9 * 8)
#define REG_R10 (10 * 8)
#define REG_R11 (11 * 8)
#define REG_R12 (12 * 8)
#define REG_R13 (13 * 8)
#define REG_R14 (14 * 8)
#define REG_R15 (15 * 8)
#define REG_RIP (16 * 8)
#define REG_COUNT 17

	.text
	.code64

	.globl	purgatory_start
	.type	purgatory_start, @function
purgatory_start:
	cli
	cld

	/* The descriptor table's address is known only once the loader has
	 * placed us: write it into the pseudo-descriptor, then load it. */
	leaq	gdt(%rip), %rax
	movq	%rax, gdt_pointer + 2(%rip)
	lgdt	gdt_pointer(%rip)

	movl	$BOOT_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	leaq	stack_end(%rip), %rsp

	/* A far return is the simplest way to reload CS in long mode. */
	pushq	$BOOT_CS
	leaq	.Lflat_cs(%rip), %rax
	pushq	%rax
	lretq
.Lflat_cs:
	call	purgatory_main
	/* purgatory_main does not return; if it ever did, stop here. */
	.size	purgatory_start, . - purgatory_start

	.globl	purgatory_halt
	.type	purgatory_halt, @function
purgatory_halt:
	cli
.Lhalt:
	hlt
	jmp	.Lhalt
	.size	purgatory_halt, . - purgatory_halt

	.globl	purgatory_enter_kernel
	.type	purgatory_enter_kernel, @function
purgatory_enter_kernel:
	cli
	cld
	/* A zero rsp means "keep running on the purgatory's stack". */
	movq	entry64_regs + REG_RSP(%rip), %rax
	testq	%rax, %rax
	jz	1f
	movq	%rax, %rsp
1:
	movq	entry64_regs + REG_RAX(%rip), %rax
	movq	entry64_regs + REG_RBX(%rip), %rbx
	movq	entry64_regs + REG_RCX(%rip), %rcx
	movq	entry64_regs + REG_RDX(%rip), %rdx
	movq	entry64_regs + REG_RSI(%rip), %rsi
	movq	entry64_regs + REG_RDI(%rip), %rdi
	movq	entry64_regs + REG_RBP(%rip), %rbp
	movq	entry64_regs + REG_R8(%rip), %r8
	movq	entry64_regs + REG_R9(%rip), %r9
	movq	entry64_regs + REG_R10(%rip), %r10
	movq	entry64_regs + REG_R11(%rip), %r11
	movq	entry64_regs + REG_R12(%rip), %r12
	movq	entry64_regs + REG_R13(%rip), %r13
	movq	entry64_regs + REG_R14(%rip), %r14
	movq	entry64_regs + REG_R15(%rip), %r15
	/* Every register is spoken for, so jump through memory. */
	jmp	*entry64_regs + REG_RIP(%rip)
	.size	purgatory_enter_kernel, . - purgatory_enter_kernel

	.data

	/* Register values for the new kernel, set by the loader. */
	.balign	8
	.globl	entry64_regs
	.type	entry64_regs, @object
entry64_regs:
	.fill	REG_COUNT, 8, 0
	.size	entry64_regs, . - entry64_regs

	/* Null, unused, then the two flat segments the boot protocol names.
	 * 0x00af9a000000ffff: base 0, limit 4 GiB (G), present, DPL 0,
	 *   execute/read code, L=1 (64-bit).
	 * 0x00cf92000000ffff: base 0, limit 4 GiB (G), present, DPL 0,
	 *   read/write data, D/B=1. */
	.balign	16
gdt:
	.quad	0
	.quad	0
	.quad	0x00af9a000000ffff
	.quad	0x00cf92000000ffff
.Lgdt_end:

	/* lgdt operand: 16-bit limit, then the 64-bit base (filled at run time). */
	.balign	8
	.word	0, 0, 0
gdt_pointer:
	.word	.Lgdt_end - gdt - 1
	.quad	0

	.bss
	.balign	16
stack:
	.skip	STACK_SIZE
	.globl	stack_end
	.type	stack_end, @object
stack_end:
	.size	stack_end, 0

	.section .note.GNU-stack, "", @progbits
