/*
 * Unit tests for jstream: framing, errors, bounds, and that every way of
 * cutting a stream into feeds yields the same callbacks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "jstream.h"

#define PFX	64	/* bytes jstream shows with an error report */

struct ev {
	enum jstream_kind	 kind;
	char			*buf;
	size_t			 len;
	int			 zerocopy;	/* buf pointed into the input */
};

struct rec {
	struct jstream	*js;
	size_t		 max_msg;
	const char	*in;		/* the current feed */
	size_t		 inlen;
	struct ev	*ev;
	size_t		 n;
	size_t		 cap;
};

struct want {
	enum jstream_kind	 kind;
	const char		*s;
	size_t			 len;
};

#define W(k, lit)	{ (k), (lit), sizeof(lit) - 1 }
#define MSG(lit)	W(JSTREAM_MSG, lit)
#define INV(lit)	W(JSTREAM_INVALID, lit)
#define OVER(lit)	W(JSTREAM_OVERSIZED, lit)
#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

static const char *
kname(enum jstream_kind k)
{
	switch (k) {
	case JSTREAM_MSG:
		return "MSG";
	case JSTREAM_INVALID:
		return "INVALID";
	case JSTREAM_OVERSIZED:
		return "OVERSIZED";
	}
	return "?";
}

static void
record(void *arg, enum jstream_kind kind, const char *buf, size_t len)
{
	struct rec	*r = arg;
	struct ev	*e;

	assert_non_null(buf);
	/* the buffer never grows past max_msg, even mid-callback */
	assert_true(jstream_capacity(r->js) <= r->max_msg);
	if (kind == JSTREAM_MSG) {
		assert_true(len >= 2 && len <= r->max_msg);
		assert_true(buf[0] == '{' || buf[0] == '[');
		assert_true(buf[len - 1] == (buf[0] == '{' ? '}' : ']'));
	} else
		assert_true(len <= PFX && len <= r->max_msg);
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->ev = realloc(r->ev, r->cap * sizeof(*r->ev));
		assert_non_null(r->ev);
	}
	e = &r->ev[r->n++];
	e->kind = kind;
	e->len = len;
	e->buf = malloc(len + 1);
	assert_non_null(e->buf);
	memcpy(e->buf, buf, len);
	e->buf[len] = '\0';
	e->zerocopy = r->in != NULL && buf >= r->in && buf < r->in + r->inlen;
}

static void
rec_init(struct rec *r, size_t max_msg, unsigned max_depth)
{
	memset(r, 0, sizeof(*r));
	r->js = jstream_new(max_msg, max_depth);
	assert_non_null(r->js);
	r->max_msg = max_msg;
}

static void
rec_clear(struct rec *r)
{
	size_t	 i;

	for (i = 0; i < r->n; i++)
		free(r->ev[i].buf);
	r->n = 0;
}

static void
rec_done(struct rec *r)
{
	rec_clear(r);
	free(r->ev);
	jstream_free(r->js);
}

static void
feed(struct rec *r, const char *p, size_t len)
{
	r->in = p;
	r->inlen = len;
	assert_int_equal(jstream_feed(r->js, p, len, record, r), 0);
	r->in = NULL;
	assert_true(jstream_capacity(r->js) <= r->max_msg);
	assert_true(jstream_buffered(r->js) <= jstream_capacity(r->js));
}

static void
feeds(struct rec *r, const char *s)
{
	feed(r, s, strlen(s));
}

/* Compares the recorded callbacks with want; what names the cut. */
static void
expect(const struct rec *r, const struct want *w, size_t nw, const char *what)
{
	size_t	 i;

	for (i = 0; i < r->n && i < nw; i++) {
		if (r->ev[i].kind != w[i].kind || r->ev[i].len != w[i].len ||
		    memcmp(r->ev[i].buf, w[i].s, w[i].len) != 0)
			fail_msg("%s: event %zu: got %s \"%.*s\" (%zu), "
			    "want %s \"%.*s\" (%zu)", what, i,
			    kname(r->ev[i].kind), (int)r->ev[i].len,
			    r->ev[i].buf, r->ev[i].len, kname(w[i].kind),
			    (int)w[i].len, w[i].s, w[i].len);
	}
	if (r->n != nw)
		fail_msg("%s: got %zu events, want %zu", what, r->n, nw);
}

/* Feeds in[0..len) cut at the ascending offsets cuts[0..ncuts). */
static void
feed_cut(struct rec *r, const char *in, size_t len, const size_t *cuts,
    size_t ncuts)
{
	size_t	 i, at = 0;

	for (i = 0; i <= ncuts; i++) {
		size_t	 to = i < ncuts ? cuts[i] : len;

		feed(r, in + at, to - at);
		at = to;
	}
}

/*
 * Checks that in[0..len) yields exactly want whether fed whole, one byte
 * per feed, in two feeds cut at every offset, and (for short inputs) in
 * three feeds cut at every pair of offsets.  Also checks that, fed whole,
 * every frame is passed straight from the input.
 */
static void
check_stream(const char *in, size_t len, size_t max_msg, unsigned max_depth,
    const struct want *w, size_t nw)
{
	struct rec	 r;
	char		 what[64];
	size_t		 i, j, cuts[2];

	rec_init(&r, max_msg, max_depth);

	feed(&r, in, len);
	expect(&r, w, nw, "whole");
	for (i = 0; i < r.n; i++)
		if (r.ev[i].kind == JSTREAM_MSG)
			assert_true(r.ev[i].zerocopy);
	assert_int_equal(jstream_buffered(r.js), 0);
	rec_clear(&r);
	jstream_reset(r.js);

	for (i = 0; i < len; i++)
		feed(&r, in + i, 1);
	expect(&r, w, nw, "bytewise");
	rec_clear(&r);
	jstream_reset(r.js);

	for (i = 0; i <= len; i++) {
		cuts[0] = i;
		feed_cut(&r, in, len, cuts, 1);
		snprintf(what, sizeof(what), "cut at %zu", i);
		expect(&r, w, nw, what);
		rec_clear(&r);
		jstream_reset(r.js);
	}

	if (len <= 400) {
		for (i = 1; i < len; i++) {
			for (j = i + 1; j < len; j++) {
				cuts[0] = i;
				cuts[1] = j;
				feed_cut(&r, in, len, cuts, 2);
				snprintf(what, sizeof(what),
				    "cut at %zu and %zu", i, j);
				expect(&r, w, nw, what);
				rec_clear(&r);
				jstream_reset(r.js);
			}
		}
	}
	rec_done(&r);
}

#define CHECK(in, max_msg, max_depth, w) \
	check_stream((in), sizeof(in) - 1, (max_msg), (max_depth), (w), \
	    NELEM(w))

#define GREETING \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, " \
	"\"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7\"}, " \
	"\"capabilities\": [\"oob\"]}}"

/* QEMU -qmp-pretty output; the monitor turns every '\n' into CRLF. */
#define PRETTY \
	"{\r\n" \
	"    \"timestamp\": {\r\n" \
	"        \"seconds\": 1764094459,\r\n" \
	"        \"microseconds\": 123456\r\n" \
	"    },\r\n" \
	"    \"event\": \"COLO_EXIT\",\r\n" \
	"    \"data\": {\r\n" \
	"        \"mode\": \"primary\",\r\n" \
	"        \"reason\": \"error\"\r\n" \
	"    }\r\n" \
	"}"

static void
test_single_crlf(void **state)
{
	static const char	 in[] = GREETING "\r\n";
	static const struct want w[] = { MSG(GREETING) };

	CHECK(in, 4096, 32, w);
}

static void
test_several_in_one_feed(void **state)
{
	static const char	 in[] =
	    "{\"return\": {}}\r\n"
	    "{\"return\": {}, \"id\": 1}\r\n"
	    "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 1, "
	    "\"microseconds\": 2}}\r\n";
	static const struct want w[] = {
		MSG("{\"return\": {}}"),
		MSG("{\"return\": {}, \"id\": 1}"),
		MSG("{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 1, "
		    "\"microseconds\": 2}}")
	};
	struct rec		 r;
	size_t			 i;

	CHECK(in, 4096, 32, w);

	/* no separator at all, and arrays, are framed as well */
	rec_init(&r, 4096, 32);
	feeds(&r, "{}[]{\"a\":[1,{}]}[{}]");
	assert_int_equal(r.n, 4);
	for (i = 0; i < r.n; i++) {
		assert_int_equal(r.ev[i].kind, JSTREAM_MSG);
		assert_true(r.ev[i].zerocopy);
	}
	assert_string_equal(r.ev[2].buf, "{\"a\":[1,{}]}");
	assert_int_equal(jstream_capacity(r.js), 0);	/* never needed */
	rec_done(&r);
}

static void
test_one_over_many_feeds(void **state)
{
	static const char	 in[] = PRETTY "\r\n";
	struct rec		 r;
	size_t			 i, len = sizeof(in) - 1;

	rec_init(&r, 4096, 32);
	for (i = 0; i < len; i += 7) {
		feed(&r, in + i, len - i < 7 ? len - i : 7);
		if (i + 7 < sizeof(PRETTY) - 1) {
			assert_int_equal(r.n, 0);
			assert_int_equal(jstream_buffered(r.js), i + 7);
		}
	}
	assert_int_equal(r.n, 1);
	assert_int_equal(r.ev[0].kind, JSTREAM_MSG);
	assert_string_equal(r.ev[0].buf, PRETTY);
	assert_false(r.ev[0].zerocopy);
	assert_int_equal(jstream_buffered(r.js), 0);
	rec_done(&r);
}

#define TRICKY1 \
	"{\"return\": \"a } b { c ] d [\", \"id\": \"x{\"}"
#define TRICKY2 \
	"{\"s\": \"quote \\\" brace } backslash \\\\\", " \
	"\"t\": \"\\\\\", \"u\": \"\\\\\\\"}\"}"
#define TRICKY3 \
	"{\"u\": \"\\u007b\\u005D\\ud83d\\ude00 caf\xc3\xa9\", \"e\": " \
	"\"\\b\\f\\n\\r\\t\\/\", \"n\": [1.5e-3, -2, true, false, null]}"
#define TRICKY4 \
	"[{\"a\": [[], {}, [{}]]}, \"]\", \"[\", \"\\\\\"]"

static void
test_split_every_offset(void **state)
{
	static const char	 in[] =
	    GREETING "\r\n"
	    PRETTY "\r\n"
	    TRICKY1 "\r\n"
	    "\t " TRICKY2 "\n"
	    TRICKY3 "\r\n\r\n"
	    TRICKY4 " "
	    PRETTY "\r\n";
	static const struct want w[] = {
		MSG(GREETING), MSG(PRETTY), MSG(TRICKY1), MSG(TRICKY2),
		MSG(TRICKY3), MSG(TRICKY4), MSG(PRETTY)
	};
	static const char	 small[] =
	    TRICKY2 TRICKY4 "\r\n" "{\"a\":\"\\\\\\\"\"}";
	static const struct want ws[] = {
		MSG(TRICKY2), MSG(TRICKY4), MSG("{\"a\":\"\\\\\\\"\"}")
	};

	CHECK(in, 4096, 32, w);
	CHECK(small, 4096, 32, ws);
	/* just large enough: every message fits exactly or with room */
	CHECK(in, sizeof(PRETTY) - 1, 32, w);
}

static void
test_garbage_between(void **state)
{
	static const char	 in[] =
	    "hello world\r\n"
	    "{\"return\": {}, \"id\": 1}\r\n"
	    "}\r\n"
	    "  ]\n"
	    "42\r\n"
	    "-1.5 {\"lost\": 1}\r\n"
	    "true\n"
	    "\"str\"\r\n"
	    "\r\n"
	    "{\"event\": \"STOP\"}\r\n"
	    "\x01\x7f\xff\n"
	    "[1, 2]\n"
	    "x\n"
	    "\n";
	static const struct want w[] = {
		INV("hello world"),
		MSG("{\"return\": {}, \"id\": 1}"),
		INV("}"),
		INV("]"),
		INV("42"),
		INV("-1.5 {\"lost\": 1}"),
		INV("true"),
		INV("\"str\""),
		MSG("{\"event\": \"STOP\"}"),
		INV("\x01\x7f\xff"),
		MSG("[1, 2]"),
		INV("x")
	};
	/* a long garbage line is reported once, with its first 64 bytes */
	static const char	 longline[] =
	    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	    "0123456789abcdef{\"a\": 1}\r\n"
	    "{\"b\": 2}";
	static const struct want wl[] = {
		INV("0123456789abcdef0123456789abcdef0123456789abcdef"
		    "0123456789abcdef"),
		MSG("{\"b\": 2}")
	};
	/* exactly 64 bytes then CRLF: the CR is part of the prefix */
	static const char	 edge[] =
	    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"
	    "\r\n{}";
	static const struct want we[] = {
		INV("0123456789abcdef0123456789abcdef0123456789abcdef"
		    "0123456789abcde\r"),
		MSG("{}")
	};

	CHECK(in, 4096, 32, w);
	CHECK(longline, 4096, 32, wl);
	CHECK(edge, 4096, 32, we);
}

static void
test_broken_message(void **state)
{
	static const char	 in[] =
	    "{\"event\": \"X\", \r\n"
	    "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true}}\r\n";
	static const struct want w[] = {
		INV("{\"event\": \"X\", \r\n"),
		MSG("{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true}}")
	};
	/* a broken pretty message, then a pretty one, then an array */
	static const char	 pretty[] =
	    "{\r\n    \"event\": \"X\",\r\n    \"data\": {\r\n"
	    PRETTY "\r\n"
	    "[\r\n"
	    "[1]\r\n";
	static const struct want wp[] = {
		INV("{\r\n    \"event\": \"X\",\r\n    \"data\": {\r\n"),
		MSG(PRETTY),
		INV("[\r\n"),
		MSG("[1]")
	};
	/* a string broken by a line end: CR is a raw control byte */
	static const char	 str[] =
	    "{\"event\": \"X\", \"data\": \"trunc\r\n"
	    "{\"event\": \"Y\"}\r\n"
	    "{\"a\": \"b\n"
	    "{\"event\": \"Z\"}\r\n";
	static const struct want ws[] = {
		INV("{\"event\": \"X\", \"data\": \"trunc\r"),
		MSG("{\"event\": \"Y\"}"),
		INV("{\"a\": \"b\n"),
		MSG("{\"event\": \"Z\"}")
	};
	/* an opener after a line end but indented is no break */
	static const char	 indent[] = "{\"a\":\n {\"b\":\n\t[1]}}";
	static const struct want wi[] = {
		MSG("{\"a\":\n {\"b\":\n\t[1]}}")
	};

	CHECK(in, 4096, 32, w);
	CHECK(pretty, 4096, 32, wp);
	CHECK(str, 4096, 32, ws);
	CHECK(indent, 4096, 32, wi);
}

static void
test_mismatched(void **state)
{
	static const char	 in[] =
	    "{]\r\n"
	    "{\"a\": [1, 2}, \"b\": 3}\r\n"
	    "[}\n"
	    "{\"ok\": 1}\r\n";
	static const struct want w[] = {
		INV("{]"),
		INV("{\"a\": [1, 2}"),
		INV("[}"),
		MSG("{\"ok\": 1}")
	};

	CHECK(in, 4096, 32, w);
}

/* Builds {"pad": "xxx..."} of exactly len bytes (len >= 12). */
static char *
padded(size_t len)
{
	char	*s = malloc(len + 1);

	assert_non_null(s);
	memcpy(s, "{\"pad\": \"", 9);
	memset(s + 9, 'x', len - 11);
	memcpy(s + len - 2, "\"}", 3);
	return s;
}

static void
test_oversized(void **state)
{
	static const char	 in[] =
	    "{\"event\": \"BIG\", \"data\": {\"blob\": "
	    "\"0123456789012345678901234567890123456789\", "
	    "\"nested\": [{\"a\": \"}}}]]]\"}, {\"b\": \"\\\"}\"}], "
	    "\"more\": \"0123456789012345678901234567890123456789\"}}\r\n"
	    "{\"event\": \"SMALL\"}\r\n";
	static const struct want w[] = {
		OVER("{\"event\": \"BIG\", \"data\": {\"blob\": "
		    "\"01234567890123456789012345678"),
		MSG("{\"event\": \"SMALL\"}")
	};
	/* with max_msg under 64 the report shows max_msg bytes */
	static const struct want w20[] = {
		OVER("{\"event\": \"BIG\", \"da"),
		MSG("{\"event\": \"SMALL\"}")
	};
	struct rec		 r;
	char			*s;
	size_t			 i, n;

	CHECK(in, 64, 32, w);
	CHECK(in, 100, 32, w);
	CHECK(in, 20, 32, w20);

	/* max_msg bytes pass, max_msg + 1 do not */
	rec_init(&r, 100, 32);
	s = padded(100);
	feed(&r, s, 100);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.ev[0].kind, JSTREAM_MSG);
	assert_int_equal(r.ev[0].len, 100);
	free(s);
	s = padded(101);
	for (i = 0; i < 101; i++)
		feed(&r, s + i, 1);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.ev[1].kind, JSTREAM_OVERSIZED);
	assert_memory_equal(r.ev[1].buf, s, PFX);
	free(s);
	feeds(&r, "\n{}");
	assert_int_equal(r.n, 3);
	assert_string_equal(r.ev[2].buf, "{}");
	rec_done(&r);

	/* a big message grows the buffer, which is freed once it is done */
	n = 200000;
	rec_init(&r, 1 << 20, 32);
	s = padded(n);
	for (i = 0; i < n; i += 1000)
		feed(&r, s + i, 1000);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.ev[0].len, n);
	assert_memory_equal(r.ev[0].buf, s, n);
	assert_true(jstream_capacity(r.js) <= 256);
	assert_int_equal(jstream_buffered(r.js), 0);
	/* and skipped without buffering when over max_msg */
	rec_clear(&r);
	jstream_free(r.js);
	r.js = jstream_new(r.max_msg = 100000, 32);
	assert_non_null(r.js);
	for (i = 0; i < n; i += 1000) {
		feed(&r, s + i, 1000);
		if (i >= 100000)
			assert_int_equal(jstream_capacity(r.js), 0);
	}
	feeds(&r, "\r\n{\"next\": 1}\r\n");
	assert_int_equal(r.n, 2);
	assert_int_equal(r.ev[0].kind, JSTREAM_OVERSIZED);
	assert_int_equal(r.ev[1].kind, JSTREAM_MSG);
	assert_string_equal(r.ev[1].buf, "{\"next\": 1}");
	free(s);
	rec_done(&r);
}

static void
test_oversized_then_broken(void **state)
{
	/*
	 * An oversized value is skipped by structure; an error in it still
	 * ends it (reported with an empty prefix), as does a column-0
	 * opener.
	 */
	static const char	 in[] =
	    "{\"a\": \"0123456789012345678901234567890123456789\",\r\n"
	    "{\"b\": 1}\r\n"
	    "{\"a\": \"0123456789012345678901234567890123456789\", ]\r\n"
	    "{\"c\": 2}\r\n";
	static const struct want w[] = {
		OVER("{\"a\": \"012345678901234567890123456789012"),
		INV(""),
		MSG("{\"b\": 1}"),
		OVER("{\"a\": \"012345678901234567890123456789012"),
		INV(""),
		MSG("{\"c\": 2}")
	};
	/* at byte max_msg + 1, a column-0 opener is a break, not an excess */
	static const char	 edge[] =
	    "{\"a\": \"01234567890123456789012345678901234567\",\n"
	    "{}\n";
	static const struct want we[] = {
		INV("{\"a\": \"01234567890123456789012345678901234567\",\n"),
		MSG("{}")
	};

	CHECK(in, 40, 32, w);
	CHECK(edge, 48, 32, we);
}

static void
test_endless_string(void **state)
{
	struct rec	 r;
	char		 chunk[1000];
	size_t		 i;

	memset(chunk, 'A', sizeof(chunk));
	chunk[500] = '\\';		/* escapes do not end it either */
	chunk[501] = '"';
	rec_init(&r, 4096, 32);
	feeds(&r, "{\"data\": \"");
	for (i = 0; i < 10000; i++) {
		feed(&r, chunk, sizeof(chunk));
		assert_true(jstream_capacity(r.js) <= 4096);
		assert_true(jstream_buffered(r.js) <= 4096);
	}
	assert_int_equal(r.n, 1);
	assert_int_equal(r.ev[0].kind, JSTREAM_OVERSIZED);
	assert_int_equal(r.ev[0].len, PFX);
	assert_memory_equal(r.ev[0].buf, "{\"data\": \"AAAA", 14);
	assert_int_equal(jstream_buffered(r.js), 0);
	assert_int_equal(jstream_capacity(r.js), 0);
	/* the string and the value end, and framing goes on */
	feeds(&r, "\"}\r\n{\"event\": \"NEXT\"}\r\n");
	assert_int_equal(r.n, 2);
	assert_int_equal(r.ev[1].kind, JSTREAM_MSG);
	assert_string_equal(r.ev[1].buf, "{\"event\": \"NEXT\"}");
	rec_done(&r);
}

static void
test_control_in_strings(void **state)
{
	static const char	 in[] =
	    "{\"a\": \"x\0y\"}\r\n"
	    "{\"ok\": 1}\r\n"
	    "{\"a\": \"tab\there\"}\n"
	    "{\"a\": \"esc\\\x01\"}\n"
	    "{\"a\": \"\\u0000 \\\\ \x7f \xff\"}\n"
	    "\0{\"lost\": 1}\n"
	    "{\"n\": 0, \"x\": \0}\n"
	    "{\"ok\": 2}";
	static const struct want w[] = {
		INV("{\"a\": \"x\0"),
		MSG("{\"ok\": 1}"),
		INV("{\"a\": \"tab\t"),
		INV("{\"a\": \"esc\\\x01"),
		MSG("{\"a\": \"\\u0000 \\\\ \x7f \xff\"}"),
		INV("\0{\"lost\": 1}"),
		/* outside strings a NUL is the parser's business */
		MSG("{\"n\": 0, \"x\": \0}"),
		MSG("{\"ok\": 2}")
	};

	CHECK(in, 4096, 32, w);
}

static void
test_deep_nesting(void **state)
{
	static const char	 in[] =
	    "[[[[1]]]]\n"
	    "[[[[[1]]]]]\n"
	    "{\"a\": {\"b\": {\"c\": {\"d\": {}}}}}\r\n"
	    "{\"a\": {\"b\": {\"c\": {}}}}\r\n";
	static const struct want w[] = {
		MSG("[[[[1]]]]"),
		INV("[[[[["),
		INV("{\"a\": {\"b\": {\"c\": {\"d\": {"),
		MSG("{\"a\": {\"b\": {\"c\": {}}}}")
	};
	struct rec		 r;
	char			*s;
	size_t			 i, n = 100000;

	CHECK(in, 4096, 4, w);

	/* a flood of openers is cut at max_depth, then framing goes on */
	rec_init(&r, 1 << 20, 64);
	s = malloc(n);
	assert_non_null(s);
	memset(s, '[', n);
	feed(&r, s, n);
	feeds(&r, "\n{}");
	assert_int_equal(r.n, 2);
	assert_int_equal(r.ev[0].kind, JSTREAM_INVALID);
	assert_memory_equal(r.ev[0].buf, s, PFX);
	assert_int_equal(r.ev[1].kind, JSTREAM_MSG);
	free(s);

	/* max_depth 1 still takes flat values */
	rec_clear(&r);
	jstream_free(r.js);
	r.js = jstream_new(r.max_msg = 64, 1);
	assert_non_null(r.js);
	feeds(&r, "{\"a\": 1}[1, 2]{\"a\": []}\n[]");
	assert_int_equal(r.n, 4);
	for (i = 0; i < 4; i++)
		assert_int_equal(r.ev[i].kind,
		    i == 2 ? JSTREAM_INVALID : JSTREAM_MSG);
	rec_done(&r);
}

static void
test_whitespace_only(void **state)
{
	static const char	 in[] = " \t\r\n\r\n  \n";
	static const struct want w[] = { MSG("{}") };
	struct rec		 r;

	rec_init(&r, 64, 4);
	feeds(&r, in);
	assert_int_equal(r.n, 0);
	assert_int_equal(jstream_buffered(r.js), 0);
	assert_int_equal(jstream_feed(r.js, NULL, 0, record, &r), 0);
	rec_done(&r);
	CHECK(" \t\r\n{}\r\n \n", 64, 4, w);
}

static void
test_reset(void **state)
{
	struct rec	 r;

	rec_init(&r, 4096, 32);
	feeds(&r, "{\"event\": \"HALF");
	assert_int_equal(jstream_buffered(r.js), 15);
	jstream_reset(r.js);
	assert_int_equal(jstream_buffered(r.js), 0);
	assert_int_equal(jstream_capacity(r.js), 0);
	feeds(&r, "\"}{\"event\": \"WHOLE\"}\r\n");
	/* the old tail is forgotten: its end is garbage now */
	assert_int_equal(r.n, 1);
	assert_int_equal(r.ev[0].kind, JSTREAM_INVALID);
	feeds(&r, "{\"event\": \"NEXT\"}");
	assert_int_equal(r.n, 2);
	assert_string_equal(r.ev[1].buf, "{\"event\": \"NEXT\"}");

	/* reset inside a string, an oversized value and a garbage line */
	jstream_reset(r.js);
	feeds(&r, "{\"s\": \"{{{");
	jstream_reset(r.js);
	feeds(&r, "junk");
	jstream_reset(r.js);
	feeds(&r, "{}");
	assert_int_equal(r.n, 3);
	assert_int_equal(r.ev[2].kind, JSTREAM_MSG);
	assert_string_equal(r.ev[2].buf, "{}");
	rec_done(&r);
}

static void
test_new_free(void **state)
{
	struct jstream	*js;

	jstream_free(NULL);
	assert_null(jstream_new(1, 32));
	assert_null(jstream_new(0, 32));
	assert_null(jstream_new(64, 0));
	js = jstream_new(2, 1);
	assert_non_null(js);
	assert_int_equal(jstream_buffered(js), 0);
	assert_int_equal(jstream_capacity(js), 0);
	jstream_free(js);
}

static void
test_tiny_max_msg(void **state)
{
	static const char	 in[] = "{}[]\n{\"a\":1}\n[]{x}";
	static const struct want w[] = {
		MSG("{}"), MSG("[]"), OVER("{\""), MSG("[]"), OVER("{x")
	};

	CHECK(in, 2, 4, w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_crlf),
		cmocka_unit_test(test_several_in_one_feed),
		cmocka_unit_test(test_one_over_many_feeds),
		cmocka_unit_test(test_split_every_offset),
		cmocka_unit_test(test_garbage_between),
		cmocka_unit_test(test_broken_message),
		cmocka_unit_test(test_mismatched),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_oversized_then_broken),
		cmocka_unit_test(test_endless_string),
		cmocka_unit_test(test_control_in_strings),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_whitespace_only),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_new_free),
		cmocka_unit_test(test_tiny_max_msg),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
