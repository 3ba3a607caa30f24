/*
 * kexec_py arm64 purgatory: what runs between the old kernel and the new.
 *
 * entry.S gives us a stack and calls purgatory_main(), which
 *   1. unless skip_checks is set, hashes the memory named by sha256_regions
 *      and stops for good if the result is not sha256_digest;
 *   2. enters the new kernel at kernel_entry with x0 = kernel_dtb.
 * With console_mmio set it writes progress, byte by byte, to that MMIO
 * address (the data register of a PL011 or of an MMIO 8250, which the old
 * kernel left set up).  The MMU is off: every address is physical.
 *
 * SHA-256 and the purgatory.h declarations are the x86_64 purgatory's
 * (arch/x86/purgatory), built again for aarch64.
 */
#include "purgatory.h"

#define SHA256_REGIONS 16

struct sha256_region {
	u64 start;
	u64 len;
};

/* --- filled in by the Python loader (kexec_py/arch/arm64.py) --- */
LOADER_SET struct sha256_region sha256_regions[SHA256_REGIONS] = { { 0, 0 } };
LOADER_SET u8 sha256_digest[SHA256_DIGEST_SIZE] = { 0 };
LOADER_SET u8 skip_checks = 0;
LOADER_SET u64 kernel_entry = 0;
LOADER_SET u64 kernel_dtb = 0;
LOADER_SET u64 console_mmio = 0;

static void print(const char *s)
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

static void print_hex(const u8 *bytes, unsigned int n)
{
	static const char digits[] = "0123456789abcdef";
	char text[3];
	unsigned int i;

	text[2] = 0;
	for (i = 0; i < n; i++) {
		text[0] = digits[bytes[i] >> 4];
		text[1] = digits[bytes[i] & 15];
		print(text);
	}
}

static int digest_matches(void)
{
	struct sha256_ctx ctx;
	u8 digest[SHA256_DIGEST_SIZE];
	unsigned int i;

	sha256_init(&ctx);
	for (i = 0; i < SHA256_REGIONS; i++) {
		const struct sha256_region *r = &sha256_regions[i];

		if (r->len)
			sha256_update(&ctx, (const u8 *)(uptr)r->start, r->len);
	}
	sha256_final(&ctx, digest);

	if (memcmp(digest, sha256_digest, SHA256_DIGEST_SIZE) == 0)
		return 1;
	print("kexec-py purgatory: sha256 mismatch, halting\n  expected ");
	print_hex(sha256_digest, SHA256_DIGEST_SIZE);
	print("\n  computed ");
	print_hex(digest, SHA256_DIGEST_SIZE);
	print("\n");
	return 0;
}

void purgatory_main(void) __attribute__((noreturn));

void purgatory_main(void)
{
	print("kexec-py purgatory: started\n");

	if (skip_checks) {
		print("kexec-py purgatory: sha256 check skipped\n");
	} else {
		if (!digest_matches())
			purgatory_halt();
		print("kexec-py purgatory: sha256 ok\n");
	}

	if (!kernel_entry) {
		print("kexec-py purgatory: no entry point, halting\n");
		purgatory_halt();
	}
	print("kexec-py purgatory: jumping to kernel\n");
	purgatory_enter_kernel();
}
