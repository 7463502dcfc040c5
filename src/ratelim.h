/*
 * ratelim: log lines that outside input can trigger, at most N a second.
 *
 * Anything a peer controls (a QMP socket sending garbage, a client
 * publishing on a command topic, a broker refusing publishes) could
 * otherwise fill the disk with log lines.  A ratelim lets the first
 * per_s lines of each second through and counts the rest; the count is
 * logged as one summary line ("N more <what> (over P/s)") when the next
 * second begins, or at ratelim_flush().  Loop thread only; no allocation.
 */
#ifndef QMP2MQTT_RATELIM_H
#define QMP2MQTT_RATELIM_H

#include <stdint.h>

struct ratelim {
	const char	*what;		/* e.g. "COLO_EXIT lines not logged" */
	unsigned	 per_s;
	uint64_t	 sec;
	unsigned	 count;
	unsigned	 suppressed;
};

#define RATELIM_INIT(what, per_s)	{ (what), (per_s), 0, 0, 0 }

/*
 * Returns 1 when one more line may be logged now (now_ms: monotonic), 0
 * when it must be dropped (counted for the summary).
 */
int	ratelim_allow(struct ratelim *, uint64_t now_ms);
/* Logs the summary of what was suppressed so far, if anything. */
void	ratelim_flush(struct ratelim *);

#endif
