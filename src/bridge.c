/*
 * bridge: see bridge.h.  Wiring only: the VMs (vm.c), the takeover path
 * (command.c), the pair views (peer.c) and the stats (stats.c) meet the
 * broker (mqtt.c) here.
 */
#include <sys/random.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"
#include "command.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "peer.h"
#include "qmp.h"
#include "spool.h"
#include "stats.h"
#include "topic.h"
#include "vm.h"

/*
 * (host, vm) -> VM, open addressing.  One table for the VMs this bridge
 * serves (commands, clashes), one for the remote peers they follow (the
 * same peer may be followed by several VMs: lookups walk every match).
 */
struct vmindex {
	struct vm	**slot;
	size_t		  mask;
};

struct bridge {
	struct loop		*loop;
	const struct config	*cf;
	struct mqtt		*mqtt;
	struct vm		*vms;
	size_t			 nvms;
	struct vm_env		 env;
	struct cmd_ctx		 cmd;
	struct vmindex		 own;		/* by cv->host, cv->name */
	struct vmindex		 peers;		/* by cv->peer_host, peer_vm */
	struct vm		**remote;	/* VMs with a remote peer */
	size_t			 nremote;
	uint64_t		 started_ms;
	char			 t_bstate[TOPIC_MAX];
	char			 t_stats[TOPIC_MAX];
	char			*offline_payload;
	struct loop_timer	*stats_timer;
	struct spool		*spool;
	struct loop_timer	*health_timer;
	int			 problems;	/* as last published */
	int			 stopping;	/* bridge_shutdown() began */
	struct ratelim		 peer_log;	/* bad payloads on peer topics */
};

/* --- the VM indexes ---------------------------------------------- */

static uint64_t
key_hash(const char *host, size_t hl, const char *vm, size_t vl)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < hl; i++)
		h = (h ^ (unsigned char)host[i]) * 0x100000001b3ULL;
	h = (h ^ '/') * 0x100000001b3ULL;
	for (size_t i = 0; i < vl; i++)
		h = (h ^ (unsigned char)vm[i]) * 0x100000001b3ULL;
	return h;
}

static int
same(const char *s, const char *p, size_t len)
{
	return strlen(s) == len && memcmp(s, p, len) == 0;
}

static int
index_init(struct vmindex *ix, size_t n)
{
	size_t cap = 16;

	while (cap < n * 2)
		cap <<= 1;
	if ((ix->slot = calloc(cap, sizeof(*ix->slot))) == NULL)
		return -1;
	ix->mask = cap - 1;
	return 0;
}

static void
index_add(struct vmindex *ix, struct vm *v, const char *host,
    const char *name)
{
	size_t i = key_hash(host, strlen(host), name, strlen(name)) & ix->mask;

	while (ix->slot[i] != NULL)
		i = (i + 1) & ix->mask;
	ix->slot[i] = v;
}

/*
 * Calls fn for every VM stored under (host, vm); peer: the key is the
 * VM's peer, not its own name.  Returns how many matched.
 */
static size_t
index_each(const struct vmindex *ix, int peer, const char *host, size_t hl,
    const char *vm, size_t vl, void (*fn)(struct vm *, void *), void *arg)
{
	size_t	i, n = 0;

	if (ix->slot == NULL)
		return 0;
	for (i = key_hash(host, hl, vm, vl) & ix->mask; ix->slot[i] != NULL;
	    i = (i + 1) & ix->mask) {
		struct vm	*v = ix->slot[i];
		const char	*h = peer ? v->cv->peer_host : v->cv->host;
		const char	*m = peer ? v->cv->peer_vm : v->cv->name;

		if (same(h, host, hl) && same(m, vm, vl)) {
			n++;
			if (fn != NULL)
				fn(v, arg);
		}
	}
	return n;
}

static void
first_vm(struct vm *v, void *arg)
{
	struct vm **out = arg;

	if (*out == NULL)
		*out = v;
}

static struct vm *
find_own(struct bridge *b, const char *host, size_t hl, const char *vm,
    size_t vl)
{
	struct vm *v = NULL;

	index_each(&b->own, 0, host, hl, vm, vl, first_vm, &v);
	return v;
}

/* --- the bridge's own topics ------------------------------------- */

/*
 * What makes the bridge "degraded": it runs, but cannot keep a promise of
 * README's "Behaviour under faults" (a full or failing state_dir disk).
 */
#define PROB_SPOOL_WRITE	0x01	/* events kept in memory only */
#define PROB_SPOOL_COMPACT	0x02	/* the spool cannot be compacted */
#define PROB_STATE_SAVE		0x04	/* a VM's state cannot be saved */

static int
bridge_problems(const struct bridge *b)
{
	int	p = 0, sp = b->spool != NULL ? spool_problems(b->spool) : 0;

	if (sp & SPOOL_WRITE_FAILING)
		p |= PROB_SPOOL_WRITE;
	if (sp & SPOOL_COMPACT_FAILING)
		p |= PROB_SPOOL_COMPACT;
	if (b->env.state_failing > 0)
		p |= PROB_STATE_SAVE;
	return p;
}

static void
publish_bridge_state(struct bridge *b)
{
	json_object	*o = json_object_new_object();
	const char	*s;
	size_t		 len;

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
	    json_object_new_int64(b->env.started_us));
	json_object_object_add(o, "instance",
	    json_object_new_string(b->env.instance));
	json_object_object_add(o, "vms", json_object_new_int64((int64_t)b->nvms));
	json_object_object_add(o, "warnings",
	    json_object_new_int64((int64_t)b->cf->nwarnings));
	{
		json_object *pa = json_object_new_array();

		b->problems = bridge_problems(b);
		if (b->problems & PROB_SPOOL_WRITE)
			json_object_array_add(pa,
			    json_object_new_string("spool_write_failed"));
		if (b->problems & PROB_SPOOL_COMPACT)
			json_object_array_add(pa,
			    json_object_new_string("spool_compaction_failed"));
		if (b->problems & PROB_STATE_SAVE)
			json_object_array_add(pa,
			    json_object_new_string("state_save_failed"));
		json_object_object_add(o, "degraded",
		    json_object_new_boolean(b->problems != 0));
		json_object_object_add(o, "problems", pa);
	}
	if ((s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &len)) != NULL)
		mqtt_publish(b->mqtt, b->t_bstate, s, len, 1,
		    MQTT_PUB_RETAIN | MQTT_PUB_STATE);
	json_object_put(o);
}

void
bridge_publish_stats(struct bridge *b)
{
	struct stats_src	src;

	ratelim_flush(&b->env.exit_log);
	ratelim_flush(&b->cmd.answers);
	ratelim_flush(&b->cmd.ignored_log);
	ratelim_flush(&b->peer_log);
	ratelim_flush(&b->env.input_log);
	memset(&src, 0, sizeof(src));
	src.env = &b->env;
	src.cmd = &b->cmd;
	src.mqtt = b->mqtt;
	src.vms = b->vms;
	src.nvms = b->nvms;
	src.started_ms = b->started_ms;
	src.topic = b->t_stats;
	src.spool = b->spool;
	stats_publish(&src);
}

/*
 * Once a second: retries failed state saves; when the problems changed,
 * says so (log, and the retained bridge/state).  Failures are noticed
 * where they happen (spool, state saves); this publishes them, at most
 * once a second.
 */
#define HEALTH_MS	1000

static void
health_tick(struct loop *l, struct loop_timer *t, void *arg)
{
	struct bridge	*b = arg;
	int		 p;

	/* Failed state saves are retried (until one fails again). */
	for (size_t i = 0; i < b->nvms && b->env.state_failing > 0; i++)
		if (b->vms[i].save_failed && vm_save(&b->vms[i]) == -1)
			break;
	p = bridge_problems(b);
	if (p != b->problems) {
		if (p != 0)
			log_warnx("bridge degraded:%s%s%s",
			    p & PROB_SPOOL_WRITE ? " spool_write_failed" : "",
			    p & PROB_SPOOL_COMPACT ?
			    " spool_compaction_failed" : "",
			    p & PROB_STATE_SAVE ? " state_save_failed" : "");
		else
			log_info("bridge no longer degraded");
		b->problems = p;
		if (mqtt_connected(b->mqtt))
			publish_bridge_state(b);
	}
	loop_timer_arm(t, HEALTH_MS);
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

/* --- broker events ----------------------------------------------- */

/* The broker is slower than QEMU: stop (or resume) reading QMP input. */
static void
on_mqtt_flow(struct mqtt *m, int full, void *arg)
{
	struct bridge *b = arg;

	b->cmd.flow_full = full;
	qmp_gate_set(b->env.gate, full);
}

static void
on_mqtt_connected(struct mqtt *m, void *arg)
{
	struct bridge	*b = arg;

	publish_bridge_state(b);
	for (size_t i = 0; i < b->nvms; i++)
		vm_publish_retained(&b->vms[i]);
	bridge_publish_stats(b);
}

/* A message on a followed peer's topics. */
struct peer_msg {
	struct bridge		*b;
	const struct mqtt_msg	*msg;
	int			 kind;	/* 0 state, 1 availability, 2 bridge */
};

static void
peer_update(struct vm *v, void *arg)
{
	struct peer_msg	*pm = arg;
	int		 r;

	if (v->local_peer != NULL)
		return;		/* fed from the VM itself */
	switch (pm->kind) {
	case 0:
		r = peer_on_state(&v->peer, pm->msg->payload, pm->msg->len);
		break;
	case 1:
		r = peer_on_availability(&v->peer, pm->msg->payload,
		    pm->msg->len);
		break;
	default:
		r = peer_on_bridge(&v->peer, pm->msg->payload, pm->msg->len);
		break;
	}
	if (r == -1 && ratelim_allow(&pm->b->peer_log, loop_now_ms()))
		log_warnx("%s/%s: peer %s/%s: payload on %.200s not understood; "
		    "ignored", v->cv->host, v->cv->name, v->cv->peer_host,
		    v->cv->peer_vm, pm->msg->topic);
	if (r == 1)
		vm_publish_state(v);	/* the peer part of the state */
}

static void
on_mqtt_message(struct mqtt *m, const struct mqtt_msg *msg, void *arg)
{
	struct bridge		*b = arg;
	struct topic_parts	 tp;
	struct peer_msg		 pm = { b, msg, 0 };
	struct vm		*v;

	if (topic_parse(msg->topic, b->cf->base_topic, &tp) == -1) {
		cmd_ignored(&b->cmd, msg->topic);
		return;
	}
	if (strcmp(tp.suffix, "cmd/takeover") == 0) {
		if (b->stopping) {
			if (ratelim_allow(&b->cmd.ignored_log, loop_now_ms()))
				log_warnx("takeover: request on %.200s "
				    "ignored: shutting down", msg->topic);
			return;
		}
		if ((v = find_own(b, tp.host, tp.host_len, tp.vm,
		    tp.vm_len)) == NULL)
			cmd_ignored(&b->cmd, msg->topic);
		else
			cmd_request(&b->cmd, v, msg);
		return;
	}
	if (same("bridge", tp.vm, tp.vm_len) && strcmp(tp.suffix, "state") == 0) {
		pm.kind = 2;
		for (size_t i = 0; i < b->nremote; i++)
			if (same(b->remote[i]->cv->peer_host, tp.host,
			    tp.host_len))
				peer_update(b->remote[i], &pm);
		return;
	}
	if (strcmp(tp.suffix, "state") == 0) {
		/*
		 * Our own VMs' state topics are subscribed without retained
		 * messages: under MQTT 5 (retain handling 2) every message is
		 * live, its retain flag as published; under 3.1.1 the flag
		 * marks the retained ones, sent at subscription time.
		 */
		if ((b->cf->mqtt_version == 5 || !msg->retained) &&
		    (v = find_own(b, tp.host, tp.host_len, tp.vm,
		    tp.vm_len)) != NULL)
			vm_on_foreign_state(v, msg->payload, msg->len);
		pm.kind = 0;
	} else if (strcmp(tp.suffix, "availability") == 0)
		pm.kind = 1;
	else
		return;
	index_each(&b->peers, 1, tp.host, tp.host_len, tp.vm, tp.vm_len,
	    peer_update, &pm);
}

/* --- subscriptions ----------------------------------------------- */

static int
subscribe(struct bridge *b, const char *host, const char *vm,
    const char *suffix, int flags)
{
	char	t[TOPIC_MAX];

	if (topic_build(t, sizeof(t), b->cf->base_topic, host, vm,
	    suffix) == -1)
		return -1;
	return mqtt_subscribe(b->mqtt, t, 1, flags);
}

/*
 * Per host this bridge serves: its command topics, and its VMs' state
 * topics (live messages only, not its own: another bridge publishing
 * there is a clash).  Per remote peer: its state and availability, and
 * its host's bridge/state (retained messages wanted: they are the view).
 */
static int
subscribe_all(struct bridge *b)
{
	for (size_t i = 0; i < b->nvms; i++) {
		const char	*host = b->vms[i].cv->host;
		size_t		 j;

		for (j = 0; j < i; j++)
			if (strcmp(b->vms[j].cv->host, host) == 0)
				break;
		if (j < i)
			continue;	/* host already subscribed */
		if (subscribe(b, host, "+", "cmd/takeover",
		    MQTT_SUB_NO_RETAINED) == -1 ||
		    subscribe(b, host, "+", "state",
		    MQTT_SUB_NO_RETAINED | MQTT_SUB_NO_LOCAL) == -1)
			return -1;
	}
	for (size_t i = 0; i < b->nremote; i++) {
		const struct config_vm	*cv = b->remote[i]->cv;
		size_t			 j;

		if (subscribe(b, cv->peer_host, cv->peer_vm, "state",
		    MQTT_SUB_RETAINED) == -1 ||
		    subscribe(b, cv->peer_host, cv->peer_vm, "availability",
		    MQTT_SUB_RETAINED) == -1)
			return -1;
		for (j = 0; j < i; j++)
			if (strcmp(b->remote[j]->cv->peer_host,
			    cv->peer_host) == 0)
				break;
		if (j == i && subscribe(b, cv->peer_host, "bridge", "state",
		    MQTT_SUB_RETAINED) == -1)
			return -1;
	}
	return 0;
}

/* Links each VM to its peer: a VM of this bridge, or a remote one. */
static int
link_peers(struct bridge *b)
{
	size_t nremote = 0;

	for (size_t i = 0; i < b->nvms; i++)
		if (b->vms[i].cv->peer_host != NULL)
			nremote++;
	if (nremote > 0 && ((b->remote = calloc(nremote,
	    sizeof(*b->remote))) == NULL || index_init(&b->peers,
	    nremote) == -1))
		return -1;
	for (size_t i = 0; i < b->nvms; i++) {
		struct vm		*v = &b->vms[i], *u;
		const struct config_vm	*cv = v->cv;

		if (cv->peer_host == NULL)
			continue;
		u = find_own(b, cv->peer_host, strlen(cv->peer_host),
		    cv->peer_vm, strlen(cv->peer_vm));
		if (u != NULL && u != v) {
			v->local_peer = u;
			peer_init(&v->peer, 1, 1);
			v->watch_next = u->watchers;
			u->watchers = v;
			continue;
		}
		b->remote[b->nremote++] = v;
		index_add(&b->peers, v, cv->peer_host, cv->peer_vm);
	}
	return 0;
}

/* --- life cycle -------------------------------------------------- */

/* A message recovered from the spool: a colo_exit tells its VM. */
static void
recovered_one(void *arg, uint64_t id, const char *topic, const void *payload,
    size_t len, int qos, int flags)
{
	struct bridge		*b = arg;
	struct topic_parts	 tp;
	struct vm		*v;

	if (topic_parse(topic, b->cf->base_topic, &tp) == 0 &&
	    strcmp(tp.suffix, "event/colo_exit") == 0 &&
	    (v = find_own(b, tp.host, tp.host_len, tp.vm, tp.vm_len)) != NULL)
		vm_recovered_exit(v, payload, len);
}

struct bridge *
bridge_new(struct loop *loop, const struct config *cf)
{
	struct bridge		*b;
	struct mqtt_callbacks	 mcb = { on_mqtt_connected, NULL,
	    on_mqtt_message, NULL, on_mqtt_flow };
	static const struct ratelim exit_log = RATELIM_INIT(
	    "COLO_EXIT event(s) published but not logged", 20);
	static const struct ratelim clash_log = RATELIM_INIT(
	    "clash line(s) not logged", 5);
	static const struct ratelim peer_log = RATELIM_INIT(
	    "bad peer payload line(s) not logged", 5);
	static const struct ratelim input_log = RATELIM_INIT(
	    "line(s) about bad QMP input not logged (see bridge/stats)", 20);
	uint64_t		 seed = (uint64_t)loop_wall_us() ^
	    ((uint64_t)getpid() << 32), rnd;

	if ((b = calloc(1, sizeof(*b))) == NULL ||
	    (b->vms = calloc(cf->nvms, sizeof(*b->vms))) == NULL) {
		log_warn("bridge_new");
		free(b);
		return NULL;
	}
	b->loop = loop;
	b->cf = cf;
	b->peer_log = peer_log;
	b->env.loop = loop;
	b->env.cf = cf;
	b->env.exit_log = exit_log;
	b->env.clash_log = clash_log;
	b->env.input_log = input_log;
	b->env.started_us = loop_wall_us();
	b->started_ms = loop_now_ms();
	if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		rnd = seed * 0x9e3779b97f4a7c15ULL;
	snprintf(b->env.instance, sizeof(b->env.instance), "%016" PRIx64, rnd);
	if ((b->env.tok = json_tokener_new_ex(QMP_MAX_DEPTH)) == NULL ||
	    (b->env.gate = qmp_gate_new()) == NULL ||
	    index_init(&b->own, cf->nvms) == -1) {
		log_warnx("bridge: out of memory");
		bridge_free(b);
		return NULL;
	}
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
	b->env.mqtt = b->mqtt;
	if (cmd_init(&b->cmd, loop, cf, b->mqtt, b->env.started_us) == -1) {
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
	}
	for (size_t i = 0; i < cf->nvms; i++) {
		b->nvms++;	/* from here on, bridge_free() cleans it up */
		if (vm_init(&b->vms[i], &b->env, &cf->vms[i],
		    seed + i * 0x9e3779b97f4a7c15ULL) == -1) {
			bridge_free(b);
			return NULL;
		}
		index_add(&b->own, &b->vms[i], cf->vms[i].host,
		    cf->vms[i].name);
	}
	if (b->spool != NULL) {
		/* Exits spooled but not in the state files (vm_recovered_exit). */
		spool_peek(b->spool, recovered_one, b);
		mqtt_set_spool(b->mqtt, b->spool);
	}
	if ((b->health_timer = loop_timer_new(loop, health_tick, b)) == NULL) {
		bridge_free(b);
		return NULL;
	}
	if (link_peers(b) == -1 || subscribe_all(b) == -1) {
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
	for (size_t i = 0; i < b->nvms; i++)	/* polls spread over the interval */
		vm_start(&b->vms[i], (uint64_t)b->cf->status_interval_s *
		    1000 * (i + 1) / b->nvms);
	if (b->stats_timer != NULL)
		loop_timer_arm(b->stats_timer,
		    (uint64_t)b->cf->stats_interval_s * 1000);
	loop_timer_arm(b->health_timer, HEALTH_MS);
	log_info("bridge %s started: host %s, %zu VM(s) (%zu with a remote "
	    "peer), broker %s, instance %s", b->cf->bridge_id, b->cf->host,
	    b->nvms, b->nremote, b->cf->uris[0], b->env.instance);
	return 0;
}

void
bridge_shutdown(struct bridge *b, unsigned timeout_ms)
{
	char		 t[TOPIC_MAX];

	b->stopping = 1;	/* no new takeover from here on */
	b->cmd.stopping = 1;
	loop_timer_disarm(b->stats_timer);
	loop_timer_disarm(b->health_timer);
	/* A takeover still running gets an answer, not silence. */
	for (size_t i = 0; i < b->nvms; i++)
		cmd_abandon(&b->cmd, &b->vms[i]);
	/*
	 * Stop reading QMP first (after what is already in the sockets), so
	 * that every event read is counted in the final stats and then
	 * published or spooled; nothing is read after the final count.
	 */
	for (size_t i = 0; i < b->nvms; i++)
		qmp_quiesce(b->vms[i].q);
	if (mqtt_connected(b->mqtt)) {
		bridge_publish_stats(b);
		for (size_t i = 0; i < b->nvms; i++)
			mqtt_publish(b->mqtt, vm_topic(t, &b->vms[i],
			    "availability"), "offline", 7, 1,
			    MQTT_PUB_RETAIN);
	}
	mqtt_shutdown(b->mqtt, b->t_bstate, b->offline_payload, timeout_ms);
	for (size_t i = 0; i < b->nvms; i++)
		vm_save(&b->vms[i]);
	if (b->spool != NULL) {
		spool_flush(b->spool);
		log_info("stopped with %llu event(s) spooled for the next start",
		    (unsigned long long)spool_live(b->spool));
	}
}

void
bridge_free(struct bridge *b)
{
	if (b == NULL)
		return;
	for (size_t i = 0; i < b->nvms; i++) {
		cmd_free_run(&b->vms[i]);
		vm_cleanup(&b->vms[i]);
	}
	mqtt_free(b->mqtt);
	cmd_cleanup(&b->cmd);
	spool_close(b->spool);
	if (b->env.tok != NULL)
		json_tokener_free(b->env.tok);
	qmp_gate_free(b->env.gate);
	loop_timer_free(b->stats_timer);
	loop_timer_free(b->health_timer);
	free(b->own.slot);
	free(b->peers.slot);
	free(b->remote);
	free(b->offline_payload);
	free(b->vms);
	free(b);
}
