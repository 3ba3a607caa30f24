/*
 * The SHA-256 check every kexec_py purgatory makes before it enters the new
 * kernel: the segments the loader placed are hashed where they lie now and
 * compared with the digest the loader computed.  See purgatory.h.
 */
#include "purgatory.h"

/* --- filled in by the Python loader (kexec_py/plan/purgatory.py) --- */
LOADER_SET struct sha256_region sha256_regions[SHA256_REGIONS] = { { 0, 0 } };
LOADER_SET u8 sha256_digest[SHA256_DIGEST_SIZE] = { 0 };
LOADER_SET u8 skip_checks = 0;

static void print_hex(const u8 *bytes, unsigned int n)
{
	static const char digits[] = "0123456789abcdef";
	char text[3];
	unsigned int i;

	text[2] = 0;
	for (i = 0; i < n; i++) {
		text[0] = digits[bytes[i] >> 4];
		text[1] = digits[bytes[i] & 15];
		purgatory_print(text);
	}
}

int purgatory_verify(void)
{
	struct sha256_ctx ctx;
	u8 digest[SHA256_DIGEST_SIZE];
	unsigned int i;

	if (skip_checks) {
		purgatory_print("kexec-py purgatory: sha256 check skipped\n");
		return 1;
	}
	sha256_init(&ctx);
	for (i = 0; i < SHA256_REGIONS; i++) {
		const struct sha256_region *r = &sha256_regions[i];

		if (r->len)
			sha256_update(&ctx, (const u8 *)(uptr)r->start, r->len);
	}
	sha256_final(&ctx, digest);

	if (memcmp(digest, sha256_digest, SHA256_DIGEST_SIZE) == 0) {
		purgatory_print("kexec-py purgatory: sha256 ok\n");
		return 1;
	}
	purgatory_print("kexec-py purgatory: sha256 mismatch, halting\n  expected ");
	print_hex(sha256_digest, SHA256_DIGEST_SIZE);
	purgatory_print("\n  computed ");
	print_hex(digest, SHA256_DIGEST_SIZE);
	purgatory_print("\n");
	return 0;
}
