/*
 * backoff: jittered exponential reconnect delays (see backoff.h).
 */
#include "backoff.h"

/* Replaces a zero seed: xorshift's state must never be 0. */
#define BACKOFF_SEED0	UINT64_C(0x9e3779b97f4a7c15)

/* xorshift64* (Vigna 2016): advances *s and returns 64 random bits. */
static uint64_t
xorshift64s(uint64_t *s)
{
	uint64_t	x = *s;

	if (x == 0)
		x = BACKOFF_SEED0;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(0x2545f4914f6cdd1d);
}

void
backoff_init(struct backoff *b, uint32_t min_ms, uint32_t max_ms,
    uint64_t seed)
{
	if (min_ms < 1)
		min_ms = 1;
	if (max_ms < min_ms)
		max_ms = min_ms;
	b->min_ms = min_ms;
	b->max_ms = max_ms;
	b->ceil_ms = min_ms;
	b->rng = seed != 0 ? seed : BACKOFF_SEED0;
}

uint32_t
backoff_next(struct backoff *b)
{
	uint64_t	lo, hi, span, r, c;

	/* Keep the result in [min, max] even if the fields were tampered. */
	if (b->min_ms < 1)
		b->min_ms = 1;
	if (b->max_ms < b->min_ms)
		b->max_ms = b->min_ms;
	if (b->ceil_ms < b->min_ms)
		b->ceil_ms = b->min_ms;
	if (b->ceil_ms > b->max_ms)
		b->ceil_ms = b->max_ms;

	hi = b->ceil_ms;
	lo = hi / 2 > b->min_ms ? hi / 2 : b->min_ms;
	span = hi - lo + 1;		/* 1 .. 2^31 + 1: no overflow below */
	/* Lemire's multiply-shift on the high 32 bits: r in [0, span). */
	r = ((xorshift64s(&b->rng) >> 32) * span) >> 32;

	c = (uint64_t)b->ceil_ms * 2;	/* at most 2^33 - 2: no overflow */
	b->ceil_ms = c > b->max_ms ? b->max_ms : (uint32_t)c;
	return (uint32_t)(lo + r);
}

void
backoff_reset(struct backoff *b)
{
	b->ceil_ms = b->min_ms;
}
