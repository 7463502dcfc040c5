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
#include "discover.h"
#include "fleet.h"
#include "hass.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "peer.h"
#include "qmp.h"
#include "spool.h"
#include "stats.h"
#include "topic.h"
#include "vm.h"

struct bridge {
	struct loop		*loop;
	const struct config	*cf;
	struct mqtt		*mqtt;
	struct fleet		*fleet;
	struct discover		*disc;		/* NULL without discover */
	struct vm_env		 env;
	struct cmd_ctx		 cmd;
	uint64_t		 started_ms;
	int			 started;	/* bridge_start() ran */
	char			 t_bstate[TOPIC_MAX];
	char			 t_stats[TOPIC_MAX];
	char			*offline_payload;
	char			*config_error;	/* last reload refused, or NULL */
	struct loop_timer	*stats_timer;
	struct spool		*spool;
	struct loop_timer	*health_timer;
	int			 problems;	/* as last published */
	int			 stopping;	/* bridge_shutdown() began */
	struct ratelim		 peer_log;	/* bad payloads on peer topics */
	struct hass		*hass;		/* homeassistant: NULL when off */
	size_t			 vm_limit;	/* what the fd limit allows */
	size_t			 left_out;	/* discovered VMs beyond it */
};

static int
same(const char *s, const char *p, size_t len)
{
	return strlen(s) == len && memcmp(s, p, len) == 0;
}

/* --- the bridge's own topics ------------------------------------- */

/*
 * What makes the bridge "degraded": it runs, but cannot keep a promise of
 * README's "Behaviour under faults" (a full or failing state_dir disk).
 */
#define PROB_SPOOL_WRITE	0x01	/* events kept in memory only */
#define PROB_SPOOL_COMPACT	0x02	/* the spool cannot be compacted */
#define PROB_STATE_SAVE		0x04	/* a VM's state cannot be saved */
#define PROB_VM_LIMIT		0x08	/* discovered VMs left out (fd limit) */

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
	if (b->left_out > 0)
		p |= PROB_VM_LIMIT;
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
	json_object_object_add(o, "vms",
	    json_object_new_int64((int64_t)fleet_count(b->fleet)));
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
		if (b->problems & PROB_VM_LIMIT)
			json_object_array_add(pa,
			    json_object_new_string("vm_limit"));
		json_object_object_add(o, "degraded",
		    json_object_new_boolean(b->problems != 0));
		json_object_object_add(o, "problems", pa);
		json_object_object_add(o, "config_error", b->config_error ?
		    json_object_new_string(b->config_error) : NULL);
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
	src.vms = fleet_vms(b->fleet);
	src.nvms = fleet_count(b->fleet);
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
	for (size_t i = 0; i < fleet_count(b->fleet) &&
	    b->env.state_failing > 0; i++)
		if (fleet_vm(b->fleet, i)->save_failed &&
		    vm_save(fleet_vm(b->fleet, i)) == -1)
			break;
	p = bridge_problems(b);
	if (p != b->problems) {
		if (p != 0)
			log_warnx("bridge degraded:%s%s%s%s",
			    p & PROB_SPOOL_WRITE ? " spool_write_failed" : "",
			    p & PROB_SPOOL_COMPACT ?
			    " spool_compaction_failed" : "",
			    p & PROB_STATE_SAVE ? " state_save_failed" : "",
			    p & PROB_VM_LIMIT ? " vm_limit" : "");
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
	if (b->cf->stats_interval_s > 0)
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
	for (size_t i = 0; i < fleet_count(b->fleet); i++)
		vm_publish_retained(fleet_vm(b->fleet, i));
	hass_announce(b->hass);		/* homeassistant (NULL: off) */
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

	if (v->local_peer != NULL || v->peer == NULL)
		return;		/* fed from the VM itself, or no view */
	switch (pm->kind) {
	case 0:
		r = peer_on_state(v->peer, pm->msg->payload, pm->msg->len);
		break;
	case 1:
		r = peer_on_availability(v->peer, pm->msg->payload,
		    pm->msg->len);
		break;
	default:
		r = peer_on_bridge(v->peer, pm->msg->payload, pm->msg->len);
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

	/* homeassistant: HA's status, this bridge's discovery configs. */
	if (b->hass != NULL && hass_on_message(b->hass, msg))
		return;
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
		if ((v = fleet_find(b->fleet, tp.host, tp.host_len, tp.vm,
		    tp.vm_len)) == NULL)
			cmd_ignored(&b->cmd, msg->topic);
		else
			cmd_request(&b->cmd, v, msg);
		return;
	}
	if (same("bridge", tp.vm, tp.vm_len) && strcmp(tp.suffix, "state") == 0) {
		pm.kind = 2;
		fleet_each_follower_host(b->fleet, tp.host, tp.host_len,
		    peer_update, &pm);
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
		    (v = fleet_find(b->fleet, tp.host, tp.host_len, tp.vm,
		    tp.vm_len)) != NULL)
			vm_on_foreign_state(v, msg->payload, msg->len);
		pm.kind = 0;
	} else if (strcmp(tp.suffix, "availability") == 0)
		pm.kind = 1;
	else
		return;
	fleet_each_follower(b->fleet, tp.host, tp.host_len, tp.vm, tp.vm_len,
	    peer_update, &pm);
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
	    (v = fleet_find(b->fleet, tp.host, tp.host_len, tp.vm,
	    tp.vm_len)) != NULL)
		vm_recovered_exit(v, payload, len);
}

/*
 * The wanted VMs: the configuration's, then the discovered ones (a listed
 * VM wins over a discovered one of the same host and name: fleet_apply()
 * keeps the first), as many as b->vm_limit allows: each VM holds a socket,
 * and a bridge out of descriptors could not write its spool or reach the
 * broker.  Those left out are counted in b->left_out (logged when the
 * count changes).  Returns the count, or -1 (out of memory).
 */
static ssize_t
wanted(struct bridge *b, const struct config_vm ***out)
{
	size_t			  nd = b->disc != NULL ?
	    discover_count(b->disc) : 0, n = 0, left = 0;
	const struct config_vm	**w;

	if ((w = calloc(b->cf->nvms + nd + 1, sizeof(*w))) == NULL)
		return -1;
	for (size_t i = 0; i < b->cf->nvms; i++)
		w[n++] = &b->cf->vms[i];
	for (size_t i = 0; i < nd; i++) {
		if (n < b->vm_limit)
			w[n++] = discover_get(b->disc, i);
		else
			left++;
	}
	if (left != b->left_out) {
		if (left > 0)
			log_warnx("discover: %zu discovered VM(s) left out: the "
			    "file descriptor limit leaves room for %zu VMs; "
			    "raise it (LimitNOFILE=, ulimit -n)", left,
			    b->vm_limit);
		else
			log_info("discover: every discovered VM fits the file "
			    "descriptor limit again");
		b->left_out = left;
	}
	*out = w;
	return (ssize_t)n;
}

/* Makes the fleet what the configuration and discovery want.  0 or -1. */
static int
apply(struct bridge *b)
{
	const struct config_vm	**w;
	ssize_t			  n;
	int			  rc;

	if ((n = wanted(b, &w)) == -1) {
		log_warnx("bridge: out of memory");
		return -1;
	}
	rc = fleet_apply(b->fleet, w, (size_t)n, b->started);
	free(w);
	hass_sync(b->hass);	/* homeassistant: joined announced, left cleared */
	return rc;
}

/* Discovery found sockets appearing or leaving. */
static void
on_discovered(struct discover *ds, void *arg)
{
	struct bridge *b = arg;

	if (b->stopping)
		return;		/* the set stays as it is */
	(void)apply(b);
	if (b->started && mqtt_connected(b->mqtt))
		publish_bridge_state(b);	/* "vms" changed */
}

struct bridge *
bridge_new(struct loop *loop, const struct config *cf, size_t vm_limit)
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
	int			 failed;

	if ((b = calloc(1, sizeof(*b))) == NULL) {
		log_warn("bridge_new");
		return NULL;
	}
	b->loop = loop;
	b->cf = cf;
	b->vm_limit = vm_limit;
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
	    (b->env.gate = qmp_gate_new()) == NULL) {
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
	if (cmd_init(&b->cmd, loop, cf, b->mqtt, b->env.started_us) == -1 ||
	    (b->fleet = fleet_new(&b->env, &b->cmd)) == NULL) {
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
	if (cf->ndiscover > 0 && (b->disc = discover_new(loop, cf,
	    on_discovered, b)) == NULL) {
		bridge_free(b);
		return NULL;
	}
	if (apply(b) == -1) {
		bridge_free(b);
		return NULL;
	}
	/* homeassistant: discovery (subscribes; NULL when off). */
	b->hass = hass_new(loop, cf, b->mqtt, b->fleet, &failed);
	if (failed) {
		bridge_free(b);
		return NULL;
	}
	if (b->spool != NULL) {
		/* Exits spooled but not in the state files (vm_recovered_exit). */
		spool_peek(b->spool, recovered_one, b);
		mqtt_set_spool(b->mqtt, b->spool);
	}
	if ((b->health_timer = loop_timer_new(loop, health_tick, b)) == NULL ||
	    (b->stats_timer = loop_timer_new(loop, stats_tick, b)) == NULL) {
		bridge_free(b);
		return NULL;
	}
	return b;
}

int
bridge_start(struct bridge *b)
{
	size_t n = fleet_count(b->fleet);

	if (mqtt_start(b->mqtt) == -1)
		return -1;
	for (size_t i = 0; i < n; i++)	/* polls spread over the interval */
		vm_start(fleet_vm(b->fleet, i),
		    (uint64_t)b->cf->status_interval_s * 1000 * (i + 1) / n);
	b->started = 1;
	if (b->cf->stats_interval_s > 0)
		loop_timer_arm(b->stats_timer,
		    (uint64_t)b->cf->stats_interval_s * 1000);
	loop_timer_arm(b->health_timer, HEALTH_MS);
	log_info("bridge %s started: host %s, %zu VM(s) (%zu with a remote "
	    "peer%s), broker %s, instance %s", b->cf->bridge_id, b->cf->host,
	    n, fleet_remote_count(b->fleet), b->disc != NULL ?
	    ", discovery on" : "", b->cf->uris[0], b->env.instance);
	return 0;
}

/* Whether the broker connection must be made anew for cf. */
static int
broker_changed(const struct config *a, const struct config *b)
{
#define S(x) ((a->x == NULL) != (b->x == NULL) || (a->x != NULL && \
	strcmp(a->x, b->x) != 0))
	if (a->nuris != b->nuris)
		return 1;
	for (size_t i = 0; i < a->nuris; i++)
		if (strcmp(a->uris[i], b->uris[i]) != 0)
			return 1;
	return S(client_id) || S(username) || S(password) || S(cafile) ||
	    S(capath) || S(certfile) || S(keyfile) || S(host) ||
	    S(bridge_id) || S(base_topic) || a->keepalive_s != b->keepalive_s ||
	    a->mqtt_version != b->mqtt_version ||
	    a->tls_verify != b->tls_verify || a->tcp_nodelay != b->tcp_nodelay;
#undef S
}

/* What cannot change while running (README "Live reload").  NULL: fine. */
static const char *
restart_only(const struct config *a, const struct config *b)
{
	if ((a->state_dir == NULL) != (b->state_dir == NULL) ||
	    (a->state_dir != NULL && strcmp(a->state_dir, b->state_dir) != 0))
		return "bridge.state_dir";
	if (a->buffer_max != b->buffer_max)
		return "mqtt.buffer_max";
	if (a->inflight_max != b->inflight_max)
		return "mqtt.inflight_max";
	if (a->max_input_total != b->max_input_total)
		return "bridge.max_input_total";
	return NULL;
}

void
bridge_config_error(struct bridge *b, const char *err)
{
	free(b->config_error);
	b->config_error = err != NULL ? strdup(err) : NULL;
	if (mqtt_connected(b->mqtt))
		publish_bridge_state(b);
}

int
bridge_reload(struct bridge *b, const struct config *cf)
{
	const struct config	*old = b->cf;
	const char		*why;
	char			 t1[TOPIC_MAX], t2[TOPIC_MAX], *off, msg[256];
	int			 reconnect;

	if (cf->nvms > b->vm_limit) {
		snprintf(msg, sizeof(msg), "%s: %zu VMs listed, but the file "
		    "descriptor limit leaves room for %zu; raise it "
		    "(LimitNOFILE=, ulimit -n) and restart the bridge (running "
		    "configuration kept)", cf->file, cf->nvms, b->vm_limit);
		log_warnx("reload: %s", msg);
		bridge_config_error(b, msg);
		return -1;
	}
	if ((why = restart_only(old, cf)) != NULL) {
		snprintf(msg, sizeof(msg), "%s: %s cannot change while running; "
		    "restart the bridge (running configuration kept)",
		    cf->file, why);
		log_warnx("reload: %s", msg);
		bridge_config_error(b, msg);
		return -1;
	}
	if (topic_build(t1, sizeof(t1), cf->base_topic, cf->host, "bridge",
	    "state") == -1 || topic_build(t2, sizeof(t2), cf->base_topic,
	    cf->host, "bridge", "stats") == -1 ||
	    (off = bridge_offline_payload(cf)) == NULL) {
		bridge_config_error(b, "reload: out of memory");
		return -1;
	}
	reconnect = broker_changed(old, cf);
	if (reconnect && strcmp(t1, b->t_bstate) != 0) {
		/*
		 * The old bridge/state topic is not this bridge's any more,
		 * and the clean reconnect fires no Last Will: say offline
		 * there, queued now (a plain message survives the reconnect)
		 * so that it goes first on the new connection.
		 */
		mqtt_publish(b->mqtt, b->t_bstate, b->offline_payload,
		    strlen(b->offline_payload), 1, MQTT_PUB_RETAIN);
	}
	if (mqtt_reconfigure(b->mqtt, cf, t1, off, reconnect) == -1) {
		free(off);
		bridge_config_error(b, "reload: out of memory");
		return -1;
	}
	memcpy(b->t_bstate, t1, sizeof(t1));
	memcpy(b->t_stats, t2, sizeof(t2));
	free(b->offline_payload);
	b->offline_payload = off;
	b->cf = cf;
	b->env.cf = cf;
	b->cmd.cf = cf;
	/* homeassistant: turned on or off, moved (prefix, bridge.host). */
	if (hass_reload(&b->hass, b->loop, cf, b->mqtt, b->fleet) == -1)
		log_warnx("reload: homeassistant could not start");
	if (b->disc != NULL && cf->ndiscover > 0)
		discover_reconfigure(b->disc, cf);
	else if (b->disc != NULL) {
		discover_free(b->disc);
		b->disc = NULL;
	} else if (cf->ndiscover > 0 && (b->disc = discover_new(b->loop, cf,
	    on_discovered, b)) == NULL)
		log_warnx("reload: discovery could not start");
	if (apply(b) == -1)
		log_warnx("reload: some VMs could not be set up (see above)");
	loop_timer_disarm(b->stats_timer);
	if (cf->stats_interval_s > 0)
		loop_timer_arm(b->stats_timer,
		    (uint64_t)cf->stats_interval_s * 1000);
	free(b->config_error);
	b->config_error = NULL;
	if (mqtt_connected(b->mqtt))
		publish_bridge_state(b);
	log_info("reload: %s applied: %zu VM(s)%s", cf->file,
	    fleet_count(b->fleet), reconnect ? "; broker settings changed: "
	    "reconnecting" : "");
	return 0;
}

void
bridge_shutdown(struct bridge *b, unsigned timeout_ms)
{
	size_t		 n = fleet_count(b->fleet);
	char		 t[TOPIC_MAX];

	b->stopping = 1;	/* no new takeover from here on */
	b->cmd.stopping = 1;
	discover_stop(b->disc);	/* the set stays as it is */
	loop_timer_disarm(b->stats_timer);
	loop_timer_disarm(b->health_timer);
	/* A takeover still running gets an answer, not silence. */
	for (size_t i = 0; i < n; i++)
		cmd_abandon(&b->cmd, fleet_vm(b->fleet, i));
	/*
	 * Stop reading QMP first (after what is already in the sockets), so
	 * that every event read is counted in the final stats and then
	 * published or spooled; nothing is read after the final count.
	 */
	for (size_t i = 0; i < n; i++)
		qmp_quiesce(fleet_vm(b->fleet, i)->q);
	if (mqtt_connected(b->mqtt)) {
		bridge_publish_stats(b);
		for (size_t i = 0; i < n; i++)
			mqtt_publish(b->mqtt, vm_topic(t, fleet_vm(b->fleet, i),
			    "availability"), "offline", 7, 1,
			    MQTT_PUB_RETAIN);
	}
	mqtt_shutdown(b->mqtt, b->t_bstate, b->offline_payload, timeout_ms);
	for (size_t i = 0; i < n; i++)
		vm_save(fleet_vm(b->fleet, i));
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
	hass_free(b->hass);
	fleet_free(b->fleet);	/* before the discovered entries it uses */
	discover_free(b->disc);
	mqtt_free(b->mqtt);
	cmd_cleanup(&b->cmd);
	spool_close(b->spool);
	if (b->env.tok != NULL)
		json_tokener_free(b->env.tok);
	qmp_gate_free(b->env.gate);
	loop_timer_free(b->stats_timer);
	loop_timer_free(b->health_timer);
	free(b->offline_payload);
	free(b->config_error);
	free(b);
}
