/*
 * SHA-256 (FIPS 180-4), written for size: rolled loops, no tables beyond
 * the 64 round constants, 256 bytes of stack for the message schedule.
 * Whole blocks are compressed straight from the caller's memory; only a
 * partial block is copied.
 */
#include "purgatory.h"

/* First 32 bits of the fractional parts of the cube roots of the first 64
 * primes (FIPS 180-4, section 4.2.2). */
static const u32 round_constants[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
	0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
	0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
	0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
	0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* First 32 bits of the fractional parts of the square roots of the first 8
 * primes (section 5.3.3). */
static const u32 initial_state[8] = {
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static inline u32 rotr(u32 x, unsigned int n)
{
	return (x >> n) | (x << (32 - n));
}

static inline u32 load_be32(const u8 *p)
{
	return ((u32)p[0] << 24) | ((u32)p[1] << 16) | ((u32)p[2] << 8) | p[3];
}

static void compress(u32 state[8], const u8 *block)
{
	u32 w[64];
	u32 a, b, c, d, e, f, g, h;
	unsigned int i;

	/* Message schedule first, in its own loop: it keeps the round loop
	 * free of branches and index arithmetic. */
	for (i = 0; i < 16; i++)
		w[i] = load_be32(block + 4 * i);
	for (; i < 64; i++) {
		u32 x = w[i - 15], y = w[i - 2];

		w[i] = w[i - 16] + (rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3)) +
		       w[i - 7] + (rotr(y, 17) ^ rotr(y, 19) ^ (y >> 10));
	}

	a = state[0];
	b = state[1];
	c = state[2];
	d = state[3];
	e = state[4];
	f = state[5];
	g = state[6];
	h = state[7];
	for (i = 0; i < 64; i++) {
		/* Ch(e,f,g) and Maj(a,b,c) in forms that need fewer
		 * operations than the textbook ones, same truth tables. */
		u32 t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) +
			 (g ^ (e & (f ^ g))) + round_constants[i] + w[i];
		u32 t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) +
			 ((a & b) | (c & (a | b)));

		h = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}

	state[0] += a;
	state[1] += b;
	state[2] += c;
	state[3] += d;
	state[4] += e;
	state[5] += f;
	state[6] += g;
	state[7] += h;
}

void sha256_init(struct sha256_ctx *ctx)
{
	unsigned int i;

	for (i = 0; i < 8; i++)
		ctx->state[i] = initial_state[i];
	ctx->length = 0;
	ctx->used = 0;
}

void sha256_update(struct sha256_ctx *ctx, const u8 *data, u64 len)
{
	ctx->length += len;

	if (ctx->used) {
		u64 room = 64 - ctx->used;
		u64 take = len < room ? len : room;

		memcpy(ctx->block + ctx->used, data, take);
		ctx->used += take;
		data += take;
		len -= take;
		if (ctx->used < 64)
			return;
		compress(ctx->state, ctx->block);
		ctx->used = 0;
	}
	for (; len >= 64; len -= 64, data += 64)
		compress(ctx->state, data);
	if (len) {
		memcpy(ctx->block, data, len);
		ctx->used = len;
	}
}

void sha256_final(struct sha256_ctx *ctx, u8 out[SHA256_DIGEST_SIZE])
{
	u64 bits = ctx->length * 8;
	unsigned int i;

	/* Padding: one 0x80 byte, zeros up to 56 mod 64, then the message
	 * length in bits as a big-endian 64-bit number. */
	ctx->block[ctx->used++] = 0x80;
	if (ctx->used > 56) {
		memset(ctx->block + ctx->used, 0, 64 - ctx->used);
		compress(ctx->state, ctx->block);
		ctx->used = 0;
	}
	memset(ctx->block + ctx->used, 0, 56 - ctx->used);
	for (i = 0; i < 8; i++)
		ctx->block[56 + i] = (u8)(bits >> (56 - 8 * i));
	compress(ctx->state, ctx->block);

	for (i = 0; i < 8; i++) {
		out[4 * i + 0] = (u8)(ctx->state[i] >> 24);
		out[4 * i + 1] = (u8)(ctx->state[i] >> 16);
		out[4 * i + 2] = (u8)(ctx->state[i] >> 8);
		out[4 * i + 3] = (u8)ctx->state[i];
	}
}
