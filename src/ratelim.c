/*
 * ratelim: see ratelim.h.
 */
#include "log.h"
#include "ratelim.h"

void
ratelim_flush(struct ratelim *rl)
{
	if (rl->suppressed > 0)
		log_info("%u more %s (over %u/s)", rl->suppressed,
		    rl->what, rl->per_s);
	rl->suppressed = 0;
}

int
ratelim_allow(struct ratelim *rl, uint64_t now_ms)
{
	uint64_t sec = now_ms / 1000;

	if (sec != rl->sec) {
		ratelim_flush(rl);
		rl->sec = sec;
		rl->count = 0;
	}
	if (rl->count < rl->per_s) {
		rl->count++;
		return 1;
	}
	rl->suppressed++;
	return 0;
}
