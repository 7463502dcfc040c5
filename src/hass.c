/*
 * hass: see hass.h.  Keys are HA's full option names (no abbreviations):
 * https://www.home-assistant.io/integrations/mqtt/ (discovery, device,
 * origin, availability) and the pages of the sensor, binary_sensor, event
 * and button MQTT platforms.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "config.h"
#include "fleet.h"
#include "hass.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "vm.h"

#define NODE_PREFIX	"qmp2mqtt_"
#define ENC_MAX		(3 * TOPIC_LEVEL_MAX + 1)	/* an encoded name */
#define NODE_MAX	(sizeof(NODE_PREFIX) + ENC_MAX)
#define SEP		"__"

/* A VM as announced (or to be announced at the next connect). */
struct hent {
	char		*host;		/* own copies: the VM may be gone */
	char		*name;
	uint64_t	 qemu_hash;	/* version announced, 0: not yet */
	int		 button;	/* -1: not announced yet, 0, 1 */
	int		 moved;		/* retable(): into the new table */
};

struct hass {
	struct loop		*loop;
	const struct config	*cf;
	struct mqtt		*mqtt;
	struct fleet		*fleet;
	struct hent		*tab;		/* by host, name */
	size_t			 ntab;
	char			 node[NODE_MAX];
	char			 t_status[HASS_TOPIC_MAX];
	char			 f_event[HASS_TOPIC_MAX];	/* subscribed */
	char			 f_button[HASS_TOPIC_MAX];
	struct loop_timer	*resend;	/* HA said "online" */
	struct loop_timer	*scan;		/* QEMU versions */
	uint64_t		 last_resend_ms;	/* for HA's "online" */
	int			 resent;
	int			 announced;
};

static const struct entity {
	const char	*key;		/* last part of object_id, unique_id */
	const char	*component;
	const char	*name;
} entities[HASS_NENTITIES] = {
	[HASS_MODE] =		{ "mode", "sensor", "COLO mode" },
	[HASS_PROTECTED] =	{ "protected", "binary_sensor",
				  "COLO protected" },
	[HASS_EXIT] =		{ "colo_exit", "event", "COLO exit" },
	[HASS_EXIT_REASON] =	{ "last_exit_reason", "sensor",
				  "Last exit reason" },
	[HASS_QMP] =		{ "qmp", "sensor", "QMP" },
	[HASS_TAKEOVER] =	{ "takeover", "button", "Take over" },
};

/*
 * Value templates, rendered by HA with value_json = the payload parsed.
 * The event entity needs {"event_type": ...}: the bridge's reason, or
 * "none" for a reason HA was not told about (the raw one is kept as the
 * event's "reason" attribute).
 */
#define T_MODE	"{{ value_json.mode if value_json.mode else 'unknown' }}"
#define T_PROTECTED \
	"{{ 'ON' if value_json.mode in ['primary', 'secondary'] else 'OFF' }}"
#define T_EXIT \
	"{% set r = value_json.reason %}" \
	"{{ {'event_type': r if r in ['request', 'error', 'processing', " \
	"'none'] else 'none', 'reason': r, 'mode': value_json.mode, " \
	"'seq': value_json.seq, 'time': value_json.time} | to_json }}"
#define T_EXIT_REASON \
	"{{ value_json.last_exit.reason if value_json.last_exit and " \
	"value_json.last_exit.reason else 'unknown' }}"
#define T_QMP	"{{ value_json.qmp }}"
#define T_BRIDGE "{{ value_json.state }}"
/*
 * A takeover request (README "Request and result") needs a unique id and
 * issued_us: a static payload_press cannot be one, HA's command_template
 * can (rendered at each press; now() is HA's clock, which must be within
 * takeover.window_s of the bridge's).
 */
#define T_TAKEOVER \
	"{% set us = (now().timestamp() * 1000000) | int %}" \
	"{\"id\": \"ha-{{ us }}\", \"issued_us\": {{ us }}}"

int
hass_encode(char *buf, size_t len, const char *name)
{
	static const char	 hex[] = "0123456789abcdef";
	size_t			 n = 0;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		int keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' &&
		    *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-';

		if (n + (keep ? 1 : 3) >= len)
			return -1;
		if (keep)
			buf[n++] = (char)*p;
		else {
			buf[n++] = '_';
			buf[n++] = hex[*p >> 4];
			buf[n++] = hex[*p & 15];
		}
	}
	if (n >= len)
		return -1;
	buf[n] = '\0';
	return (int)n;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
hass_decode(char *buf, size_t len, const char *s, size_t n)
{
	size_t	o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int hi, lo;

		if (o + 1 >= len)
			return -1;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-') {
			buf[o++] = (char)c;
			continue;
		}
		if (c != '_' || i + 2 >= n || (hi = hexval(s[i + 1])) < 0 ||
		    (lo = hexval(s[i + 2])) < 0)
			return -1;
		c = (unsigned char)(hi << 4 | lo);
		/* What the encoder keeps is never escaped; NUL never is. */
		if (c == 0 || (c >= 'a' && c <= 'z') || (c >= 'A' &&
		    c <= 'Z') || (c >= '0' && c <= '9') || c == '-')
			return -1;
		buf[o++] = (char)c;
		i += 2;
	}
	if (len == 0)
		return -1;
	buf[o] = '\0';
	return (int)o;
}

const char *
hass_component(enum hass_entity e)
{
	return entities[e].component;
}

int
hass_has_button(const struct config *cf, const struct vm *v)
{
	return config_vm_takeover(cf, v->cv) &&
	    cf->takeover.auth == CONFIG_AUTH_ACL;
}

/* --- building configs ------------------------------------------------ */

static void
add_str(json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v));
}

/* "qmp2mqtt_" + encoded host (+ "__" + encoded vm).  0 or -1. */
static int
make_id(char *buf, size_t len, const char *host, const char *vm)
{
	char	eh[ENC_MAX], ev[ENC_MAX];
	int	n;

	if (hass_encode(eh, sizeof(eh), host) == -1 ||
	    (vm != NULL && hass_encode(ev, sizeof(ev), vm) == -1))
		return -1;
	n = vm != NULL ? snprintf(buf, len, NODE_PREFIX "%s" SEP "%s", eh, ev) :
	    snprintf(buf, len, NODE_PREFIX "%s", eh);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

static json_object *
origin_json(void)
{
	json_object *o = json_object_new_object();

	add_str(o, "name", "qmp2mqtt");
	add_str(o, "sw_version", QMP2MQTT_VERSION);
	return o;
}

static json_object *
ids_json(const char *id)
{
	json_object *a = json_object_new_array();

	json_object_array_add(a, json_object_new_string(id));
	return a;
}

static json_object *
avail_json(const char *topic, const char *tmpl)
{
	json_object *o = json_object_new_object();

	add_str(o, "topic", topic);
	if (tmpl != NULL)
		add_str(o, "value_template", tmpl);
	add_str(o, "payload_available", "online");
	add_str(o, "payload_not_available", "offline");
	return o;
}

/*
 * Writes <prefix>/<component>/<node>/<object>/config into topic.  0 or
 * -1 (does not fit).
 */
static int
config_topic(char *topic, const struct hass_target *t, const char *component,
    const char *object)
{
	char	node[NODE_MAX];
	int	n;

	if (make_id(node, sizeof(node), t->bridge_host, NULL) == -1)
		return -1;
	n = snprintf(topic, HASS_TOPIC_MAX, "%s/%s/%s/%s/config", t->prefix,
	    component, node, object);
	return n < 0 || n >= HASS_TOPIC_MAX ? -1 : 0;
}

/* "<enc host>__<enc vm>__<key>".  0 or -1. */
static int
object_id(char *buf, size_t len, const char *host, const char *vm,
    const char *key)
{
	char	eh[ENC_MAX], ev[ENC_MAX];
	int	n;

	if (hass_encode(eh, sizeof(eh), host) == -1 ||
	    hass_encode(ev, sizeof(ev), vm) == -1)
		return -1;
	n = snprintf(buf, len, "%s" SEP "%s" SEP "%s", eh, ev, key);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

json_object *
hass_config(const struct hass_target *t, enum hass_entity e, char *topic)
{
	const struct entity	*en = &entities[e];
	char			 obj[2 * ENC_MAX + 32], uid[NODE_MAX + ENC_MAX +
				    32], dev[NODE_MAX + ENC_MAX + 8],
				 bdev[NODE_MAX], vt[TOPIC_MAX], bt[TOPIC_MAX],
				 model[64];
	json_object		*o, *d, *av, *a;

	if (object_id(obj, sizeof(obj), t->host, t->vm, en->key) == -1 ||
	    config_topic(topic, t, en->component, obj) == -1 ||
	    make_id(dev, sizeof(dev), t->host, t->vm) == -1 ||
	    make_id(bdev, sizeof(bdev), t->bridge_host, NULL) == -1 ||
	    topic_build(bt, sizeof(bt), t->base, t->bridge_host, "bridge",
	    "state") == -1)
		return NULL;
	snprintf(uid, sizeof(uid), "%s" SEP "%s", dev, en->key);
	if ((o = json_object_new_object()) == NULL)
		return NULL;
	add_str(o, "name", en->name);
	add_str(o, "unique_id", uid);

	d = json_object_new_object();
	json_object_object_add(d, "identifiers", ids_json(dev));
	snprintf(vt, sizeof(vt), "%s/%s", t->host, t->vm);
	add_str(d, "name", vt);
	if (t->qemu != NULL && *t->qemu != '\0')
		snprintf(model, sizeof(model), "QEMU %s", t->qemu);
	else
		snprintf(model, sizeof(model), "QEMU");
	add_str(d, "model", model);
	add_str(d, "manufacturer", "qmp2mqtt");
	add_str(d, "via_device", bdev);
	json_object_object_add(o, "device", d);
	json_object_object_add(o, "origin", origin_json());

	/* A dead bridge (Last Will) makes its VMs unavailable. */
	a = json_object_new_array();
	json_object_array_add(a, avail_json(bt, T_BRIDGE));
	topic_build(vt, sizeof(vt), t->base, t->host, t->vm, "availability");
	json_object_array_add(a, avail_json(vt, NULL));
	json_object_object_add(o, "availability", a);
	add_str(o, "availability_mode", "all");
	json_object_object_add(o, "qos", json_object_new_int(1));

	switch (e) {
	case HASS_MODE:
	case HASS_PROTECTED:
	case HASS_EXIT_REASON:
	case HASS_QMP:
		topic_build(vt, sizeof(vt), t->base, t->host, t->vm, "state");
		add_str(o, "state_topic", vt);
		break;
	case HASS_EXIT:
		topic_build(vt, sizeof(vt), t->base, t->host, t->vm,
		    "event/colo_exit");
		add_str(o, "state_topic", vt);
		break;
	case HASS_TAKEOVER:
		topic_build(vt, sizeof(vt), t->base, t->host, t->vm,
		    "cmd/takeover");
		add_str(o, "command_topic", vt);
		break;
	default:
		break;
	}
	switch (e) {
	case HASS_MODE:
		add_str(o, "value_template", T_MODE);
		add_str(o, "icon", "mdi:shield-sync");
		break;
	case HASS_PROTECTED:
		add_str(o, "value_template", T_PROTECTED);
		add_str(o, "payload_on", "ON");
		add_str(o, "payload_off", "OFF");
		add_str(o, "icon", "mdi:shield-check");
		break;
	case HASS_EXIT:
		av = json_object_new_array();
		json_object_array_add(av, json_object_new_string("request"));
		json_object_array_add(av, json_object_new_string("error"));
		json_object_array_add(av, json_object_new_string("processing"));
		json_object_array_add(av, json_object_new_string("none"));
		json_object_object_add(o, "event_types", av);
		add_str(o, "value_template", T_EXIT);
		break;
	case HASS_EXIT_REASON:
		add_str(o, "value_template", T_EXIT_REASON);
		add_str(o, "entity_category", "diagnostic");
		break;
	case HASS_QMP:
		add_str(o, "value_template", T_QMP);
		add_str(o, "device_class", "enum");
		av = json_object_new_array();
		json_object_array_add(av, json_object_new_string("connected"));
		json_object_array_add(av,
		    json_object_new_string("disconnected"));
		json_object_object_add(o, "options", av);
		add_str(o, "entity_category", "diagnostic");
		break;
	case HASS_TAKEOVER:
		add_str(o, "command_template", T_TAKEOVER);
		json_object_object_add(o, "retain",
		    json_object_new_boolean(0));
		add_str(o, "icon", "mdi:swap-horizontal-bold");
		break;
	default:
		break;
	}
	return o;
}

json_object *
hass_bridge_config(const struct hass_target *t, char *topic)
{
	char		 bdev[NODE_MAX], bt[TOPIC_MAX], uid[NODE_MAX + 16],
			 name[TOPIC_LEVEL_MAX + 16];
	json_object	*o, *d;

	if (config_topic(topic, t, "binary_sensor", "bridge") == -1 ||
	    make_id(bdev, sizeof(bdev), t->bridge_host, NULL) == -1 ||
	    topic_build(bt, sizeof(bt), t->base, t->bridge_host, "bridge",
	    "state") == -1 || (o = json_object_new_object()) == NULL)
		return NULL;
	snprintf(uid, sizeof(uid), "%s" SEP "bridge", bdev);
	snprintf(name, sizeof(name), "qmp2mqtt %s", t->bridge_host);
	add_str(o, "name", "Bridge");
	add_str(o, "unique_id", uid);
	d = json_object_new_object();
	json_object_object_add(d, "identifiers", ids_json(bdev));
	add_str(d, "name", name);
	add_str(d, "model", "qmp2mqtt bridge");
	add_str(d, "manufacturer", "qmp2mqtt");
	add_str(d, "sw_version", QMP2MQTT_VERSION);
	json_object_object_add(o, "device", d);
	json_object_object_add(o, "origin", origin_json());
	add_str(o, "state_topic", bt);
	add_str(o, "value_template", T_BRIDGE);
	add_str(o, "payload_on", "online");
	add_str(o, "payload_off", "offline");
	add_str(o, "device_class", "connectivity");
	add_str(o, "entity_category", "diagnostic");
	json_object_object_add(o, "qos", json_object_new_int(1));
	return o;
}

/* --- publishing ------------------------------------------------------ */

static void
target_of(const struct hass *hs, const struct vm *v, struct hass_target *t)
{
	t->prefix = hs->cf->hass.prefix;
	t->base = hs->cf->base_topic;
	t->bridge_host = hs->cf->host;
	t->host = v != NULL ? v->cv->host : NULL;
	t->vm = v != NULL ? v->cv->name : NULL;
	t->qemu = v != NULL ? v->qemu : NULL;
}

static void
publish(struct hass *hs, const char *topic, json_object *o)
{
	const char	*s;
	size_t		 len;

	if (o == NULL) {
		log_warnx("homeassistant: out of memory (or a topic too long) "
		    "building a discovery config");
		return;
	}
	if ((s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &len)) != NULL)
		mqtt_publish(hs->mqtt, topic, s, len, 1,
		    MQTT_PUB_RETAIN | MQTT_PUB_STATE);
	json_object_put(o);
}

/*
 * An empty retained config.  Not a state message: it is queued while the
 * broker is away and survives a reconnect (a config published later for
 * the same topic is queued behind it), but never spooled.
 */
static void
clear(struct hass *hs, const char *topic)
{
	mqtt_publish(hs->mqtt, topic, "", 0, 1,
	    MQTT_PUB_RETAIN | MQTT_PUB_VOLATILE);
}

static uint64_t
hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

/* Clears every entity's config of the VM whose object ids begin with obj. */
static void
clear_obj(struct hass *hs, const char *obj, size_t objlen)
{
	struct hass_target	 t;
	char			 topic[HASS_TOPIC_MAX], o[2 * ENC_MAX + 32];

	target_of(hs, NULL, &t);
	for (int e = 0; e < HASS_NENTITIES; e++) {
		snprintf(o, sizeof(o), "%.*s" SEP "%s", (int)objlen, obj,
		    entities[e].key);
		if (config_topic(topic, &t, entities[e].component, o) == 0)
			clear(hs, topic);
	}
}

/* Clears every config of (host, name). */
static void
clear_vm(struct hass *hs, const char *host, const char *name)
{
	char	eh[ENC_MAX], ev[ENC_MAX], obj[2 * ENC_MAX + 8];
	int	n;

	if (hass_encode(eh, sizeof(eh), host) == -1 ||
	    hass_encode(ev, sizeof(ev), name) == -1)
		return;
	n = snprintf(obj, sizeof(obj), "%s" SEP "%s", eh, ev);
	if (n > 0 && (size_t)n < sizeof(obj))
		clear_obj(hs, obj, (size_t)n);
}

/* --- the table of announced VMs -------------------------------------- */

static int
cmp_key(const char *host, const char *name, const struct hent *e)
{
	int r = strcmp(host, e->host);

	return r != 0 ? r : strcmp(name, e->name);
}

static int
cmp_hent(const void *a, const void *b)
{
	const struct hent *x = a;

	return cmp_key(x->host, x->name, b);
}

static struct hent *
tab_find(const struct hent *tab, size_t n, const char *host, const char *name)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t	mid = lo + (hi - lo) / 2;
		int	r = cmp_key(host, name, &tab[mid]);

		if (r == 0)
			return (struct hent *)(uintptr_t)&tab[mid];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Frees the table; the strings of moved entries belong to another. */
static void
tab_free(struct hent *tab, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!tab[i].moved) {
			free(tab[i].host);
			free(tab[i].name);
		}
	free(tab);
}

/*
 * Makes the table the fleet's VMs (what was known of a VM that stays is
 * kept); every config of a VM that left is cleared.  Returns the number
 * that left, or -1 when out of memory (the table is then unchanged).
 */
static int
retable(struct hass *hs)
{
	size_t		 n = fleet_count(hs->fleet), left = 0;
	struct hent	*nt, *o;

	if ((nt = calloc(n + 1, sizeof(*nt))) == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		const struct vm *v = fleet_vm(hs->fleet, i);

		if ((o = tab_find(hs->tab, hs->ntab, v->cv->host,
		    v->cv->name)) != NULL && !o->moved) {
			nt[i] = *o;
			o->moved = 1;
			continue;
		}
		nt[i].button = -1;
		nt[i].moved = 1;	/* not the new table's yet: see oom */
		if ((nt[i].host = strdup(v->cv->host)) == NULL ||
		    (nt[i].name = strdup(v->cv->name)) == NULL) {
			free(nt[i].host);
			for (size_t j = 0; j < i; j++)
				if (nt[j].moved) {
					free(nt[j].host);
					free(nt[j].name);
				}
			for (size_t j = 0; j < hs->ntab; j++)
				hs->tab[j].moved = 0;
			free(nt);
			goto oom;
		}
	}
	for (size_t i = 0; i < n; i++)
		nt[i].moved = 0;
	qsort(nt, n, sizeof(*nt), cmp_hent);
	for (size_t i = 0; i < hs->ntab; i++) {
		o = &hs->tab[i];
		if (o->moved)
			continue;	/* still served */
		log_info("homeassistant: %s/%s is not served any more: its "
		    "discovery configs are cleared", o->host, o->name);
		clear_vm(hs, o->host, o->name);
		left++;
	}
	tab_free(hs->tab, hs->ntab);
	hs->tab = nt;
	hs->ntab = n;
	return (int)left;
oom:
	log_warnx("homeassistant: out of memory");
	return -1;
}

/* All configs of v (e: its entry); the button's cleared when it went. */
static void
announce_vm(struct hass *hs, const struct vm *v, struct hent *e)
{
	struct hass_target	 t;
	char			 topic[HASS_TOPIC_MAX];
	int			 button = hass_has_button(hs->cf, v);

	target_of(hs, v, &t);
	for (int i = 0; i < HASS_NENTITIES; i++) {
		if (i == HASS_TAKEOVER && !button)
			continue;
		publish(hs, topic, hass_config(&t, (enum hass_entity)i, topic));
	}
	if (!button && e->button == 1) {
		char eh[ENC_MAX], ev[ENC_MAX], obj[2 * ENC_MAX + 32];

		if (hass_encode(eh, sizeof(eh), v->cv->host) != -1 &&
		    hass_encode(ev, sizeof(ev), v->cv->name) != -1 &&
		    snprintf(obj, sizeof(obj), "%s" SEP "%s" SEP "%s", eh, ev,
		    entities[HASS_TAKEOVER].key) < (int)sizeof(obj) &&
		    config_topic(topic, &t, entities[HASS_TAKEOVER].component,
		    obj) == 0)
			clear(hs, topic);
	}
	e->qemu_hash = v->qemu[0] != '\0' ? hash_str(v->qemu) : 0;
	e->button = button;
}

void
hass_announce(struct hass *hs)
{
	struct hass_target	 t;
	char			 topic[HASS_TOPIC_MAX];
	size_t			 n;
	struct hent		*e;

	if (hs == NULL)
		return;
	(void)retable(hs);
	hs->announced = 1;
	target_of(hs, NULL, &t);
	publish(hs, topic, hass_bridge_config(&t, topic));
	n = fleet_count(hs->fleet);
	for (size_t i = 0; i < n; i++) {
		const struct vm *v = fleet_vm(hs->fleet, i);

		if ((e = tab_find(hs->tab, hs->ntab, v->cv->host,
		    v->cv->name)) != NULL)
			announce_vm(hs, v, e);
	}
	log_debug("homeassistant: discovery configs of %zu VM(s) published "
	    "under %s", n, hs->cf->hass.prefix);
}

void
hass_sync(struct hass *hs)
{
	size_t		 n, joined = 0;
	struct hent	*e;
	int		 left;

	if (hs == NULL || (left = retable(hs)) == -1)
		return;
	if (!mqtt_connected(hs->mqtt))
		return;		/* the connect announces */
	if (!hs->announced) {
		hass_announce(hs);
		return;
	}
	n = fleet_count(hs->fleet);
	for (size_t i = 0; i < n; i++) {
		const struct vm *v = fleet_vm(hs->fleet, i);

		if ((e = tab_find(hs->tab, hs->ntab, v->cv->host,
		    v->cv->name)) != NULL && (e->button == -1 ||
		    e->button != hass_has_button(hs->cf, v))) {
			announce_vm(hs, v, e);
			joined++;
		}
	}
	if (joined > 0 || left > 0)
		log_info("homeassistant: %zu VM(s) announced, %d cleared",
		    joined, left);
}

static void
resend_tick(struct loop *l, struct loop_timer *tm, void *arg)
{
	struct hass *hs = arg;

	hs->last_resend_ms = loop_now_ms();
	hs->resent = 1;
	if (mqtt_connected(hs->mqtt))
		hass_announce(hs);
}

/* The device model follows the QEMU version (known after a greeting). */
static void
scan_tick(struct loop *l, struct loop_timer *tm, void *arg)
{
	struct hass	*hs = arg;
	size_t		 n = 0, nv = fleet_count(hs->fleet);
	struct hent	*e;

	if (mqtt_connected(hs->mqtt) && hs->announced)
		for (size_t i = 0; i < nv; i++) {
			const struct vm *v = fleet_vm(hs->fleet, i);

			if (v->qemu[0] != '\0' && (e = tab_find(hs->tab,
			    hs->ntab, v->cv->host, v->cv->name)) != NULL &&
			    e->button != -1 && hash_str(v->qemu) !=
			    e->qemu_hash) {
				announce_vm(hs, v, e);
				n++;
			}
		}
	if (n > 0)
		log_debug("homeassistant: %zu VM(s) re-announced with their "
		    "QEMU version", n);
	loop_timer_arm(tm, HASS_VERSION_SCAN_MS);
}

/* --- received messages ----------------------------------------------- */

/*
 * A retained config under our node: kept when it is one we announce now,
 * else cleared (with every other entity of its VM when the VM is gone).
 */
static void
on_config(struct hass *hs, const struct mqtt_msg *msg, const char *comp,
    size_t complen, const char *obj, size_t objlen)
{
	const char	*s1, *s2;
	char		 host[TOPIC_LEVEL_MAX + 1], name[TOPIC_LEVEL_MAX + 1];
	struct vm	*v;
	int		 e, hl, nl;

	if (!msg->retained || msg->len == 0)
		return;
	/* <enc host>__<enc vm>__<key>: "__" only between the parts. */
	s1 = memmem(obj, objlen, SEP, 2);
	s2 = NULL;
	for (const char *p = obj + objlen - 2; s1 != NULL && p > s1 + 1; p--)
		if (memcmp(p, SEP, 2) == 0) {
			s2 = p;
			break;
		}
	if (s1 == NULL || s2 == NULL ||
	    (hl = hass_decode(host, sizeof(host), obj,
	    (size_t)(s1 - obj))) <= 0 ||
	    (nl = hass_decode(name, sizeof(name), s1 + 2,
	    (size_t)(s2 - s1 - 2))) <= 0) {
		log_info("homeassistant: %.300s is not one of this bridge's "
		    "configs: cleared", msg->topic);
		clear(hs, msg->topic);
		return;
	}
	if ((v = fleet_find(hs->fleet, host, (size_t)hl, name,
	    (size_t)nl)) == NULL) {
		log_info("homeassistant: %s/%s is not configured any more: "
		    "its discovery configs are cleared", host, name);
		clear_obj(hs, obj, (size_t)(s2 - obj));
		clear(hs, msg->topic);
		return;
	}
	for (e = 0; e < HASS_NENTITIES; e++)
		if (strlen(entities[e].key) == objlen - (size_t)(s2 + 2 - obj) &&
		    memcmp(entities[e].key, s2 + 2, objlen -
		    (size_t)(s2 + 2 - obj)) == 0)
			break;
	if (e < HASS_NENTITIES && strlen(entities[e].component) == complen &&
	    memcmp(entities[e].component, comp, complen) == 0 &&
	    (e != HASS_TAKEOVER || hass_has_button(hs->cf, v)))
		return;		/* announced now */
	log_info("homeassistant: %.300s is not announced any more: cleared",
	    msg->topic);
	clear(hs, msg->topic);
}

int
hass_on_message(struct hass *hs, const struct mqtt_msg *msg)
{
	const char	*t = msg->topic, *comp, *node, *obj, *end;
	size_t		 plen = strlen(hs->cf->hass.prefix);

	if (strcmp(t, hs->t_status) == 0) {
		uint64_t now = loop_now_ms(), at;

		/* Under 3.1.1 a retained "online" is an old one. */
		if ((hs->cf->mqtt_version == 3 && msg->retained) ||
		    msg->len != 6 || memcmp(msg->payload, "online", 6) != 0 ||
		    loop_timer_armed(hs->resend))
			return 1;
		/*
		 * HA just (re)started and needs every config, whenever the
		 * last connect announced them.  Soon, coalesced, and at most
		 * once per HASS_RESEND_MIN_MS: a flood of "online" costs one
		 * resend per period.
		 */
		at = now + 500 + now % 500;
		if (hs->resent && hs->last_resend_ms + HASS_RESEND_MIN_MS > at)
			at = hs->last_resend_ms + HASS_RESEND_MIN_MS;
		log_info("homeassistant: Home Assistant is online: discovery "
		    "configs are published again in %" PRIu64 " ms", at - now);
		loop_timer_arm(hs->resend, at - now);
		return 1;
	}
	if (strncmp(t, hs->cf->hass.prefix, plen) != 0 || t[plen] != '/')
		return 0;
	comp = t + plen + 1;
	if ((node = strchr(comp, '/')) == NULL)
		return 0;
	node++;
	if (strncmp(node, hs->node, strlen(hs->node)) != 0 ||
	    node[strlen(hs->node)] != '/')
		return 0;
	obj = node + strlen(hs->node) + 1;
	if ((end = strchr(obj, '/')) == NULL || strcmp(end, "/config") != 0 ||
	    end == obj)
		return 0;
	on_config(hs, msg, comp, (size_t)(node - 1 - comp), obj,
	    (size_t)(end - obj));
	return 1;
}

/* --- life cycle ------------------------------------------------------ */

struct hass *
hass_new(struct loop *loop, const struct config *cf, struct mqtt *m,
    struct fleet *fleet, int *failed)
{
	struct hass	*hs;
	int		 n;

	*failed = 0;
	if (!cf->hass.enabled)
		return NULL;
	if ((hs = calloc(1, sizeof(*hs))) == NULL ||
	    (hs->resend = loop_timer_new(loop, resend_tick, hs)) == NULL ||
	    (hs->scan = loop_timer_new(loop, scan_tick, hs)) == NULL)
		goto fail;
	hs->loop = loop;
	hs->cf = cf;
	hs->mqtt = m;
	hs->fleet = fleet;
	if (make_id(hs->node, sizeof(hs->node), cf->host, NULL) == -1)
		goto fail;
	n = snprintf(hs->t_status, sizeof(hs->t_status), "%s/status",
	    cf->hass.prefix);
	if (n < 0 || (size_t)n >= sizeof(hs->t_status) ||
	    mqtt_subscribe(m, hs->t_status, 1, MQTT_SUB_NO_RETAINED) == -1)
		goto fail;
	/* What this bridge announced before: at most two per VM. */
	snprintf(hs->f_event, sizeof(hs->f_event), "%s/event/%s/+/config",
	    cf->hass.prefix, hs->node);
	if (mqtt_subscribe(m, hs->f_event, 1, MQTT_SUB_RETAINED |
	    MQTT_SUB_NO_LOCAL) == -1)
		goto fail;
	snprintf(hs->f_button, sizeof(hs->f_button), "%s/button/%s/+/config",
	    cf->hass.prefix, hs->node);
	if (mqtt_subscribe(m, hs->f_button, 1, MQTT_SUB_RETAINED |
	    MQTT_SUB_NO_LOCAL) == -1)
		goto fail;
	loop_timer_arm(hs->scan, HASS_VERSION_SCAN_MS);
	return hs;
fail:
	log_warnx("homeassistant: out of memory");
	hass_free(hs);
	*failed = 1;
	return NULL;
}

void
hass_free(struct hass *hs)
{
	if (hs == NULL)
		return;
	if (hs->mqtt != NULL) {
		if (hs->t_status[0] != '\0')
			(void)mqtt_unsubscribe(hs->mqtt, hs->t_status);
		if (hs->f_event[0] != '\0')
			(void)mqtt_unsubscribe(hs->mqtt, hs->f_event);
		if (hs->f_button[0] != '\0')
			(void)mqtt_unsubscribe(hs->mqtt, hs->f_button);
	}
	loop_timer_free(hs->resend);
	loop_timer_free(hs->scan);
	tab_free(hs->tab, hs->ntab);
	free(hs);
}

int
hass_reload(struct hass **hsp, struct loop *loop, const struct config *cf,
    struct mqtt *m, struct fleet *fleet)
{
	struct hass	*hs = *hsp;
	int		 failed;

	if (hs != NULL && !cf->hass.enabled) {
		log_info("homeassistant: turned off: the discovery configs "
		    "announced stay (clear them with empty retained messages)");
		hass_free(hs);
		*hsp = NULL;
		return 0;
	}
	if (hs != NULL && (strcmp(hs->cf->hass.prefix, cf->hass.prefix) != 0 ||
	    strcmp(hs->cf->host, cf->host) != 0)) {
		struct hass_target	t;
		char			topic[HASS_TOPIC_MAX];

		/* Under the old prefix and node (hs->cf is still alive). */
		log_info("homeassistant: discovery moves from %s/.../%s to "
		    "%s/.../qmp2mqtt_%s: the old configs are cleared",
		    hs->cf->hass.prefix, hs->node, cf->hass.prefix, cf->host);
		for (size_t i = 0; i < hs->ntab; i++)
			clear_vm(hs, hs->tab[i].host, hs->tab[i].name);
		target_of(hs, NULL, &t);
		if (config_topic(topic, &t, "binary_sensor", "bridge") == 0)
			clear(hs, topic);
		hass_free(hs);
		*hsp = hs = NULL;
	}
	if (hs != NULL) {
		hs->cf = cf;
		return 0;
	}
	if (!cf->hass.enabled)
		return 0;
	*hsp = hass_new(loop, cf, m, fleet, &failed);
	if (*hsp != NULL)
		log_info("homeassistant: on, prefix %s", cf->hass.prefix);
	return failed ? -1 : 0;
}
