/*
 * libFuzzer target for src/colo.c.
 *
 * The input is parsed with json-c's tokener (as the bridge does with a
 * framed QMP message) and fed to every parser in colo.c, both as a whole
 * and through its "return" member.  Beyond "no crash, no leak, no UB", the
 * outputs are checked against the documented contract: colo_exit payloads
 * serialise, parse back, carry every required key in the documented order,
 * and their mode, reason, time and flags agree with each other.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *     $(pkg-config --cflags json-c) -Isrc -o fuzz_colo \
 *     tests/fuzz/fuzz_colo.c src/colo.c -ljson-c
 *   ./fuzz_colo -max_total_time=60 tests/fuzz/corpus/colo
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "colo.h"

#define RECV_US	INT64_C(1795631059000042)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static _Noreturn void
die(const char *what, json_object *o)
{
	fprintf(stderr, "fuzz_colo: %s\n", what);
	if (o != NULL)
		fprintf(stderr, "  output: %s\n", json_object_to_json_string(o));
	abort();
}

/* 1 if s is an acceptable enum string per colo.h, else 0. */
static int
enum_ok(const char *s)
{
	size_t	i, n;

	if (s == NULL)
		return 0;
	n = strlen(s);
	if (n < 1 || n > COLO_ENUM_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return 0;
	return 1;
}

/* 1 if s looks like "YYYY-MM-DDThh:mm:ss.uuuuuuZ", else 0. */
static int
time_ok(const char *s)
{
	static const char	pat[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
	size_t			i;

	if (strlen(s) != sizeof(pat) - 1)
		return 0;
	for (i = 0; pat[i] != '\0'; i++)
		if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
			return 0;
	return 1;
}

/* Checks a member that must be a string equal to want (NULL: null). */
static void
want_str(json_object *o, const char *key, const char *want)
{
	json_object	*v;

	if (!json_object_object_get_ex(o, key, &v))
		die(key, o);
	if (want == NULL ? v != NULL :
	    (!json_object_is_type(v, json_type_string) ||
	    strcmp(json_object_get_string(v), want) != 0))
		die(key, o);
}

/* Checks the keys of o are exactly keys[], in that order. */
static void
want_keys(json_object *o, const char *const *keys, size_t n)
{
	size_t	i = 0;

	json_object_object_foreach(o, k, v) {
		(void)v;
		if (i >= n || strcmp(k, keys[i]) != 0)
			die("key order", o);
		i++;
	}
	if (i != n)
		die("missing keys", o);
}

/* The event can be the state's last_exit: the state holds its reference. */
static void
check_state(json_object *ev, const struct colo_ctx *ctx, json_object *mode,
    json_object *reason, int mal, int64_t us)
{
	struct colo_vm_state	 vs;
	json_object		*st, *le;

	memset(&vs, 0, sizeof(vs));
	vs.host = ctx->host;
	vs.vm = ctx->vm;
	vs.qemu = ctx->qemu;
	vs.mode = mode != NULL ? json_object_get_string(mode) : NULL;
	vs.reason = reason != NULL ? json_object_get_string(reason) : NULL;
	vs.connected = !mal;
	vs.colo_status = mal ? -1 : 1;
	vs.updated_us = us;
	vs.last_exit = ev;
	if ((st = colo_state_json(&vs)) == NULL)
		die("colo_state_json returned NULL", ev);
	if (!json_object_object_get_ex(st, "last_exit", &le) || le != ev)
		die("state: last_exit", st);
	want_str(st, "mode", vs.mode);
	want_str(st, "reason", vs.reason);
	want_str(st, "qmp", mal ? "disconnected" : "connected");
	want_str(st, "colo_status", mal ? "unknown" : "ok");
	if (json_object_to_json_string(st) == NULL)
		die("state does not serialise", st);
	json_object_put(st);
}

static void
check_exit(json_object *in, const struct colo_ctx *ctx)
{
	static const char *const base_keys[] = {
		"schema", "event", "host", "vm", "mode", "reason", "time",
		"time_us", "time_source", "seq", "bridge", "qemu", "malformed",
	};
	const char	*keys[sizeof(base_keys) / sizeof(base_keys[0])];
	json_object	*out, *back, *v, *mode, *reason;
	const char	*text, *tstr;
	char		 tbuf[32];
	int64_t		 us, tus;
	size_t		 i, n;
	int		 mal = -1, qemu_time;

	if ((out = colo_normalize_exit(in, ctx, &mal)) == NULL)
		die("colo_normalize_exit returned NULL", NULL);
	if (mal != 0 && mal != 1)
		die("*malformed not set", out);
	qemu_time = colo_timestamp_us(in, &tus) == 0;

	/* Keys, in order. */
	for (i = n = 0; i < sizeof(base_keys) / sizeof(base_keys[0]); i++) {
		if (strcmp(base_keys[i], "time_source") == 0 && qemu_time)
			continue;
		if (strcmp(base_keys[i], "malformed") == 0 && !mal)
			continue;
		keys[n++] = base_keys[i];
	}
	want_keys(out, keys, n);

	/* Fixed and context fields. */
	if (!json_object_object_get_ex(out, "schema", &v) ||
	    !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) != COLO_SCHEMA)
		die("schema", out);
	want_str(out, "event", "colo_exit");
	want_str(out, "host", ctx->host);
	want_str(out, "vm", ctx->vm);
	want_str(out, "bridge", ctx->bridge);
	want_str(out, "qemu", ctx->qemu);
	if (!json_object_object_get_ex(out, "seq", &v) ||
	    !json_object_is_type(v, json_type_int) ||
	    json_object_get_uint64(v) != ctx->seq)
		die("seq", out);

	/* mode and reason: null exactly when malformed says so. */
	json_object_object_get_ex(out, "mode", &mode);
	json_object_object_get_ex(out, "reason", &reason);
	if ((mode == NULL || reason == NULL) != mal)
		die("malformed disagrees with mode/reason", out);
	if (mode != NULL && (!json_object_is_type(mode, json_type_string) ||
	    !enum_ok(json_object_get_string(mode)) ||
	    strcmp(json_object_get_string(mode), "unknown") == 0))
		die("mode", out);
	if (reason != NULL && (!json_object_is_type(reason,
	    json_type_string) || !enum_ok(json_object_get_string(reason))))
		die("reason", out);
	if (mal) {
		if (!json_object_object_get_ex(out, "malformed", &v) ||
		    !json_object_is_type(v, json_type_boolean) ||
		    !json_object_get_boolean(v))
			die("malformed", out);
	}

	/* time, time_us and time_source agree. */
	if (!json_object_object_get_ex(out, "time_us", &v) ||
	    !json_object_is_type(v, json_type_int))
		die("time_us", out);
	us = json_object_get_int64(v);
	if (qemu_time ? us != tus : us != ctx->recv_us)
		die("time_us value", out);
	if (!qemu_time)
		want_str(out, "time_source", "bridge");
	if (!json_object_object_get_ex(out, "time", &v) ||
	    !json_object_is_type(v, json_type_string))
		die("time", out);
	tstr = json_object_get_string(v);
	if (!time_ok(tstr) || colo_format_time(us, tbuf, sizeof(tbuf)) != 0 ||
	    strcmp(tbuf, tstr) != 0)
		die("time format", out);

	/* It serialises, and what subscribers parse is what we built. */
	text = json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN);
	if (text == NULL || (back = json_tokener_parse(text)) == NULL)
		die("does not serialise to valid JSON", out);
	if (!json_object_equal(out, back))
		die("serialisation does not round-trip", out);
	json_object_put(back);

	check_state(out, ctx, mode, reason, mal, us);
	json_object_put(out);
}

static void
check_status(json_object *ret)
{
	struct colo_status	 st;

	if (colo_parse_status(ret, &st) == -1) {
		if (json_object_is_type(ret, json_type_object) &&
		    st.mode != NULL)
			die("colo_parse_status: -1 with a mode", ret);
		return;
	}
	if (!json_object_is_type(ret, json_type_object) ||
	    !enum_ok(st.mode) || strcmp(st.mode, "unknown") == 0)
		die("colo_parse_status: mode", ret);
	if (st.last_mode != NULL && (!enum_ok(st.last_mode) ||
	    strcmp(st.last_mode, "unknown") == 0))
		die("colo_parse_status: last_mode", ret);
	if (st.reason != NULL && !enum_ok(st.reason))
		die("colo_parse_status: reason", ret);
}

static void
check_version(json_object *greeting, size_t small)
{
	char	buf[40];
	int	a, b, c, n;

	if (colo_qemu_version(greeting, buf, sizeof(buf)) == 0) {
		n = -1;
		if (sscanf(buf, "%d.%d.%d%n", &a, &b, &c, &n) != 3 ||
		    n != (int)strlen(buf) || a < 0 || b < 0 || c < 0)
			die("colo_qemu_version: format", greeting);
	}
	/* A short buffer never overflows and is refused or filled. */
	memset(buf, 'X', sizeof(buf));
	if (colo_qemu_version(greeting, buf, small) == 0 &&
	    strlen(buf) >= small)
		die("colo_qemu_version: overflow", greeting);
	if (small < sizeof(buf) && buf[small] != 'X')
		die("colo_qemu_version: wrote past len", greeting);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_tokener	*tok;
	struct colo_ctx		 ctx = {
		.host = "hv1",
		.vm = "vm1",
		.bridge = "qmp2mqtt-hv1",
		.qemu = "7.2.22",
		.seq = 1,
		.recv_us = RECV_US,
	};
	json_object		*in, *ret = NULL;
	int64_t			 t;
	char			 tbuf[32];

	if (size > INT_MAX)
		return 0;
	/* Vary the context a little from the input's length. */
	ctx.seq = size % 3 == 0 ? UINT64_MAX : size;
	if (size % 2)
		ctx.qemu = NULL;

	if ((tok = json_tokener_new()) == NULL)
		return 0;
	in = json_tokener_parse_ex(tok, (const char *)data, (int)size);
	json_tokener_free(tok);

	/* Even an unparsable input (in == NULL) must be handled. */
	check_exit(in, &ctx);
	check_status(in);
	check_version(in, size % 16);
	if (json_object_object_get_ex(in, "return", &ret)) {
		check_status(ret);
		check_exit(ret, &ctx);
	}
	json_object_put(in);

	/* colo_format_time on arbitrary values from the input's bytes. */
	if (size >= sizeof(t)) {
		memcpy(&t, data, sizeof(t));
		if (colo_format_time(t, tbuf, sizeof(tbuf)) == 0 &&
		    (t < 0 || !time_ok(tbuf)))
			die("colo_format_time", NULL);
		if (colo_format_time(t, tbuf, (size_t)data[0] % 28) == 0)
			die("colo_format_time: fitted in a short buffer",
			    NULL);
	}
	return 0;
}
