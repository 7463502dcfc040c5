/*
 * Unit tests for src/takeover.c: parsing, signature, time window, digest
 * and replay cache (src/tkcache.c).  The signed results (src/tkresult.c)
 * have test_tkresult.c.
 *
 * The known answers were computed outside this code, twice:
 *   printf 'qmp2mqtt-takeover-v2\nhv1\nvm1\nreq-1\n1700000000000000\n'\
 *   'secondary\n0\n\n' | openssl dgst -sha256 -hmac KEY
 *   python3 -c "import hmac,hashlib;print(hmac.new(b'KEY',b'qmp2mqtt-'\
 *   b'takeover-v2\nhv1\nvm1\nreq-1\n1700000000000000\nsecondary\n0\n\n',"\
 *   "hashlib.sha256).hexdigest())"
 *   printf 'qmp2mqtt-takeover-v2\nhv1\nvm1\nreq-1\n1700000000000000\n'\
 *   'secondary\n1\nqmp2mqtt/reply/op1\n01ab' | openssl dgst -sha256 -hmac KEY
 * (and likewise for the other constants below).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "takeover.h"
#include "tkcache.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))
#define US		INT64_C(1000000)

#define KEY		"KEY"
#define KEYLEN		3
#define T0		INT64_C(1700000000000000)
/* HMAC-SHA256 (v2), key "KEY", hv1/vm1/req-1/T0/"secondary"/force 0. */
#define KAT_SEC		"4ceddb51e163542bf8de8b24155f248cba0b4c5bffdcef5622" \
			"7b2f4e56a8fe2b"
/* The same without expect_mode. */
#define KAT_NONE	"afe8dfa9445d71551666ff85801e139ff202a04162c7bdc46f" \
			"671f7a9bc5f4b2"
/* Key 'k' * 100 (longer than a SHA-256 block), host-a/vm-b/id"\x/-1/primary. */
#define KAT_LONGKEY	"479e63e91ac40a223d3a0ec5aa3e7dec39e876903d1275e619" \
			"3d33af66e38b52"
/* KAT_SEC's request with force 1, Response Topic "qmp2mqtt/reply/op1"
 * and Correlation Data 01 ab. */
#define KAT_BOUND	"20cf04c6a49ad01bd1838a38be8985e3a6d7ab1e60bc2fa38e" \
			"86406a3b8741f9"
/* SHA-256 of "" and of {"id":"a","issued_us":1}. */
static const unsigned char sha_empty[32] = {
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8,
	0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
	0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
};
static const unsigned char sha_small[32] = {
	0xa5, 0x58, 0xbb, 0x75, 0x6d, 0x0f, 0x1d, 0x2a, 0x0d, 0x5b, 0x3b, 0x9c,
	0xb4, 0xdc, 0xb9, 0xea, 0xf7, 0x42, 0x2a, 0x05, 0x2b, 0x0d, 0xa4, 0x59,
	0x7d, 0xad, 0xd9, 0x30, 0x23, 0x40, 0xf4, 0x82,
};

static const unsigned char key[] = KEY;

/* --- tk_reason_name ------------------------------------------------- */

static void
test_reason_names(void **state)
{
	static const struct {
		enum tk_reason	 r;
		const char	*name;
	} c[] = {
		{ TK_OK, "ok" }, { TK_DISABLED, "disabled" },
		{ TK_BAD_REQUEST, "bad_request" },
		{ TK_BAD_SIGNATURE, "bad_signature" }, { TK_STALE, "stale" },
		{ TK_REPLAY, "replay" }, { TK_RETAINED, "retained" },
		{ TK_PRECONDITION_FAILED, "precondition_failed" },
		{ TK_NOT_CONNECTED, "not_connected" },
		{ TK_NOT_IN_COLO, "not_in_colo" },
		{ TK_RATE_LIMITED, "rate_limited" },
		{ TK_QEMU_ERROR, "qemu_error" }, { TK_TIMEOUT, "timeout" },
		{ TK_PEER_ALIVE, "peer_alive" },
		{ TK_PEER_UNKNOWN, "peer_unknown" },
		{ TK_PEER_TOOK_OVER, "peer_took_over" },
		{ TK_CLASH, "clash" }, { TK_STORE_ERROR, "store_error" },
	};
	size_t	i;

	for (i = 0; i < NELEM(c); i++)
		assert_string_equal(tk_reason_name(c[i].r), c[i].name);
	/* The existing values keep their numbers; TK_NREASONS is last. */
	assert_int_equal(TK_TIMEOUT, 12);
	assert_int_equal(TK_STORE_ERROR, 17);
	assert_int_equal(TK_NREASONS, NELEM(c));
	assert_string_equal(tk_reason_name(TK_NREASONS), "unknown");
	assert_string_equal(tk_reason_name((enum tk_reason)(TK_NREASONS + 1)),
	    "unknown");
}

/* --- tk_parse ------------------------------------------------------- */

/* Parses a NUL-terminated text (its NUL excluded). */
static enum tk_reason
parse(const char *text, int need_sig, struct tk_request *req,
    const char **why)
{
	return tk_parse(text, strlen(text), need_sig, req, why);
}

static const struct good_case {
	const char	*name;
	const char	*text;
	int		 need_sig;
	const char	*id;
	int64_t		 issued_us;
	const char	*mode;
	const char	*sig;
} good_cases[] = {
	{ "minimal", "{\"id\":\"req-1\",\"issued_us\":1700000000000000}", 0,
	  "req-1", T0, "", "" },
	{ "primary", "{\"id\":\"a\",\"issued_us\":1,\"expect_mode\":"
	  "\"primary\"}", 0, "a", 1, "primary", "" },
	{ "secondary", "{\"expect_mode\":\"secondary\",\"issued_us\":2,"
	  "\"id\":\"b\"}", 0, "b", 2, "secondary", "" },
	{ "signed", "{\"id\":\"req-1\",\"issued_us\":1700000000000000,"
	  "\"expect_mode\":\"secondary\",\"sig\":\"" KAT_SEC "\"}", 1,
	  "req-1", T0, "secondary", KAT_SEC },
	{ "sig ignored without hmac", "{\"id\":\"req-1\",\"issued_us\":1,"
	  "\"sig\":\"" KAT_SEC "\"}", 0, "req-1", 1, "", "" },
	{ "junk sig ignored without hmac", "{\"id\":\"x\",\"issued_us\":1,"
	  "\"sig\":\"zz\"}", 0, "x", 1, "", "" },
	/* Malformed signatures are tk_verify()'s to refuse. */
	{ "uppercase sig", "{\"id\":\"x\",\"issued_us\":1,\"sig\":\""
	  "DDF7113D49400D198ADA6C6AEE0063903523DF95976595957BF895322ABBB92A"
	  "\"}", 1, "x", 1, "", "" },
	{ "short sig", "{\"id\":\"x\",\"issued_us\":1,\"sig\":\"ddf7\"}", 1,
	  "x", 1, "", "" },
	{ "long sig", "{\"id\":\"x\",\"issued_us\":1,\"sig\":\"" KAT_SEC
	  "0\"}", 1, "x", 1, "", "" },
	{ "empty sig", "{\"id\":\"x\",\"issued_us\":1,\"sig\":\"\"}", 1, "x",
	  1, "", "" },
	{ "whitespace", " \t\r\n{ \"id\" : \"x\" ,\n\"issued_us\"\t:\r7 } \r\n\t",
	  0, "x", 7, "", "" },
	{ "escapes in id", "{\"id\":\"a\\\"\\\\\\/\\u0041~!\",\"issued_us\":1}",
	  0, "a\"\\/A~!", 1, "", "" },
	{ "escaped key", "{\"\\u0069d\":\"x\",\"issued_us\":1}", 0, "x", 1, "",
	  "" },
	{ "id 64 bytes", "{\"id\":\"0123456789012345678901234567890123456789"
	  "012345678901234567890123\",\"issued_us\":1}", 0,
	  "0123456789012345678901234567890123456789012345678901234567890123",
	  1, "", "" },
	{ "issued_us INT64_MAX", "{\"id\":\"x\",\"issued_us\":"
	  "9223372036854775807}", 0, "x", INT64_MAX, "", "" },
};

static void
test_parse_good(void **state)
{
	const struct good_case	*c;
	struct tk_request	 req;
	const char		*why;
	enum tk_reason		 r;
	size_t			 i;

	for (i = 0; i < NELEM(good_cases); i++) {
		c = &good_cases[i];
		memset(&req, 'x', sizeof(req));
		why = "unset";
		r = parse(c->text, c->need_sig, &req, &why);
		if (r != TK_OK)
			fail_msg("%s: %s (%s)", c->name, tk_reason_name(r),
			    why ? why : "?");
		assert_null(why);
		if (strcmp(req.id, c->id) != 0 || req.issued_us != c->issued_us ||
		    strcmp(req.expect_mode, c->mode) != 0 ||
		    strcmp(req.sig, c->sig) != 0)
			fail_msg("%s: got id \"%s\" issued_us %lld mode \"%s\" "
			    "sig \"%s\"", c->name, req.id,
			    (long long)req.issued_us, req.expect_mode, req.sig);
	}
}

static const struct bad_case {
	const char	*name;
	const char	*text;
	int		 need_sig;
	const char	*id;		/* req->id afterwards */
} bad_cases[] = {
	/* Not a JSON object. */
	{ "array", "[]", 0, "" },
	{ "array of request", "[{\"id\":\"x\",\"issued_us\":1}]", 0, "" },
	{ "string", "\"x\"", 0, "" },
	{ "number", "1", 0, "" },
	{ "null", "null", 0, "" },
	{ "true", "true", 0, "" },
	{ "whitespace only", " \n", 0, "" },
	/* Malformed JSON. */
	{ "truncated", "{\"id\":\"x\",\"issued_us\":1", 0, "" },
	{ "truncated string", "{\"id\":\"x", 0, "" },
	{ "trailing garbage", "{\"id\":\"x\",\"issued_us\":1}x", 0, "" },
	{ "trailing object", "{\"id\":\"x\",\"issued_us\":1}{}", 0, "" },
	{ "trailing number", "{\"id\":\"x\",\"issued_us\":1} 1", 0, "" },
	{ "trailing form feed", "{\"id\":\"x\",\"issued_us\":1}\f", 0, "" },
	{ "trailing comma", "{\"id\":\"x\",\"issued_us\":1,}", 0, "" },
	{ "missing comma", "{\"id\":\"x\" \"issued_us\":1}", 0, "" },
	{ "missing colon", "{\"id\" \"x\",\"issued_us\":1}", 0, "" },
	{ "single quotes", "{'id':'x','issued_us':1}", 0, "" },
	{ "single-quoted key", "{'id':\"x\",\"issued_us\":1}", 0, "" },
	{ "comment", "{/**/\"id\":\"x\",\"issued_us\":1}", 0, "" },
	{ "trailing comment", "{\"id\":\"x\",\"issued_us\":1}/**/", 0, "" },
	{ "NaN", "{\"id\":\"x\",\"issued_us\":NaN}", 0, "" },
	{ "Infinity", "{\"id\":\"x\",\"issued_us\":Infinity}", 0, "" },
	{ "-Infinity", "{\"id\":\"x\",\"issued_us\":1,\"z\":-Infinity}", 0,
	  "" },
	{ "leading zeros", "{\"id\":\"x\",\"issued_us\":0001}", 0, "" },
	{ "double zero", "{\"id\":\"x\",\"issued_us\":00}", 0, "" },
	{ "plus sign", "{\"id\":\"x\",\"issued_us\":+1}", 0, "" },
	{ "hex number", "{\"id\":\"x\",\"issued_us\":0x10}", 0, "" },
	{ "dot number", "{\"id\":\"x\",\"issued_us\":1.}", 0, "" },
	{ "huge exponent", "{\"id\":\"x\",\"issued_us\":1e400}", 0, "x" },
	{ "above uint64", "{\"id\":\"x\",\"issued_us\":18446744073709551616}",
	  0, "x" },
	{ "TRUE", "{\"id\":\"x\",\"issued_us\":1,\"y\":TRUE}", 0, "" },
	{ "bad escape", "{\"id\":\"\\x41\",\"issued_us\":1}", 0, "" },
	{ "short \\u", "{\"id\":\"\\u41\",\"issued_us\":1}", 0, "" },
	{ "raw tab in id", "{\"id\":\"a\tb\",\"issued_us\":1}", 0, "" },
	{ "raw control in id", "{\"id\":\"a\x01\",\"issued_us\":1}", 0, "" },
	{ "raw newline in key", "{\"id\n\":\"a\",\"issued_us\":1}", 0, "" },
	{ "invalid UTF-8", "{\"id\":\"x\",\"issued_us\":1,\"y\":\"\xff\"}", 0,
	  "" },
	{ "overlong UTF-8", "{\"id\":\"x\",\"issued_us\":1,\"y\":\"\xc0\xaf\"}",
	  0, "" },
	{ "truncated UTF-8", "{\"id\":\"x\",\"issued_us\":1,\"y\":\"\xc3\"}",
	  0, "" },
	{ "UTF-8 surrogate", "{\"id\":\"x\",\"issued_us\":1,\"y\":"
	  "\"\xed\xa0\x80\"}", 0, "" },
	{ "above U+10FFFF", "{\"id\":\"x\",\"issued_us\":1,\"y\":"
	  "\"\xf4\x90\x80\x80\"}", 0, "" },
	{ "lone high surrogate", "{\"id\":\"x\",\"issued_us\":1,\"y\":"
	  "\"\\ud800\"}", 0, "" },
	{ "lone low surrogate", "{\"id\":\"x\",\"issued_us\":1,\"y\":"
	  "\"\\udc00x\"}", 0, "" },
	{ "reversed surrogates", "{\"id\":\"x\",\"issued_us\":1,\"y\":"
	  "\"\\udc00\\ud800\"}", 0, "" },
	/* Valid non-ASCII in an unknown field: refused as unknown. */
	{ "UTF-8 in unknown field", "{\"id\":\"x\",\"issued_us\":1,\"y\":"
	  "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\\ud83d\\ude00\"}", 0,
	  "x" },
	{ "byte order mark", "\xef\xbb\xbf{\"id\":\"x\",\"issued_us\":1}", 0,
	  "" },
	{ "\\u0000 in id", "{\"id\":\"a\\u0000b\",\"issued_us\":1}", 0, "" },
	/* json-c would cut this key to "id". */
	{ "\\u0000 in key", "{\"id\\u0000x\":\"a\",\"issued_us\":1}", 0, "" },
	{ "too deep", "{\"id\":\"x\",\"issued_us\":1,\"y\":[[[[1]]]]}", 0, "" },
	/* Duplicates: json-c keeps the last one, we refuse. */
	{ "duplicate id", "{\"id\":\"a\",\"id\":\"b\",\"issued_us\":1}", 0,
	  "" },
	{ "duplicate id, escaped", "{\"id\":\"a\",\"\\u0069d\":\"b\","
	  "\"issued_us\":1}", 0, "" },
	{ "duplicate issued_us", "{\"id\":\"a\",\"issued_us\":1,"
	  "\"issued_us\":2}", 0, "" },
	{ "duplicate sig", "{\"id\":\"a\",\"issued_us\":1,\"sig\":\"" KAT_SEC
	  "\",\"sig\":\"" KAT_NONE "\"}", 1, "" },
	{ "duplicate expect_mode", "{\"id\":\"a\",\"issued_us\":1,"
	  "\"expect_mode\":\"primary\",\"expect_mode\":\"secondary\"}", 0,
	  "" },
	/* id. */
	{ "missing id", "{\"issued_us\":1}", 0, "" },
	{ "empty object", "{}", 0, "" },
	{ "empty id", "{\"id\":\"\",\"issued_us\":1}", 0, "" },
	{ "id 65 bytes", "{\"id\":\"012345678901234567890123456789012345678"
	  "90123456789012345678901234\",\"issued_us\":1}", 0, "" },
	{ "id with space", "{\"id\":\"a b\",\"issued_us\":1}", 0, "" },
	{ "id with escaped tab", "{\"id\":\"a\\tb\",\"issued_us\":1}", 0, "" },
	{ "id with escaped newline", "{\"id\":\"a\\nb\",\"issued_us\":1}", 0,
	  "" },
	{ "id with DEL", "{\"id\":\"a\\u007f\",\"issued_us\":1}", 0, "" },
	{ "id with control", "{\"id\":\"\\u0001\",\"issued_us\":1}", 0, "" },
	{ "id non-ASCII", "{\"id\":\"caf\xc3\xa9\",\"issued_us\":1}", 0, "" },
	{ "id non-ASCII escaped", "{\"id\":\"caf\\u00e9\",\"issued_us\":1}", 0,
	  "" },
	{ "id number", "{\"id\":1,\"issued_us\":1}", 0, "" },
	{ "id null", "{\"id\":null,\"issued_us\":1}", 0, "" },
	{ "id object", "{\"id\":{},\"issued_us\":1}", 0, "" },
	/* issued_us: the id is named in the refusal. */
	{ "missing issued_us", "{\"id\":\"x\"}", 0, "x" },
	{ "issued_us float", "{\"id\":\"x\",\"issued_us\":1700000000000000.0}",
	  0, "x" },
	{ "issued_us exponent", "{\"id\":\"x\",\"issued_us\":1e15}", 0, "x" },
	{ "issued_us string", "{\"id\":\"x\",\"issued_us\":"
	  "\"1700000000000000\"}", 0, "x" },
	{ "issued_us negative", "{\"id\":\"x\",\"issued_us\":-1}", 0, "x" },
	{ "issued_us INT64_MIN", "{\"id\":\"x\",\"issued_us\":"
	  "-9223372036854775808}", 0, "x" },
	{ "issued_us zero", "{\"id\":\"x\",\"issued_us\":0}", 0, "x" },
	{ "issued_us minus zero", "{\"id\":\"x\",\"issued_us\":-0}", 0, "x" },
	{ "issued_us INT64_MAX + 1", "{\"id\":\"x\",\"issued_us\":"
	  "9223372036854775808}", 0, "x" },
	{ "issued_us UINT64_MAX", "{\"id\":\"x\",\"issued_us\":"
	  "18446744073709551615}", 0, "x" },
	{ "issued_us null", "{\"id\":\"x\",\"issued_us\":null}", 0, "x" },
	{ "issued_us bool", "{\"id\":\"x\",\"issued_us\":true}", 0, "x" },
	{ "issued_us array", "{\"id\":\"x\",\"issued_us\":[1]}", 0, "x" },
	/* expect_mode. */
	{ "expect_mode none", "{\"id\":\"x\",\"issued_us\":1,\"expect_mode\":"
	  "\"none\"}", 0, "x" },
	{ "expect_mode PRIMARY", "{\"id\":\"x\",\"issued_us\":1,"
	  "\"expect_mode\":\"PRIMARY\"}", 0, "x" },
	{ "expect_mode empty", "{\"id\":\"x\",\"issued_us\":1,\"expect_mode\":"
	  "\"\"}", 0, "x" },
	{ "expect_mode padded", "{\"id\":\"x\",\"issued_us\":1,\"expect_mode\":"
	  "\"primary \"}", 0, "x" },
	{ "expect_mode prefix", "{\"id\":\"x\",\"issued_us\":1,\"expect_mode\":"
	  "\"prim\"}", 0, "x" },
	{ "expect_mode number", "{\"id\":\"x\",\"issued_us\":1,\"expect_mode\":"
	  "1}", 0, "x" },
	{ "expect_mode null", "{\"id\":\"x\",\"issued_us\":1,\"expect_mode\":"
	  "null}", 0, "x" },
	{ "expect_mode \\u0000", "{\"id\":\"x\",\"issued_us\":1,"
	  "\"expect_mode\":\"primary\\u0000\"}", 0, "" },
	/* sig. */
	{ "sig number", "{\"id\":\"x\",\"issued_us\":1,\"sig\":1}", 1, "x" },
	{ "sig null", "{\"id\":\"x\",\"issued_us\":1,\"sig\":null}", 1, "x" },
	{ "sig number without hmac", "{\"id\":\"x\",\"issued_us\":1,\"sig\":1}",
	  0, "x" },
	/* Unknown fields. */
	{ "unknown field", "{\"id\":\"x\",\"issued_us\":1,\"forced\":true}", 0,
	  "x" },
	{ "unknown field first", "{\"a\":1,\"id\":\"x\",\"issued_us\":1}", 0,
	  "x" },
	{ "ID", "{\"ID\":\"x\",\"issued_us\":1}", 0, "" },
	{ "empty key", "{\"id\":\"x\",\"issued_us\":1,\"\":1}", 0, "x" },
	{ "nested unknown", "{\"id\":\"x\",\"issued_us\":1,\"y\":{\"id\":\"z\"}"
	  "}", 0, "x" },
	{ "sig2", "{\"id\":\"x\",\"issued_us\":1,\"sig2\":\"\"}", 1, "x" },
};

static void
check_bad(const char *name, const void *payload, size_t len, int need_sig,
    const char *id)
{
	struct tk_request	req;
	const char		*why;
	enum tk_reason		r;

	memset(&req, 'x', sizeof(req));
	why = NULL;
	r = tk_parse(payload, len, need_sig, &req, &why);
	if (r != TK_BAD_REQUEST)
		fail_msg("%s: %s, want bad_request", name, tk_reason_name(r));
	if (why == NULL || *why == '\0')
		fail_msg("%s: no description", name);
	if (strcmp(req.id, id) != 0)
		fail_msg("%s: id \"%s\", want \"%s\" (%s)", name, req.id, id,
		    why);
	if (req.expect_mode[0] != '\0' || req.sig[0] != '\0' ||
	    req.issued_us != 0)
		fail_msg("%s: request not cleared", name);
}

static void
test_parse_bad(void **state)
{
	const struct bad_case	*c;
	size_t			 i;

	for (i = 0; i < NELEM(bad_cases); i++) {
		c = &bad_cases[i];
		check_bad(c->name, c->text, strlen(c->text), c->need_sig,
		    c->id);
		/* None of them gets through with the other need_sig. */
		if (strncmp(c->name, "missing sig", 11) != 0)
			check_bad(c->name, c->text, strlen(c->text),
			    !c->need_sig, c->id);
	}
}

/* A missing signature parses, and is then refused as a bad signature. */
static void
test_missing_sig(void **state)
{
	static const char	 text[] = "{\"id\":\"x\",\"issued_us\":1,"
	    "\"expect_mode\":\"primary\"}";
	static const unsigned char k16[] = "0123456789abcdef";
	struct tk_request	 req;
	const char		*why = NULL;

	assert_int_equal(tk_parse(text, strlen(text), 1, &req, &why), TK_OK);
	assert_string_equal(req.id, "x");
	assert_string_equal(req.sig, "");
	assert_int_equal(tk_verify(k16, 16, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
}

/* Sizes, NULs and the arguments. */
static void
test_parse_sizes(void **state)
{
	static const char	 nul_in[] = "{\"id\":\"a\0b\",\"issued_us\":1}";
	static const char	 nul_after[] = "{\"id\":\"a\",\"issued_us\":1}";
	char			*buf;
	struct tk_request	 req;
	const char		*why;
	size_t			 n;

	check_bad("empty", "", 0, 0, "");
	check_bad("NULL", NULL, 0, 0, "");
	check_bad("NULL with length", NULL, 5, 0, "");
	check_bad("NUL inside", nul_in, sizeof(nul_in) - 1, 0, "");
	/* The terminating NUL counted as part of the payload. */
	check_bad("NUL after", nul_after, sizeof(nul_after), 0, "");
	check_bad("only NUL", "", 1, 0, "");

	/* A valid request padded with spaces to exactly TK_PAYLOAD_MAX. */
	buf = malloc(TK_PAYLOAD_MAX + 2);
	assert_non_null(buf);
	memset(buf, ' ', TK_PAYLOAD_MAX + 2);
	n = strlen(nul_after);
	memcpy(buf, nul_after, n);
	assert_int_equal(tk_parse(buf, TK_PAYLOAD_MAX, 0, &req, &why), TK_OK);
	assert_string_equal(req.id, "a");
	/* One more byte is too much, even as whitespace. */
	check_bad("4097 bytes", buf, TK_PAYLOAD_MAX + 1, 0, "");
	check_bad("SIZE_MAX bytes", buf, SIZE_MAX, 0, "");
	/* Padded in front instead. */
	memset(buf, ' ', TK_PAYLOAD_MAX + 2);
	memcpy(buf + TK_PAYLOAD_MAX - n, nul_after, n);
	assert_int_equal(tk_parse(buf, TK_PAYLOAD_MAX, 0, &req, &why), TK_OK);
	check_bad("4097 bytes, leading space", buf + 0, TK_PAYLOAD_MAX + 1, 0,
	    "");
	free(buf);

	/* Only the first len bytes are read. */
	assert_int_equal(tk_parse("{\"id\":\"a\",\"issued_us\":1}junk", 24, 0,
	    &req, &why), TK_OK);
	assert_int_equal(req.issued_us, 1);

	/* why may be NULL; req may not. */
	assert_int_equal(tk_parse(nul_after, n, 0, &req, NULL), TK_OK);
	assert_int_equal(tk_parse("x", 1, 0, &req, NULL), TK_BAD_REQUEST);
	why = NULL;
	assert_int_equal(tk_parse(nul_after, n, 0, NULL, &why),
	    TK_BAD_REQUEST);
	assert_non_null(why);
}

/* --- tk_canonical, tk_sign, tk_verify ------------------------------- */

/* A request with the given fields (sig ""). */
static void
mkreq(struct tk_request *req, const char *id, int64_t issued_us,
    const char *mode, int force)
{
	memset(req, 0, sizeof(*req));
	strcpy(req->id, id);
	req->issued_us = issued_us;
	strcpy(req->expect_mode, mode != NULL ? mode : "");
	req->force = force;
}

static void
test_canonical(void **state)
{
	static const char	want[] = "qmp2mqtt-takeover-v2\nhv1\nvm1\nreq-1\n"
	    "1700000000000000\nsecondary\n0\n\n";
	static const unsigned char corr[] = { 0x01, 0xab, 0x00, 0xff };
	struct tk_binding	b = { "hv1", "vm1", NULL, NULL, 0 };
	struct tk_request	req;
	char			buf[256], *big;
	int			n = (int)sizeof(want) - 1;

	mkreq(&req, "req-1", T0, "secondary", 0);
	assert_int_equal(tk_canonical(buf, sizeof(buf), &b, &req), n);
	assert_string_equal(buf, want);
	/* Exactly fits, one byte short; NULL buffer gives the length. */
	assert_int_equal(tk_canonical(buf, sizeof(want), &b, &req), n);
	assert_int_equal(tk_canonical(buf, sizeof(want) - 1, &b, &req), -1);
	assert_int_equal(tk_canonical(buf, 0, &b, &req), -1);
	assert_int_equal(tk_canonical(NULL, 0, &b, &req), n);
	assert_int_equal(tk_canonical(NULL, 5, &b, &req), -1);
	/* Absent expect_mode, force, response topic, correlation data. */
	mkreq(&req, "req-1", T0, "", 1);
	b.resp_topic = "qmp2mqtt/reply/op1";
	b.corr = corr;
	b.corr_len = sizeof(corr);
	n = tk_canonical(buf, sizeof(buf), &b, &req);
	assert_int_equal(n, (int)strlen(buf));
	assert_string_equal(buf, "qmp2mqtt-takeover-v2\nhv1\nvm1\nreq-1\n"
	    "1700000000000000\n\n1\nqmp2mqtt/reply/op1\n01ab00ff");
	/* "" response topic and zero-length correlation are "none". */
	b.resp_topic = "";
	b.corr_len = 0;
	n = tk_canonical(buf, sizeof(buf), &b, &req);
	assert_int_equal(n, (int)strlen(buf));
	assert_string_equal(buf, "qmp2mqtt-takeover-v2\nhv1\nvm1\nreq-1\n"
	    "1700000000000000\n\n1\n\n");
	b.resp_topic = NULL;
	mkreq(&req, "i", INT64_MIN, "", 0);
	b.host = "h";
	b.vm = "v";
	assert_int_equal(tk_canonical(buf, sizeof(buf), &b, &req), 52);
	assert_string_equal(buf, "qmp2mqtt-takeover-v2\nh\nv\ni\n"
	    "-9223372036854775808\n\n0\n\n");
	/* A '\n' in a field would make the string ambiguous. */
	b.host = "h\nv";
	assert_int_equal(tk_canonical(buf, sizeof(buf), &b, &req), -1);
	b.host = "h";
	b.vm = "v\n";
	assert_int_equal(tk_canonical(buf, sizeof(buf), &b, &req), -1);
	b.vm = "v";
	strcpy(req.id, "i\n");
	assert_int_equal(tk_canonical(buf, sizeof(buf), &b, &req), -1);
	strcpy(req.id, "i");
	strcpy(req.expect_mode, "\n");
	assert_int_equal(tk_canonical(buf, sizeof(buf), &b, &req), -1);
	req.expect_mode[0] = '\0';
	b.resp_topic = "a\nb";
	assert_int_equal(tk_canonical(buf, sizeof(buf), &b, &req), -1);
	b.resp_topic = NULL;
	b.host = NULL;
	assert_int_equal(tk_canonical(buf, sizeof(buf), &b, &req), -1);
	b.host = "h";
	b.vm = NULL;
	assert_int_equal(tk_canonical(buf, sizeof(buf), &b, &req), -1);
	b.vm = "v";
	assert_int_equal(tk_canonical(buf, sizeof(buf), NULL, &req), -1);
	assert_int_equal(tk_canonical(buf, sizeof(buf), &b, NULL), -1);
	/* Response topic: 65535 bytes are fine, 65536 are refused. */
	assert_non_null(big = malloc(TK_RESP_TOPIC_MAX + 2));
	memset(big, 't', TK_RESP_TOPIC_MAX + 1);
	big[TK_RESP_TOPIC_MAX] = '\0';
	b.resp_topic = big;
	assert_int_equal(tk_canonical(NULL, 0, &b, &req),
	    52 + TK_RESP_TOPIC_MAX);
	big[TK_RESP_TOPIC_MAX] = 't';
	big[TK_RESP_TOPIC_MAX + 1] = '\0';
	assert_int_equal(tk_canonical(NULL, 0, &b, &req), -1);
	b.resp_topic = NULL;
	b.corr = big;
	b.corr_len = TK_CORR_MAX + 1;
	assert_int_equal(tk_canonical(NULL, 0, &b, &req), -1);
	b.corr_len = TK_CORR_MAX;
	assert_int_equal(tk_canonical(NULL, 0, &b, &req),
	    52 + 2 * TK_CORR_MAX);
	free(big);
}

static void
test_sign_kat(void **state)
{
	static const unsigned char corr[] = { 0x01, 0xab };
	struct tk_binding	b = { "hv1", "vm1", NULL, NULL, 0 };
	struct tk_request	req;
	unsigned char		longkey[100];
	char			hex[TK_SIG_HEX + 1];

	mkreq(&req, "req-1", T0, "secondary", 0);
	assert_int_equal(tk_sign(key, KEYLEN, &b, &req, hex), 0);
	assert_string_equal(hex, KAT_SEC);
	mkreq(&req, "req-1", T0, "", 0);
	assert_int_equal(tk_sign(key, KEYLEN, &b, &req, hex), 0);
	assert_string_equal(hex, KAT_NONE);
	mkreq(&req, "req-1", T0, "secondary", 1);
	b.resp_topic = "qmp2mqtt/reply/op1";
	b.corr = corr;
	b.corr_len = sizeof(corr);
	assert_int_equal(tk_sign(key, KEYLEN, &b, &req, hex), 0);
	assert_string_equal(hex, KAT_BOUND);
	memset(longkey, 'k', sizeof(longkey));
	mkreq(&req, "id\"\\x", -1, "primary", 0);
	b.host = "host-a";
	b.vm = "vm-b";
	b.resp_topic = NULL;
	b.corr = NULL;
	b.corr_len = 0;
	assert_int_equal(tk_sign(longkey, sizeof(longkey), &b, &req, hex), 0);
	assert_string_equal(hex, KAT_LONGKEY);

	/* Failures. */
	assert_int_equal(tk_sign(key, 0, &b, &req, hex), -1);
	assert_int_equal(tk_sign(NULL, 3, &b, &req, hex), -1);
	b.host = "hv\n1";
	assert_int_equal(tk_sign(key, KEYLEN, &b, &req, hex), -1);
	assert_string_equal(hex, "");
	b.host = "hv1";
	b.vm = NULL;
	assert_int_equal(tk_sign(key, KEYLEN, &b, &req, hex), -1);
	b.vm = "vm1";
	assert_int_equal(tk_sign(key, KEYLEN, &b, &req, NULL), -1);
	assert_int_equal(tk_sign(key, KEYLEN, NULL, &req, hex), -1);
}

/* The request of KAT_SEC. */
static void
kat_request(struct tk_request *req)
{
	mkreq(req, "req-1", T0, "secondary", 0);
	strcpy(req->sig, KAT_SEC);
}

static void
test_verify(void **state)
{
	static const char	 hexd[] = "0123456789abcdef";
	struct tk_request	 req;
	unsigned char		 longer[KEYLEN + 1];
	size_t			 i, b;
	char			 c;

	kat_request(&req);
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req), TK_OK);

	/* Every single-bit flip of every character. */
	for (i = 0; i < TK_SIG_HEX; i++)
		for (b = 0; b < 8; b++) {
			kat_request(&req);
			req.sig[i] ^= (char)(1u << b);
			if (tk_verify(key, KEYLEN, "hv1", "vm1", &req) !=
			    TK_BAD_SIGNATURE)
				fail_msg("bit %zu of char %zu accepted", b, i);
		}
	/* Every other valid digit in every position. */
	for (i = 0; i < TK_SIG_HEX; i++)
		for (b = 0; b < 16; b++) {
			kat_request(&req);
			if (req.sig[i] == hexd[b])
				continue;
			req.sig[i] = hexd[b];
			if (tk_verify(key, KEYLEN, "hv1", "vm1", &req) !=
			    TK_BAD_SIGNATURE)
				fail_msg("digit %c at %zu accepted", hexd[b], i);
		}

	/* Truncated, extended, uppercase, non-hex, empty. */
	for (i = 0; i < TK_SIG_HEX; i++) {
		kat_request(&req);
		req.sig[i] = '\0';
		assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
		    TK_BAD_SIGNATURE);
	}
	kat_request(&req);
	memset(req.sig, 'a', sizeof(req.sig));		/* unterminated */
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	kat_request(&req);
	for (i = 0; i < TK_SIG_HEX; i++)
		if (req.sig[i] >= 'a' && req.sig[i] <= 'f')
			req.sig[i] = (char)(req.sig[i] - 'a' + 'A');
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	kat_request(&req);
	req.sig[63] = 'g';
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	kat_request(&req);
	req.sig[0] = '\0';
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);

	/* The signature binds host, vm, id, issued_us, expect_mode, force. */
	kat_request(&req);
	assert_int_equal(tk_verify(key, KEYLEN, "hv2", "vm1", &req),
	    TK_BAD_SIGNATURE);
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm2", &req),
	    TK_BAD_SIGNATURE);
	assert_int_equal(tk_verify(key, KEYLEN, "vm1", "hv1", &req),
	    TK_BAD_SIGNATURE);
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1x", &req),
	    TK_BAD_SIGNATURE);
	strcpy(req.id, "req-2");
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	kat_request(&req);
	req.issued_us++;
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	kat_request(&req);
	strcpy(req.expect_mode, "primary");
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	req.expect_mode[0] = '\0';
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	kat_request(&req);
	req.force = 1;
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	/* Unsigned fields cannot be moved between host and vm. */
	kat_request(&req);
	assert_int_equal(tk_verify(key, KEYLEN, "hv1\nvm1", "", &req),
	    TK_BAD_SIGNATURE);

	/* Another key: different, longer, empty, NULL. */
	kat_request(&req);
	assert_int_equal(tk_verify((const unsigned char *)"KEZ", 3, "hv1",
	    "vm1", &req), TK_BAD_SIGNATURE);
	memcpy(longer, KEY, KEYLEN);
	longer[KEYLEN] = 'Y';
	assert_int_equal(tk_verify(longer, sizeof(longer), "hv1", "vm1",
	    &req), TK_BAD_SIGNATURE);
	/* (HMAC itself pads the key with zeroes: "KEY\0" is "KEY".) */
	longer[KEYLEN] = 0;
	assert_int_equal(tk_verify(longer, sizeof(longer), "hv1", "vm1",
	    &req), TK_OK);
	assert_int_equal(tk_verify(key, 2, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	assert_int_equal(tk_verify(key, 0, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	assert_int_equal(tk_verify(NULL, 3, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	assert_int_equal(tk_verify(key, KEYLEN, NULL, "vm1", &req),
	    TK_BAD_SIGNATURE);
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", NULL),
	    TK_BAD_SIGNATURE);
	assert_int_equal(tk_verify_bound(key, KEYLEN, NULL, &req),
	    TK_BAD_SIGNATURE);

	/* Unterminated id or expect_mode in a hand-made request. */
	kat_request(&req);
	memset(req.id, 'a', sizeof(req.id));
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	kat_request(&req);
	memset(req.expect_mode, 'a', sizeof(req.expect_mode));
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);

	/* A fresh signature verifies; the KAT one still does. */
	kat_request(&req);
	c = req.sig[0];
	{
		struct tk_binding bd = { "hv1", "vm1", NULL, NULL, 0 };
		assert_int_equal(tk_sign(key, KEYLEN, &bd, &req, req.sig), 0);
	}
	assert_int_equal(req.sig[0], c);
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req), TK_OK);
}

/* The Response Topic and Correlation Data are bound, bit by bit. */
static void
test_verify_binding(void **state)
{
	unsigned char		corr[] = { 0x01, 0xab };
	char			rt[] = "qmp2mqtt/reply/op1";
	struct tk_binding	b = { "hv1", "vm1", rt, corr, sizeof(corr) };
	struct tk_request	req;
	size_t			i, k;

	mkreq(&req, "req-1", T0, "secondary", 1);
	strcpy(req.sig, KAT_BOUND);
	assert_int_equal(tk_verify_bound(key, KEYLEN, &b, &req), TK_OK);
	/* Without the binding (what v1 checked) it does not verify. */
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	for (i = 0; i < strlen(rt); i++)
		for (k = 0; k < 7; k++) {
			rt[i] ^= (char)(1u << k);
			if (tk_verify_bound(key, KEYLEN, &b, &req) !=
			    TK_BAD_SIGNATURE)
				fail_msg("response topic bit %zu of %zu", k, i);
			rt[i] ^= (char)(1u << k);
		}
	for (i = 0; i < sizeof(corr); i++)
		for (k = 0; k < 8; k++) {
			corr[i] ^= (unsigned char)(1u << k);
			if (tk_verify_bound(key, KEYLEN, &b, &req) !=
			    TK_BAD_SIGNATURE)
				fail_msg("correlation bit %zu of %zu", k, i);
			corr[i] ^= (unsigned char)(1u << k);
		}
	assert_int_equal(tk_verify_bound(key, KEYLEN, &b, &req), TK_OK);
	/* Dropped, shortened, extended: refused. */
	b.corr_len = 1;
	assert_int_equal(tk_verify_bound(key, KEYLEN, &b, &req),
	    TK_BAD_SIGNATURE);
	b.corr_len = 0;
	assert_int_equal(tk_verify_bound(key, KEYLEN, &b, &req),
	    TK_BAD_SIGNATURE);
	b.corr_len = sizeof(corr);
	b.resp_topic = NULL;
	assert_int_equal(tk_verify_bound(key, KEYLEN, &b, &req),
	    TK_BAD_SIGNATURE);
	b.resp_topic = "qmp2mqtt/reply/op1/x";
	assert_int_equal(tk_verify_bound(key, KEYLEN, &b, &req),
	    TK_BAD_SIGNATURE);
	/* force is bound too. */
	b.resp_topic = rt;
	req.force = 0;
	assert_int_equal(tk_verify_bound(key, KEYLEN, &b, &req),
	    TK_BAD_SIGNATURE);
}

/* Parse then verify, as the bridge does. */
static void
test_parse_verify(void **state)
{
	static const char	 good[] = "{\"id\":\"req-1\",\"issued_us\":"
	    "1700000000000000,\"expect_mode\":\"secondary\",\"sig\":\""
	    KAT_SEC "\"}";
	static const char	 forced[] = "{\"id\":\"req-1\",\"issued_us\":"
	    "1700000000000000,\"expect_mode\":\"secondary\",\"force\":true,"
	    "\"sig\":\"" KAT_SEC "\"}";
	static const char	 nomode[] = "{\"id\":\"req-1\",\"issued_us\":"
	    "1700000000000000,\"sig\":\"" KAT_SEC "\"}";
	static const char	 none[] = "{\"id\":\"req-1\",\"issued_us\":"
	    "1700000000000000,\"force\":false,\"sig\":\"" KAT_NONE "\"}";
	static const char	 bound[] = "{\"id\":\"req-1\",\"issued_us\":"
	    "1700000000000000,\"expect_mode\":\"secondary\",\"force\":true,"
	    "\"sig\":\"" KAT_BOUND "\"}";
	static const unsigned char corr[] = { 0x01, 0xab };
	struct tk_binding	 b = { "hv1", "vm1", "qmp2mqtt/reply/op1", corr,
	    sizeof(corr) };
	struct tk_request	 req;
	const char		*why;

	assert_int_equal(parse(good, 1, &req, &why), TK_OK);
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req), TK_OK);
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm2", &req),
	    TK_BAD_SIGNATURE);
	/* Adding "force": true breaks the signature. */
	assert_int_equal(parse(forced, 1, &req, &why), TK_OK);
	assert_int_equal(req.force, 1);
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	/* Dropping expect_mode breaks the signature. */
	assert_int_equal(parse(nomode, 1, &req, &why), TK_OK);
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	assert_int_equal(parse(none, 1, &req, &why), TK_OK);
	assert_int_equal(req.force, 0);
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req), TK_OK);
	assert_int_equal(parse(bound, 1, &req, &why), TK_OK);
	assert_int_equal(tk_verify_bound(key, KEYLEN, &b, &req), TK_OK);
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
	/* Parsed without HMAC auth, the sig is not kept. */
	assert_int_equal(parse(good, 0, &req, &why), TK_OK);
	assert_string_equal(req.sig, "");
	assert_int_equal(tk_verify(key, KEYLEN, "hv1", "vm1", &req),
	    TK_BAD_SIGNATURE);
}

/* "force" is an optional boolean; anything else is a bad request. */
static void
test_parse_force(void **state)
{
	static const char *const bad_force[] = {
		"{\"id\":\"f\",\"issued_us\":1,\"force\":1}",
		"{\"id\":\"f\",\"issued_us\":1,\"force\":\"true\"}",
		"{\"id\":\"f\",\"issued_us\":1,\"force\":null}",
		"{\"id\":\"f\",\"issued_us\":1,\"force\":{}}",
		"{\"id\":\"f\",\"issued_us\":1,\"force\":true,\"force\":false}",
	};
	struct tk_request	 req;
	const char		*why;
	size_t			 i;

	assert_int_equal(parse("{\"id\":\"f\",\"issued_us\":1,\"force\":true}",
	    0, &req, &why), TK_OK);
	assert_int_equal(req.force, 1);
	assert_int_equal(parse("{\"id\":\"f\",\"issued_us\":1,\"force\":false}",
	    0, &req, &why), TK_OK);
	assert_int_equal(req.force, 0);
	assert_int_equal(parse("{\"id\":\"f\",\"issued_us\":1}", 0, &req, &why),
	    TK_OK);
	assert_int_equal(req.force, 0);
	for (i = 0; i < NELEM(bad_force); i++) {
		assert_int_equal(parse(bad_force[i], 0, &req, &why),
		    TK_BAD_REQUEST);
		assert_int_equal(req.force, 0);
		assert_non_null(why);
	}
	/* A refusal for another field leaves force 0. */
	assert_int_equal(parse("{\"id\":\"f\",\"issued_us\":-1,\"force\":true}",
	    0, &req, &why), TK_BAD_REQUEST);
	assert_int_equal(req.force, 0);
	assert_string_equal(req.id, "f");
}

/* --- tk_check_time -------------------------------------------------- */

static void
test_time(void **state)
{
	static const struct {
		int64_t		 issued, now;
		unsigned	 window;
		enum tk_reason	 want;
	} c[] = {
		{ T0, T0, 300, TK_OK },
		{ T0, T0 + 1, 300, TK_OK },
		{ T0 + 1, T0, 300, TK_OK },
		{ T0, T0 + 300 * US, 300, TK_OK },
		{ T0, T0 - 300 * US, 300, TK_OK },
		{ T0, T0 + 300 * US + 1, 300, TK_STALE },
		{ T0, T0 - 300 * US - 1, 300, TK_STALE },
		{ T0, T0 + 3600 * US, 300, TK_STALE },
		{ T0 + 3600 * US, T0, 300, TK_STALE },
		{ T0, T0, 0, TK_OK },
		{ T0, T0 + 1, 0, TK_STALE },
		{ T0 + 1, T0, 0, TK_STALE },
		{ 1, 0, 0, TK_STALE },
		/* Extremes: no overflow, no wrap-around. */
		{ INT64_MAX, INT64_MIN, 0, TK_STALE },
		{ INT64_MIN, INT64_MAX, 0, TK_STALE },
		{ INT64_MAX, INT64_MIN, UINT32_MAX, TK_STALE },
		{ INT64_MIN, INT64_MAX, UINT32_MAX, TK_STALE },
		{ INT64_MAX, INT64_MAX, 0, TK_OK },
		{ INT64_MIN, INT64_MIN, 0, TK_OK },
		{ INT64_MAX, -1, UINT32_MAX, TK_STALE },
		{ INT64_MAX, 0, UINT32_MAX, TK_STALE },
		{ -1, INT64_MAX, UINT32_MAX, TK_STALE },
		{ INT64_MIN, 0, UINT32_MAX, TK_STALE },
		{ INT64_MAX, INT64_MAX - 300 * US, 300, TK_OK },
		{ INT64_MAX, INT64_MAX - 300 * US - 1, 300, TK_STALE },
		{ INT64_MIN + 300 * US, INT64_MIN, 300, TK_OK },
		{ INT64_MIN + 300 * US + 1, INT64_MIN, 300, TK_STALE },
		{ T0, T0 + (int64_t)UINT32_MAX * US, UINT32_MAX, TK_OK },
		{ T0, T0 + (int64_t)UINT32_MAX * US + 1, UINT32_MAX, TK_STALE },
		{ T0 + (int64_t)UINT32_MAX * US, T0, UINT32_MAX, TK_OK },
		{ T0 + (int64_t)UINT32_MAX * US + 1, T0, UINT32_MAX, TK_STALE },
		{ 0, -(int64_t)UINT32_MAX * US, UINT32_MAX, TK_OK },
	};
	size_t	i;

	for (i = 0; i < NELEM(c); i++)
		if (tk_check_time(c[i].issued, c[i].now, c[i].window) !=
		    c[i].want)
			fail_msg("case %zu: issued %lld now %lld window %u: "
			    "want %s", i, (long long)c[i].issued,
			    (long long)c[i].now, c[i].window,
			    tk_reason_name(c[i].want));
}

/* --- tk_digest ------------------------------------------------------ */

static void
test_digest(void **state)
{
	static const char	small[] = "{\"id\":\"a\",\"issued_us\":1}";
	unsigned char		d[32];

	tk_digest("", 0, d);
	assert_memory_equal(d, sha_empty, 32);
	tk_digest(NULL, 0, d);
	assert_memory_equal(d, sha_empty, 32);
	tk_digest(small, sizeof(small) - 1, d);
	assert_memory_equal(d, sha_small, 32);
	tk_digest(small, sizeof(small), d);	/* with the NUL: another */
	assert_memory_not_equal(d, sha_small, 32);
}

/* --- the replay cache ----------------------------------------------- */

#define TTL	(600 * US)

/* A digest that differs for every n. */
static void
dig(unsigned char d[32], unsigned n)
{
	memset(d, 0, 32);
	memcpy(d, &n, sizeof(n));
	d[31] = 0x5a;
}

/* tk_cache_check with the usual host and vm, asserting *result. */
static enum tk_seen
check(struct tk_cache *c, const char *id, unsigned dn, int64_t now,
    const char **res)
{
	unsigned char	d[32];

	dig(d, dn);
	return tk_cache_check(c, "hv1", "vm1", id, d, now, TTL, res);
}

static void
test_cache_basic(void **state)
{
	struct tk_cache	*c;
	const char	*res;
	char		 buf[32];

	assert_null(tk_cache_new(0));
	tk_cache_free(NULL);
	assert_int_equal(tk_cache_size(NULL), 0);
	assert_non_null(c = tk_cache_new(8));
	assert_int_equal(tk_cache_size(c), 0);

	res = "x";
	assert_int_equal(check(c, "a", 1, T0, &res), TK_SEEN_NEW);
	assert_null(res);
	assert_int_equal(tk_cache_size(c), 1);
	/* Duplicate while running: no result yet. */
	res = "x";
	assert_int_equal(check(c, "a", 1, T0 + 1, &res), TK_SEEN_DUPLICATE);
	assert_null(res);
	/* Result stored: a copy, replaced on the next call. */
	strcpy(buf, "{\"result\":1}");
	assert_int_equal(tk_cache_set_result(c, "hv1", "vm1", "a", buf), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(check(c, "a", 1, T0 + 2, &res), TK_SEEN_DUPLICATE);
	assert_string_equal(res, "{\"result\":1}");
	assert_int_equal(tk_cache_set_result(c, "hv1", "vm1", "a",
	    "{\"result\":2}"), 0);
	assert_int_equal(check(c, "a", 1, T0 + 3, &res), TK_SEEN_DUPLICATE);
	assert_string_equal(res, "{\"result\":2}");
	/* Same id, other payload: replay, and *result stays NULL. */
	res = "x";
	assert_int_equal(check(c, "a", 2, T0 + 4, &res), TK_SEEN_REPLAY);
	assert_null(res);
	/* A replay does not replace the first payload. */
	assert_int_equal(check(c, "a", 1, T0 + 5, &res), TK_SEEN_DUPLICATE);
	assert_int_equal(tk_cache_size(c), 1);
	/* result may be NULL. */
	assert_int_equal(check(c, "a", 1, T0 + 5, NULL), TK_SEEN_DUPLICATE);

	/* Unknown keys and bad arguments. */
	assert_int_equal(tk_cache_set_result(c, "hv1", "vm1", "b", "r"), -1);
	assert_int_equal(tk_cache_set_result(c, "hv1", "vm2", "a", "r"), -1);
	assert_int_equal(tk_cache_set_result(c, "hv1", "vm1", "a", NULL), -1);
	assert_int_equal(tk_cache_set_result(NULL, "hv1", "vm1", "a", "r"),
	    -1);
	assert_int_equal(tk_cache_set_result(c, NULL, "vm1", "a", "r"), -1);
	res = "x";
	assert_int_equal(tk_cache_check(NULL, "hv1", "vm1", "a",
	    (const unsigned char *)buf, T0, TTL, &res), TK_SEEN_FULL);
	assert_null(res);
	assert_int_equal(tk_cache_check(c, "hv1", "vm1", NULL,
	    (const unsigned char *)buf, T0, TTL, &res), TK_SEEN_FULL);
	assert_int_equal(tk_cache_check(c, "hv1", "vm1", "z", NULL, T0, TTL,
	    &res), TK_SEEN_FULL);
	assert_int_equal(tk_cache_check(c, "hv1", "vm1", "z",
	    (const unsigned char *)buf, T0, 0, &res), TK_SEEN_FULL);
	assert_int_equal(tk_cache_check(c, "hv1", "vm1", "z",
	    (const unsigned char *)buf, T0, -1, &res), TK_SEEN_FULL);
	assert_int_equal(tk_cache_size(c), 1);
	tk_cache_free(c);
}

static void
test_cache_keys(void **state)
{
	struct tk_cache	*c;
	unsigned char	 d[32];
	const char	*res;

	assert_non_null(c = tk_cache_new(16));
	dig(d, 1);
	assert_int_equal(tk_cache_check(c, "hv1", "vm1", "a", d, T0, TTL,
	    &res), TK_SEEN_NEW);
	/* Same id on another host or vm: independent. */
	assert_int_equal(tk_cache_check(c, "hv2", "vm1", "a", d, T0, TTL,
	    &res), TK_SEEN_NEW);
	assert_int_equal(tk_cache_check(c, "hv1", "vm2", "a", d, T0, TTL,
	    &res), TK_SEEN_NEW);
	/* The separators count: ("ab","c") is not ("a","bc"). */
	assert_int_equal(tk_cache_check(c, "ab", "c", "x", d, T0, TTL, &res),
	    TK_SEEN_NEW);
	assert_int_equal(tk_cache_check(c, "a", "bc", "x", d, T0, TTL, &res),
	    TK_SEEN_NEW);
	assert_int_equal(tk_cache_check(c, "a", "b", "cx", d, T0, TTL, &res),
	    TK_SEEN_NEW);
	assert_int_equal(tk_cache_check(c, "", "", "abcx", d, T0, TTL, &res),
	    TK_SEEN_NEW);
	/* Exact comparison: case and prefixes differ. */
	assert_int_equal(tk_cache_check(c, "hv1", "vm1", "A", d, T0, TTL,
	    &res), TK_SEEN_NEW);
	assert_int_equal(tk_cache_check(c, "hv1", "vm1", "aa", d, T0, TTL,
	    &res), TK_SEEN_NEW);
	assert_int_equal(tk_cache_check(c, "HV1", "vm1", "a", d, T0, TTL,
	    &res), TK_SEEN_NEW);
	assert_int_equal(tk_cache_size(c), 10);
	/* Each is now a duplicate, and results are kept apart. */
	assert_int_equal(tk_cache_set_result(c, "hv2", "vm1", "a", "r2"), 0);
	assert_int_equal(tk_cache_check(c, "hv1", "vm1", "a", d, T0, TTL,
	    &res), TK_SEEN_DUPLICATE);
	assert_null(res);
	assert_int_equal(tk_cache_check(c, "hv2", "vm1", "a", d, T0, TTL,
	    &res), TK_SEEN_DUPLICATE);
	assert_string_equal(res, "r2");
	assert_int_equal(tk_cache_check(c, "a", "bc", "x", d, T0, TTL, &res),
	    TK_SEEN_DUPLICATE);
	dig(d, 2);
	assert_int_equal(tk_cache_check(c, "hv1", "vm2", "a", d, T0, TTL,
	    &res), TK_SEEN_REPLAY);
	assert_int_equal(tk_cache_size(c), 10);
	tk_cache_free(c);
}

static void
test_cache_expiry(void **state)
{
	struct tk_cache	*c;
	unsigned char	 d[32];
	const char	*res;

	assert_non_null(c = tk_cache_new(4));
	assert_int_equal(check(c, "a", 1, T0, &res), TK_SEEN_NEW);
	assert_int_equal(tk_cache_set_result(c, "hv1", "vm1", "a", "r"), 0);
	/* Live until T0 + TTL, excluded. */
	assert_int_equal(check(c, "a", 2, T0 + TTL - 1, &res),
	    TK_SEEN_REPLAY);
	assert_int_equal(check(c, "a", 1, T0 + TTL - 1, &res),
	    TK_SEEN_DUPLICATE);
	assert_string_equal(res, "r");
	/* After ttl the id is new again, with its old result gone. */
	assert_int_equal(check(c, "a", 2, T0 + TTL, &res), TK_SEEN_NEW);
	assert_int_equal(tk_cache_size(c), 1);
	assert_int_equal(check(c, "a", 2, T0 + TTL, &res), TK_SEEN_DUPLICATE);
	assert_null(res);
	assert_int_equal(check(c, "a", 1, T0 + TTL, &res), TK_SEEN_REPLAY);
	/* The same payload after ttl is new too. */
	assert_int_equal(check(c, "a", 2, T0 + 3 * TTL, &res), TK_SEEN_NEW);

	/* Expiry saturates instead of wrapping around. */
	dig(d, 1);
	assert_int_equal(tk_cache_check(c, "h", "v", "i", d, INT64_MAX - 5,
	    TTL, &res), TK_SEEN_NEW);
	assert_int_equal(tk_cache_check(c, "h", "v", "i", d, INT64_MAX - 1,
	    TTL, &res), TK_SEEN_DUPLICATE);
	assert_int_equal(tk_cache_check(c, "h", "v", "j", d, INT64_MIN,
	    INT64_MAX, &res), TK_SEEN_NEW);
	assert_int_equal(tk_cache_check(c, "h", "v", "j", d, -2, INT64_MAX,
	    &res), TK_SEEN_DUPLICATE);
	assert_int_equal(tk_cache_check(c, "h", "v", "j", d, -1, INT64_MAX,
	    &res), TK_SEEN_NEW);
	tk_cache_free(c);
}

static void
test_cache_full(void **state)
{
	struct tk_cache	*c;
	unsigned char	 d[32];
	const char	*res;
	char		 id[16];
	unsigned	 i;

	assert_non_null(c = tk_cache_new(3));
	assert_int_equal(check(c, "a", 1, T0, &res), TK_SEEN_NEW);
	assert_int_equal(check(c, "b", 2, T0 + 1, &res), TK_SEEN_NEW);
	assert_int_equal(check(c, "c", 3, T0 + 2, &res), TK_SEEN_NEW);
	/* Full of live ids: refused, nothing forgotten. */
	assert_int_equal(check(c, "d", 4, T0 + 3, &res), TK_SEEN_FULL);
	assert_null(res);
	assert_int_equal(check(c, "d", 4, T0 + TTL - 1, &res), TK_SEEN_FULL);
	assert_int_equal(tk_cache_size(c), 3);
	assert_int_equal(check(c, "a", 9, T0 + TTL - 1, &res),
	    TK_SEEN_REPLAY);
	assert_int_equal(check(c, "b", 2, T0 + TTL - 1, &res),
	    TK_SEEN_DUPLICATE);
	assert_int_equal(check(c, "c", 9, T0 + TTL - 1, &res),
	    TK_SEEN_REPLAY);
	/* "a" expired: room for one. */
	assert_int_equal(check(c, "d", 4, T0 + TTL, &res), TK_SEEN_NEW);
	assert_int_equal(tk_cache_size(c), 3);
	assert_int_equal(check(c, "e", 5, T0 + TTL, &res), TK_SEEN_FULL);
	assert_int_equal(check(c, "b", 9, T0 + TTL, &res), TK_SEEN_REPLAY);
	/* All but "d" expired. */
	assert_int_equal(check(c, "e", 5, T0 + TTL + 2, &res), TK_SEEN_NEW);
	assert_int_equal(tk_cache_size(c), 2);
	assert_int_equal(check(c, "d", 9, T0 + TTL + 2, &res),
	    TK_SEEN_REPLAY);
	tk_cache_free(c);

	/*
	 * Expiry not in insertion order (a restored entry is older than the
	 * one before it): the expired entry is found behind a live one, and
	 * the live one stays.
	 */
	assert_non_null(c = tk_cache_new(2));
	dig(d, 1);
	assert_int_equal(tk_cache_check(c, "h", "v", "live", d, T0 + 10, TTL,
	    &res), TK_SEEN_NEW);
	assert_int_equal(tk_cache_restore(c, "h", "v", "old", d, T0), 0);
	assert_int_equal(tk_cache_check(c, "h", "v", "new", d, T0 + TTL - 1,
	    TTL, &res), TK_SEEN_FULL);
	assert_int_equal(tk_cache_check(c, "h", "v", "new", d, T0 + TTL, TTL,
	    &res), TK_SEEN_NEW);
	assert_int_equal(tk_cache_check(c, "h", "v", "live", d, T0 + TTL, TTL,
	    &res), TK_SEEN_DUPLICATE);
	assert_int_equal(tk_cache_check(c, "h", "v", "x", d, T0 + TTL, TTL,
	    &res), TK_SEEN_FULL);
	tk_cache_free(c);

	/* Many ids, many collisions in the buckets, all remembered. */
	assert_non_null(c = tk_cache_new(2000));
	for (i = 0; i < 2000; i++) {
		snprintf(id, sizeof(id), "id-%u", i);
		if (check(c, id, i, T0, &res) != TK_SEEN_NEW)
			fail_msg("%s not new", id);
		if (i % 3 == 0)
			assert_int_equal(tk_cache_set_result(c, "hv1", "vm1",
			    id, id), 0);
	}
	assert_int_equal(check(c, "more", 1, T0, &res), TK_SEEN_FULL);
	for (i = 0; i < 2000; i++) {
		snprintf(id, sizeof(id), "id-%u", i);
		if (check(c, id, i, T0 + 1, &res) != TK_SEEN_DUPLICATE)
			fail_msg("%s not a duplicate", id);
		if (i % 3 == 0 ? res == NULL || strcmp(res, id) != 0 :
		    res != NULL)
			fail_msg("%s: wrong result", id);
		if (check(c, id, i + 1, T0 + 1, &res) != TK_SEEN_REPLAY)
			fail_msg("%s not a replay", id);
	}
	/* All expire together: the next one evicts them all. */
	assert_int_equal(check(c, "more", 1, T0 + TTL, &res), TK_SEEN_NEW);
	assert_int_equal(tk_cache_size(c), 1);
	tk_cache_free(c);
}

/* Restored ids never execute again, whatever the payload. */
static void
test_cache_restore(void **state)
{
	struct tk_cache	*c;
	unsigned char	 d[32], e[32];
	const char	*res;

	assert_non_null(c = tk_cache_new(2));
	dig(d, 1);
	dig(e, 2);
	assert_int_equal(tk_cache_restore(c, "hv1", "vm1", "r", d, T0), 0);
	assert_int_equal(tk_cache_size(c), 1);
	/* Same payload (a QoS 1 redelivery), other payload: replay. */
	assert_int_equal(tk_cache_check(c, "hv1", "vm1", "r", d, T0 + 1, TTL,
	    &res), TK_SEEN_REPLAY);
	assert_null(res);
	assert_int_equal(tk_cache_check(c, "hv1", "vm1", "r", e, T0 + 1, TTL,
	    &res), TK_SEEN_REPLAY);
	/* Other keys are not affected. */
	assert_int_equal(tk_cache_check(c, "hv1", "vm2", "r", d, T0 + 1, TTL,
	    &res), TK_SEEN_NEW);
	/* Full: restore fails closed. */
	assert_int_equal(tk_cache_restore(c, "hv1", "vm1", "s", d, T0), -1);
	/* Replacing an existing key needs no room. */
	assert_int_equal(tk_cache_restore(c, "hv1", "vm2", "r", e, T0 + 2), 0);
	assert_int_equal(tk_cache_size(c), 2);
	assert_int_equal(tk_cache_check(c, "hv1", "vm2", "r", e, T0 + 3, TTL,
	    &res), TK_SEEN_REPLAY);
	/* Expired at recorded + ttl: a new request may use the id. */
	assert_int_equal(tk_cache_check(c, "hv1", "vm1", "r", d, T0 + TTL - 1,
	    TTL, &res), TK_SEEN_REPLAY);
	assert_int_equal(tk_cache_check(c, "hv1", "vm1", "r", d, T0 + TTL, TTL,
	    &res), TK_SEEN_NEW);
	/* Bad arguments. */
	assert_int_equal(tk_cache_restore(NULL, "h", "v", "i", d, T0), -1);
	assert_int_equal(tk_cache_restore(c, NULL, "v", "i", d, T0), -1);
	assert_int_equal(tk_cache_restore(c, "h", "v", "i", NULL, T0), -1);
	tk_cache_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reason_names),
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_missing_sig),
		cmocka_unit_test(test_parse_sizes),
		cmocka_unit_test(test_canonical),
		cmocka_unit_test(test_sign_kat),
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_verify_binding),
		cmocka_unit_test(test_parse_verify),
		cmocka_unit_test(test_parse_force),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_digest),
		cmocka_unit_test(test_cache_basic),
		cmocka_unit_test(test_cache_keys),
		cmocka_unit_test(test_cache_expiry),
		cmocka_unit_test(test_cache_full),
		cmocka_unit_test(test_cache_restore),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
