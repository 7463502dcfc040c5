/*
 * peer: see peer.h.
 */
#include <stdio.h>
#include <string.h>

#include "peer.h"

void
peer_init(struct peer_view *p, int configured, int local)
{
	memset(p, 0, sizeof(*p));
	p->configured = configured;
	p->local = local;
	p->qmp = p->availability = -1;
	p->bridge = local ? PEER_BRIDGE_ONLINE : PEER_BRIDGE_UNKNOWN;
}

static int
in_colo(const char *mode)
{
	return strcmp(mode, "primary") == 0 || strcmp(mode, "secondary") == 0;
}

/* Copies s (NULL: "") into dst; returns 1 when dst changed. */
static int
set(char *dst, size_t len, const char *s)
{
	char	old[COLO_ENUM_MAX + 1];

	snprintf(old, sizeof(old), "%s", dst);
	snprintf(dst, len, "%s", s != NULL ? s : "");
	return strcmp(old, dst) != 0;
}

/* Parses a JSON object payload; NULL when it is not one. */
static json_object *
parse_obj(const void *payload, size_t len)
{
	json_tokener	*tok;
	json_object	*o;

	if (len == 0 || len > 65536 || (tok = json_tokener_new()) == NULL)
		return NULL;
	o = json_tokener_parse_ex(tok, payload, (int)len);
	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len ||
	    !json_object_is_type(o, json_type_object))) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* A string member of o that colo_enum() accepts, NULL otherwise. */
static const char *
member_enum(json_object *o, const char *key, int is_mode)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return NULL;
	return colo_enum(v, is_mode);
}

int
peer_on_state(struct peer_view *p, const void *payload, size_t len)
{
	json_object	*o, *v;
	const char	*live, *qmp;
	int		 changed = 0, q = -1;

	if (len == 0) {		/* retained state cleared */
		changed = p->have_state;
		p->have_state = 0;
		p->mode[0] = p->last_mode[0] = p->liveness[0] = '\0';
		p->qmp = -1;
		p->unconfirmed = 0;
		return changed;
	}
	if ((o = parse_obj(payload, len)) == NULL)
		return -1;
	live = member_enum(o, "liveness", 0);
	if (live != NULL && strcmp(live, "alive") != 0 &&
	    strcmp(live, "gone") != 0 && strcmp(live, "unreachable") != 0)
		live = NULL;	/* an unknown value proves nothing */
	qmp = json_object_object_get_ex(o, "qmp", &v) &&
	    json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : NULL;
	if (qmp != NULL)
		q = strcmp(qmp, "connected") == 0 ? 1 : 0;
	changed |= !p->have_state;
	p->have_state = 1;
	changed |= set(p->mode, sizeof(p->mode), member_enum(o, "mode", 1));
	changed |= set(p->last_mode, sizeof(p->last_mode),
	    member_enum(o, "last_mode", 1));
	changed |= set(p->liveness, sizeof(p->liveness), live);
	changed |= p->qmp != q;
	p->qmp = q;
	q = json_object_object_get_ex(o, "heartbeat_unconfirmed", &v) &&
	    json_object_is_type(v, json_type_boolean) &&
	    json_object_get_boolean(v);
	changed |= p->unconfirmed != q;
	p->unconfirmed = q;
	json_object_put(o);
	return changed;
}

int
peer_on_availability(struct peer_view *p, const void *payload, size_t len)
{
	int a;

	if (len == 0)
		a = -1;
	else if (len == 6 && memcmp(payload, "online", 6) == 0)
		a = 1;
	else if (len == 7 && memcmp(payload, "offline", 7) == 0)
		a = 0;
	else
		return -1;
	if (p->availability == a)
		return 0;
	p->availability = a;
	return 1;
}

int
peer_on_bridge(struct peer_view *p, const void *payload, size_t len)
{
	json_object		*o, *v;
	enum peer_bridge	 b = PEER_BRIDGE_UNKNOWN;

	if (len > 0) {
		if ((o = parse_obj(payload, len)) == NULL)
			return -1;
		if (json_object_object_get_ex(o, "state", &v) &&
		    json_object_is_type(v, json_type_string)) {
			if (strcmp(json_object_get_string(v), "online") == 0)
				b = PEER_BRIDGE_ONLINE;
			else if (strcmp(json_object_get_string(v),
			    "offline") == 0)
				b = PEER_BRIDGE_OFFLINE;
		}
		json_object_put(o);
		if (b == PEER_BRIDGE_UNKNOWN)
			return -1;
	}
	if (p->bridge == b)
		return 0;
	p->bridge = b;
	return 1;
}

int
peer_set_local(struct peer_view *p, const char *mode, const char *last_mode,
    const char *liveness, int connected, int running)
{
	int changed = !p->have_state;

	p->have_state = 1;
	p->bridge = PEER_BRIDGE_ONLINE;
	changed |= set(p->mode, sizeof(p->mode), mode);
	changed |= set(p->last_mode, sizeof(p->last_mode), last_mode);
	changed |= set(p->liveness, sizeof(p->liveness), liveness);
	changed |= p->qmp != connected;
	p->qmp = connected;
	changed |= p->availability != connected;
	p->availability = connected;
	changed |= p->running != running;
	p->running = running;
	return changed;
}

static const char *
nz(const char *s)
{
	return s[0] != '\0' ? s : NULL;
}

static json_object *
str_or_null(const char *s)
{
	return s != NULL ? json_object_new_string(s) : NULL;
}

json_object *
peer_json(const struct peer_view *p, const char *host, const char *vm)
{
	json_object	*o;
	static const char *const bridge[] = { "unknown", "online", "offline" };

	if (!p->configured || (o = json_object_new_object()) == NULL)
		return NULL;
	json_object_object_add(o, "host", json_object_new_string(host));
	json_object_object_add(o, "vm", json_object_new_string(vm));
	json_object_object_add(o, "bridge",
	    json_object_new_string(bridge[p->bridge]));
	json_object_object_add(o, "mode", str_or_null(nz(p->mode)));
	json_object_object_add(o, "last_mode", str_or_null(nz(p->last_mode)));
	json_object_object_add(o, "qmp", p->qmp < 0 ? NULL :
	    json_object_new_string(p->qmp ? "connected" : "disconnected"));
	json_object_object_add(o, "liveness", str_or_null(nz(p->liveness)));
	return o;
}

/*
 * The decision table (README "Pair rules").  In order:
 *  1. no peer configured, its bridge offline or silent, no state: unknown;
 *  2. a takeover of the peer is running, or a heartbeat was sent to it
 *     and no status read since showed the outcome, or the peer left COLO
 *     after being in it (mode none, last_mode primary/secondary): it took
 *     over, whatever its liveness now (a dead one's state is stale, not
 *     safe);
 *  3. this half is the secondary: only a primary proven gone allows it;
 *     alive: peer_alive; anything else: peer_unknown;
 *  4. this half is the primary: the secondary, even alive, waits after
 *     the primary's failover (QEMU never takes over by itself), so a
 *     secondary still in COLO, gone, or a fresh QEMU that never was in
 *     COLO allows it;
 *  5. anything else (own mode unknown, peer mode unknown): unknown.
 */
enum tk_reason
peer_check(const struct peer_view *p, const char *own, const char **why)
{
	if (p == NULL || !p->configured) {
		*why = "no peer configured for this VM (or no memory for its "
		    "view): the pair cannot be checked (use force to override)";
		return TK_PEER_UNKNOWN;
	}
	if (p->bridge == PEER_BRIDGE_OFFLINE) {
		*why = "the peer's bridge is offline: nothing proves the peer "
		    "is gone";
		return TK_PEER_UNKNOWN;
	}
	if (p->bridge != PEER_BRIDGE_ONLINE || !p->have_state) {
		*why = "nothing known about the peer (its bridge or state was "
		    "never seen)";
		return TK_PEER_UNKNOWN;
	}
	if (p->running || p->unconfirmed) {
		*why = "the peer is being taken over, or was sent a heartbeat "
		    "whose outcome no status read has shown since";
		return TK_PEER_TOOK_OVER;
	}
	if (strcmp(p->mode, "none") == 0 && in_colo(p->last_mode)) {
		*why = "the peer already left COLO (it took over)";
		return TK_PEER_TOOK_OVER;
	}
	if (own == NULL || !in_colo(own)) {
		*why = "this VM's COLO role is unknown";
		return TK_PEER_UNKNOWN;
	}
	if (strcmp(own, "secondary") == 0) {
		if (strcmp(p->liveness, "gone") == 0)
			return TK_OK;
		if (strcmp(p->liveness, "alive") == 0) {
			*why = "the primary is alive: a heartbeat to the "
			    "secondary would leave both running";
			return TK_PEER_ALIVE;
		}
		*why = "the primary is unreachable but not proven gone";
		return TK_PEER_UNKNOWN;
	}
	/* own is primary; a peer out of COLO here never was in it (2.) */
	if (strcmp(p->liveness, "gone") == 0 ||
	    strcmp(p->mode, "secondary") == 0 || strcmp(p->mode, "none") == 0)
		return TK_OK;
	*why = "the secondary's COLO mode is unknown";
	return TK_PEER_UNKNOWN;
}
