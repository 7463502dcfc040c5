/*
 * command: one remote takeover, from request to result.
 *
 * A request on <base>/<host>/<vm>/cmd/takeover is checked in a fixed
 * order (retained, enabled, well-formed, signature, response topic, age,
 * replay, connection, one at a time, interval, clash), then handed to
 * failover.c, whose last step before x-colo-lost-heartbeat applies the
 * pair rules (peer.c) to the mode it has just read; the outcome is
 * published on <vm>/result/takeover (and the request's Response Topic).
 *
 * What an outsider can provoke costs bounded work: every answer to a
 * request that does not lead to execution (malformed, forged, stale,
 * replayed, duplicate, refused), authenticated or not, shares one budget
 * of CMD_ANSWERS_PER_S a second and is skipped while the outbound queue is
 * at its high-water mark; no answer is ever spooled; every request is
 * still counted.  Loop thread only.
 */
#ifndef QMP2MQTT_COMMAND_H
#define QMP2MQTT_COMMAND_H

#include <stdint.h>

#include "ratelim.h"
#include "takeover.h"

struct loop;
struct config;
struct mqtt;
struct mqtt_msg;
struct tkstore;
struct vm;

#define CMD_ANSWERS_PER_S	20
#define CMD_CACHE_MAX		4096	/* request ids remembered */
#define CMD_FUTURE_SKEW_S	2	/* future dates without a store */

struct cmd_ctx {
	struct loop		*loop;
	const struct config	*cf;
	struct mqtt		*mqtt;
	struct tk_cache		*cache;
	struct tkstore		*store;		/* NULL without a state_dir */
	int64_t			 started_us;
	int			 flow_full;	/* the outbound queue is full */
	int			 stopping;
	int			 store_failed;	/* ids could not be restored */
	uint64_t		 count[TK_NREASONS];	/* outcomes by reason */
	uint64_t		 accepted;
	uint64_t		 forced;
	uint64_t		 ignored;	/* requests for unknown VMs */
	uint64_t		 unanswered;	/* refusals over the budget */
	uint64_t		 sign_errors;	/* results published unsigned */
	struct ratelim		 answers;	/* refusals answered + logged */
	struct ratelim		 ignored_log;
};

/*
 * Sets up the context (the replay cache; with a state_dir the persistent
 * replay store, whose live ids are loaded).  0, or -1 (logged).
 */
int	cmd_init(struct cmd_ctx *, struct loop *, const struct config *,
	    struct mqtt *, int64_t started_us);
void	cmd_cleanup(struct cmd_ctx *);

/* Handles one request for v (topic already routed to it). */
void	cmd_request(struct cmd_ctx *, struct vm *, const struct mqtt_msg *);
/* A request for a VM this bridge does not serve: counted, logged (capped). */
void	cmd_ignored(struct cmd_ctx *, const char *topic);
/*
 * Shutdown: a takeover still running on v gets an answer (not_connected,
 * class Shutdown) and is cancelled.
 */
void	cmd_abandon(struct cmd_ctx *, struct vm *);
/* Frees v's running takeover without answering (bridge_free). */
void	cmd_free_run(struct vm *);

#endif
