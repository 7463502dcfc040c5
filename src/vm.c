/*
 * vm: see vm.h.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/printbuf.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "vm.h"
#include "vmstate.h"

/* Exits of one VM within this window share one status read and state. */
#define REFRESH_DELAY_MS	250

static void	query_status(struct vm *);
static void	on_colo_exit(struct vm *, json_object *, int reconciled);
static void	publish_state(struct vm *, int force);

/*
 * Topics are built when published rather than stored: four stored topics
 * cost 2 KiB a VM.  The prefix was checked to fit at start, so this
 * cannot truncate.
 */
const char *
vm_topic(char *buf, const struct vm *v, const char *suffix)
{
	snprintf(buf, TOPIC_MAX, "%s%s", v->prefix, suffix);
	return buf;
}

int
vm_in_colo(const char *mode)
{
	return strcmp(mode, "primary") == 0 || strcmp(mode, "secondary") == 0;
}

const char *
vm_liveness(const struct vm *v)
{
	return qmp_liveness_name(v->q != NULL ? qmp_liveness(v->q) :
	    QMP_UNREACHABLE);
}

/*
 * Holds an enum value in *held (see colo_hold); returns 1 if that changed
 * it.  Out of memory (a value QEMU does not document) leaves it unknown.
 */
static int
set_enum(const struct vm *v, char **held, const char *src)
{
	int	r;

	if ((r = colo_hold(held, src)) == -1)
		log_warnx("%s: out of memory keeping \"%.64s\"", v->cv->name,
		    src);
	return r != 0;
}

static const char *
nz(const char *s)
{
	return s != NULL && *s != '\0' ? s : NULL;
}

/* FNV-1a: enough to tell whether a payload changed. */
static uint64_t
hash64(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/*
 * The last_exit texts live in slots carved from chunks of TEXT_SLOTS
 * slots (a free list per slot size, loop thread only), not among the
 * heap's short-lived blocks: 10 000 texts of ~200 bytes scattered between
 * a burst's queued messages would pin every page of it (glibc cannot give
 * back a page holding one live block), and a slot has no per-block
 * overhead.  Slot sizes go by TEXT_STEP bytes up to TEXT_SLOT_MAX (the
 * texts of one bridge have about the same length: little is wasted);
 * longer texts use malloc.  The byte before the text says which (slot
 * size / TEXT_STEP, 0: malloc); chunks are kept for reuse.
 */
#define TEXT_STEP	16
#define TEXT_SLOT_MAX	512
#define TEXT_CLASSES	(TEXT_SLOT_MAX / TEXT_STEP + 1)	/* [0] unused */
#define TEXT_SLOTS	64

struct text_chunk {
	struct text_chunk	*next;
	char			 slots[];
};

static struct text_chunk *text_chunks;			/* reachable */
static char		*text_free[TEXT_CLASSES];	/* free slots */

static char *
text_dup(const char *s, size_t len)
{
	char	*p;
	size_t	 k = (len + 2 + TEXT_STEP - 1) / TEXT_STEP;

	if (k < TEXT_CLASSES) {
		size_t slot = k * TEXT_STEP;

		if (text_free[k] == NULL) {
			struct text_chunk *c = malloc(sizeof(*c) +
			    TEXT_SLOTS * slot);
			if (c == NULL)
				return NULL;
			c->next = text_chunks;
			text_chunks = c;
			for (size_t i = 0; i < TEXT_SLOTS; i++) {
				memcpy(c->slots + i * slot, &text_free[k],
				    sizeof(char *));
				text_free[k] = c->slots + i * slot;
			}
		}
		p = text_free[k];
		memcpy(&text_free[k], p, sizeof(char *));
		p[0] = (char)k;
	} else {
		if ((p = malloc(len + 2)) == NULL)
			return NULL;
		p[0] = 0;
	}
	memcpy(p + 1, s, len);
	p[len + 1] = '\0';
	return p + 1;
}

static void
text_release(char *t)
{
	char	*p;
	int	 k;

	if (t == NULL)
		return;
	p = t - 1;
	if (p[0] == 0) {
		free(p);
		return;
	}
	k = p[0];
	memcpy(p, &text_free[k], sizeof(char *));
	text_free[k] = p;
}

/*
 * v->last_exit is kept as the JSON text it was published with (compact:
 * one allocation instead of a json-c tree per VM).  Where a tree is
 * expected (the state payload, the state file), raw_json() gives a node
 * whose serialiser writes that text verbatim: the same bytes as the tree
 * it came from, serialised with the same flags.
 */
static int
raw_serialize(json_object *o, struct printbuf *pb, int level, int flags)
{
	const char *s = json_object_get_userdata(o);

	return printbuf_memappend(pb, s, (int)strlen(s));
}

/* A node printing text as is, or NULL (null) when text is NULL. */
static json_object *
raw_json(char *text)
{
	json_object *o;

	if (text == NULL || (o = json_object_new_object()) == NULL)
		return NULL;
	json_object_set_serializer(o, raw_serialize, text, NULL);
	return o;
}

/* The text of a tree, as the payloads are written; NULL when o is. */
static char *
json_text(json_object *o)
{
	const char *s;

	size_t len;

	if (o == NULL || (s = json_object_to_json_string_length(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
	    &len)) == NULL)
		return NULL;
	return text_dup(s, len);
}

/*
 * Publishes the retained state when its content (all but updated_us)
 * changed since the last publish, or always with force (a broker
 * reconnect, a re-announcement).  updated_us is the time of the last
 * change.  Then tells the VMs that follow this one as their local peer.
 */
static void
publish_state(struct vm *v, int force)
{
	struct colo_vm_state	 st;
	json_object		*o, *peer;
	const char		*s;
	size_t			 len;
	uint64_t		 h;
	char			 t[TOPIC_MAX];

	memset(&st, 0, sizeof(st));
	st.host = v->cv->host;
	st.vm = v->cv->name;
	st.qemu = nz(v->qemu);
	st.mode = nz(v->mode);
	st.last_mode = nz(v->last_mode);
	st.reason = nz(v->reason);
	st.connected = v->q != NULL && qmp_ready(v->q);
	st.colo_status = v->colo_status;
	st.updated_us = 0;
	st.last_exit = raw_json(v->last_exit);
	st.liveness = vm_liveness(v);
	st.bridge = v->env->cf->bridge_id;
	st.instance = v->env->instance;
	st.started_us = v->env->started_us;
	peer = v->peer != NULL ? peer_json(v->peer, v->cv->peer_host,
	    v->cv->peer_vm) : NULL;
	st.peer = peer;
	st.hb_unconfirmed = v->tk_unconfirmed;
	o = colo_state_json(&st);
	json_object_put(peer);
	json_object_put(st.last_exit);
	if (o != NULL && v->gone)
		json_object_object_add(o, "gone", json_object_new_boolean(1));
	if (o == NULL || (s = json_object_to_json_string_length(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
	    &len)) == NULL) {
		log_warnx("%s: out of memory building state", v->cv->name);
		json_object_put(o);
		return;
	}
	h = hash64(s, len);
	if (h != v->state_hash) {
		v->state_hash = h;
		v->updated_us = loop_wall_us();
		force = 1;
	}
	if (force) {
		json_object_object_add(o, "updated_us",
		    json_object_new_int64(v->updated_us));
		if ((s = json_object_to_json_string_length(o,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
		    &len)) != NULL)
			/*
			 * A state message is dropped by a reconnect (the
			 * connected callback publishes the current one), but
			 * a retired VM's last ("gone") has no one to publish
			 * it again: it is queued as a plain message.
			 */
			mqtt_publish(v->env->mqtt, vm_topic(t, v, "state"), s,
			    len, 1, MQTT_PUB_RETAIN |
			    (v->gone ? 0 : MQTT_PUB_STATE));
	}
	json_object_put(o);
	for (struct vm *w = v->watchers; w != NULL; w = w->watch_next)
		if (w->peer != NULL && peer_set_local(w->peer, v->mode,
		    v->last_mode, vm_liveness(v), st.connected,
		    v->tk_committed || v->tk_unconfirmed))
			publish_state(w, 0);
}

void
vm_publish_state(struct vm *v)
{
	publish_state(v, 0);
}

static void
publish_availability(struct vm *v)
{
	const char	*s = qmp_ready(v->q) ? "online" : "offline";
	char		 t[TOPIC_MAX];

	mqtt_publish(v->env->mqtt, vm_topic(t, v, "availability"), s,
	    strlen(s), 1, MQTT_PUB_RETAIN | MQTT_PUB_STATE);
}

void
vm_publish_retained(struct vm *v)
{
	publish_availability(v);
	publish_state(v, 1);
}

static int
save(struct vm *v, int sync)
{
	struct vm_env	*env = v->env;
	struct vmstate	 st;
	int		 r;

	if (env->cf->state_dir == NULL)
		return 0;
	memset(&st, 0, sizeof(st));
	snprintf(st.mode, sizeof(st.mode), "%s", v->mode);
	snprintf(st.last_mode, sizeof(st.last_mode), "%s", v->last_mode);
	snprintf(st.reason, sizeof(st.reason), "%s", v->reason);
	st.exited = v->exited;
	st.hb_unconfirmed = v->tk_unconfirmed;
	st.seq_reserved = v->seq_reserved;
	st.last_exit = raw_json(v->last_exit);
	r = vmstate_save(env->cf->state_dir, v->cv->host, v->cv->name, &st,
	    sync);
	json_object_put(st.last_exit);
	if (r == -1) {
		env->state_errors++;
		if (!v->save_failed)
			env->state_failing++;
		v->save_failed = 1;
	} else {
		if (v->save_failed)
			env->state_failing--;
		v->save_failed = 0;
		v->seq_stale = 0;	/* the new ceiling is above them all */
	}
	return r;
}

int
vm_save(struct vm *v)
{
	return save(v, 0);
}

/*
 * Test-only crash points: QMP2MQTT_TEST_CRASH_AFTER=state|spool (read
 * once, at the first vm_init) makes the process _exit(137), like a
 * kill -9, just before the spool write of a COLO_EXIT, after the save
 * of a raised seq ceiling if one was due ("state"), or right after its
 * spool write ("spool").  The
 * e2e tests use it to hit these points deterministically.
 */
enum { CRASH_NONE, CRASH_STATE, CRASH_SPOOL };
static int	crash_after = -1;

static void
crash_point(int where)
{
	if (crash_after == where) {
		log_warnx("QMP2MQTT_TEST_CRASH_AFTER=%s: exiting (test hook)",
		    where == CRASH_STATE ? "state" : "spool");
		_exit(137);
	}
}

/*
 * The next seq of v.  A seq is handed out only below a ceiling that was
 * saved durably before (seq_reserved, raised VMSTATE_SEQ_RESERVE at a
 * time), so that a restart, which continues from the saved ceiling, never
 * hands one out twice.  When the ceiling cannot be saved (a full disk),
 * the state is marked stale and seqs become time-based, max(last + 1,
 * wall clock in µs), until a save works again: a restart that finds the
 * mark continues above its own wall clock, so above each of them (unless
 * the clock went back, or a VM had over a million events a second).
 */
static uint64_t
next_seq(struct vm *v)
{
	const struct config	*cf = v->env->cf;
	uint64_t		 s = v->seq + 1, now;

	if (v->seq_stale && s < (now = (uint64_t)loop_wall_us()))
		s = now;
	/* While stale, time-based seqs are safe: a save once a second. */
	if (s >= v->seq_reserved && (!v->seq_stale ||
	    loop_now_ms() - v->stale_try_ms >= 1000)) {
		v->stale_try_ms = loop_now_ms();
		v->seq_reserved = s + VMSTATE_SEQ_RESERVE;
		if (save(v, 1) == -1 && !v->seq_stale) {
			v->seq_stale = 1;
			(void)vmstate_mark_stale(cf->state_dir, v->cv->host,
			    v->cv->name);
			log_warnx("%s/%s: seq ceiling not saved: seq is "
			    "time-based until a save works", v->cv->host,
			    v->cv->name);
			if (s < (now = (uint64_t)loop_wall_us()))
				s = now;
			v->seq_reserved = s + VMSTATE_SEQ_RESERVE;
		}
	}
	/*
	 * While stale, the ceiling in memory follows the seqs handed out
	 * between two tries, so that whatever save works first (this one or
	 * the health tick's retry) writes a ceiling above all of them.
	 */
	if (v->seq_stale && v->seq_reserved < s + VMSTATE_SEQ_RESERVE)
		v->seq_reserved = s + VMSTATE_SEQ_RESERVE;
	return v->seq = s;
}

void
vm_recovered_exit(struct vm *v, const void *payload, size_t len)
{
	json_tokener	*tok;
	json_object	*o, *sq, *old;
	uint64_t	 seq, oseq = 0;

	if ((tok = json_tokener_new()) == NULL)
		return;
	o = json_tokener_parse_ex(tok, payload, (int)len);
	json_tokener_free(tok);
	if (o == NULL || !json_object_object_get_ex(o, "seq", &sq) ||
	    !json_object_is_type(sq, json_type_int)) {
		json_object_put(o);
		return;
	}
	seq = json_object_get_uint64(sq);
	if (seq > v->seq)
		v->seq = seq;
	if (v->last_exit != NULL) {
		json_object *le = json_tokener_parse(v->last_exit);
		if (le != NULL && json_object_object_get_ex(le, "seq", &old))
			oseq = json_object_get_uint64(old);
		json_object_put(le);
	}
	if (seq <= oseq) {
		json_object_put(o);	/* the state file knows it */
		return;
	}
	log_info("%s/%s: colo_exit seq %" PRIu64 " recovered from the spool "
	    "is newer than the saved state: taken as this session's exit",
	    v->cv->host, v->cv->name, seq);
	v->exited = 1;
	text_release(v->last_exit);
	v->last_exit = json_text(o);
	json_object_put(o);
	(void)vm_save(v);
}

/* --- reconciliation ------------------------------------------------ */

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

	if (!vm_in_colo(v->mode) || v->exited || strcmp(cs->mode, "none") != 0)
		return;
	mode = cs->last_mode != NULL && vm_in_colo(cs->last_mode) ?
	    cs->last_mode : v->mode;
	if (now) {
		publish_reconciled(v, mode, cs->reason ? cs->reason : "");
		return;
	}
	if (v->recon == NULL &&
	    (v->recon = loop_timer_new(v->env->loop, recon_tick, v)) == NULL)
		return;
	(void)set_enum(v, &v->recon_mode, mode);
	(void)set_enum(v, &v->recon_reason, cs->reason);
	v->recon_exits = v->exits;
	loop_timer_arm(v->recon, RECONCILE_GRACE_MS);
}

/* --- status -------------------------------------------------------- */

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
			publish_state(v, 0);
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
		if (strcmp(cs.mode, "none") == 0 && v->tk_unconfirmed) {
			v->tk_unconfirmed = 0;	/* mode none says it all */
			changed = 1;
		}
		changed |= v->colo_status != 1;
		v->colo_status = 1;
		changed |= set_enum(v, &v->mode, cs.mode);
		changed |= set_enum(v, &v->last_mode, cs.last_mode);
		changed |= set_enum(v, &v->reason, cs.reason);
	} else {
		log_warnx("%s: query-colo-status: unexpected reply", v->cv->name);
		v->env->malformed++;
	}
	v->reconcile = 0;
	if (changed) {
		vm_save(v);
		log_info("%s/%s: COLO mode=%s last_mode=%s reason=%s",
		    v->cv->host, v->cv->name, v->mode[0] ? v->mode : "?",
		    v->last_mode[0] ? v->last_mode : "?",
		    v->reason[0] ? v->reason : "?");
	}
	if (changed || v->dirty) {
		v->dirty = 0;
		publish_state(v, 0);
	}
	if (v->requery) {
		v->requery = 0;
		query_status(v);
	}
}

/*
 * Reads query-colo-status (one at a time per VM; a request made while one
 * is in flight runs after it).  The state is published when its content
 * changed.
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
			publish_state(v, 0);
		}
		return;
	}
	if (qmp_command(v->q, "query-colo-status", NULL, status_reply, v) == -1) {
		v->dirty = 0;
		publish_state(v, 0);
		return;
	}
	v->querying = 1;
}

void
vm_refresh(struct vm *v)
{
	v->dirty = 1;
	query_status(v);
}

static void
poll_arm(struct vm *v, uint64_t ms)
{
	loop_timer_arm(v->poll, ms);
	v->poll_due_ms = loop_now_ms() + ms;
}

/*
 * After a COLO_EXIT: the state is read again (query-colo-status) and
 * published REFRESH_DELAY_MS later, once for all the exits of that VM in
 * between (a burst of exits costs one query and one state publish, not
 * one each).  The exit itself is published at once; the state that
 * follows the last exit always is.
 */
static void
refresh_later(struct vm *v)
{
	v->dirty = 1;
	if (v->refresh_due)
		return;
	v->refresh_due = 1;
	if (!loop_timer_armed(v->poll) ||
	    v->poll_due_ms > loop_now_ms() + REFRESH_DELAY_MS)
		poll_arm(v, REFRESH_DELAY_MS);
}

/*
 * The periodic re-read (COLO starting emits no event of its own), and the
 * debounced refresh after exits.
 */
static void
poll_tick(struct loop *l, struct loop_timer *t, void *arg)
{
	struct vm	*v = arg;
	unsigned	 iv = v->env->cf->status_interval_s;

	if (v->refresh_due && (!qmp_ready(v->q) || v->colo_status == 0)) {
		/* Nothing to read: publish what is known (as vm_refresh). */
		v->refresh_due = 0;
		if (v->dirty) {
			v->dirty = 0;
			publish_state(v, 0);
		}
	} else if (qmp_ready(v->q) && v->colo_status != 0 &&
	    !qmp_gate_closed(v->env->gate)) {
		/* Not while reads wait at the gate: replies could not be
		 * read. */
		v->refresh_due = 0;
		query_status(v);
	}
	if (v->refresh_due)
		poll_arm(v, REFRESH_DELAY_MS);	/* the gate is closed */
	else if (iv > 0)
		poll_arm(v, (uint64_t)iv * 1000);
}

/* --- QMP callbacks ------------------------------------------------- */

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

	v->querying = v->requery = 0;
	publish_availability(v);
	publish_state(v, 0);
}

/* Alive, gone or unreachable: the pair rules depend on it. */
static void
on_liveness(struct qmp *q, void *arg)
{
	struct vm	*v = arg;

	if (qmp_liveness(q) == QMP_GONE)
		log_info("%s/%s: QEMU is gone (its QMP socket refuses "
		    "connections)", v->cv->host, v->cv->name);
	publish_state(v, 0);
}

static void
on_colo_exit(struct vm *v, json_object *ev, int reconciled)
{
	struct vm_env	*env = v->env;
	struct colo_ctx	 ctx;
	json_object	*out, *mode, *reason;
	int		 malformed = 0;
	char		 t[TOPIC_MAX];

	/*
	 * Crash safety: the order of the writes is chosen so that a crash
	 * (kill -9, or the test hook) at any point leaves the exit either
	 * spooled or reconcilable, and no seq reusable:
	 *  1. next_seq() saves a raised seq ceiling (state file, durably)
	 *     before the seq is used; the state still says "not exited".
	 *     A crash after it: nothing spooled, and the state says in COLO
	 *     and not exited, so the restarted bridge reconciles the exit
	 *     (with a seq above the saved ceiling).
	 *  2. The event is spooled (mqtt_publish: one write of a spool
	 *     record).  A crash after it, before 3: the restarted bridge
	 *     resends it from the spool with its seq, and rolls it forward
	 *     into the state first (vm_recovered_exit), so it is not also
	 *     reconciled, and continues above its seq.
	 *  3. The state is saved with "exited" and the new last_exit.
	 * If a state save fails (a full disk), the seq ceiling is protected
	 * by the stale mark (next_seq); an exit whose "exited" could not be
	 * saved may be reconciled again by a restart after its spool record
	 * is gone (a duplicate, marked reconciled, rather than a loss).
	 */
	memset(&ctx, 0, sizeof(ctx));
	ctx.host = v->cv->host;
	ctx.vm = v->cv->name;
	ctx.bridge = env->cf->bridge_id;
	ctx.qemu = nz(v->qemu);
	ctx.seq = next_seq(v);
	ctx.recv_us = loop_wall_us();
	if ((out = colo_normalize_exit(ev, &ctx, &malformed)) == NULL) {
		log_warnx("%s: out of memory normalising COLO_EXIT", v->cv->name);
		return;		/* a gap in seq, never a reuse */
	}
	v->exits++;
	if (reconciled)
		json_object_object_add(out, "reconciled",
		    json_object_new_boolean(1));
	if (malformed) {
		v->malformed++;
		env->malformed++;
		log_warnx("%s/%s: malformed COLO_EXIT published with what is "
		    "known (seq %" PRIu64 ")", v->cv->host, v->cv->name, ctx.seq);
	}
	mode = json_object_object_get(out, "mode");
	reason = json_object_object_get(out, "reason");
	if (ratelim_allow(&env->exit_log, loop_now_ms()))
		log_info("%s/%s: COLO_EXIT mode=%s reason=%s seq=%" PRIu64 "%s",
		    v->cv->host, v->cv->name,
		    mode ? json_object_get_string(mode) : "null",
		    reason ? json_object_get_string(reason) : "null", ctx.seq,
		    reconciled ? " (reconciled)" : "");
	crash_point(CRASH_STATE);
	{
		size_t		 len;
		const char	*s = json_object_to_json_string_length(out,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
		    &len);
		char		*copy;
		if (s != NULL)
			mqtt_publish(env->mqtt, vm_topic(t, v,
			    "event/colo_exit"), s, len, env->cf->qos, 0);
		if (s != NULL && (copy = text_dup(s, len)) != NULL) {
			text_release(v->last_exit);
			v->last_exit = copy;
		}
	}
	crash_point(CRASH_SPOOL);
	env->events_out++;
	if (!v->exited) {
		v->exited = 1;
		(void)vm_save(v);
	}
	if (v->colo_status == 0) {
		/* No query-colo-status: the event is all we know. */
		(void)set_enum(v, &v->mode, "");
		(void)set_enum(v, &v->last_mode,
		    mode ? json_object_get_string(mode) : "");
		(void)set_enum(v, &v->reason,
		    reason ? json_object_get_string(reason) : "");
	}
	json_object_put(out);
	refresh_later(v);	/* the exit changed the COLO state */
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

/* --- two bridges, one VM ------------------------------------------- */

#define ANNOUNCE_MIN_MS	5000	/* re-announcements per VM, at most */

void
vm_on_foreign_state(struct vm *v, const void *payload, size_t len)
{
	struct vm_env	*env = v->env;
	json_tokener	*tok;
	json_object	*o = NULL, *inst, *start, *br;
	const char	*other, *obridge;
	int64_t		 ostart;
	uint64_t	 now = loop_now_ms();
	int		 second;

	if (len == 0 || len > 65536 || (tok = json_tokener_new()) == NULL)
		return;
	o = json_tokener_parse_ex(tok, payload, (int)len);
	json_tokener_free(tok);
	if (o == NULL || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "instance", &inst) ||
	    !json_object_is_type(inst, json_type_string) ||
	    !json_object_object_get_ex(o, "started_us", &start) ||
	    !json_object_is_type(start, json_type_int)) {
		json_object_put(o);	/* not a bridge's state: no claim */
		return;
	}
	other = json_object_get_string(inst);
	if (strcmp(other, env->instance) == 0) {
		json_object_put(o);	/* our own, echoed by the broker */
		return;
	}
	ostart = json_object_get_int64(start);
	obridge = json_object_object_get_ex(o, "bridge", &br) &&
	    json_object_is_type(br, json_type_string) ?
	    json_object_get_string(br) : "?";
	second = ostart < env->started_us ||
	    (ostart == env->started_us && strcmp(other, env->instance) < 0);
	v->clash_seen_ms = now;
	if (second) {
		if (!v->clash) {
			v->clash = 1;
			env->clashes++;
			if (ratelim_allow(&env->clash_log, now))
				log_warnx("%s/%s: another bridge (%s, instance "
				    "%s) already serves this VM's topics: "
				    "refusing takeovers for it; fix the "
				    "configuration (host/name) of one of the "
				    "two", v->cv->host, v->cv->name, obridge,
				    other);
		}
	} else if (v->announce_ms == 0 || now - v->announce_ms >=
	    ANNOUNCE_MIN_MS) {
		v->announce_ms = now;
		if (ratelim_allow(&env->clash_log, now))
			log_warnx("%s/%s: another bridge (%s, instance %s, "
			    "started later) publishes this VM's topics; it "
			    "will refuse takeovers for it", v->cv->host,
			    v->cv->name, obridge, other);
		publish_state(v, 1);	/* so that it learns it is second */
	}
	json_object_put(o);
}

/* --- life cycle ---------------------------------------------------- */

int
vm_init(struct vm *v, struct vm_env *env, const struct config_vm *cv,
    uint64_t seed)
{
	const struct config	*cf = env->cf;
	struct qmp_callbacks	 qcb = { on_greeting, on_ready, on_event,
	    on_down, on_liveness };
	struct qmp_opts		 o;
	char			 t[TOPIC_MAX];

	v->env = env;
	v->cv = cv;
	v->colo_status = -1;
	v->mode = v->last_mode = v->reason = NULL;
	if (colo_hold(&v->mode, "") == -1 ||
	    colo_hold(&v->last_mode, "") == -1 ||
	    colo_hold(&v->reason, "") == -1 ||
	    vm_set_peer(v, cv->peer_host != NULL, 0) == -1)
		return -1;
	if (crash_after == -1) {
		const char *c = getenv("QMP2MQTT_TEST_CRASH_AFTER");
		crash_after = c == NULL ? CRASH_NONE :
		    strcmp(c, "state") == 0 ? CRASH_STATE :
		    strcmp(c, "spool") == 0 ? CRASH_SPOOL : CRASH_NONE;
	}
	if (cf->state_dir != NULL) {
		struct vmstate st;
		int r = vmstate_load(cf->state_dir, cv->host, cv->name, &st);
		if (r == 0 && (colo_hold(&v->mode, st.mode) == -1 ||
		    colo_hold(&v->last_mode, st.last_mode) == -1 ||
		    colo_hold(&v->reason, st.reason) == -1)) {
			vmstate_clear(&st);
			log_warnx("%s: out of memory loading its state",
			    cv->name);
			return -1;
		}
		if (r == 0) {
			v->exited = st.exited;
			v->tk_unconfirmed = st.hb_unconfirmed;
			v->seq = v->seq_reserved = st.seq_reserved;
			v->last_exit = json_text(st.last_exit);
			vmstate_clear(&st);
		}
		if (r == -1 || st.stale) {
			/*
			 * Unknown past, or seqs used above the saved ceiling
			 * (time-based, see next_seq): continue above the
			 * wall clock, hence above all of them.
			 */
			uint64_t now = (uint64_t)loop_wall_us();
			if (v->seq < now)
				v->seq = v->seq_reserved = now;
			log_warnx("%s/%s: state %s; seq continues from %"
			    PRIu64, cv->host, cv->name, r == -1 ? "lost" :
			    "marked stale (a save had failed)", v->seq);
		}
	}
	/* The longest suffix must fit, so vm_topic() never cuts. */
	if (topic_build(t, sizeof(t), cf->base_topic, cv->host, cv->name,
	    "event/colo_exit") == -1 ||
	    topic_build(t, sizeof(t), cf->base_topic, cv->host, cv->name,
	    "") == -1 || (v->prefix = strdup(t)) == NULL) {
		log_warnx("%s: topics too long", cv->name);
		return -1;
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
	o.seed = seed;
	o.total_buffered = &env->in_buffered;
	o.tok = env->tok;
	o.gate = env->gate;
	o.input_log = &env->input_log;
	o.total_max = cf->max_input_total;
	if ((v->poll = loop_timer_new(env->loop, poll_tick, v)) == NULL)
		return -1;
	if ((v->q = qmp_new(env->loop, &o, &qcb, v)) == NULL)
		return -1;
	return 0;
}

void
vm_start(struct vm *v, uint64_t first_poll_ms)
{
	qmp_start(v->q);
	if (v->env->cf->status_interval_s > 0)
		poll_arm(v, first_poll_ms);
}

static int
same_str(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int
vm_set_peer(struct vm *v, int configured, int local)
{
	if (!configured) {
		free(v->peer);
		v->peer = NULL;
		return 0;
	}
	if (v->peer == NULL && (v->peer = malloc(sizeof(*v->peer))) == NULL) {
		log_warnx("%s/%s: out of memory for the view of its peer",
		    v->cv->host, v->cv->name);
		return -1;
	}
	peer_init(v->peer, 1, local);
	return 0;
}

int
vm_reconfigure(struct vm *v, const struct config_vm *cv)
{
	char	 t[TOPIC_MAX], *p;

	if (!same_str(v->cv->peer_host, cv->peer_host) ||
	    !same_str(v->cv->peer_vm, cv->peer_vm)) {
		v->local_peer = NULL;
		if (vm_set_peer(v, cv->peer_host != NULL, 0) == -1) {
			v->cv = cv;	/* no view: takeovers are refused */
			return -1;
		}
	}
	v->cv = cv;
	if (topic_build(t, sizeof(t), v->env->cf->base_topic, cv->host,
	    cv->name, "") == -1 || (p = strdup(t)) == NULL) {
		log_warnx("%s/%s: topics too long or out of memory",
		    cv->host, cv->name);
		return -1;
	}
	if (strcmp(p, v->prefix) != 0)
		v->state_hash = 0;	/* new topic: publish it there */
	free(v->prefix);
	v->prefix = p;
	return 0;
}

void
vm_retire(struct vm *v, int clear)
{
	struct vm_env	*env = v->env;
	char		 t[TOPIC_MAX];

	qmp_free(v->q);		/* closes the connection; no callback after */
	v->q = NULL;
	if (v->save_failed)
		env->state_failing--;
	v->save_failed = 0;
	(void)vm_save(v);
	mqtt_publish(env->mqtt, vm_topic(t, v, "availability"),
	    clear ? "" : "offline", clear ? 0 : 7, 1, MQTT_PUB_RETAIN);
	if (clear) {
		mqtt_publish(env->mqtt, vm_topic(t, v, "state"), "", 0, 1,
		    MQTT_PUB_RETAIN);
		return;
	}
	v->gone = 1;
	publish_state(v, 1);
}

void
vm_cleanup(struct vm *v)
{
	if (v->save_failed)
		v->env->state_failing--;
	v->save_failed = 0;
	free(v->prefix);
	qmp_free(v->q);
	loop_timer_free(v->poll);
	loop_timer_free(v->recon);
	text_release(v->last_exit);
	colo_release(&v->mode);
	colo_release(&v->last_mode);
	colo_release(&v->reason);
	colo_release(&v->recon_mode);
	colo_release(&v->recon_reason);
	free(v->peer);
	v->peer = NULL;
	v->prefix = NULL;
	v->q = NULL;
	v->poll = v->recon = NULL;
	v->last_exit = NULL;
}
