/*
 * backoff: jittered exponential reconnect delays (pure, value type).
 *
 * The ceiling starts at min_ms and doubles after every attempt up to
 * max_ms; each delay is drawn uniformly from [max(min, ceiling/2),
 * ceiling], so a fleet of connections that fail together spreads out
 * instead of reconnecting in lock-step.  A xorshift64* generator seeded by
 * the caller keeps it deterministic under test (seed 0 is replaced by a
 * fixed non-zero constant).  All arithmetic saturates: any max_ms up to
 * UINT32_MAX is safe.
 */
#ifndef QMP2MQTT_BACKOFF_H
#define QMP2MQTT_BACKOFF_H

#include <stdint.h>

struct backoff {
	uint32_t	min_ms;
	uint32_t	max_ms;
	uint32_t	ceil_ms;
	uint64_t	rng;
};

/* min_ms >= 1 and max_ms >= min_ms are enforced by clamping. */
void		backoff_init(struct backoff *, uint32_t min_ms, uint32_t max_ms,
		    uint64_t seed);
/*
 * Returns the next delay in [min_ms, max_ms] and raises the ceiling.  The
 * first delay after init or reset is exactly min_ms.
 */
uint32_t	backoff_next(struct backoff *);
/* After a success: the next delay is drawn from the minimum again. */
void		backoff_reset(struct backoff *);

#endif
