/*
 * Unit tests for src/colo.c: table-driven, one table per function.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "colo.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

/* The bridge's receive time in every test: 2026-11-25T18:24:19.000042Z. */
#define RECV_US		INT64_C(1795631059000042)
#define RECV_TIME	"2026-11-25T18:24:19.000042Z"

static const struct colo_ctx ctx = {
	.host = "hv1",
	.vm = "vm1",
	.bridge = "qmp2mqtt-hv1",
	.qemu = "7.2.22",
	.seq = 7,
	.recv_us = RECV_US,
};

/* Parses JSON text that the test itself wrote; fails the test if it can't. */
static json_object *
parse(const char *name, const char *text)
{
	json_object	*o;

	if (text == NULL)
		return NULL;
	o = json_tokener_parse(text);
	if (o == NULL && strcmp(text, "null") != 0)
		fail_msg("%s: test input does not parse: %s", name, text);
	return o;
}

/* Checks that o[key] is the string want, or JSON null when want is NULL. */
static void
check_str(const char *name, json_object *o, const char *key, const char *want)
{
	json_object	*v;
	const char	*got;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("%s: key \"%s\" missing", name, key);
	if (want == NULL) {
		if (v != NULL)
			fail_msg("%s: %s: want null, got %s", name, key,
			    json_object_to_json_string(v));
		return;
	}
	if (!json_object_is_type(v, json_type_string))
		fail_msg("%s: %s: want \"%s\", got %s", name, key, want,
		    v == NULL ? "null" : json_object_to_json_string(v));
	got = json_object_get_string(v);
	if (strcmp(got, want) != 0)
		fail_msg("%s: %s: want \"%s\", got \"%s\"", name, key, want, got);
}

static void
check_int(const char *name, json_object *o, const char *key, int64_t want)
{
	json_object	*v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_int))
		fail_msg("%s: key \"%s\" missing or not an integer", name, key);
	if (json_object_get_int64(v) != want)
		fail_msg("%s: %s: want %lld, got %lld", name, key,
		    (long long)want, (long long)json_object_get_int64(v));
}

static void
check_absent(const char *name, json_object *o, const char *key)
{
	if (json_object_object_get_ex(o, key, NULL))
		fail_msg("%s: key \"%s\" should be absent", name, key);
}

/* ---------------------------------------------------------------- enum */

static const struct enum_case {
	const char	*name;
	const char	*in;		/* JSON text; NULL: a NULL object */
	int		 is_mode;
	const char	*want;		/* NULL: refused */
} enum_cases[] = {
	/* COLOMode, QEMU 2.8 to today, plus the legacy value. */
	{ "mode none", "\"none\"", 1, "none" },
	{ "mode primary", "\"primary\"", 1, "primary" },
	{ "mode secondary", "\"secondary\"", 1, "secondary" },
	{ "mode unknown (QEMU < 3.1)", "\"unknown\"", 1, "none" },
	/* COLOExitReason. */
	{ "reason none", "\"none\"", 0, "none" },
	{ "reason request", "\"request\"", 0, "request" },
	{ "reason error", "\"error\"", 0, "error" },
	{ "reason processing", "\"processing\"", 0, "processing" },
	{ "reason unknown is no mode", "\"unknown\"", 0, "unknown" },
	/* Future values pass verbatim. */
	{ "future mode", "\"tertiary\"", 1, "tertiary" },
	{ "future reason", "\"x-split-brain\"", 0, "x-split-brain" },
	{ "all printable", "\"!~{}[]\\\"\\\\:,'\"", 0, "!~{}[]\"\\:,'" },
	{ "64 bytes",
	  "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
	  0, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" },
	/* Refused. */
	{ "65 bytes",
	  "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
	  0, NULL },
	{ "empty", "\"\"", 1, NULL },
	{ "space", "\"pri mary\"", 1, NULL },
	{ "tab", "\"pri\\tmary\"", 1, NULL },
	{ "newline", "\"primary\\n\"", 1, NULL },
	{ "DEL", "\"primary\\u007f\"", 1, NULL },
	{ "escape", "\"\\u001b[31m\"", 1, NULL },
	{ "embedded NUL", "\"primary\\u0000x\"", 1, NULL },
	{ "non-ASCII", "\"pr\\u00edmary\"", 1, NULL },
	{ "number", "1", 1, NULL },
	{ "float", "1.5", 1, NULL },
	{ "boolean", "true", 0, NULL },
	{ "null", "null", 0, NULL },
	{ "NULL pointer", NULL, 0, NULL },
	{ "object", "{\"mode\": \"primary\"}", 1, NULL },
	{ "array", "[\"primary\"]", 1, NULL },
};

static void
test_enum(void **state)
{
	const struct enum_case	*c;
	json_object		*o;
	const char		*got;
	size_t			 i;

	for (i = 0; i < NELEM(enum_cases); i++) {
		c = &enum_cases[i];
		o = parse(c->name, c->in);
		got = colo_enum(o, c->is_mode);
		if (c->want == NULL && got != NULL)
			fail_msg("%s: want refused, got \"%s\"", c->name, got);
		if (c->want != NULL &&
		    (got == NULL || strcmp(got, c->want) != 0))
			fail_msg("%s: want \"%s\", got %s%s%s", c->name,
			    c->want, got ? "\"" : "", got ? got : "NULL",
			    got ? "\"" : "");
		json_object_put(o);
	}
}

/* ----------------------------------------------------------- timestamp */

static const struct ts_case {
	const char	*name;
	const char	*in;
	int		 ret;
	int64_t		 us;
} ts_cases[] = {
	{ "real", "{\"timestamp\": {\"seconds\": 1795626699, "
	  "\"microseconds\": 424225}}", 0, INT64_C(1795626699424225) },
	{ "epoch", "{\"timestamp\": {\"seconds\": 0, \"microseconds\": 0}}",
	  0, 0 },
	{ "last microsecond", "{\"timestamp\": {\"seconds\": 1, "
	  "\"microseconds\": 999999}}", 0, 1999999 },
	{ "year 9999", "{\"timestamp\": {\"seconds\": 253402300799, "
	  "\"microseconds\": 999999}}", 0, INT64_C(253402300799999999) },
	{ "year 10000", "{\"timestamp\": {\"seconds\": 253402300800, "
	  "\"microseconds\": 0}}", -1, 0 },
	{ "missing", "{\"event\": \"COLO_EXIT\"}", -1, 0 },
	{ "-1/-1", "{\"timestamp\": {\"seconds\": -1, "
	  "\"microseconds\": -1}}", -1, 0 },
	{ "negative seconds", "{\"timestamp\": {\"seconds\": -5, "
	  "\"microseconds\": 0}}", -1, 0 },
	{ "negative us", "{\"timestamp\": {\"seconds\": 5, "
	  "\"microseconds\": -1}}", -1, 0 },
	{ "us = 10^6", "{\"timestamp\": {\"seconds\": 5, "
	  "\"microseconds\": 1000000}}", -1, 0 },
	{ "seconds string", "{\"timestamp\": {\"seconds\": \"1795626699\", "
	  "\"microseconds\": 0}}", -1, 0 },
	{ "seconds float", "{\"timestamp\": {\"seconds\": 1795626699.5, "
	  "\"microseconds\": 0}}", -1, 0 },
	{ "seconds integral float", "{\"timestamp\": {\"seconds\": "
	  "1795626699.0, \"microseconds\": 0}}", -1, 0 },
	{ "us float", "{\"timestamp\": {\"seconds\": 1, "
	  "\"microseconds\": 1e3}}", -1, 0 },
	{ "seconds null", "{\"timestamp\": {\"seconds\": null, "
	  "\"microseconds\": 0}}", -1, 0 },
	{ "seconds missing", "{\"timestamp\": {\"microseconds\": 0}}", -1, 0 },
	{ "us missing", "{\"timestamp\": {\"seconds\": 1}}", -1, 0 },
	{ "seconds INT64_MAX", "{\"timestamp\": {\"seconds\": "
	  "9223372036854775807, \"microseconds\": 0}}", -1, 0 },
	{ "seconds > UINT64_MAX", "{\"timestamp\": {\"seconds\": "
	  "99999999999999999999999, \"microseconds\": 0}}", -1, 0 },
	{ "timestamp string", "{\"timestamp\": \"now\"}", -1, 0 },
	{ "timestamp number", "{\"timestamp\": 1795626699}", -1, 0 },
	{ "timestamp array", "{\"timestamp\": [1, 2]}", -1, 0 },
	{ "timestamp null", "{\"timestamp\": null}", -1, 0 },
	{ "event array", "[]", -1, 0 },
	{ "event NULL", NULL, -1, 0 },
};

static void
test_timestamp(void **state)
{
	const struct ts_case	*c;
	json_object		*o;
	int64_t			 us;
	size_t			 i;
	int			 r;

	for (i = 0; i < NELEM(ts_cases); i++) {
		c = &ts_cases[i];
		o = parse(c->name, c->in);
		us = -42;
		r = colo_timestamp_us(o, &us);
		if (r != c->ret)
			fail_msg("%s: want %d, got %d", c->name, c->ret, r);
		if (r == 0 && us != c->us)
			fail_msg("%s: want %lld us, got %lld", c->name,
			    (long long)c->us, (long long)us);
		json_object_put(o);
	}
}

/* ---------------------------------------------------------------- time */

static const struct time_case {
	const char	*name;
	int64_t		 us;
	size_t		 len;
	const char	*want;		/* NULL: -1 */
} time_cases[] = {
	{ "epoch", 0, 32, "1970-01-01T00:00:00.000000Z" },
	{ "one us", 1, 32, "1970-01-01T00:00:00.000001Z" },
	{ "us padding", INT64_C(1795631059000042), 32,
	  "2026-11-25T18:24:19.000042Z" },
	{ "real event", INT64_C(1795626699424225), 32,
	  "2026-11-25T17:11:39.424225Z" },
	{ "leap day 2024", INT64_C(1709210096000001), 32,
	  "2024-02-29T12:34:56.000001Z" },
	{ "leap century 2000", INT64_C(951868799999999), 32,
	  "2000-02-29T23:59:59.999999Z" },
	{ "no leap 2100", INT64_C(4107542400000000), 32,
	  "2100-03-01T00:00:00.000000Z" },
	{ "y2038", INT64_C(2147483648000000), 32,
	  "2038-01-19T03:14:08.000000Z" },
	{ "last", INT64_C(253402300799999999), 32,
	  "9999-12-31T23:59:59.999999Z" },
	{ "exact fit", 0, 28, "1970-01-01T00:00:00.000000Z" },
	{ "one short", 0, 27, NULL },
	{ "no room", 0, 0, NULL },
	{ "year 10000", INT64_C(253402300800000000), 32, NULL },
	{ "negative", -1, 32, NULL },
	{ "INT64_MIN", INT64_MIN, 32, NULL },
	{ "INT64_MAX", INT64_MAX, 32, NULL },
};

static void
test_format_time(void **state)
{
	const struct time_case	*c;
	char			 buf[32];
	size_t			 i;
	int			 r;

	for (i = 0; i < NELEM(time_cases); i++) {
		c = &time_cases[i];
		memset(buf, 'X', sizeof(buf));
		r = colo_format_time(c->us, buf, c->len);
		if (c->want == NULL) {
			if (r != -1)
				fail_msg("%s: want -1, got %d", c->name, r);
			continue;
		}
		if (r != 0)
			fail_msg("%s: want 0, got %d", c->name, r);
		if (strcmp(buf, c->want) != 0)
			fail_msg("%s: want %s, got %s", c->name, c->want, buf);
	}
}

/* ---------------------------------------------------------------- exit */

static const struct exit_case {
	const char	*name;
	const char	*in;
	const char	*mode;		/* NULL: null */
	const char	*reason;	/* NULL: null */
	int		 malformed;
	int		 bridge_time;
	int64_t		 time_us;	/* when !bridge_time */
	const char	*time;		/* when !bridge_time */
} exit_cases[] = {
#define TS	"\"timestamp\": {\"seconds\": 1795626699, \"microseconds\": 424225}"
#define TS_US	INT64_C(1795626699424225)
#define TS_STR	"2026-11-25T17:11:39.424225Z"
#define EV(data)	"{" TS ", \"event\": \"COLO_EXIT\", \"data\": " data "}"
	/* The real QEMU 7.2 transcripts. */
	{ "hb-secondary SEC", EV("{\"mode\": \"secondary\", "
	  "\"reason\": \"request\"}"),
	  "secondary", "request", 0, 0, TS_US, TS_STR },
	{ "hb-secondary PRI", "{\"timestamp\": {\"seconds\": 1795626699, "
	  "\"microseconds\": 484561}, \"event\": \"COLO_EXIT\", \"data\": "
	  "{\"mode\": \"primary\", \"reason\": \"error\"}}",
	  "primary", "error", 0, 0, INT64_C(1795626699484561),
	  "2026-11-25T17:11:39.484561Z" },
	{ "hb-primary PRI", "{\"timestamp\": {\"seconds\": 1795626700, "
	  "\"microseconds\": 892088}, \"event\": \"COLO_EXIT\", \"data\": "
	  "{\"mode\": \"primary\", \"reason\": \"request\"}}",
	  "primary", "request", 0, 0, INT64_C(1795626700892088),
	  "2026-11-25T17:11:40.892088Z" },
	{ "hb-primary SEC", "{\"timestamp\": {\"seconds\": 1795626700, "
	  "\"microseconds\": 892242}, \"event\": \"COLO_EXIT\", \"data\": "
	  "{\"mode\": \"secondary\", \"reason\": \"error\"}}",
	  "secondary", "error", 0, 0, INT64_C(1795626700892242),
	  "2026-11-25T17:11:40.892242Z" },
	{ "kill-secondary PRI", "{\"timestamp\": {\"seconds\": 1795626702, "
	  "\"microseconds\": 346622}, \"event\": \"COLO_EXIT\", \"data\": "
	  "{\"mode\": \"primary\", \"reason\": \"error\"}}",
	  "primary", "error", 0, 0, INT64_C(1795626702346622),
	  "2026-11-25T17:11:42.346622Z" },
	{ "kill-primary SEC", "{\"timestamp\": {\"seconds\": 1795626703, "
	  "\"microseconds\": 506620}, \"event\": \"COLO_EXIT\", \"data\": "
	  "{\"mode\": \"secondary\", \"reason\": \"error\"}}",
	  "secondary", "error", 0, 0, INT64_C(1795626703506620),
	  "2026-11-25T17:11:43.506620Z" },

	/* Every COLOMode and COLOExitReason of QEMU 2.8 to today. */
	{ "mode none", EV("{\"mode\": \"none\", \"reason\": \"none\"}"),
	  "none", "none", 0, 0, TS_US, TS_STR },
	{ "mode primary", EV("{\"mode\": \"primary\", \"reason\": \"none\"}"),
	  "primary", "none", 0, 0, TS_US, TS_STR },
	{ "mode secondary", EV("{\"mode\": \"secondary\", "
	  "\"reason\": \"none\"}"), "secondary", "none", 0, 0, TS_US, TS_STR },
	{ "mode unknown (QEMU < 3.1)", EV("{\"mode\": \"unknown\", "
	  "\"reason\": \"request\"}"), "none", "request", 0, 0, TS_US, TS_STR },
	{ "reason request", EV("{\"mode\": \"primary\", "
	  "\"reason\": \"request\"}"), "primary", "request", 0, 0, TS_US,
	  TS_STR },
	{ "reason error", EV("{\"mode\": \"primary\", \"reason\": \"error\"}"),
	  "primary", "error", 0, 0, TS_US, TS_STR },
	{ "reason processing (4.0)", EV("{\"mode\": \"secondary\", "
	  "\"reason\": \"processing\"}"), "secondary", "processing", 0, 0,
	  TS_US, TS_STR },
	{ "future values", EV("{\"mode\": \"tertiary\", "
	  "\"reason\": \"x-split-brain\"}"), "tertiary", "x-split-brain", 0, 0,
	  TS_US, TS_STR },
	{ "extra data members", EV("{\"mode\": \"primary\", \"reason\": "
	  "\"error\", \"detail\": {\"a\": [1, 2]}}"), "primary", "error", 0, 0,
	  TS_US, TS_STR },

	/* Malformed: the field becomes null, the event is still published. */
	{ "no data", "{" TS ", \"event\": \"COLO_EXIT\"}",
	  NULL, NULL, 1, 0, TS_US, TS_STR },
	{ "data a string", EV("\"primary\""), NULL, NULL, 1, 0, TS_US, TS_STR },
	{ "data null", EV("null"), NULL, NULL, 1, 0, TS_US, TS_STR },
	{ "data an array", EV("[\"primary\", \"error\"]"),
	  NULL, NULL, 1, 0, TS_US, TS_STR },
	{ "data empty", EV("{}"), NULL, NULL, 1, 0, TS_US, TS_STR },
	{ "mode a number", EV("{\"mode\": 1, \"reason\": \"error\"}"),
	  NULL, "error", 1, 0, TS_US, TS_STR },
	{ "mode missing", EV("{\"reason\": \"error\"}"),
	  NULL, "error", 1, 0, TS_US, TS_STR },
	{ "reason null", EV("{\"mode\": \"primary\", \"reason\": null}"),
	  "primary", NULL, 1, 0, TS_US, TS_STR },
	{ "reason missing", EV("{\"mode\": \"primary\"}"),
	  "primary", NULL, 1, 0, TS_US, TS_STR },
	{ "reason an object", EV("{\"mode\": \"primary\", \"reason\": {}}"),
	  "primary", NULL, 1, 0, TS_US, TS_STR },
	{ "mode overlong", EV("{\"mode\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"reason\": \"error\"}"),
	  NULL, "error", 1, 0, TS_US, TS_STR },
	{ "mode control char", EV("{\"mode\": \"pri\\u0001mary\", "
	  "\"reason\": \"error\"}"), NULL, "error", 1, 0, TS_US, TS_STR },
	{ "reason with space", EV("{\"mode\": \"primary\", "
	  "\"reason\": \"an error\"}"), "primary", NULL, 1, 0, TS_US, TS_STR },
	{ "reason empty", EV("{\"mode\": \"primary\", \"reason\": \"\"}"),
	  "primary", NULL, 1, 0, TS_US, TS_STR },
	{ "both bad", EV("{\"mode\": false, \"reason\": 3.5}"),
	  NULL, NULL, 1, 0, TS_US, TS_STR },
#undef EV

	/* Timestamps: a bad one alone is not malformed. */
#define DATA	"\"event\": \"COLO_EXIT\", \"data\": {\"mode\": \"primary\", " \
		"\"reason\": \"error\"}"
	{ "timestamp missing", "{" DATA "}",
	  "primary", "error", 0, 1, 0, NULL },
	{ "timestamp -1/-1", "{\"timestamp\": {\"seconds\": -1, "
	  "\"microseconds\": -1}, " DATA "}",
	  "primary", "error", 0, 1, 0, NULL },
	{ "microseconds 10^6", "{\"timestamp\": {\"seconds\": 1795626699, "
	  "\"microseconds\": 1000000}, " DATA "}",
	  "primary", "error", 0, 1, 0, NULL },
	{ "seconds a string", "{\"timestamp\": {\"seconds\": \"1795626699\", "
	  "\"microseconds\": 1}, " DATA "}",
	  "primary", "error", 0, 1, 0, NULL },
	{ "seconds a float", "{\"timestamp\": {\"seconds\": 1795626699.25, "
	  "\"microseconds\": 1}, " DATA "}",
	  "primary", "error", 0, 1, 0, NULL },
	{ "timestamp a string", "{\"timestamp\": \"2026-11-25\", " DATA "}",
	  "primary", "error", 0, 1, 0, NULL },
	{ "timestamp epoch", "{\"timestamp\": {\"seconds\": 0, "
	  "\"microseconds\": 0}, " DATA "}",
	  "primary", "error", 0, 0, 0, "1970-01-01T00:00:00.000000Z" },
	{ "no timestamp, no data", "{\"event\": \"COLO_EXIT\"}",
	  NULL, NULL, 1, 1, 0, NULL },
	{ "-1/-1 and mode null", "{\"timestamp\": {\"seconds\": -1, "
	  "\"microseconds\": -1}, \"event\": \"COLO_EXIT\", \"data\": "
	  "{\"mode\": null, \"reason\": \"error\"}}",
	  NULL, "error", 1, 1, 0, NULL },
#undef DATA

	/* Not an event at all. */
	{ "event an array", "[1, 2]", NULL, NULL, 1, 1, 0, NULL },
	{ "event a string", "\"COLO_EXIT\"", NULL, NULL, 1, 1, 0, NULL },
	{ "event null", "null", NULL, NULL, 1, 1, 0, NULL },
	{ "event NULL", NULL, NULL, NULL, 1, 1, 0, NULL },
};

static void
test_normalize_exit(void **state)
{
	const struct exit_case	*c;
	json_object		*in, *out, *v;
	size_t			 i;
	int			 mal;

	for (i = 0; i < NELEM(exit_cases); i++) {
		c = &exit_cases[i];
		in = parse(c->name, c->in);
		mal = -1;
		out = colo_normalize_exit(in, &ctx, &mal);
		if (out == NULL)
			fail_msg("%s: NULL result", c->name);
		if (mal != c->malformed)
			fail_msg("%s: *malformed: want %d, got %d", c->name,
			    c->malformed, mal);
		check_int(c->name, out, "schema", 1);
		check_str(c->name, out, "event", "colo_exit");
		check_str(c->name, out, "host", "hv1");
		check_str(c->name, out, "vm", "vm1");
		check_str(c->name, out, "mode", c->mode);
		check_str(c->name, out, "reason", c->reason);
		if (c->bridge_time) {
			check_str(c->name, out, "time", RECV_TIME);
			check_int(c->name, out, "time_us", RECV_US);
			check_str(c->name, out, "time_source", "bridge");
		} else {
			check_str(c->name, out, "time", c->time);
			check_int(c->name, out, "time_us", c->time_us);
			check_absent(c->name, out, "time_source");
		}
		check_int(c->name, out, "seq", 7);
		check_str(c->name, out, "bridge", "qmp2mqtt-hv1");
		check_str(c->name, out, "qemu", "7.2.22");
		if (c->malformed) {
			if (!json_object_object_get_ex(out, "malformed", &v) ||
			    !json_object_is_type(v, json_type_boolean) ||
			    !json_object_get_boolean(v))
				fail_msg("%s: want \"malformed\": true",
				    c->name);
		} else
			check_absent(c->name, out, "malformed");
		/* The input is not modified or retained. */
		if (in != NULL && json_object_put(in) != 1)
			fail_msg("%s: input still referenced", c->name);
		json_object_put(out);
	}
}

/* Key order and exact serialisation, as subscribers see them. */
static const struct exact_case {
	const char	*name;
	const char	*in;
	const char	*qemu;
	uint64_t	 seq;
	const char	*want;
} exact_cases[] = {
	{ "real event",
	  "{\"timestamp\": {\"seconds\": 1795626699, \"microseconds\": 424225},"
	  " \"event\": \"COLO_EXIT\", \"data\": {\"mode\": \"secondary\", "
	  "\"reason\": \"request\"}}", "7.2.22", 1,
	  "{\"schema\":1,\"event\":\"colo_exit\",\"host\":\"hv1\","
	  "\"vm\":\"vm1\",\"mode\":\"secondary\",\"reason\":\"request\","
	  "\"time\":\"2026-11-25T17:11:39.424225Z\","
	  "\"time_us\":1795626699424225,\"seq\":1,"
	  "\"bridge\":\"qmp2mqtt-hv1\",\"qemu\":\"7.2.22\"}" },
	{ "bridge time, malformed, no qemu",
	  "{\"timestamp\": {\"seconds\": -1, \"microseconds\": -1},"
	  " \"event\": \"COLO_EXIT\"}", NULL, UINT64_MAX,
	  "{\"schema\":1,\"event\":\"colo_exit\",\"host\":\"hv1\","
	  "\"vm\":\"vm1\",\"mode\":null,\"reason\":null,"
	  "\"time\":\"2026-11-25T18:24:19.000042Z\","
	  "\"time_us\":1795631059000042,\"time_source\":\"bridge\","
	  "\"seq\":18446744073709551615,"
	  "\"bridge\":\"qmp2mqtt-hv1\",\"qemu\":null,\"malformed\":true}" },
};

static void
test_normalize_exact(void **state)
{
	const struct exact_case	*c;
	struct colo_ctx		 cx;
	json_object		*in, *out;
	size_t			 i;
	int			 mal;

	for (i = 0; i < NELEM(exact_cases); i++) {
		c = &exact_cases[i];
		cx = ctx;
		cx.qemu = c->qemu;
		cx.seq = c->seq;
		in = parse(c->name, c->in);
		out = colo_normalize_exit(in, &cx, &mal);
		assert_non_null(out);
		assert_string_equal(json_object_to_json_string_ext(out,
		    JSON_C_TO_STRING_PLAIN), c->want);
		json_object_put(in);
		json_object_put(out);
	}
}

/* A NULL malformed pointer is tolerated. */
static void
test_normalize_null_flag(void **state)
{
	json_object	*out;

	out = colo_normalize_exit(NULL, &ctx, NULL);
	assert_non_null(out);
	json_object_put(out);
}

/* ------------------------------------------------------------ greeting */

static const struct greeting_case {
	const char	*name;
	const char	*in;
	size_t		 len;
	const char	*want;		/* NULL: -1 */
} greeting_cases[] = {
	{ "QEMU 7.2 (real)", "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22,"
	  " \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+"
	  "deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}", 32, "7.2.22" },
	{ "QEMU 2.8", "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 1, "
	  "\"minor\": 8, \"major\": 2}, \"package\": \"\"}, "
	  "\"capabilities\": []}}", 32, "2.8.1" },
	{ "no package", "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, "
	  "\"minor\": 0, \"major\": 9}}}}", 32, "9.0.0" },
	{ "exact fit", "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, "
	  "\"minor\": 2, \"major\": 7}}}}", 7, "7.2.22" },
	{ "one short", "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, "
	  "\"minor\": 2, \"major\": 7}}}}", 6, NULL },
	{ "no micro", "{\"QMP\": {\"version\": {\"qemu\": {\"minor\": 2, "
	  "\"major\": 7}}}}", 32, NULL },
	{ "no minor", "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, "
	  "\"major\": 7}}}}", 32, NULL },
	{ "no major", "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2, "
	  "\"minor\": 7}}}}", 32, NULL },
	{ "major a string", "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2,"
	  " \"minor\": 2, \"major\": \"7\"}}}}", 32, NULL },
	{ "major a float", "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2,"
	  " \"minor\": 2, \"major\": 7.0}}}}", 32, NULL },
	{ "minor negative", "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 2,"
	  " \"minor\": -2, \"major\": 7}}}}", 32, NULL },
	{ "micro huge", "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": "
	  "4294967296, \"minor\": 2, \"major\": 7}}}}", 32, NULL },
	{ "qemu a string", "{\"QMP\": {\"version\": {\"qemu\": \"7.2.22\"}}}",
	  32, NULL },
	{ "no qemu", "{\"QMP\": {\"version\": {\"package\": \"x\"}}}", 32,
	  NULL },
	{ "version null", "{\"QMP\": {\"version\": null}}", 32, NULL },
	{ "no version", "{\"QMP\": {\"capabilities\": []}}", 32, NULL },
	{ "QMP an array", "{\"QMP\": []}", 32, NULL },
	{ "no QMP", "{\"return\": {}}", 32, NULL },
	{ "not an object", "[1]", 32, NULL },
	{ "NULL", NULL, 32, NULL },
};

static void
test_qemu_version(void **state)
{
	const struct greeting_case	*c;
	json_object			*o;
	char				 buf[32];
	size_t				 i;
	int				 r;

	for (i = 0; i < NELEM(greeting_cases); i++) {
		c = &greeting_cases[i];
		o = parse(c->name, c->in);
		r = colo_qemu_version(o, buf, c->len);
		if (c->want == NULL) {
			if (r != -1)
				fail_msg("%s: want -1, got %d", c->name, r);
		} else {
			if (r != 0)
				fail_msg("%s: want 0, got %d", c->name, r);
			if (strcmp(buf, c->want) != 0)
				fail_msg("%s: want %s, got %s", c->name,
				    c->want, buf);
		}
		json_object_put(o);
	}
}

/* -------------------------------------------------------------- status */

static const struct status_case {
	const char	*name;
	const char	*in;
	int		 ret;
	const char	*mode, *last_mode, *reason;
} status_cases[] = {
	{ "7.2 primary (real)", "{\"last-mode\": \"none\", \"mode\": "
	  "\"primary\", \"reason\": \"none\"}", 0, "primary", "none", "none" },
	{ "7.2 secondary (real)", "{\"last-mode\": \"none\", \"mode\": "
	  "\"secondary\", \"reason\": \"none\"}", 0, "secondary", "none",
	  "none" },
	{ "7.2 after takeover (real)", "{\"last-mode\": \"primary\", "
	  "\"mode\": \"none\", \"reason\": \"request\"}", 0, "none", "primary",
	  "request" },
	{ "3.1, no last-mode", "{\"mode\": \"secondary\", \"reason\": "
	  "\"error\"}", 0, "secondary", NULL, "error" },
	{ "processing", "{\"last-mode\": \"secondary\", \"mode\": \"none\", "
	  "\"reason\": \"processing\"}", 0, "none", "secondary", "processing" },
	{ "legacy unknown", "{\"mode\": \"unknown\", \"last-mode\": "
	  "\"unknown\", \"reason\": \"none\"}", 0, "none", "none", "none" },
	{ "future values", "{\"mode\": \"tertiary\", \"last-mode\": \"quad\", "
	  "\"reason\": \"x-new\"}", 0, "tertiary", "quad", "x-new" },
	{ "mode only", "{\"mode\": \"primary\"}", 0, "primary", NULL, NULL },
	{ "bad last-mode", "{\"mode\": \"primary\", \"last-mode\": 3, "
	  "\"reason\": \"none\"}", 0, "primary", NULL, "none" },
	{ "bad reason", "{\"mode\": \"primary\", \"reason\": \"a b\"}", 0,
	  "primary", NULL, NULL },
	{ "no mode", "{\"last-mode\": \"none\", \"reason\": \"none\"}", -1,
	  NULL, NULL, NULL },
	{ "mode a number", "{\"mode\": 1, \"reason\": \"none\"}", -1,
	  NULL, NULL, NULL },
	{ "mode null", "{\"mode\": null}", -1, NULL, NULL, NULL },
	{ "mode empty", "{\"mode\": \"\"}", -1, NULL, NULL, NULL },
	{ "empty", "{}", -1, NULL, NULL, NULL },
	{ "array", "[\"primary\"]", -1, NULL, NULL, NULL },
	{ "string", "\"primary\"", -1, NULL, NULL, NULL },
	{ "NULL", NULL, -1, NULL, NULL, NULL },
};

static void
check_cstr(const char *name, const char *field, const char *got,
    const char *want)
{
	if (want == NULL && got == NULL)
		return;
	if (want == NULL || got == NULL || strcmp(want, got) != 0)
		fail_msg("%s: %s: want %s, got %s", name, field,
		    want ? want : "NULL", got ? got : "NULL");
}

static void
test_parse_status(void **state)
{
	const struct status_case	*c;
	struct colo_status		 st;
	json_object			*o;
	size_t				 i;
	int				 r;

	for (i = 0; i < NELEM(status_cases); i++) {
		c = &status_cases[i];
		o = parse(c->name, c->in);
		memset(&st, 0xa5, sizeof(st));
		r = colo_parse_status(o, &st);
		if (r != c->ret)
			fail_msg("%s: want %d, got %d", c->name, c->ret, r);
		if (r == 0) {
			check_cstr(c->name, "mode", st.mode, c->mode);
			check_cstr(c->name, "last_mode", st.last_mode,
			    c->last_mode);
			check_cstr(c->name, "reason", st.reason, c->reason);
		}
		json_object_put(o);
	}
}

/* --------------------------------------------------------------- state */

static const struct state_case {
	const char		*name;
	struct colo_vm_state	 vs;
	const char		*want;
} state_cases[] = {
	{ "all set", { "hv1", "vm1", "7.2.22", "none", "primary", "request",
	  1, 1, INT64_C(1795626700900000), NULL, "alive", "b1", "i1", 7,
	  NULL, 1 },
	  "{\"schema\":1,\"host\":\"hv1\",\"vm\":\"vm1\",\"mode\":\"none\","
	  "\"last_mode\":\"primary\",\"reason\":\"request\","
	  "\"qmp\":\"connected\",\"qemu\":\"7.2.22\",\"colo_status\":\"ok\","
	  "\"updated_us\":1795626700900000,\"last_exit\":null,"
	  "\"liveness\":\"alive\",\"bridge\":\"b1\",\"instance\":\"i1\","
	  "\"started_us\":7,\"peer\":null,\"heartbeat_unconfirmed\":true}" },
	{ "all unknown", { "hv1", "vm1", NULL, NULL, NULL, NULL, 0, -1, 0,
	  NULL, NULL, NULL, NULL, 0, NULL, 0 },
	  "{\"schema\":1,\"host\":\"hv1\",\"vm\":\"vm1\",\"mode\":null,"
	  "\"last_mode\":null,\"reason\":null,\"qmp\":\"disconnected\","
	  "\"qemu\":null,\"colo_status\":\"unknown\",\"updated_us\":0,"
	  "\"last_exit\":null,\"liveness\":null,\"bridge\":null,"
	  "\"instance\":null,\"started_us\":0,\"peer\":null,"
	  "\"heartbeat_unconfirmed\":false}" },
	{ "unsupported", { "hv1", "vm1", "3.0.0", "primary", NULL, NULL, 1, 0,
	  5, NULL, NULL, NULL, NULL, 0, NULL, 0 },
	  "{\"schema\":1,\"host\":\"hv1\",\"vm\":\"vm1\",\"mode\":\"primary\","
	  "\"last_mode\":null,\"reason\":null,\"qmp\":\"connected\","
	  "\"qemu\":\"3.0.0\",\"colo_status\":\"unsupported\","
	  "\"updated_us\":5,\"last_exit\":null,\"liveness\":null,"
	  "\"bridge\":null,\"instance\":null,\"started_us\":0,\"peer\":null,"
	  "\"heartbeat_unconfirmed\":false}" },
};

static void
test_state_json(void **state)
{
	const struct state_case	*c;
	json_object		*o;
	size_t			 i;

	for (i = 0; i < NELEM(state_cases); i++) {
		c = &state_cases[i];
		o = colo_state_json(&c->vs);
		assert_non_null(o);
		if (strcmp(json_object_to_json_string_ext(o,
		    JSON_C_TO_STRING_PLAIN), c->want) != 0)
			fail_msg("%s:\nwant %s\ngot  %s", c->name, c->want,
			    json_object_to_json_string_ext(o,
			    JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	}
}

/* last_exit is borrowed: the state keeps its own reference. */
static void
test_state_last_exit(void **state)
{
	struct colo_vm_state	 vs = { "hv1", "vm1", "7.2.22", "none",
				    "secondary", "request", 1, 1, 9, NULL,
				    NULL, NULL, NULL, 0, NULL, 0 };
	json_object		*ev, *in, *o, *le;

	in = json_tokener_parse("{\"timestamp\": {\"seconds\": 1795626699, "
	    "\"microseconds\": 424225}, \"event\": \"COLO_EXIT\", \"data\": "
	    "{\"mode\": \"secondary\", \"reason\": \"request\"}}");
	assert_non_null(in);
	ev = colo_normalize_exit(in, &ctx, NULL);
	assert_non_null(ev);
	json_object_put(in);
	vs.last_exit = ev;
	o = colo_state_json(&vs);
	assert_non_null(o);
	/* Dropping the caller's reference leaves the state's one. */
	assert_int_equal(json_object_put(ev), 0);
	assert_true(json_object_object_get_ex(o, "last_exit", &le));
	assert_ptr_equal(le, ev);
	check_str("last_exit", le, "mode", "secondary");
	check_str("last_exit", le, "reason", "request");
	check_int("last_exit", le, "seq", 7);
	json_object_put(o);
}

/*
 * colo_hold copies values QEMU does not document with strndup: this one
 * fails on demand (the executable's definition wins over libc's).
 */
static int	fail_strndup;

char *
strndup(const char *s, size_t n)
{
	size_t	 len = strnlen(s, n);
	char	*p;

	if (fail_strndup || (p = malloc(len + 1)) == NULL)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

static void
test_hold(void **state)
{
	char	*a = NULL, *b = NULL, *c = NULL;
	char	 big[COLO_ENUM_MAX + 10];

	/* Documented values are shared, not copied. */
	assert_int_equal(colo_hold(&a, "primary"), 1);
	assert_int_equal(colo_hold(&b, "primary"), 1);
	assert_ptr_equal(a, b);
	assert_int_equal(colo_hold(&a, "primary"), 0);
	assert_int_equal(colo_hold(&b, NULL), 1);
	assert_string_equal(b, "");
	assert_int_equal(colo_hold(&b, ""), 0);
	/* Others are copies, kept verbatim up to COLO_ENUM_MAX bytes. */
	assert_int_equal(colo_hold(&a, "colo-new"), 1);
	assert_int_equal(colo_hold(&c, "colo-new"), 1);
	assert_ptr_not_equal(a, c);
	assert_string_equal(a, "colo-new");
	assert_int_equal(colo_hold(&a, "colo-new"), 0);
	assert_int_equal(colo_hold(&a, "colo-newer"), 1);
	assert_string_equal(a, "colo-newer");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(colo_hold(&c, big), 1);
	assert_int_equal(strlen(c), COLO_ENUM_MAX);
	assert_int_equal(colo_hold(&c, big), 0);
	/* Out of memory: unknown (""), what was owned is freed. */
	fail_strndup = 1;
	assert_int_equal(colo_hold(&a, "colo-other"), -1);
	assert_string_equal(a, "");
	assert_int_equal(colo_hold(&a, "none"), 1);	/* no copy needed */
	assert_string_equal(a, "none");
	fail_strndup = 0;
	colo_release(&a);
	colo_release(&b);
	colo_release(&c);
	assert_null(a);
	assert_null(c);
	colo_release(&a);	/* NULL: no-op */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_enum),
		cmocka_unit_test(test_timestamp),
		cmocka_unit_test(test_format_time),
		cmocka_unit_test(test_normalize_exit),
		cmocka_unit_test(test_normalize_exact),
		cmocka_unit_test(test_normalize_null_flag),
		cmocka_unit_test(test_qemu_version),
		cmocka_unit_test(test_parse_status),
		cmocka_unit_test(test_state_json),
		cmocka_unit_test(test_state_last_exit),
		cmocka_unit_test(test_hold),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
