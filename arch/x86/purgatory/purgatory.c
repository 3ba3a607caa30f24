/*
 * kexec_py x86 purgatory (x86_64 and i386): what runs between the old
 * kernel and the new.
 *
 * entry64.S (entry32.S on i386) gives us a GDT, flat segments and a
 * stack, then calls purgatory_main(), which
 *   1. makes the SHA-256 check (../../common/purgatory/verify.c) and halts
 *      for good if it fails;
 *   2. if backup_dst is set, copies backup_size bytes from backup_src to
 *      backup_dst (kdump's copy of the low 640 KiB, which the capture kernel
 *      is about to reuse);
 *   3. jumps to the new kernel with the registers in entry64_regs
 *      (entry32_regs on i386).
 * With console_serial set it reports each step on the 8250 UART at
 * serial_base, first setting it to serial_baud (8N1) if that is non-zero.
 * All addresses are physical: the old kernel left us running
 * on an identity mapping (x86_64) or with paging off (i386).
 */
#include "purgatory.h"

/* The registers the new kernel is entered with, set by the loader; the
 * instruction pointer comes last.
 *   x86_64: rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip (17 x u64)
 *   i386:   eax ebx ecx edx esi edi esp ebp eip          (9 x u32) */
#ifdef __x86_64__
extern u64 entry64_regs[17];
#define ENTRY_IP (entry64_regs[16])
#else
extern u32 entry32_regs[9];
#define ENTRY_IP (entry32_regs[8])
#endif

/* --- filled in by the Python loader (kexec_py/plan/purgatory.py), with the
 * SHA-256 check's own (../../common/purgatory/verify.c) --- */
LOADER_SET u64 backup_src = 0;
LOADER_SET u64 backup_dst = 0;
LOADER_SET u64 backup_size = 0;
LOADER_SET u8 console_serial = 0;
LOADER_SET u16 serial_base = 0x3f8;
LOADER_SET u32 serial_baud = 0;		/* 0: keep the running kernel's settings */

/* --- 8250 UART output --- */

/* Registers, as offsets from serial_base (16550 datasheet).  With the
 * divisor latch access bit set in LCR, offsets 0 and 1 reach the divisor. */
#define UART_THR 0		/* transmit holding register (write, DLAB 0) */
#define UART_DLL 0		/* divisor latch, low byte (DLAB 1) */
#define UART_IER 1		/* interrupt enable register (DLAB 0) */
#define UART_DLM 1		/* divisor latch, high byte (DLAB 1) */
#define UART_FCR 2		/* FIFO control register (write) */
#define UART_LCR 3		/* line control register */
#define UART_LSR 5		/* line status register */

#define UART_LCR_DLAB 0x80	/* divisor latch access */
#define UART_LCR_8N1 0x03	/* word length 8, 1 stop bit, no parity, DLAB 0 */
#define UART_FCR_ON_CLEAR 0x07	/* FIFOs on, receive and transmit FIFOs emptied */
#define UART_LSR_THRE 0x20	/* transmit holding register empty */
#define UART_LSR_TEMT 0x40	/* transmitter idle: holding and shift registers empty */

/* The PC UART's 1.8432 MHz clock divided by the 16x oversampling: the
 * rate a divisor of 1 gives. */
#define UART_BASE_BAUD 115200

static inline void outb(u16 port, u8 value)
{
	asm volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 value;

	asm volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
	return value;
}

/* Poll LSR until one of the bits in mask is set, but give up after a
 * while: a wrong port or a wedged UART must not keep the new kernel from
 * booting. */
static void serial_wait(u16 base, u8 mask)
{
	unsigned int spins;

	for (spins = 0; spins < 100000; spins++) {
		if (inb(base + UART_LSR) & mask)
			break;
	}
}

/* Program serial_baud, 8 data bits, no parity, 1 stop bit, before the first
 * character.  A rate the 115200 clock cannot be divided down to (0 and
 * anything above 115200 give divisor 0, below 2 one that does not fit in
 * 16 bits) leaves the UART alone; the loader only passes 115200 / n. */
static void serial_setup(void)
{
	u16 base = serial_base;
	u32 divisor;

	if (!console_serial || !serial_baud)
		return;
	divisor = UART_BASE_BAUD / serial_baud;
	if (divisor == 0 || divisor > 0xffff)
		return;

	/* Let whatever the old kernel queued leave at the old rate first. */
	serial_wait(base, UART_LSR_TEMT);
	outb(base + UART_LCR, UART_LCR_DLAB);
	outb(base + UART_DLL, divisor & 0xff);
	outb(base + UART_DLM, divisor >> 8);
	outb(base + UART_LCR, UART_LCR_8N1);
	outb(base + UART_IER, 0);		/* we poll: no interrupts */
	outb(base + UART_FCR, UART_FCR_ON_CLEAR);
}

static void serial_putc(u8 c)
{
	u16 base = serial_base;

	serial_wait(base, UART_LSR_THRE);
	outb(base + UART_THR, c);
}

void purgatory_print(const char *s)
{
	if (!console_serial)
		return;
	for (; *s; s++) {
		if (*s == '\n')
			serial_putc('\r');
		serial_putc(*s);
	}
}

/* --- the three steps --- */

void purgatory_main(void) __attribute__((noreturn));

void purgatory_main(void)
{
	serial_setup();
	purgatory_print("kexec-py purgatory: started\n");

	if (!purgatory_verify())
		purgatory_halt();

	if (backup_dst) {
		memcpy((void *)(uptr)backup_dst, (const void *)(uptr)backup_src,
		       backup_size);
		purgatory_print("kexec-py purgatory: low memory backed up\n");
	}

	if (!ENTRY_IP) {
		purgatory_print("kexec-py purgatory: no entry point, halting\n");
		purgatory_halt();
	}
	purgatory_print("kexec-py purgatory: jumping to kernel\n");
	purgatory_enter_kernel();
}
