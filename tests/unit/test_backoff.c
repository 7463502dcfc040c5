/*
 * Unit tests for src/backoff.c: table-driven.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "backoff.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

static const struct range_case {
	const char	*name;
	uint32_t	 min, max;	/* as passed to backoff_init */
	uint32_t	 emin, emax;	/* after clamping */
} range_cases[] = {
	{ "defaults", 100, 30000, 100, 30000 },
	{ "min = max", 500, 500, 500, 500 },
	{ "1 ms", 1, 1, 1, 1 },
	{ "min 0", 0, 10, 1, 10 },
	{ "both 0", 0, 0, 1, 1 },
	{ "min > max", 1000, 10, 1000, 1000 },
	{ "odd bounds", 3, 7, 3, 7 },
	{ "not a power of two", 100, 30001, 100, 30001 },
	{ "huge max", 1, UINT32_MAX, 1, UINT32_MAX },
	{ "huge both", UINT32_MAX - 1, UINT32_MAX, UINT32_MAX - 1, UINT32_MAX },
	{ "max only", UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX },
	{ "half max", UINT32_MAX / 2 + 1, UINT32_MAX, UINT32_MAX / 2 + 1,
	  UINT32_MAX },
};

static const uint64_t seeds[] = {
	0, 1, 2, 42, 0xdeadbeef, UINT64_C(0x8000000000000000), UINT64_MAX,
};

/*
 * Every delay lies in [max(min, ceil/2), ceil] of its own step, where the
 * ceiling follows min, 2min, 4min, ... capped at max (modelled in 64 bits).
 */
static void
test_range(void **state)
{
	const struct range_case	*c;
	struct backoff		 b;
	uint64_t		 ceil, lo;
	uint32_t		 d;
	size_t			 i, s, n;

	for (i = 0; i < NELEM(range_cases); i++) {
		c = &range_cases[i];
		for (s = 0; s < NELEM(seeds); s++) {
			backoff_init(&b, c->min, c->max, seeds[s]);
			if (b.min_ms != c->emin || b.max_ms != c->emax)
				fail_msg("%s: clamped to [%u, %u], want "
				    "[%u, %u]", c->name, b.min_ms, b.max_ms,
				    c->emin, c->emax);
			ceil = c->emin;
			for (n = 0; n < 2000; n++) {
				d = backoff_next(&b);
				lo = ceil / 2 > c->emin ? ceil / 2 : c->emin;
				if (d < lo || d > ceil || d < c->emin ||
				    d > c->emax)
					fail_msg("%s: seed %zu draw %zu: %u not "
					    "in [%llu, %llu]", c->name, s, n, d,
					    (unsigned long long)lo,
					    (unsigned long long)ceil);
				ceil = ceil * 2 > c->emax ? c->emax : ceil * 2;
				if (b.ceil_ms != ceil)
					fail_msg("%s: ceiling %u, want %llu",
					    c->name, b.ceil_ms,
					    (unsigned long long)ceil);
			}
		}
	}
}

/* The ceiling doubles from min and stops at max. */
static void
test_ceiling(void **state)
{
	static const uint32_t want[] = {
		100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000,
		30000, 30000,
	};
	struct backoff	b;
	size_t		i;

	backoff_init(&b, 100, 30000, 1);
	for (i = 0; i < NELEM(want); i++) {
		assert_int_equal(b.ceil_ms, want[i]);
		(void)backoff_next(&b);
	}
	/* The first delay is always exactly min. */
	backoff_init(&b, 100, 30000, 7);
	assert_int_equal(backoff_next(&b), 100);
}

/* After reset the next delay is min again and the ceiling restarts. */
static void
test_reset(void **state)
{
	struct backoff	b;
	uint64_t	rng;
	size_t		i;

	backoff_init(&b, 250, 60000, 99);
	for (i = 0; i < 20; i++)
		(void)backoff_next(&b);
	assert_int_equal(b.ceil_ms, 60000);
	rng = b.rng;
	backoff_reset(&b);
	assert_int_equal(b.ceil_ms, 250);
	assert_int_equal(b.min_ms, 250);
	assert_int_equal(b.max_ms, 60000);
	assert_true(b.rng == rng);	/* jitter keeps going, not repeated */
	assert_int_equal(backoff_next(&b), 250);
	assert_int_equal(b.ceil_ms, 500);
}

static void
draw(uint64_t seed, uint32_t *out, size_t n)
{
	struct backoff	b;
	size_t		i;

	backoff_init(&b, 1000, UINT32_MAX, seed);
	(void)backoff_next(&b);		/* always min: skip it */
	for (i = 0; i < n; i++)
		out[i] = backoff_next(&b);
}

/* One seed, one sequence. */
static void
test_deterministic(void **state)
{
	uint32_t	a[64], b[64];
	size_t		s;

	for (s = 0; s < NELEM(seeds); s++) {
		draw(seeds[s], a, NELEM(a));
		draw(seeds[s], b, NELEM(b));
		assert_memory_equal(a, b, sizeof(a));
	}
}

/* Different seeds give different sequences; seed 0 is usable. */
static void
test_seeds_differ(void **state)
{
	struct backoff	b;
	uint32_t	seq[NELEM(seeds)][64];
	size_t		i, j, k, same;

	for (i = 0; i < NELEM(seeds); i++)
		draw(seeds[i], seq[i], 64);
	for (i = 0; i < NELEM(seeds); i++)
		for (j = i + 1; j < NELEM(seeds); j++)
			if (memcmp(seq[i], seq[j], sizeof(seq[i])) == 0)
				fail_msg("seeds %zu and %zu give the same "
				    "sequence", i, j);
	/* Seed 0 must not leave the generator stuck. */
	backoff_init(&b, 1, 2, 0);
	assert_true(b.rng != 0);
	for (same = 0, k = 1; k < 64; k++)
		if (seq[0][k] == seq[0][k - 1])
			same++;
	assert_true(same < 4);
}

/*
 * Jitter really spreads: at a fixed ceiling of [500, 1000], many draws
 * hit both halves of the range and are not all equal.
 */
static void
test_spread(void **state)
{
	struct backoff	b;
	uint32_t	d, lo = UINT32_MAX, hi = 0;
	size_t		i, low = 0, high = 0;

	backoff_init(&b, 1000, 1000, 12345);
	b.min_ms = 500;			/* keep the ceiling at 1000 */
	for (i = 0; i < 10000; i++) {
		b.ceil_ms = 1000;
		d = backoff_next(&b);
		assert_true(d >= 500 && d <= 1000);
		if (d < lo)
			lo = d;
		if (d > hi)
			hi = d;
		if (d < 750)
			low++;
		else
			high++;
	}
	/* 10000 draws of 501 values: missing an end has p < 1e-8. */
	assert_int_equal(lo, 500);
	assert_int_equal(hi, 1000);
	assert_true(low > 4000 && high > 4000);
}

/* Huge bounds neither overflow nor wrap. */
static void
test_huge(void **state)
{
	struct backoff	b;
	uint32_t	d;
	size_t		i;

	backoff_init(&b, UINT32_MAX / 2 + 1, UINT32_MAX, 5);
	assert_int_equal(backoff_next(&b), UINT32_MAX / 2 + 1);
	assert_true(b.ceil_ms == UINT32_MAX);
	for (i = 0; i < 1000; i++) {
		d = backoff_next(&b);
		assert_true(d >= UINT32_MAX / 2 + 1);
		assert_true(b.ceil_ms == UINT32_MAX);
	}
	backoff_init(&b, 3000000000U, UINT32_MAX, 6);
	(void)backoff_next(&b);
	assert_true(b.ceil_ms == UINT32_MAX);
	d = backoff_next(&b);
	assert_true(d >= 3000000000U);
}

/* A zeroed struct (never initialised) still yields delays >= 1. */
static void
test_zeroed(void **state)
{
	struct backoff	b;
	size_t		i;

	memset(&b, 0, sizeof(b));
	for (i = 0; i < 10; i++)
		assert_int_equal(backoff_next(&b), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_ceiling),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_seeds_differ),
		cmocka_unit_test(test_spread),
		cmocka_unit_test(test_huge),
		cmocka_unit_test(test_zeroed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
