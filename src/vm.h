/*
 * vm: one configured VM: its QMP connection, its COLO state as published,
 * the status polling and reconciliation that keep that state true, and
 * its retained topics (state, availability) and colo_exit events.
 *
 * Every VM shares one vm_env with the others (the loop, the broker, the
 * configuration, the shared QMP tokener and backpressure gate, totals).
 * The bridge owns both; the takeover path (command.c) and the stats
 * (stats.c) read and update VMs through this header.  Loop thread only.
 */
#ifndef QMP2MQTT_VM_H
#define QMP2MQTT_VM_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "colo.h"
#include "peer.h"
#include "qmp.h"
#include "ratelim.h"
#include "topic.h"

struct loop;
struct config;
struct config_vm;
struct mqtt;
struct cmd_run;
struct vm;

#define VM_INSTANCE_LEN	16		/* hex digits of an instance id */

struct vm_env {
	struct loop		*loop;
	const struct config	*cf;
	struct mqtt		*mqtt;
	struct json_tokener	*tok;		/* shared by all VMs */
	struct qmp_gate		*gate;		/* backpressure */
	size_t			 in_buffered;	/* all VMs' partial input */
	char			 instance[VM_INSTANCE_LEN + 1];
	int64_t			 started_us;	/* this process' start */
	uint64_t		 events_out;
	uint64_t		 malformed;
	uint64_t		 clashes;	/* VMs another bridge serves too */
	uint64_t		 state_errors;	/* failed VM state saves */
	size_t			 state_failing;	/* VMs whose last save failed */
	struct ratelim		 exit_log;	/* COLO_EXIT lines */
	struct ratelim		 clash_log;
	struct ratelim		 input_log;	/* QMP garbage lines */
	/* A VM's view changed (mode, liveness, connection): for its peers. */
	void			(*changed)(struct vm *, void *arg);
	void			*arg;
};

struct vm {
	struct vm_env		*env;
	const struct config_vm	*cv;
	struct qmp		*q;
	char			*prefix;	/* "<base>/<host>/<vm>/" */
	uint64_t		 seq;
	char			 qemu[32];
	/* Held enum values (colo_hold(): "" = unknown, never NULL). */
	char			*mode;
	char			*last_mode;
	char			*reason;
	int			 colo_status;	/* -1 unknown, 0 unsupported, 1 ok */
	int64_t			 updated_us;
	uint64_t		 state_hash;	/* of the last state published */
	char			*last_exit;	/* the last colo_exit payload as
						   published (JSON text), or
						   NULL: a tree costs ~1 KiB
						   more per VM */
	struct loop_timer	*poll;		/* status poll, and the refresh
						   after exits (debounced) */
	uint64_t		 poll_due_ms;	/* when poll fires, if armed */
	int			 refresh_due;	/* a debounced refresh waits */
	int			 querying;	/* query-colo-status in flight */
	int			 requery;	/* another one wanted after it */
	int			 dirty;		/* publish even if unchanged */
	int			 exited;	/* COLO_EXIT published this session */
	int			 reconcile;	/* compare at the next status read */
	struct loop_timer	*recon;		/* grace before reconciling */
	uint64_t		 recon_exits;	/* exits when it was armed */
	char			*recon_mode;	/* held, NULL until armed */
	char			*recon_reason;
	uint64_t		 seq_reserved;	/* persisted seq upper bound */
	int			 seq_stale;	/* ceiling not saved: time seqs */
	uint64_t		 stale_try_ms;	/* last save tried meanwhile */
	int			 save_failed;	/* the last state save failed */

	/* The pair; most VMs have none. */
	struct peer_view	*peer;		/* NULL: no peer configured */
	struct vm		*local_peer;	/* when this bridge serves it */
	struct vm		*watchers;	/* VMs whose local peer this is */
	struct vm		*watch_next;

	/* Another bridge publishing this VM's topics. */
	int			 clash;		/* we are the second: refuse */
	uint64_t		 clash_seen_ms;
	uint64_t		 announce_ms;	/* last re-announce (first one) */

	/* Takeover (command.c). */
	struct cmd_run		*run;		/* NULL when idle */
	int			 tk_committed;	/* run passed its last check:
						   the heartbeat is sent */
	int			 tk_unconfirmed; /* a heartbeat was sent and
						   no status read since showed
						   mode none (saved): to the
						   pair rules, it took over */
	uint64_t		 tk_last_ms;	/* last heartbeat sent, 0: never */

	uint64_t		 events_in;
	uint64_t		 exits;
	uint64_t		 malformed;
	int			 gone;		/* removed: state says "gone" */
};

/*
 * Sets up v for cv (loads its persisted state from state_dir, creates its
 * QMP connection, not started).  0, or -1 (logged); vm_cleanup() then
 * frees whatever was set up.
 */
int		 vm_init(struct vm *, struct vm_env *, const struct config_vm *,
		    uint64_t seed);
/*
 * Gives v a pair view of a peer served here (local) or elsewhere, fresh,
 * or none (configured 0: the view is freed).  0, or -1 (out of memory,
 * logged: v keeps no view).
 */
int		 vm_set_peer(struct vm *, int configured, int local);
/* Starts connecting; the first status poll runs after first_poll_ms. */
void		 vm_start(struct vm *, uint64_t first_poll_ms);
void		 vm_cleanup(struct vm *);
/*
 * The same VM (same host, name and QMP address) in a reloaded
 * configuration: cv replaces v->cv (which may be freed afterwards); the
 * topic prefix is rebuilt (the base topic may have changed) and the peer
 * view restarted when the peer changed.  The QMP connection stays.  0, or
 * -1 (out of memory, logged: the old prefix stays).
 */
int		 vm_reconfigure(struct vm *, const struct config_vm *cv);
/*
 * The VM leaves this bridge (removed from the configuration, its socket
 * no longer discovered): its QMP connection is closed, its state saved;
 * availability goes offline and the retained state is either kept,
 * marked "gone": true, or cleared (clear: empty retained payloads).
 * vm_cleanup() must follow.
 */
void		 vm_retire(struct vm *, int clear);

/* The VM's topic for suffix, in buf (TOPIC_MAX bytes). */
const char	*vm_topic(char *buf, const struct vm *, const char *suffix);
/* Republishes availability and state (after a broker connect). */
void		 vm_publish_retained(struct vm *);
/* Publishes the state if its content changed since the last one. */
void		 vm_publish_state(struct vm *);
/* Reads query-colo-status again and publishes the state afterwards. */
void		 vm_refresh(struct vm *);
/*
 * Persists what was published (no-op without a state_dir).  0, or -1
 * (logged, counted in env->state_errors).
 */
int		 vm_save(struct vm *);
/*
 * A colo_exit of v recovered from the spool at start (not yet published):
 * its seq was used, and if the state file does not know it yet (the
 * process died between the spool write and the state save), the exit is
 * rolled forward into the state, so that it is not also reconciled.
 */
void		 vm_recovered_exit(struct vm *, const void *payload,
		    size_t len);
/* 1 for "primary" and "secondary". */
int		 vm_in_colo(const char *mode);
/* The liveness name of the VM's QEMU ("alive", "gone", "unreachable"). */
const char	*vm_liveness(const struct vm *);

/*
 * A state payload for v's own topic arrived from another client (not a
 * retained one): another bridge serves this VM too.  Decides which of the
 * two is second (the later start) and marks v->clash on the second; the
 * first re-announces its state so that the second learns it too.
 */
void		 vm_on_foreign_state(struct vm *, const void *payload,
		    size_t len);

#endif
