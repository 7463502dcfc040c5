/*
 * hass: Home Assistant MQTT discovery (homeassistant.enabled).
 *
 * For every VM the bridge serves, one HA device with its entities, each
 * announced by a retained config on
 *
 *	<prefix>/<component>/<node_id>/<object_id>/config
 *
 * node_id is "qmp2mqtt_" + this bridge's host: everything under it is
 * this bridge's and nobody else's, so it may clear what it no longer
 * serves.  object_id is "<host>__<vm>__<entity>" (the bridge's own device:
 * "bridge").  Names are encoded into [a-zA-Z0-9_-] injectively: letters,
 * digits and '-' stay, any other byte becomes '_' and two lowercase hex
 * digits, so "__" never occurs inside an encoded name and two different
 * names never share an id.
 *
 * Entities read the bridge's own topics (state, event/colo_exit,
 * bridge/state) through value templates; nothing is published for HA but
 * the configs.  Configs are published after every broker connect (as
 * state messages: not spooled, coalesced), again when HA announces
 * "online" on <prefix>/status (coalesced, at most every
 * HASS_RESEND_MIN_MS), and for a VM whose QEMU version changed (the
 * device's model).
 *
 * The VMs are the fleet's (fleet.c), which changes at run time (SIGHUP
 * reload, socket discovery): hass_sync(), called after every change,
 * announces the VMs that joined at once and clears the configs of those
 * that left (empty retained messages: HA removes the entities and the
 * device) -- whatever bridge.removed_vm_state says, which is about the
 * bridge's own topics.  hass keeps its own small table of the VMs it
 * announced (host, name, QEMU version, button), by name.  A VM that left
 * while the broker was away, or before a restart, is found through the
 * retained configs under node_id (the event and button components only:
 * at most two per VM come back on each connect) and cleared then.
 * Loop thread only.
 */
#ifndef QMP2MQTT_HASS_H
#define QMP2MQTT_HASS_H

#include <stddef.h>
#include <json-c/json.h>

struct loop;
struct config;
struct mqtt;
struct mqtt_msg;
struct vm;
struct fleet;
struct hass;

#define HASS_TOPIC_MAX		1024	/* any discovery topic fits */
#define HASS_RESEND_MIN_MS	5000	/* between two resends on "online" */
#define HASS_VERSION_SCAN_MS	2000	/* QEMU versions checked this often */

/* The entities of one VM, in announcement order. */
enum hass_entity {
	HASS_MODE,		/* sensor: COLO mode */
	HASS_PROTECTED,		/* binary_sensor: mode primary/secondary */
	HASS_EXIT,		/* event: event/colo_exit */
	HASS_EXIT_REASON,	/* sensor, diagnostic: last_exit.reason */
	HASS_QMP,		/* sensor, diagnostic: qmp */
	HASS_TAKEOVER,		/* button: cmd/takeover (auth acl only) */
	HASS_NENTITIES
};

/* What a config is built from (pure: no VM, no broker). */
struct hass_target {
	const char	*prefix;	/* homeassistant.prefix */
	const char	*base;		/* mqtt.base_topic */
	const char	*bridge_host;	/* bridge.host: node_id, bridge/state */
	const char	*host;		/* the VM's host level */
	const char	*vm;		/* the VM's name */
	const char	*qemu;		/* QEMU version, NULL or "": unknown */
};

/*
 * Creates the discovery publisher for the fleet's VMs (the fleet must
 * outlive it) and subscribes to <prefix>/status and to the retained
 * configs under node_id.  Nothing is published before hass_announce() or,
 * while connected, hass_sync().  NULL when cf->hass.enabled is 0 (not an
 * error) or on failure (logged; *failed set to 1).
 */
struct hass	*hass_new(struct loop *, const struct config *, struct mqtt *,
		    struct fleet *, int *failed);
/* Unsubscribes, frees; announced configs stay.  NULL is a no-op. */
void		 hass_free(struct hass *);
/* Publishes every config (after a broker connect).  NULL: no-op. */
void		 hass_announce(struct hass *);
/*
 * After every fleet change: VMs that joined are announced (everything,
 * when nothing was announced yet), VMs that left have all their configs
 * cleared, VMs whose button came or went are announced again.  Only the
 * clears are sent while disconnected (queued); the connect announces the
 * rest.  NULL: no-op.
 */
void		 hass_sync(struct hass *);
/*
 * A reloaded configuration cf (kept by reference), before the fleet is
 * changed to it: *hsp is created when homeassistant was turned on, freed
 * when it was turned off (its configs left in place), made anew when the
 * prefix or bridge.host (the node id) changed, after clearing every
 * config it announced under the old ones; else it only takes cf.  0, or
 * -1 when it could not be created (logged; *hsp is then NULL).
 */
int		 hass_reload(struct hass **hsp, struct loop *,
		    const struct config *cf, struct mqtt *, struct fleet *);
/*
 * Offers a received message.  Returns 1 when it was one of hass's (HA's
 * status, a retained config under node_id), consumed; 0 otherwise.
 */
int		 hass_on_message(struct hass *, const struct mqtt_msg *);

/*
 * Pure helpers, exposed for tests.
 *
 * hass_encode: name encoded as described above into buf (len >= 3 *
 * strlen(name) + 1).  Returns the length, or -1 when it does not fit.
 */
int		 hass_encode(char *buf, size_t len, const char *name);
/*
 * hass_decode: the inverse of hass_encode for the n bytes at s.  Returns
 * the length written to buf (NUL-terminated), or -1 when s is not a valid
 * encoding or does not fit.
 */
int		 hass_decode(char *buf, size_t len, const char *s, size_t n);
/* Whether a VM gets a takeover button (takeover on, auth acl). */
int		 hass_has_button(const struct config *, const struct vm *);
/* The component ("sensor", ...) of entity e. */
const char	*hass_component(enum hass_entity e);
/*
 * hass_config: the discovery config of entity e of t's VM, its topic in
 * topic (HASS_TOPIC_MAX bytes).  hass_bridge_config: the bridge's own
 * device (t->host, t->vm, t->qemu unused).  NULL when out of memory or
 * when the topic does not fit.
 */
json_object	*hass_config(const struct hass_target *t, enum hass_entity e,
		    char *topic);
json_object	*hass_bridge_config(const struct hass_target *t, char *topic);

#endif
