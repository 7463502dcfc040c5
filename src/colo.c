/*
 * colo: pure normalisation of QEMU's COLO QMP messages (see colo.h).
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "colo.h"

#define US_PER_S	INT64_C(1000000)
/* 9999-12-31T23:59:59Z: the last second a four-digit year can show. */
#define COLO_SECONDS_MAX	INT64_C(253402300799)

/*
 * Adds key: value to o, taking value's reference (NULL adds JSON null).
 * Keys are string literals, so json-c need not copy them.  Returns 0, or
 * -1 (value released) when memory runs out.
 */
static int
add(json_object *o, const char *key, json_object *val)
{
	if (json_object_object_add_ex(o, key, val,
	    JSON_C_OBJECT_ADD_KEY_IS_NEW | JSON_C_OBJECT_ADD_CONSTANT_KEY)
	    != 0) {
		json_object_put(val);
		return -1;
	}
	return 0;
}

/* Adds a string, or JSON null for NULL.  0, or -1 on memory exhaustion. */
static int
add_str(json_object *o, const char *key, const char *s)
{
	json_object	*v = NULL;

	if (s != NULL && (v = json_object_new_string(s)) == NULL)
		return -1;
	return add(o, key, v);
}

/* 0, or -1 on memory exhaustion. */
static int
add_int(json_object *o, const char *key, int64_t i)
{
	json_object	*v;

	if ((v = json_object_new_int64(i)) == NULL)
		return -1;
	return add(o, key, v);
}

/* 0, or -1 on memory exhaustion. */
static int
add_uint(json_object *o, const char *key, uint64_t u)
{
	json_object	*v;

	if ((v = json_object_new_uint64(u)) == NULL)
		return -1;
	return add(o, key, v);
}

/* 0, or -1 on memory exhaustion. */
static int
add_bool(json_object *o, const char *key, int b)
{
	json_object	*v;

	if ((v = json_object_new_boolean(b)) == NULL)
		return -1;
	return add(o, key, v);
}

const char *
colo_enum(json_object *s, int is_mode)
{
	const char	*p;
	int		 len, i;

	if (!json_object_is_type(s, json_type_string))
		return NULL;
	p = json_object_get_string(s);
	len = json_object_get_string_len(s);
	if (p == NULL || len < 1 || len > COLO_ENUM_MAX)
		return NULL;
	/* Over len, not strlen: an escaped \u0000 must not hide the tail. */
	for (i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
			return NULL;
	if (is_mode && strcmp(p, "unknown") == 0)
		return "none";		/* COLOMode before QEMU 3.1 */
	return p;
}

/* The values QEMU documents (qapi/migration.json), and "" (unknown). */
static char colo_known[][16] = { "", "none", "primary", "secondary",
    "request", "error", "processing" };
#define COLO_NKNOWN	(sizeof(colo_known) / sizeof(colo_known[0]))

static int
colo_owned(const char *p)
{
	for (size_t k = 0; k < COLO_NKNOWN; k++)
		if (p == colo_known[k])
			return 0;
	return p != NULL;
}

int
colo_hold(char **held, const char *s)
{
	char	*nv = NULL;

	if (s == NULL)
		s = "";
	if (*held != NULL && strncmp(*held, s, COLO_ENUM_MAX) == 0 &&
	    strlen(*held) == strnlen(s, COLO_ENUM_MAX))
		return 0;
	for (size_t k = 0; k < COLO_NKNOWN && nv == NULL; k++)
		if (strcmp(colo_known[k], s) == 0)
			nv = colo_known[k];
	if (nv == NULL && (nv = strndup(s, COLO_ENUM_MAX)) == NULL) {
		colo_release(held);
		*held = colo_known[0];
		return -1;
	}
	colo_release(held);
	*held = nv;
	return 1;
}

void
colo_release(char **held)
{
	if (colo_owned(*held))
		free(*held);
	*held = NULL;
}

/*
 * Reads member key of o as a JSON integer in [0, max].  Returns 0, or -1
 * when it is missing, not an integer (doubles included) or out of range.
 */
static int
get_uint(json_object *o, const char *key, int64_t max, int64_t *v)
{
	json_object	*j;
	int64_t		 i;

	if (!json_object_object_get_ex(o, key, &j) ||
	    !json_object_is_type(j, json_type_int))
		return -1;
	/* Saturates at INT64_MAX for larger values: still out of range. */
	i = json_object_get_int64(j);
	if (i < 0 || i > max)
		return -1;
	*v = i;
	return 0;
}

int
colo_timestamp_us(json_object *event, int64_t *us)
{
	json_object	*ts;
	int64_t		 s, u;

	if (!json_object_is_type(event, json_type_object) ||
	    !json_object_object_get_ex(event, "timestamp", &ts) ||
	    !json_object_is_type(ts, json_type_object))
		return -1;
	/*
	 * Negative values (QEMU's -1/-1 "no clock") and seconds past year
	 * 9999 are refused; the latter keeps s * 10^6 + u far from overflow
	 * and every accepted time printable by colo_format_time().
	 */
	if (get_uint(ts, "seconds", COLO_SECONDS_MAX, &s) == -1 ||
	    get_uint(ts, "microseconds", US_PER_S - 1, &u) == -1)
		return -1;
	*us = s * US_PER_S + u;
	return 0;
}

int
colo_format_time(int64_t us, char *buf, size_t len)
{
	struct tm	 tm;
	time_t		 t;
	int		 n;

	if (buf == NULL || us < 0 || us / US_PER_S > COLO_SECONDS_MAX)
		return -1;
	t = (time_t)(us / US_PER_S);
	if (gmtime_r(&t, &tm) == NULL)
		return -1;
	n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06" PRId64 "Z",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
	    tm.tm_hour, tm.tm_min, tm.tm_sec, us % US_PER_S);
	if (n < 0 || (size_t)n >= len)
		return -1;
	return 0;
}

json_object *
colo_normalize_exit(json_object *event, const struct colo_ctx *ctx,
    int *malformed)
{
	json_object	*o, *data, *j;
	const char	*mode = NULL, *reason = NULL;
	char		 tbuf[32];
	const char	*tstr = NULL;
	int64_t		 us;
	int		 bad = 0, bridge_time = 0;

	if (json_object_is_type(event, json_type_object) &&
	    json_object_object_get_ex(event, "data", &data) &&
	    json_object_is_type(data, json_type_object)) {
		if (json_object_object_get_ex(data, "mode", &j))
			mode = colo_enum(j, 1);
		if (json_object_object_get_ex(data, "reason", &j))
			reason = colo_enum(j, 0);
	}
	if (mode == NULL || reason == NULL)
		bad = 1;
	if (malformed != NULL)
		*malformed = bad;

	if (colo_timestamp_us(event, &us) == -1) {
		us = ctx->recv_us;
		bridge_time = 1;
	}
	/* Only a broken bridge clock fails here: "time" is then null. */
	if (colo_format_time(us, tbuf, sizeof(tbuf)) == 0)
		tstr = tbuf;

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	if (add_int(o, "schema", COLO_SCHEMA) == -1 ||
	    add_str(o, "event", "colo_exit") == -1 ||
	    add_str(o, "host", ctx->host) == -1 ||
	    add_str(o, "vm", ctx->vm) == -1 ||
	    add_str(o, "mode", mode) == -1 ||
	    add_str(o, "reason", reason) == -1 ||
	    add_str(o, "time", tstr) == -1 ||
	    add_int(o, "time_us", us) == -1 ||
	    (bridge_time && add_str(o, "time_source", "bridge") == -1) ||
	    add_uint(o, "seq", ctx->seq) == -1 ||
	    add_str(o, "bridge", ctx->bridge) == -1 ||
	    add_str(o, "qemu", ctx->qemu) == -1 ||
	    (bad && add_bool(o, "malformed", 1) == -1)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/*
 * Reads member key of o as an integer in [0, INT_MAX].  Returns 0, or -1
 * when missing or ill-typed.
 */
static int
get_version_part(json_object *o, const char *key, int *v)
{
	int64_t	 i;

	if (get_uint(o, key, INT_MAX, &i) == -1)
		return -1;
	*v = (int)i;
	return 0;
}

int
colo_qemu_version(json_object *greeting, char *buf, size_t len)
{
	json_object	*qmp, *ver, *q;
	int		 major, minor, micro, n;

	if (buf == NULL ||
	    !json_object_is_type(greeting, json_type_object) ||
	    !json_object_object_get_ex(greeting, "QMP", &qmp) ||
	    !json_object_is_type(qmp, json_type_object) ||
	    !json_object_object_get_ex(qmp, "version", &ver) ||
	    !json_object_is_type(ver, json_type_object) ||
	    !json_object_object_get_ex(ver, "qemu", &q) ||
	    !json_object_is_type(q, json_type_object) ||
	    get_version_part(q, "major", &major) == -1 ||
	    get_version_part(q, "minor", &minor) == -1 ||
	    get_version_part(q, "micro", &micro) == -1)
		return -1;
	n = snprintf(buf, len, "%d.%d.%d", major, minor, micro);
	if (n < 0 || (size_t)n >= len)
		return -1;
	return 0;
}

int
colo_parse_status(json_object *ret, struct colo_status *st)
{
	json_object	*j;

	st->mode = st->last_mode = st->reason = NULL;
	if (!json_object_is_type(ret, json_type_object))
		return -1;
	if (json_object_object_get_ex(ret, "last-mode", &j))
		st->last_mode = colo_enum(j, 1);
	if (json_object_object_get_ex(ret, "reason", &j))
		st->reason = colo_enum(j, 0);
	if (json_object_object_get_ex(ret, "mode", &j))
		st->mode = colo_enum(j, 1);
	return st->mode == NULL ? -1 : 0;
}

json_object *
colo_state_json(const struct colo_vm_state *vs)
{
	json_object	*o;
	const char	*cs;

	switch (vs->colo_status) {
	case 1:
		cs = "ok";
		break;
	case 0:
		cs = "unsupported";
		break;
	default:
		cs = "unknown";
		break;
	}
	if ((o = json_object_new_object()) == NULL)
		return NULL;
	if (add_int(o, "schema", COLO_SCHEMA) == -1 ||
	    add_str(o, "host", vs->host) == -1 ||
	    add_str(o, "vm", vs->vm) == -1 ||
	    add_str(o, "mode", vs->mode) == -1 ||
	    add_str(o, "last_mode", vs->last_mode) == -1 ||
	    add_str(o, "reason", vs->reason) == -1 ||
	    add_str(o, "qmp",
	    vs->connected ? "connected" : "disconnected") == -1 ||
	    add_str(o, "qemu", vs->qemu) == -1 ||
	    add_str(o, "colo_status", cs) == -1 ||
	    add_int(o, "updated_us", vs->updated_us) == -1 ||
	    add(o, "last_exit", vs->last_exit != NULL ?
	    json_object_get(vs->last_exit) : NULL) == -1 ||
	    add_str(o, "liveness", vs->liveness) == -1 ||
	    add_str(o, "bridge", vs->bridge) == -1 ||
	    add_str(o, "instance", vs->instance) == -1 ||
	    add_int(o, "started_us", vs->started_us) == -1 ||
	    add(o, "peer", vs->peer != NULL ?
	    json_object_get(vs->peer) : NULL) == -1 ||
	    add(o, "heartbeat_unconfirmed",
	    json_object_new_boolean(vs->hb_unconfirmed)) == -1) {
		json_object_put(o);
		return NULL;
	}
	return o;
}
