/*
 * The memory helpers the arm64 and ppc64le purgatories need.  gcc may emit
 * calls to memcpy and memset on its own (struct copies, zeroing), so these
 * names must exist.  Byte loops only: arm64 runs with the MMU off, where every
 * access is to Device memory and an unaligned wide access would fault; ppc64le
 * runs once, in real mode.  The builds pass -fno-tree-loop-distribute-patterns
 * so gcc cannot turn these loops back into calls to themselves.
 */
#include "purgatory.h"

void *memcpy(void *dst, const void *src, size_t n)
{
	u8 *d = dst;
	const u8 *s = src;

	while (n--)
		*d++ = *s++;
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	u8 *d = dst;

	while (n--)
		*d++ = (u8)c;
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const u8 *p = a, *q = b;

	for (; n; n--, p++, q++) {
		if (*p != *q)
			return *p < *q ? -1 : 1;
	}
	return 0;
}
