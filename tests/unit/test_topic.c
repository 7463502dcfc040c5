/*
 * Unit tests for src/topic.c: table-driven.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "topic.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

#define A16	"aaaaaaaaaaaaaaaa"
#define A64	A16 A16 A16 A16

static const struct level_case {
	const char	*name;
	const char	*in;
	int		 ok;
} level_cases[] = {
	{ "plain", "vm1", 1 },
	{ "one byte", "a", 1 },
	{ "punctuation", "vm-1_a.b:c@d", 1 },
	{ "space inside", "my vm", 1 },
	{ "dollar", "$vm", 1 },
	{ "64 bytes", A64, 1 },
	{ "2-byte UTF-8", "vm-\xc3\xa9", 1 },			/* é */
	{ "3-byte UTF-8", "\xe2\x82\xac", 1 },			/* € */
	{ "4-byte UTF-8", "\xf0\x9f\x98\x80", 1 },		/* 😀 */
	{ "U+10FFFD", "\xf4\x8f\xbf\xbd", 1 },
	{ "U+00A0 (first after C1)", "\xc2\xa0", 1 },
	{ "U+FFFD", "\xef\xbf\xbd", 1 },
	{ "62 bytes + é", A16 A16 A16 "aaaaaaaaaaaaaa" "\xc3\xa9", 1 },

	{ "NULL", NULL, 0 },
	{ "empty", "", 0 },
	{ "65 bytes", A64 "a", 0 },
	{ "63 bytes + é", A16 A16 A16 "aaaaaaaaaaaaaaa" "\xc3\xa9", 0 },
	{ "slash", "vm/1", 0 },
	{ "only slash", "/", 0 },
	{ "plus", "vm+", 0 },
	{ "hash", "#", 0 },
	{ "tab", "vm\t1", 0 },
	{ "newline", "vm1\n", 0 },
	{ "escape", "\x1b[31m", 0 },
	{ "DEL", "vm\x7f", 0 },
	{ "C1 U+0085", "vm\xc2\x85", 0 },
	{ "C1 U+009F", "\xc2\x9f", 0 },
	{ "non-character U+FFFE", "\xef\xbf\xbe", 0 },
	{ "non-character U+FFFF", "\xef\xbf\xbf", 0 },
	{ "non-character U+FDD0", "\xef\xb7\x90", 0 },
	{ "non-character U+10FFFF", "\xf4\x8f\xbf\xbf", 0 },
	{ "lone continuation", "vm\x80", 0 },
	{ "truncated 2-byte", "vm\xc3", 0 },
	{ "truncated 3-byte", "\xe2\x82", 0 },
	{ "truncated 4-byte", "\xf0\x9f\x98", 0 },
	{ "bad continuation", "\xc3\x28", 0 },
	{ "overlong '/' (C0 AF)", "vm\xc0\xaf", 0 },
	{ "overlong NUL (C0 80)", "vm\xc0\x80", 0 },
	{ "overlong 'A' (C1 81)", "\xc1\x81", 0 },
	{ "overlong 3-byte '/'", "\xe0\x80\xaf", 0 },
	{ "overlong 3-byte U+07FF", "\xe0\x9f\xbf", 0 },
	{ "overlong 4-byte", "\xf0\x80\x80\xaf", 0 },
	{ "overlong 4-byte U+FFFF", "\xf0\x8f\xbf\xbf", 0 },
	{ "surrogate U+D800", "\xed\xa0\x80", 0 },
	{ "surrogate U+DFFF", "\xed\xbf\xbf", 0 },
	{ "U+110000", "\xf4\x90\x80\x80", 0 },
	{ "F5 lead", "\xf5\x80\x80\x80", 0 },
	{ "5-byte form", "\xf8\x88\x80\x80\x80", 0 },
	{ "FE", "\xfe", 0 },
	{ "FF", "\xff", 0 },
	{ "Latin-1 é", "vm-\xe9", 0 },
};

static void
test_level(void **state)
{
	const struct level_case	*c;
	const char		*why;
	size_t			 i;

	for (i = 0; i < NELEM(level_cases); i++) {
		c = &level_cases[i];
		why = topic_level_check(c->in);
		if (c->ok && why != NULL)
			fail_msg("%s: refused: %s", c->name, why);
		if (!c->ok && why == NULL)
			fail_msg("%s: accepted", c->name);
		if (why != NULL && why[0] == '\0')
			fail_msg("%s: empty reason", c->name);
	}
}

static const struct base_case {
	const char	*name;
	const char	*in;
	int		 ok;
} base_cases[] = {
	{ "default", "qmp2mqtt", 1 },
	{ "two levels", "site/qmp2mqtt", 1 },
	{ "three levels", "a/b/c", 1 },
	{ "UTF-8", "caf\xc3\xa9/colo", 1 },
	{ "dollar later", "a/$b", 1 },
	{ "128 bytes", A64 "/" A16 A16 A16 "aaaaaaaaaaaaaaa", 1 },
	{ "64-byte level", A64, 1 },

	{ "NULL", NULL, 0 },
	{ "empty", "", 0 },
	{ "129 bytes", A64 "/" A16 A16 A16 A16, 0 },
	{ "65-byte level", A64 "a", 0 },
	{ "leading slash", "/qmp2mqtt", 0 },
	{ "trailing slash", "qmp2mqtt/", 0 },
	{ "double slash", "a//b", 0 },
	{ "only slash", "/", 0 },
	{ "$SYS", "$SYS", 0 },
	{ "$ prefix", "$share/x", 0 },
	{ "plus level", "a/+/b", 0 },
	{ "hash", "a/#", 0 },
	{ "hash inside", "a#b", 0 },
	{ "control", "a/b\nc", 0 },
	{ "invalid UTF-8", "a/\xc0\xaf", 0 },
	{ "surrogate", "a/\xed\xa0\x80", 0 },
};

static void
test_base(void **state)
{
	const struct base_case	*c;
	const char		*why;
	size_t			 i;

	/* The boundary cases are what their names say. */
	assert_int_equal(strlen(base_cases[5].in), TOPIC_BASE_MAX);
	assert_int_equal(strlen(base_cases[9].in), TOPIC_BASE_MAX + 1);
	for (i = 0; i < NELEM(base_cases); i++) {
		c = &base_cases[i];
		why = topic_base_check(c->in);
		if (c->ok && why != NULL)
			fail_msg("%s: refused: %s", c->name, why);
		if (!c->ok && why == NULL)
			fail_msg("%s: accepted", c->name);
	}
}

static const struct build_case {
	const char	*name;
	size_t		 len;
	const char	*base, *host, *vm, *suffix;
	const char	*want;		/* NULL: -1 */
} build_cases[] = {
	{ "event", 512, "qmp2mqtt", "hv1", "vm1", "event/colo_exit",
	  "qmp2mqtt/hv1/vm1/event/colo_exit" },
	{ "state", 512, "site/qmp2mqtt", "hv1", "vm1", "state",
	  "site/qmp2mqtt/hv1/vm1/state" },
	{ "bridge", 512, "qmp2mqtt", "hv1", "bridge", "stats",
	  "qmp2mqtt/hv1/bridge/stats" },
	/* "b/h/v/s" is 7 bytes: 8 fits exactly, 7 does not. */
	{ "exact fit", 8, "b", "h", "v", "s", "b/h/v/s" },
	{ "one short", 7, "b", "h", "v", "s", NULL },
	{ "no room", 0, "b", "h", "v", "s", NULL },
	{ "one byte", 1, "b", "h", "v", "s", NULL },
	{ "NULL part", 512, "b", NULL, "v", "s", NULL },
};

static void
test_build(void **state)
{
	const struct build_case	*c;
	char			 buf[TOPIC_MAX];
	size_t			 i;
	int			 r;

	for (i = 0; i < NELEM(build_cases); i++) {
		c = &build_cases[i];
		memset(buf, 'X', sizeof(buf));
		r = topic_build(buf, c->len, c->base, c->host, c->vm,
		    c->suffix);
		if (c->want == NULL) {
			if (r != -1)
				fail_msg("%s: want -1, got %d", c->name, r);
			/* Never writes past len. */
			if (c->len < sizeof(buf) && buf[c->len] != 'X')
				fail_msg("%s: wrote past len", c->name);
			continue;
		}
		if (r != (int)strlen(c->want))
			fail_msg("%s: want %zu, got %d", c->name,
			    strlen(c->want), r);
		if (strcmp(buf, c->want) != 0)
			fail_msg("%s: want %s, got %s", c->name, c->want, buf);
	}
}

/* The largest names the checks allow still fit in TOPIC_MAX. */
static void
test_build_max(void **state)
{
	char	buf[TOPIC_MAX];
	char	base[TOPIC_BASE_MAX + 1], name[TOPIC_LEVEL_MAX + 1];
	int	r;

	memset(base, 'b', TOPIC_BASE_MAX);
	base[TOPIC_BASE_MAX] = '\0';
	base[64] = '/';
	memset(name, 'n', TOPIC_LEVEL_MAX);
	name[TOPIC_LEVEL_MAX] = '\0';
	assert_null(topic_base_check(base));
	assert_null(topic_level_check(name));
	r = topic_build(buf, sizeof(buf), base, name, name, "event/colo_exit");
	assert_int_equal(r, 128 + 1 + 64 + 1 + 64 + 1 + 15);
}

#define NOMATCH	-1, NULL, NULL, NULL

static const struct parse_case {
	const char	*name;
	const char	*topic, *base;
	int		 ret;
	const char	*host, *vm, *suffix;
} parse_cases[] = {
	{ "simple", "qmp2mqtt/hv1/vm1/cmd", "qmp2mqtt", 0,
	  "hv1", "vm1", "cmd" },
	{ "suffix with levels", "qmp2mqtt/hv1/vm1/cmd/takeover", "qmp2mqtt", 0,
	  "hv1", "vm1", "cmd/takeover" },
	{ "multi-level base", "site/a/qmp2mqtt/hv1/vm1/state",
	  "site/a/qmp2mqtt", 0, "hv1", "vm1", "state" },
	{ "UTF-8 names", "q/h\xc3\xa9/vm-\xc3\xa9/s", "q", 0,
	  "h\xc3\xa9", "vm-\xc3\xa9", "s" },
	{ "suffix ending in slash", "q/h/v/s/", "q", 0, "h", "v", "s/" },

	{ "base prefix of level", "qmp2mqttX/h/v/s", "qmp2mqtt", NOMATCH },
	{ "base prefix of longer level", "qmp2mqttXY/h/v/s", "qmp2mqtt",
	  NOMATCH },
	{ "base prefix, no slash", "qmp2mqtt-hv1/vm1/s/t", "qmp2mqtt",
	  NOMATCH },
	{ "other base", "other/h/v/s", "qmp2mqtt", NOMATCH },
	{ "base longer than topic", "qmp", "qmp2mqtt", NOMATCH },
	{ "base only", "qmp2mqtt", "qmp2mqtt", NOMATCH },
	{ "base and slash", "qmp2mqtt/", "qmp2mqtt", NOMATCH },
	{ "no vm", "qmp2mqtt/hv1", "qmp2mqtt", NOMATCH },
	{ "no suffix", "qmp2mqtt/hv1/vm1", "qmp2mqtt", NOMATCH },
	{ "empty suffix", "qmp2mqtt/hv1/vm1/", "qmp2mqtt", NOMATCH },
	{ "empty host", "qmp2mqtt//vm1/s", "qmp2mqtt", NOMATCH },
	{ "empty vm", "qmp2mqtt/hv1//s", "qmp2mqtt", NOMATCH },
	{ "multi-level base, short", "site/a/hv1/vm1/s", "site/a/qmp2mqtt",
	  NOMATCH },
	{ "multi-level base, first level only", "site/hv1/vm1/s",
	  "site/qmp2mqtt", NOMATCH },
	{ "multi-level base, missing suffix", "site/q/hv1/vm1", "site/q",
	  NOMATCH },
	{ "case differs", "QMP2MQTT/h/v/s", "qmp2mqtt", NOMATCH },
	{ "empty topic", "", "qmp2mqtt", NOMATCH },
	{ "empty base", "/h/v/s", "", NOMATCH },
	{ "NULL topic", NULL, "qmp2mqtt", NOMATCH },
	{ "NULL base", "q/h/v/s", NULL, NOMATCH },
};

static void
test_parse(void **state)
{
	const struct parse_case	*c;
	struct topic_parts	 tp;
	size_t			 i;
	int			 r;

	for (i = 0; i < NELEM(parse_cases); i++) {
		c = &parse_cases[i];
		memset(&tp, 0, sizeof(tp));
		r = topic_parse(c->topic, c->base, &tp);
		if (r != c->ret)
			fail_msg("%s: want %d, got %d", c->name, c->ret, r);
		if (r != 0)
			continue;
		if (tp.host_len != strlen(c->host) ||
		    strncmp(tp.host, c->host, tp.host_len) != 0)
			fail_msg("%s: host: want %s, got %.*s", c->name,
			    c->host, (int)tp.host_len, tp.host);
		if (tp.vm_len != strlen(c->vm) ||
		    strncmp(tp.vm, c->vm, tp.vm_len) != 0)
			fail_msg("%s: vm: want %s, got %.*s", c->name,
			    c->vm, (int)tp.vm_len, tp.vm);
		if (strcmp(tp.suffix, c->suffix) != 0)
			fail_msg("%s: suffix: want %s, got %s", c->name,
			    c->suffix, tp.suffix);
		/* The parts point into the topic. */
		if (tp.host < c->topic ||
		    tp.suffix >= c->topic + strlen(c->topic))
			fail_msg("%s: parts not inside the topic", c->name);
	}
}

/* What topic_build writes, topic_parse splits back. */
static void
test_roundtrip(void **state)
{
	static const char *const bases[] = { "q", "site/q", "a/b/c/d" };
	char			 buf[TOPIC_MAX];
	struct topic_parts	 tp;
	size_t			 i;

	for (i = 0; i < NELEM(bases); i++) {
		assert_true(topic_build(buf, sizeof(buf), bases[i], "hv1",
		    "vm-\xc3\xa9", "event/colo_exit") > 0);
		assert_int_equal(topic_parse(buf, bases[i], &tp), 0);
		assert_int_equal(tp.host_len, 3);
		assert_memory_equal(tp.host, "hv1", 3);
		assert_int_equal(tp.vm_len, 5);
		assert_memory_equal(tp.vm, "vm-\xc3\xa9", 5);
		assert_string_equal(tp.suffix, "event/colo_exit");
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_level),
		cmocka_unit_test(test_base),
		cmocka_unit_test(test_build),
		cmocka_unit_test(test_build_max),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_roundtrip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
