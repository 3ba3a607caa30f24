/*
 * kexec_py i386 purgatory: entry and exit.
 *
 * The 32-bit kernel's relocate_kernel turns paging off and jumps to
 * purgatory_start in 32-bit protected mode with interrupts off.  The GDT
 * and the stack it leaves are not ours to trust, so the first thing done is
 * to load our own descriptor table, flat segments and stack.
 *
 * The new kernel is entered the way the 32-bit boot protocol asks
 * (Documentation/arch/x86/boot.rst): protected mode, paging off, a loaded
 * GDT whose selector 0x10 is flat 4 GiB execute/read code and 0x18 flat
 * 4 GiB read/write data, CS = 0x10, DS = ES = SS = 0x18, interrupts off,
 * %esi = the boot_params address, %ebp = %edi = %ebx = 0.  The loader puts
 * every register value in entry32_regs; this file only loads them.
 *
 * With paging off, addresses are physical: the absolute references below
 * are R_386_32 relocations that the Python loader resolves once it knows
 * where the purgatory lands.
 */

#define BOOT_CS 0x10
#define BOOT_DS 0x18
#define STACK_SIZE 4096

/* byte offsets in entry32_regs */
#define REG_EAX (0 * 4)
#define REG_EBX (1 * 4)
#define REG_ECX (2 * 4)
#define REG_EDX (3 * 4)
#define REG_ESI (4 * 4)
#define REG_EDI (5 * 4)
#define REG_ESP (6 * 4)
#define REG_EBP (7 * 4)
#define REG_EIP (8 * 4)
#define REG_COUNT 9

	.text
	.code32

	.globl	purgatory_start
	.type	purgatory_start, @function
purgatory_start:
	cli
	cld
	lgdt	gdt_pointer

	movl	$BOOT_DS, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	%eax, %fs
	movl	%eax, %gs
	movl	$stack_end, %esp

	/* Reload CS from our table too. */
	ljmp	$BOOT_CS, $.Lflat_cs
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
	/* A zero esp means "keep running on the purgatory's stack". */
	movl	entry32_regs + REG_ESP, %eax
	testl	%eax, %eax
	jz	1f
	movl	%eax, %esp
1:
	movl	entry32_regs + REG_EAX, %eax
	movl	entry32_regs + REG_EBX, %ebx
	movl	entry32_regs + REG_ECX, %ecx
	movl	entry32_regs + REG_EDX, %edx
	movl	entry32_regs + REG_ESI, %esi
	movl	entry32_regs + REG_EDI, %edi
	movl	entry32_regs + REG_EBP, %ebp
	/* Every register is spoken for, so jump through memory. */
	jmp	*entry32_regs + REG_EIP
	.size	purgatory_enter_kernel, . - purgatory_enter_kernel

	.data

	/* Register values for the new kernel, set by the loader. */
	.balign	4
	.globl	entry32_regs
	.type	entry32_regs, @object
entry32_regs:
	.fill	REG_COUNT, 4, 0
	.size	entry32_regs, . - entry32_regs

	/* Null, unused, then the two flat segments the boot protocol names.
	 * 0x00cf9a000000ffff: base 0, limit 4 GiB (G), present, DPL 0,
	 *   execute/read code, D=1 (32-bit).
	 * 0x00cf92000000ffff: base 0, limit 4 GiB (G), present, DPL 0,
	 *   read/write data, B=1. */
	.balign	16
gdt:
	.quad	0
	.quad	0
	.quad	0x00cf9a000000ffff
	.quad	0x00cf92000000ffff
.Lgdt_end:

	/* lgdt operand: 16-bit limit, then the 32-bit base (relocated). */
	.balign	4
	.word	0
gdt_pointer:
	.word	.Lgdt_end - gdt - 1
	.long	gdt

	.bss
	.balign	16
stack:
	.skip	STACK_SIZE
	.globl	stack_end
	.type	stack_end, @object
stack_end:
	.size	stack_end, 0

	.section .note.GNU-stack, "", @progbits
