/*
 * The three memory helpers the purgatory needs.  gcc may emit calls to
 * memcpy and memset on its own (struct copies, zeroing), so these names
 * must exist even with -fno-builtin.  The string instructions are plain
 * integer instructions: no SIMD state is touched.
 */
#include "purgatory.h"

void *memcpy(void *dst, const void *src, size_t n)
{
	void *ret = dst;

	asm volatile("rep movsb"
		     : "+D"(dst), "+S"(src), "+c"(n)
		     :
		     : "memory");
	return ret;
}

void *memset(void *dst, int c, size_t n)
{
	void *ret = dst;

	asm volatile("rep stosb"
		     : "+D"(dst), "+c"(n)
		     : "a"(c)
		     : "memory");
	return ret;
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
