/*
 * bridge: see bridge.h.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"
#include "colo.h"
#include "config.h"
#include "failover.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "qmp.h"
#include "spool.h"
#include "takeover.h"
#include "topic.h"
#include "vmstate.h"

#define ENUM_BUF	(COLO_ENUM_MAX + 1)
#define TK_CACHE_MAX	4096		/* request ids remembered */
#define TK_NREASONS	(TK_TIMEOUT + 1)

/* The takeover running on one VM. */
struct running {
	struct failover		*fo;
	char			 id[TK_ID_MAX + 1];
	char			*resp_topic;	/* NULL if none */
	void			*corr;
	size_t			 corr_len;
	int64_t			 accepted_us;
};

struct vm {
	struct bridge		*b;
	const struct config_vm	*cv;
	struct qmp		*q;
	char			*prefix;	/* "<base>/<host>/<vm>/" */
	uint64_t		 seq;
	char			 qemu[32];
	char			 mode[ENUM_BUF];	/* "" = unknown */
	char			 last_mode[ENUM_BUF];
	char			 reason[ENUM_BUF];
	int			 colo_status;	/* -1 unknown, 0 unsupported, 1 ok */
	int64_t			 updated_us;
	json_object		*last_exit;
	struct loop_timer	*poll;
	int			 querying;	/* query-colo-status in flight */
	int			 requery;	/* another one wanted after it */
	int			 dirty;		/* publish even if unchanged */
	int			 exited;	/* COLO_EXIT published this session */
	int			 reconcile;	/* compare at the next status read */
	struct loop_timer	*recon;		/* grace before reconciling */
	uint64_t		 recon_exits;	/* exits when it was armed */
	char			 recon_mode[ENUM_BUF];
	char			 recon_reason[ENUM_BUF];
	uint64_t		 seq_reserved;	/* persisted seq upper bound */
	struct running		 run;		/* run.fo NULL when idle */
	uint64_t		 tk_last_ms;	/* last heartbeat sent, 0: never */
	uint64_t		 events_in;
	uint64_t		 exits;
	uint64_t		 malformed;
};

struct bridge {
	struct loop		*loop;
	const struct config	*cf;
	struct mqtt		*mqtt;
	struct vm		*vms;
	size_t			 nvms;
	int64_t			 started_us;
	uint64_t		 started_ms;
	char			 t_bstate[TOPIC_MAX];
	char			 t_stats[TOPIC_MAX];
	char			*offline_payload;
	struct loop_timer	*stats_timer;
	uint64_t		 events_out;
	uint64_t		 malformed;
	struct spool		*spool;
	struct tk_cache		*tk_cache;
	uint64_t		 tk_count[TK_NREASONS];	/* outcomes by reason */
	uint64_t		 tk_accepted;
	uint64_t		 tk_ignored;		/* unroutable requests */
	uint64_t		 unauth_sec;		/* unauthenticated answers */
	unsigned		 unauth_count;
	unsigned		 unauth_quiet;
	int			 flow_full;		/* mqtt backpressure on */
	int			 stopping;		/* bridge_shutdown() began */
	size_t			 in_buffered;		/* all VMs' partial input */
	struct json_tokener	*tok;			/* shared by all VMs */
	struct qmp_gate		*gate;			/* backpressure */
	uint64_t		 log_sec;		/* COLO_EXIT log rate limit */
	unsigned		 log_count;
	unsigned		 log_suppressed;
};

/*
 * The VM's topic for suffix, in buf (TOPIC_MAX bytes).  Topics are built
 * when published rather than stored: four stored topics cost 2 KiB a VM.
 * The prefix was checked to fit at start, so this cannot truncate.
 */
static const char *
vm_topic(char *buf, const struct vm *v, const char *suffix)
{
	snprintf(buf, TOPIC_MAX, "%s%s", v->prefix, suffix);
	return buf;
}

static void
copy_enum(char *dst, const char *src)
{
	snprintf(dst, ENUM_BUF, "%s", src != NULL ? src : "");
}

static const char *
nz(const char *s)
{
	return s != NULL && *s != '\0' ? s : NULL;
}

/* Publishes a JSON object (not consumed) on topic. */
static void
publish_json(struct bridge *b, const char *topic, json_object *o, int qos,
    int flags)
{
	size_t		 len;
	const char	*s;

	s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (s == NULL) {
		log_warnx("%s: cannot serialise payload", topic);
		return;
	}
	mqtt_publish(b->mqtt, topic, s, len, qos, flags);
}

static void
publish_state(struct vm *v)
{
	struct colo_vm_state	 st;
	json_object		*o;
	char			 t[TOPIC_MAX];

	memset(&st, 0, sizeof(st));
	st.host = v->cv->host;
	st.vm = v->cv->name;
	st.qemu = nz(v->qemu);
	st.mode = nz(v->mode);
	st.last_mode = nz(v->last_mode);
	st.reason = nz(v->reason);
	st.connected = qmp_ready(v->q);
	st.colo_status = v->colo_status;
	st.updated_us = v->updated_us;
	st.last_exit = v->last_exit;
	if ((o = colo_state_json(&st)) == NULL) {
		log_warnx("%s: out of memory building state", v->cv->name);
		return;
	}
	publish_json(v->b, vm_topic(t, v, "state"), o, 1,
	    MQTT_PUB_RETAIN | MQTT_PUB_STATE);
	json_object_put(o);
}

static void
publish_availability(struct vm *v)
{
	const char *s = qmp_ready(v->q) ? "online" : "offline";

	char		 t[TOPIC_MAX];

	mqtt_publish(v->b->mqtt, vm_topic(t, v, "availability"), s, strlen(s), 1,
	    MQTT_PUB_RETAIN | MQTT_PUB_STATE);
}

static void	query_status(struct vm *);
static void	on_colo_exit(struct vm *, json_object *, int reconciled);

/* Persists what was published about v (no-op without a state_dir). */
static void
save_state(struct vm *v)
{
	struct vmstate	st;

	if (v->b->cf->state_dir == NULL)
		return;
	memset(&st, 0, sizeof(st));
	memcpy(st.mode, v->mode, ENUM_BUF);
	memcpy(st.last_mode, v->last_mode, ENUM_BUF);
	memcpy(st.reason, v->reason, ENUM_BUF);
	st.exited = v->exited;
	st.seq_reserved = v->seq_reserved;
	st.last_exit = v->last_exit;
	(void)vmstate_save(v->b->cf->state_dir, v->cv->host, v->cv->name, &st);
}

static int
in_colo(const char *mode)
{
	return strcmp(mode, "primary") == 0 || strcmp(mode, "secondary") == 0;
}

/* Publishes the exit nobody saw, from what query-colo-status remembers. */
static void
publish_reconciled(struct vm *v, const char *mode, const char *reason)
{
	json_object	*ev, *data;

	log_warnx("%s/%s: COLO ended without a COLO_EXIT event reaching the "
	    "bridge (was %s, now none, last_mode %s, reason %s): publishing a "
	    "reconciled colo_exit", v->cv->host, v->cv->name,
	    v->mode[0] ? v->mode : "?", mode, reason[0] ? reason : "?");
	if ((ev = json_object_new_object()) == NULL ||
	    (data = json_object_new_object()) == NULL) {
		json_object_put(ev);
		log_warnx("%s: out of memory reconciling", v->cv->name);
		return;
	}
	json_object_object_add(ev, "event", json_object_new_string("COLO_EXIT"));
	json_object_object_add(data, "mode", json_object_new_string(mode));
	json_object_object_add(data, "reason", reason[0] ?
	    json_object_new_string(reason) : NULL);
	json_object_object_add(ev, "data", data);
	on_colo_exit(v, ev, 1);
	json_object_put(ev);
}

static void
recon_tick(struct loop *l, struct loop_timer *t, void *arg)
{
	struct vm *v = arg;

	/* The real event may just have been late: then nothing to do. */
	if (v->exits == v->recon_exits)
		publish_reconciled(v, v->recon_mode, v->recon_reason);
}

/*
 * No exit may be invisible.  QEMU drops events emitted while no client is
 * negotiated (a bridge restart, a reconnect), and after an error exit
 * the survivor's later takeover emits none.  So whenever the VM was in
 * COLO with no exit published for that session, and now is out of it,
 * COLO ended unseen and a colo_exit with "reconciled": true is published.
 * Right after a (re)connect that is done at once; while connected, the
 * real event may still be on its way behind the status reply, so it is
 * done after RECONCILE_GRACE_MS unless an exit was published meanwhile.
 */
#define RECONCILE_GRACE_MS	500

static void
reconcile(struct vm *v, const struct colo_status *cs, int now)
{
	const char *mode;

	if (!in_colo(v->mode) || v->exited || strcmp(cs->mode, "none") != 0)
		return;
	mode = cs->last_mode != NULL && in_colo(cs->last_mode) ?
	    cs->last_mode : v->mode;
	if (now) {
		publish_reconciled(v, mode, cs->reason ? cs->reason : "");
		return;
	}
	if (v->recon == NULL &&
	    (v->recon = loop_timer_new(v->b->loop, recon_tick, v)) == NULL)
		return;
	copy_enum(v->recon_mode, mode);
	copy_enum(v->recon_reason, cs->reason);
	v->recon_exits = v->exits;
	loop_timer_arm(v->recon, RECONCILE_GRACE_MS);
}

/* Copies an enum into dst; returns 1 if that changed dst. */
static int
set_enum(char *dst, const char *src)
{
	char	old[ENUM_BUF];

	memcpy(old, dst, ENUM_BUF);
	copy_enum(dst, src);
	return strcmp(old, dst) != 0;
}

static void
status_reply(struct qmp *q, json_object *reply, void *arg)
{
	struct vm		*v = arg;
	struct colo_status	 cs;
	json_object		*ret;
	const char		*cls, *desc;
	int			 changed = 0;

	v->querying = 0;
	if (reply == NULL) {
		/* Disconnected or timed out: keep what we had. */
		if (v->dirty && qmp_ready(v->q)) {
			v->dirty = 0;
			publish_state(v);
		}
		return;
	}
	if ((cls = qmp_error_class(reply, &desc)) != NULL) {
		if (strcmp(cls, "CommandNotFound") == 0) {
			if (v->colo_status != 0)
				log_info("%s: query-colo-status not supported "
				    "by this QEMU; state from events only",
				    v->cv->name);
			changed |= v->colo_status != 0;
			v->colo_status = 0;
		} else
			log_warnx("%s: query-colo-status: %s: %s", v->cv->name,
			    cls, desc);
	} else if (json_object_object_get_ex(reply, "return", &ret) &&
	    colo_parse_status(ret, &cs) == 0) {
		reconcile(v, &cs, v->reconcile);
		if (strcmp(cs.mode, "none") == 0 && v->exited) {
			v->exited = 0;	/* this COLO session is over */
			changed = 1;
		}
		changed |= v->colo_status != 1;
		v->colo_status = 1;
		changed |= set_enum(v->mode, cs.mode);
		changed |= set_enum(v->last_mode, cs.last_mode);
		changed |= set_enum(v->reason, cs.reason);
	} else {
		log_warnx("%s: query-colo-status: unexpected reply", v->cv->name);
		v->b->malformed++;
	}
	v->reconcile = 0;
	if (changed || v->dirty) {
		if (changed)
			save_state(v);
		if (changed)
			log_info("%s/%s: COLO mode=%s last_mode=%s reason=%s",
			    v->cv->host, v->cv->name, v->mode[0] ? v->mode : "?",
			    v->last_mode[0] ? v->last_mode : "?",
			    v->reason[0] ? v->reason : "?");
		v->dirty = 0;
		v->updated_us = loop_wall_us();
		publish_state(v);
	}
	if (v->requery) {
		v->requery = 0;
		query_status(v);
	}
}

/*
 * Reads query-colo-status (one at a time per VM; a request made while one
 * is in flight runs after it).  The state is published when the reply
 * changes it or v->dirty is set.
 */
static void
query_status(struct vm *v)
{
	if (v->querying) {
		v->requery = 1;
		return;
	}
	if (v->colo_status == 0) {
		/* Not supported: nothing to read; publish what we know. */
		if (v->dirty) {
			v->dirty = 0;
			v->updated_us = loop_wall_us();
			publish_state(v);
		}
		return;
	}
	if (qmp_command(v->q, "query-colo-status", NULL, status_reply, v) == -1) {
		v->dirty = 0;
		publish_state(v);
		return;
	}
	v->querying = 1;
}

/* Periodic re-read: COLO starting emits no event of its own. */
static void
poll_tick(struct loop *l, struct loop_timer *t, void *arg)
{
	struct vm	*v = arg;

	/* Not while reads wait at the gate: replies could not be read. */
	if (qmp_ready(v->q) && v->colo_status != 0 &&
	    !qmp_gate_closed(v->b->gate))
		query_status(v);
	loop_timer_arm(t, (uint64_t)v->b->cf->status_interval_s * 1000);
}

static void
on_greeting(struct qmp *q, json_object *greeting, void *arg)
{
	struct vm	*v = arg;

	if (colo_qemu_version(greeting, v->qemu, sizeof(v->qemu)) == -1)
		v->qemu[0] = '\0';
}

static void
on_ready(struct qmp *q, void *arg)
{
	struct vm	*v = arg;

	log_info("%s/%s: QMP negotiated (QEMU %s)", v->cv->host, v->cv->name,
	    v->qemu[0] ? v->qemu : "version unknown");
	v->updated_us = loop_wall_us();
	v->colo_status = -1;	/* the QEMU behind the socket may have changed */
	v->querying = v->requery = 0;
	v->dirty = 1;
	v->reconcile = 1;
	publish_availability(v);
	query_status(v);
}

static void
on_down(struct qmp *q, void *arg)
{
	struct vm	*v = arg;

	v->updated_us = loop_wall_us();
	v->querying = v->requery = 0;
	publish_availability(v);
	publish_state(v);
}

/*
 * Every COLO_EXIT is logged, but at most LOG_EXITS_PER_S a second: a burst
 * (a benchmark, a flapping VM) costs one summary line, not one line per
 * event.  Returns 1 when this event may be logged.
 */
#define LOG_EXITS_PER_S	20

static int
log_budget(struct bridge *b)
{
	uint64_t sec = loop_now_ms() / 1000;

	if (sec != b->log_sec) {
		if (b->log_suppressed > 0)
			log_info("%u more COLO_EXIT event(s) published but not "
			    "logged (over %d/s)", b->log_suppressed,
			    LOG_EXITS_PER_S);
		b->log_sec = sec;
		b->log_count = b->log_suppressed = 0;
	}
	if (b->log_count < LOG_EXITS_PER_S) {
		b->log_count++;
		return 1;
	}
	b->log_suppressed++;
	return 0;
}

static void
on_colo_exit(struct vm *v, json_object *ev, int reconciled)
{
	struct bridge	*b = v->b;
	struct colo_ctx	 ctx;
	json_object	*out, *mode, *reason;
	int		 malformed = 0;
	char		 t[TOPIC_MAX];

	memset(&ctx, 0, sizeof(ctx));
	ctx.host = v->cv->host;
	ctx.vm = v->cv->name;
	ctx.bridge = b->cf->bridge_id;
	ctx.qemu = nz(v->qemu);
	ctx.seq = ++v->seq;
	ctx.recv_us = loop_wall_us();
	if ((out = colo_normalize_exit(ev, &ctx, &malformed)) == NULL) {
		log_warnx("%s: out of memory normalising COLO_EXIT", v->cv->name);
		v->seq--;
		return;
	}
	v->exits++;
	if (reconciled)
		json_object_object_add(out, "reconciled",
		    json_object_new_boolean(1));
	/*
	 * Persist first, publish second: a crash in between must not leave
	 * a spooled event whose exit the state file does not know about
	 * (it would be resent and reconciled too), nor a seq that a restart
	 * could hand out again.
	 */
	if (ctx.seq >= v->seq_reserved || !v->exited) {
		if (ctx.seq >= v->seq_reserved)
			v->seq_reserved = ctx.seq + VMSTATE_SEQ_RESERVE;
		v->exited = 1;
		save_state(v);
	}
	if (malformed) {
		v->malformed++;
		b->malformed++;
		log_warnx("%s/%s: malformed COLO_EXIT published with what is "
		    "known (seq %" PRIu64 ")", v->cv->host, v->cv->name, ctx.seq);
	}
	mode = json_object_object_get(out, "mode");
	reason = json_object_object_get(out, "reason");
	if (log_budget(b))
		log_info("%s/%s: COLO_EXIT mode=%s reason=%s seq=%" PRIu64 "%s",
		    v->cv->host, v->cv->name,
		    mode ? json_object_get_string(mode) : "null",
		    reason ? json_object_get_string(reason) : "null", ctx.seq,
		    reconciled ? " (reconciled)" : "");
	publish_json(b, vm_topic(t, v, "event/colo_exit"), out, b->cf->qos, 0);
	b->events_out++;
	json_object_put(v->last_exit);
	v->last_exit = out;
	if (v->colo_status == 0) {
		/* No query-colo-status: the event is all we know. */
		v->mode[0] = '\0';
		copy_enum(v->last_mode, mode ? json_object_get_string(mode) : "");
		copy_enum(v->reason, reason ? json_object_get_string(reason) : "");
	}
	v->dirty = 1;
	query_status(v);	/* the exit changed the COLO state */
}

static void
on_event(struct qmp *q, json_object *ev, void *arg)
{
	struct vm	*v = arg;
	json_object	*name;

	v->events_in++;
	if (!json_object_object_get_ex(ev, "event", &name))
		return;
	if (strcmp(json_object_get_string(name), "COLO_EXIT") == 0)
		on_colo_exit(v, ev, 0);
	else if ((strcmp(json_object_get_string(name), "RESUME") == 0 ||
	    strcmp(json_object_get_string(name), "MIGRATION") == 0) &&
	    (v->mode[0] == '\0' || strcmp(v->mode, "none") == 0) &&
	    v->colo_status != 0 && !v->querying)
		query_status(v);	/* COLO may just have started */
}

static void
publish_bridge_state(struct bridge *b)
{
	json_object	*o = json_object_new_object();

	if (o == NULL)
		return;
	json_object_object_add(o, "schema", json_object_new_int(1));
	json_object_object_add(o, "state", json_object_new_string("online"));
	json_object_object_add(o, "host", json_object_new_string(b->cf->host));
	json_object_object_add(o, "bridge",
	    json_object_new_string(b->cf->bridge_id));
	json_object_object_add(o, "version",
	    json_object_new_string(QMP2MQTT_VERSION));
	json_object_object_add(o, "started_us",
	    json_object_new_int64(b->started_us));
	json_object_object_add(o, "vms", json_object_new_int64((int64_t)b->nvms));
	publish_json(b, b->t_bstate, o, 1, MQTT_PUB_RETAIN | MQTT_PUB_STATE);
	json_object_put(o);
}

/* The broker is slower than QEMU: stop (or resume) reading QMP input. */
static void
on_mqtt_flow(struct mqtt *m, int full, void *arg)
{
	struct bridge *b = arg;

	b->flow_full = full;
	qmp_gate_set(b->gate, full);
}

static void
on_mqtt_connected(struct mqtt *m, void *arg)
{
	struct bridge	*b = arg;

	publish_bridge_state(b);
	for (size_t i = 0; i < b->nvms; i++) {
		publish_availability(&b->vms[i]);
		publish_state(&b->vms[i]);
	}
	bridge_publish_stats(b);
}

/* --- remote takeover ----------------------------------------------- */

/*
 * Publishes a takeover result on the VM's result topic and, for requests
 * that passed authentication, on the MQTT 5 response topic too.  Returns
 * the serialised result (owned by the caller) for the duplicate cache.
 */
static char *
publish_result(struct vm *v, const char *id, enum tk_reason r,
    const char *cls, const char *desc, const struct failover_result *fr,
    int authenticated, const char *resp_topic, const void *corr,
    size_t corr_len)
{
	struct bridge	*b = v->b;
	json_object	*o = json_object_new_object(), *e, *c;
	const char	*status, *s;
	char		*out = NULL;
	size_t		 len;
	char		 t[TOPIC_MAX];

	if (o == NULL)
		return NULL;
	if (r == TK_OK)
		status = "ok";
	else if (r == TK_QEMU_ERROR || r == TK_TIMEOUT ||
	    (r == TK_NOT_CONNECTED && fr != NULL && fr->sent))
		status = "error";
	else
		status = "rejected";
	json_object_object_add(o, "schema", json_object_new_int(1));
	json_object_object_add(o, "id", id != NULL && *id ?
	    json_object_new_string(id) : NULL);
	json_object_object_add(o, "host", json_object_new_string(v->cv->host));
	json_object_object_add(o, "vm", json_object_new_string(v->cv->name));
	json_object_object_add(o, "status", json_object_new_string(status));
	json_object_object_add(o, "reason",
	    json_object_new_string(tk_reason_name(r)));
	if (cls != NULL || r != TK_OK) {
		e = json_object_new_object();
		json_object_object_add(e, "class", json_object_new_string(
		    cls != NULL ? cls : tk_reason_name(r)));
		json_object_object_add(e, "desc",
		    json_object_new_string(desc != NULL ? desc : ""));
		json_object_object_add(o, "error", e);
	} else
		json_object_object_add(o, "error", NULL);
	if (fr != NULL && fr->have_colo) {
		c = json_object_new_object();
		json_object_object_add(c, "mode",
		    json_object_new_string(fr->mode));
		json_object_object_add(c, "last_mode", fr->last_mode[0] ?
		    json_object_new_string(fr->last_mode) : NULL);
		json_object_object_add(c, "reason", fr->reason_str[0] ?
		    json_object_new_string(fr->reason_str) : NULL);
		json_object_object_add(o, "colo", c);
	} else
		json_object_object_add(o, "colo", NULL);
	json_object_object_add(o, "sent", json_object_new_boolean(
	    fr != NULL && fr->sent));
	json_object_object_add(o, "authenticated",
	    json_object_new_boolean(authenticated));
	json_object_object_add(o, "time_us",
	    json_object_new_int64(loop_wall_us()));
	s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (s != NULL) {
		mqtt_publish(b->mqtt, vm_topic(t, v, "result/takeover"), s,
		    len, 1, MQTT_PUB_VOLATILE);
		if (resp_topic != NULL && *resp_topic)
			mqtt_publish_corr(b->mqtt, resp_topic, s, len, 1,
			    MQTT_PUB_VOLATILE, corr, corr_len);
		out = strdup(s);
	}
	json_object_put(o);
	b->tk_count[r]++;
	return out;
}

/* Refuses a request: logs it, counts it and answers on the result topic. */
/*
 * Requests that fail before authentication cost whoever may publish on
 * the command topic nothing: their answers are capped at
 * UNAUTH_RESULTS_PER_S a second and skipped while the outbound queue is
 * at its high-water mark, so a flood cannot crowd out events.  Returns 1
 * when this refusal may be published.
 */
#define UNAUTH_RESULTS_PER_S	20

static int
unauth_budget(struct bridge *b)
{
	uint64_t sec = loop_now_ms() / 1000;

	if (sec != b->unauth_sec) {
		if (b->unauth_quiet > 0)
			log_warnx("takeover: %u unauthenticated request(s) "
			    "refused without an answer (over %d/s or queue "
			    "full)", b->unauth_quiet, UNAUTH_RESULTS_PER_S);
		b->unauth_sec = sec;
		b->unauth_count = b->unauth_quiet = 0;
	}
	if (b->unauth_count < UNAUTH_RESULTS_PER_S && !b->flow_full) {
		b->unauth_count++;
		return 1;
	}
	b->unauth_quiet++;
	return 0;
}

static void
refuse(struct vm *v, const char *id, enum tk_reason r, const char *desc,
    const struct failover_result *fr, const struct mqtt_msg *authed,
    int recorded)
{
	char *out;

	if (authed == NULL && !unauth_budget(v->b)) {
		v->b->tk_count[r]++;	/* counted, not answered nor logged */
		return;
	}
	log_warnx("takeover %s/%s id=%s: refused: %s%s%s", v->cv->host,
	    v->cv->name, id != NULL && *id ? id : "-", tk_reason_name(r),
	    desc ? ": " : "", desc ? desc : "");
	out = publish_result(v, id, r, NULL, desc, fr, authed != NULL,
	    authed ? authed->response_topic : NULL,
	    authed ? authed->correlation : NULL,
	    authed ? authed->correlation_len : 0);
	if (recorded && id != NULL && *id && out != NULL)
		tk_cache_set_result(v->b->tk_cache, v->cv->host, v->cv->name,
		    id, out);
	free(out);
}

static void
failover_done(struct failover *fo, const struct failover_result *fr,
    void *arg)
{
	struct vm	*v = arg;
	struct running	*run = &v->run;
	char		*out;

	if (fr->reason == TK_OK)
		log_info("takeover %s/%s id=%s: done: COLO mode now %s "
		    "(last_mode %s)", v->cv->host, v->cv->name, run->id,
		    fr->have_colo ? fr->mode : "unknown",
		    fr->have_colo && fr->last_mode[0] ? fr->last_mode : "?");
	else
		log_warnx("takeover %s/%s id=%s: %s: %s%s%s", v->cv->host,
		    v->cv->name, run->id, tk_reason_name(fr->reason),
		    fr->err_class ? fr->err_class : "",
		    fr->err_desc ? ": " : "", fr->err_desc ? fr->err_desc : "");
	out = publish_result(v, run->id, fr->reason, fr->err_class,
	    fr->err_desc, fr, 1, run->resp_topic, run->corr, run->corr_len);
	if (out != NULL)
		tk_cache_set_result(v->b->tk_cache, v->cv->host, v->cv->name,
		    run->id, out);
	free(out);
	if (fr->sent)	/* refusals before the command do not count */
		v->tk_last_ms = loop_now_ms();
	free(run->corr);
	free(run->resp_topic);
	memset(run, 0, sizeof(*run));
	failover_free(fo);	/* fr points into fo: not used after this */
	/* The failover changed the COLO state: publish it. */
	v->dirty = 1;
	query_status(v);
}

/*
 * A valid topic to publish on: not empty, bounded, not a $SYS-like topic,
 * and every non-empty level a valid level (no wildcards, valid UTF-8, no
 * control characters); an invalid one would stall the publish queue.
 */
static int
publishable(const char *t)
{
	char	 lv[TOPIC_MAX];
	size_t	 n = t != NULL ? strlen(t) : 0;

	if (n == 0 || n >= TOPIC_MAX || t[0] == '$')
		return 0;
	while (*t != '\0') {
		size_t l = strcspn(t, "/");
		memcpy(lv, t, l);
		lv[l] = '\0';
		if (l > 0 && topic_level_check(lv) != NULL)
			return 0;
		t += l;
		if (*t == '/')
			t++;
	}
	return 1;
}

static struct vm *
find_vm(struct bridge *b, const struct topic_parts *tp)
{
	for (size_t i = 0; i < b->nvms; i++) {
		const struct config_vm *cv = b->vms[i].cv;
		if (strlen(cv->host) == tp->host_len &&
		    memcmp(cv->host, tp->host, tp->host_len) == 0 &&
		    strlen(cv->name) == tp->vm_len &&
		    memcmp(cv->name, tp->vm, tp->vm_len) == 0)
			return &b->vms[i];
	}
	return NULL;
}

/*
 * Handles one request on <base>/<host>/<vm>/cmd/takeover.  The order of
 * the checks matters: nothing about a VM leaks before the route matched,
 * and no id is remembered before its signature was verified.
 */
static void
on_takeover(struct bridge *b, struct vm *v, const struct mqtt_msg *msg)
{
	const struct config_takeover *tc = &b->cf->takeover;
	struct tk_request	 req;
	struct running		*run = &v->run;
	const char		*why = NULL, *prev = NULL;
	unsigned char		 digest[32];
	int64_t			 now = loop_wall_us();
	uint64_t		 nowms = loop_now_ms();
	enum tk_reason		 r;
	int			 hmac = tc->auth == CONFIG_AUTH_HMAC;
	char		 t[TOPIC_MAX];

	memset(&req, 0, sizeof(req));
	/* Parse first so that refusals can name the id (not trusted). */
	r = tk_parse(msg->payload, msg->len, hmac, &req, &why);
	if (msg->retained) {
		refuse(v, req.id, TK_RETAINED, "retained requests are never "
		    "executed", NULL, NULL, 0);
		return;
	}
	if (!config_vm_takeover(b->cf, v->cv)) {
		refuse(v, req.id, TK_DISABLED, "takeover is disabled for this "
		    "VM", NULL, NULL, 0);
		return;
	}
	if (r != TK_OK) {
		refuse(v, req.id, r, why, NULL, NULL, 0);
		return;
	}
	if (hmac && tk_verify(tc->key, tc->key_len, v->cv->host, v->cv->name,
	    &req) != TK_OK) {
		refuse(v, req.id, TK_BAD_SIGNATURE, "signature does not match",
		    NULL, NULL, 0);
		return;
	}
	if (msg->response_topic != NULL && !publishable(msg->response_topic)) {
		refuse(v, req.id, TK_BAD_REQUEST, "invalid response topic",
		    NULL, NULL, 0);
		return;
	}
	/* Authenticated from here on: answers may go to the response topic. */
	if (req.issued_us < b->started_us) {
		/* The replay cache died with the previous bridge process. */
		refuse(v, req.id, TK_STALE, "issued before this bridge started",
		    NULL, msg, 0);
		return;
	}
	if (tk_check_time(req.issued_us, now, tc->window_s) != TK_OK) {
		refuse(v, req.id, TK_STALE, "issued_us outside the accepted "
		    "window", NULL, msg, 0);
		return;
	}
	tk_digest(msg->payload, msg->len, digest);
	switch (tk_cache_check(b->tk_cache, v->cv->host, v->cv->name, req.id,
	    digest, now, ((int64_t)tc->window_s * 2 + 1) * 1000000, &prev)) {
	case TK_SEEN_NEW:
		break;
	case TK_SEEN_DUPLICATE:
		if (prev == NULL) {
			log_info("takeover %s/%s id=%s: duplicate of a request "
			    "still running; its result will answer both",
			    v->cv->host, v->cv->name, req.id);
			return;
		}
		log_info("takeover %s/%s id=%s: duplicate; answered with the "
		    "first result, not executed again", v->cv->host,
		    v->cv->name, req.id);
		mqtt_publish(b->mqtt, vm_topic(t, v, "result/takeover"), prev,
		    strlen(prev), 1, 0);
		if (msg->response_topic != NULL)
			mqtt_publish_corr(b->mqtt, msg->response_topic, prev,
			    strlen(prev), 1, 0, msg->correlation,
			    msg->correlation_len);
		return;
	case TK_SEEN_REPLAY:
		refuse(v, req.id, TK_REPLAY, "id already used", NULL, NULL, 0);
		return;
	case TK_SEEN_FULL:
		refuse(v, req.id, TK_RATE_LIMITED, "too many recent requests",
		    NULL, msg, 0);
		return;
	}
	if (!qmp_ready(v->q)) {
		refuse(v, req.id, TK_NOT_CONNECTED, "the VM's QMP connection "
		    "is down", NULL, msg, 1);
		return;
	}
	if (run->fo != NULL) {
		refuse(v, req.id, TK_RATE_LIMITED, "another takeover of this "
		    "VM is running", NULL, msg, 1);
		return;
	}
	if (v->tk_last_ms != 0 &&
	    nowms - v->tk_last_ms < (uint64_t)tc->min_interval_s * 1000) {
		refuse(v, req.id, TK_RATE_LIMITED, "minimum interval between "
		    "takeovers not reached", NULL, msg, 1);
		return;
	}
	snprintf(run->id, sizeof(run->id), "%s", req.id);
	run->accepted_us = now;
	if (msg->response_topic != NULL)
		run->resp_topic = strdup(msg->response_topic);
	if (msg->correlation != NULL && msg->correlation_len > 0 &&
	    (run->corr = malloc(msg->correlation_len)) != NULL) {
		memcpy(run->corr, msg->correlation, msg->correlation_len);
		run->corr_len = msg->correlation_len;
	}
	run->fo = failover_start(b->loop, v->q, req.expect_mode,
	    tc->timeout_s, failover_done, v);
	if (run->fo == NULL) {
		free(run->corr);
		free(run->resp_topic);
		memset(run, 0, sizeof(*run));
		refuse(v, req.id, TK_NOT_CONNECTED, "cannot send to QMP", NULL,
		    msg, 1);
		return;
	}
	b->tk_accepted++;
	log_info("takeover %s/%s id=%s: accepted (expect_mode %s)",
	    v->cv->host, v->cv->name, req.id,
	    req.expect_mode[0] ? req.expect_mode : "any");
}

static void
on_mqtt_message(struct mqtt *m, const struct mqtt_msg *msg, void *arg)
{
	struct bridge		*b = arg;
	struct topic_parts	 tp;
	struct vm		*v;

	if (b->stopping) {
		log_warnx("takeover: request on %.200s ignored: shutting down",
		    msg->topic);
		return;
	}
	if (topic_parse(msg->topic, b->cf->base_topic, &tp) == -1 ||
	    strcmp(tp.suffix, "cmd/takeover") != 0 ||
	    (v = find_vm(b, &tp)) == NULL) {
		b->tk_ignored++;
		log_warnx("takeover: request on %.200s ignored: no such VM on "
		    "this bridge", msg->topic);
		return;
	}
	on_takeover(b, v, msg);
}

/* Subscribes to the command topic of every host this bridge serves. */
static int
subscribe_commands(struct bridge *b)
{
	char	t[TOPIC_MAX];

	for (size_t i = 0; i < b->nvms; i++) {
		size_t j;
		for (j = 0; j < i; j++)
			if (strcmp(b->vms[j].cv->host, b->vms[i].cv->host) == 0)
				break;
		if (j < i)
			continue;	/* host already subscribed */
		if (topic_build(t, sizeof(t), b->cf->base_topic,
		    b->vms[i].cv->host, "+", "cmd/takeover") == -1 ||
		    mqtt_subscribe(b->mqtt, t, 1, 1) == -1)
			return -1;
	}
	return 0;
}

static void
add_u64(json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

/* A growing string for the per-VM part of the stats (see below). */
struct sbuf {
	char	*p;
	size_t	 len, cap;
	int	 oom;
};

static void
sb_add(struct sbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
sb_add(struct sbuf *sb, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	if (sb->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(sb->p + sb->len, sb->cap - sb->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			sb->oom = 1;
			return;
		}
		if ((size_t)n < sb->cap - sb->len) {
			sb->len += (size_t)n;
			return;
		}
		size_t	 ncap = sb->cap * 2 + (size_t)n;
		char	*np = realloc(sb->p, ncap);
		if (np == NULL) {
			sb->oom = 1;
			return;
		}
		sb->p = np;
		sb->cap = ncap;
	}
}

/* Appends s as a JSON string (names are valid UTF-8 without controls). */
static void
sb_str(struct sbuf *sb, const char *s)
{
	sb_add(sb, "\"");
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			sb_add(sb, "\\%c", *s);
		else
			sb_add(sb, "%c", *s);
	}
	sb_add(sb, "\"");
}

/*
 * The stats payload.  The per-VM part is written as text directly: with
 * 10 000 VMs, a json-c object per counter would allocate ~10 MB every
 * stats_interval_s just to be serialised once.
 */
void
bridge_publish_stats(struct bridge *b)
{
	const struct mqtt_stats	*ms = mqtt_stats(b->mqtt);
	json_object		*o, *tot, *cmd, *by;
	uint64_t		 ev = 0, inv = 0, ovs = 0, unx = 0, rec = 0;
	uint64_t		 tmo = 0, ready = 0, refused = 0;
	struct sbuf		 sb = { NULL, 0, 0, 0 };
	const char		*head;
	size_t			 hlen;

	if ((sb.p = malloc(sb.cap = 4096)) == NULL)
		return;
	sb_add(&sb, ",\"vms\":{");
	for (size_t i = 0; i < b->nvms; i++) {
		struct vm		*v = &b->vms[i];
		const struct qmp_stats	*qs = qmp_stats(v->q);

		ev += v->events_in;
		inv += qs->invalid;
		ovs += qs->oversized;
		unx += qs->unexpected;
		rec += qs->reconnects;
		tmo += qs->timeouts;
		ready += qmp_ready(v->q) ? 1 : 0;
		if (i > 0)
			sb_add(&sb, ",");
		sb_str(&sb, v->cv->name);
		sb_add(&sb, ":{\"events_in\":%" PRIu64 ",\"colo_exits\":%" PRIu64
		    ",\"malformed\":%" PRIu64 ",\"invalid\":%" PRIu64
		    ",\"oversized\":%" PRIu64 ",\"unexpected\":%" PRIu64
		    ",\"reconnects\":%" PRIu64 ",\"timeouts\":%" PRIu64
		    ",\"ready\":%s}", v->events_in, v->exits, v->malformed,
		    qs->invalid, qs->oversized, qs->unexpected, qs->reconnects,
		    qs->timeouts, qmp_ready(v->q) ? "true" : "false");
	}
	sb_add(&sb, "}}");
	if (sb.oom || (o = json_object_new_object()) == NULL) {
		log_warnx("stats: out of memory");
		free(sb.p);
		return;
	}
	tot = json_object_new_object();
	add_u64(tot, "events_in", ev);
	add_u64(tot, "events_out", b->events_out);
	add_u64(tot, "malformed", b->malformed);
	add_u64(tot, "invalid", inv);
	add_u64(tot, "oversized", ovs);
	add_u64(tot, "unexpected", unx);
	add_u64(tot, "reconnects", rec);
	add_u64(tot, "timeouts", tmo);
	add_u64(tot, "dropped", ms->dropped);
	add_u64(tot, "buffered", ms->buffered);
	add_u64(tot, "inflight", ms->inflight);
	add_u64(tot, "published", ms->published);
	add_u64(tot, "resent", ms->resent);
	add_u64(tot, "mqtt_connects", ms->connects);
	add_u64(tot, "vms_ready", ready);
	add_u64(tot, "input_buffered", b->in_buffered);
	add_u64(tot, "mqtt_in_dropped", ms->received_dropped);
	cmd = json_object_new_object();
	by = json_object_new_object();
	for (int r = 1; r < TK_NREASONS; r++) {
		add_u64(by, tk_reason_name((enum tk_reason)r), b->tk_count[r]);
		refused += b->tk_count[r];
	}
	add_u64(cmd, "accepted", b->tk_accepted);
	add_u64(cmd, "ok", b->tk_count[TK_OK]);
	add_u64(cmd, "refused", refused);
	add_u64(cmd, "ignored", b->tk_ignored);
	json_object_object_add(cmd, "by_reason", by);
	json_object_object_add(o, "schema", json_object_new_int(1));
	json_object_object_add(o, "host", json_object_new_string(b->cf->host));
	json_object_object_add(o, "bridge",
	    json_object_new_string(b->cf->bridge_id));
	add_u64(o, "uptime_s", (loop_now_ms() - b->started_ms) / 1000);
	json_object_object_add(o, "totals", tot);
	json_object_object_add(o, "commands", cmd);
	log_debug("stats: events_in=%" PRIu64 " events_out=%" PRIu64
	    " invalid=%" PRIu64 " oversized=%" PRIu64 " dropped=%" PRIu64
	    " buffered=%zu", ev, b->events_out, inv, ovs, ms->dropped,
	    ms->buffered);
	/* Splice: the object's text without its closing brace, then vms. */
	head = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &hlen);
	if (head != NULL && hlen > 1) {
		char *all = malloc(hlen - 1 + sb.len + 1);
		if (all != NULL) {
			memcpy(all, head, hlen - 1);
			memcpy(all + hlen - 1, sb.p, sb.len);
			mqtt_publish(b->mqtt, b->t_stats, all, hlen - 1 + sb.len, 1,
			    MQTT_PUB_RETAIN | MQTT_PUB_STATE);
			free(all);
		}
	}
	json_object_put(o);
	free(sb.p);
}

static void
stats_tick(struct loop *l, struct loop_timer *t, void *arg)
{
	struct bridge *b = arg;

	bridge_publish_stats(b);
	loop_timer_arm(t, (uint64_t)b->cf->stats_interval_s * 1000);
}

static char *
bridge_offline_payload(const struct config *cf)
{
	json_object	*o = json_object_new_object();
	char		*s;

	json_object_object_add(o, "schema", json_object_new_int(1));
	json_object_object_add(o, "state", json_object_new_string("offline"));
	json_object_object_add(o, "host", json_object_new_string(cf->host));
	json_object_object_add(o, "bridge", json_object_new_string(cf->bridge_id));
	s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return s;
}

struct bridge *
bridge_new(struct loop *loop, const struct config *cf)
{
	struct bridge		*b;
	struct mqtt_callbacks	 mcb = { on_mqtt_connected, NULL,
	    on_mqtt_message, NULL, on_mqtt_flow };
	struct qmp_callbacks	 qcb = { on_greeting, on_ready, on_event,
	    on_down };
	uint64_t		 seed = (uint64_t)loop_wall_us() ^
	    ((uint64_t)getpid() << 32);
	char		 t[TOPIC_MAX];

	if ((b = calloc(1, sizeof(*b))) == NULL ||
	    (b->vms = calloc(cf->nvms, sizeof(*b->vms))) == NULL) {
		log_warn("bridge_new");
		free(b);
		return NULL;
	}
	b->loop = loop;
	b->cf = cf;
	if ((b->tok = json_tokener_new_ex(QMP_MAX_DEPTH)) == NULL ||
	    (b->gate = qmp_gate_new()) == NULL) {
		log_warnx("bridge: out of memory");
		if (b->tok != NULL)
			json_tokener_free(b->tok);
		free(b->vms);
		free(b);
		return NULL;
	}
	b->started_us = loop_wall_us();
	b->started_ms = loop_now_ms();
	if (topic_build(b->t_bstate, sizeof(b->t_bstate), cf->base_topic,
	    cf->host, "bridge", "state") == -1 ||
	    topic_build(b->t_stats, sizeof(b->t_stats), cf->base_topic,
	    cf->host, "bridge", "stats") == -1 ||
	    (b->offline_payload = bridge_offline_payload(cf)) == NULL) {
		log_warnx("bridge topics do not fit");
		bridge_free(b);
		return NULL;
	}
	if ((b->mqtt = mqtt_new(loop, cf, b->t_bstate, b->offline_payload,
	    &mcb, b)) == NULL) {
		bridge_free(b);
		return NULL;
	}
	if (cf->state_dir != NULL) {
		char err[512];
		if ((b->spool = spool_open(cf->state_dir, err,
		    sizeof(err))) == NULL) {
			log_warnx("state_dir: %s", err);
			bridge_free(b);
			return NULL;
		}
		mqtt_set_spool(b->mqtt, b->spool);
	}
	for (size_t i = 0; i < cf->nvms; i++) {
		const struct config_vm	*cv = &cf->vms[i];
		struct vm		*v = &b->vms[i];
		struct qmp_opts		 o;

		v->b = b;
		v->cv = cv;
		v->colo_status = -1;
		b->nvms++;	/* from here on, bridge_free() cleans it up */
		if (cf->state_dir != NULL) {
			struct vmstate st;
			int r = vmstate_load(cf->state_dir, cv->host,
			    cv->name, &st);
			if (r == -1) {
				/* Unknown past: jump far above any count. */
				v->seq = v->seq_reserved =
				    (uint64_t)loop_wall_us() / 1000;
				log_warnx("%s/%s: state lost; seq continues "
				    "from %" PRIu64, cv->host, cv->name, v->seq);
			}
			if (r == 0) {
				memcpy(v->mode, st.mode, ENUM_BUF);
				memcpy(v->last_mode, st.last_mode, ENUM_BUF);
				memcpy(v->reason, st.reason, ENUM_BUF);
				v->exited = st.exited;
				v->seq = v->seq_reserved = st.seq_reserved;
				v->last_exit = st.last_exit;	/* taken over */
			}
		}
		/* The longest suffix must fit, so vm_topic() never cuts. */
		if (topic_build(t, sizeof(t), cf->base_topic, cv->host,
		    cv->name, "event/colo_exit") == -1 ||
		    topic_build(t, sizeof(t), cf->base_topic, cv->host,
		    cv->name, "") == -1 || (v->prefix = strdup(t)) == NULL) {
			log_warnx("%s: topics too long", cv->name);
			bridge_free(b);
			return NULL;
		}
		memset(&o, 0, sizeof(o));
		o.name = cv->name;
		o.unix_socket = cv->addr == CONFIG_ADDR_UNIX;
		o.path = cv->path;
		o.host = cv->tcp_host;
		o.port = cv->tcp_port;
		o.max_msg = cf->max_msg_bytes;
		o.backoff_min_ms = cf->backoff_min_ms;
		o.backoff_max_ms = cf->backoff_max_ms;
		o.greeting_timeout_ms = cf->greeting_timeout_ms;
		o.command_timeout_ms = cf->command_timeout_ms;
		o.seed = seed + i * 0x9e3779b97f4a7c15ULL;
		o.total_buffered = &b->in_buffered;
		o.tok = b->tok;
		o.gate = b->gate;
		o.total_max = cf->max_input_total;
		if (cf->status_interval_s > 0 &&
		    (v->poll = loop_timer_new(loop, poll_tick, v)) == NULL) {
			bridge_free(b);
			return NULL;
		}
		if ((v->q = qmp_new(loop, &o, &qcb, v)) == NULL) {
			bridge_free(b);
			return NULL;
		}
	}
	if ((b->tk_cache = tk_cache_new(TK_CACHE_MAX)) == NULL ||
	    subscribe_commands(b) == -1) {
		log_warnx("bridge: out of memory");
		bridge_free(b);
		return NULL;
	}
	if (cf->stats_interval_s > 0 &&
	    (b->stats_timer = loop_timer_new(loop, stats_tick, b)) == NULL) {
		bridge_free(b);
		return NULL;
	}
	return b;
}

int
bridge_start(struct bridge *b)
{
	if (mqtt_start(b->mqtt) == -1)
		return -1;
	for (size_t i = 0; i < b->nvms; i++) {
		qmp_start(b->vms[i].q);
		if (b->vms[i].poll != NULL)	/* spread over the interval */
			loop_timer_arm(b->vms[i].poll,
			    (uint64_t)b->cf->status_interval_s * 1000 *
			    (i + 1) / b->nvms);
	}
	if (b->stats_timer != NULL)
		loop_timer_arm(b->stats_timer,
		    (uint64_t)b->cf->stats_interval_s * 1000);
	log_info("bridge %s started: host %s, %zu VM(s), broker %s",
	    b->cf->bridge_id, b->cf->host, b->nvms, b->cf->uris[0]);
	return 0;
}

void
bridge_shutdown(struct bridge *b, unsigned timeout_ms)
{
	char		 t[TOPIC_MAX];

	b->stopping = 1;	/* no new takeover from here on */
	loop_timer_disarm(b->stats_timer);
	/* A takeover still running gets an answer, not silence. */
	for (size_t i = 0; i < b->nvms; i++) {
		struct vm		*v = &b->vms[i];
		struct failover_result	 fr;
		char			*out;

		if (v->run.fo == NULL)
			continue;
		memset(&fr, 0, sizeof(fr));
		fr.sent = 1;	/* it may have been: do not claim otherwise */
		log_warnx("takeover %s/%s id=%s: abandoned: the bridge is "
		    "shutting down", v->cv->host, v->cv->name, v->run.id);
		out = publish_result(v, v->run.id, TK_NOT_CONNECTED, "Shutdown",
		    "the bridge shut down before the outcome was known; read "
		    "the VM's state", &fr, 1, v->run.resp_topic, v->run.corr,
		    v->run.corr_len);
		free(out);
		failover_free(v->run.fo);
		free(v->run.corr);
		free(v->run.resp_topic);
		memset(&v->run, 0, sizeof(v->run));
	}
	if (mqtt_connected(b->mqtt)) {
		bridge_publish_stats(b);
		for (size_t i = 0; i < b->nvms; i++)
			mqtt_publish(b->mqtt, vm_topic(t, &b->vms[i],
			    "availability"), "offline", 7, 1,
			    MQTT_PUB_RETAIN);
	}
	mqtt_shutdown(b->mqtt, b->t_bstate, b->offline_payload, timeout_ms);
	for (size_t i = 0; i < b->nvms; i++)
		save_state(&b->vms[i]);
}

void
bridge_free(struct bridge *b)
{
	if (b == NULL)
		return;
	for (size_t i = 0; i < b->nvms; i++) {
		failover_free(b->vms[i].run.fo);
		free(b->vms[i].run.corr);
		free(b->vms[i].run.resp_topic);
		free(b->vms[i].prefix);
		qmp_free(b->vms[i].q);
		loop_timer_free(b->vms[i].poll);
		loop_timer_free(b->vms[i].recon);
		json_object_put(b->vms[i].last_exit);
	}
	mqtt_free(b->mqtt);
	spool_close(b->spool);
	tk_cache_free(b->tk_cache);
	if (b->tok != NULL)
		json_tokener_free(b->tok);
	qmp_gate_free(b->gate);
	loop_timer_free(b->stats_timer);
	free(b->offline_payload);
	free(b->vms);
	free(b);
}
