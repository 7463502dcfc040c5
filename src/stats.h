/*
 * stats: the retained <base>/<host>/bridge/stats payload.
 *
 * Totals over every VM and the broker connection, takeover outcomes by
 * reason, configuration warnings, and a per-VM part.  The per-VM part is
 * written as text directly: with 10 000 VMs, a json-c object per counter
 * would allocate ~10 MB every stats_interval_s just to be serialised once.
 */
#ifndef QMP2MQTT_STATS_H
#define QMP2MQTT_STATS_H

#include <stddef.h>
#include <stdint.h>

struct cmd_ctx;
struct mqtt;
struct spool;
struct vm;
struct vm_env;

struct stats_src {
	const struct vm_env	*env;
	const struct cmd_ctx	*cmd;
	struct mqtt		*mqtt;
	struct vm *const	*vms;
	size_t			 nvms;
	uint64_t		 started_ms;	/* monotonic */
	const char		*topic;
	const struct spool	*spool;		/* or NULL */
};

/* Builds and publishes the stats (retained).  Logs on memory exhaustion. */
void	stats_publish(const struct stats_src *);

#endif
