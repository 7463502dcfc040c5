/*
 * Unit tests for src/tkresult.c: the result canonical string and its
 * signature (known answers, every field signed, refusals), and the strict
 * verification of a result payload (bit flips, every malformed shape,
 * v1 and newer versions, the round trip).
 *
 * The known answers were computed outside this code:
 *   printf 'qmp2mqtt-result-v1\nhv1\nvm1\nreq-1\nok\nok\n1\n'\
 *   '1700000000000001' | openssl dgst -sha256 -hmac KEY
 *   printf 'qmp2mqtt-result-v2\n1\n3:hv1\n3:vm1\n5:req-1\n2:ok\n2:ok\n'\
 *   '-\n-\n4:none\n9:secondary\n7:request\n1\n1\n1700000000000001' |
 *   openssl dgst -sha256 -hmac KEY
 * (and likewise for KAT_REFUSAL).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <json.h>

#include "tkresult.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

#define KEY		"KEY"
#define KEYLEN		3
#define T0		INT64_C(1700000000000000)
/* Result hv1/vm1/req-1/ok/ok/sent 1/T0 + 1. */
#define KAT_RESULT	"7c16f33133d917923186cd1cc57190c7960919c93a54606ab7" \
			"a2f8dec9384b55"
/* The result signature v2 of res_ok (R_OK) and of res_ref (R_REF). */
#define KAT_RESULT2	"67b9abd8300da6959e8408217a10e1cd37769661cb38a3592a" \
			"d0dcfc6cf0ce40"
#define KAT_REFUSAL	"b5efb90e57e2616a7a192ab6dbccf17423412d27173d10ee45" \
			"f228c5d2ea0104"

static const unsigned char key[] = KEY;

/* --- result signature ----------------------------------------------- */

/* The fields of R_OK (a success) and of R_REF (a refusal). */
static const struct tk_result_fields	res_ok = { 1, "hv1", "vm1", "req-1",
    "ok", "ok", NULL, NULL, "none", "secondary", "request", 1, 1, T0 + 1 };
static const struct tk_result_fields	res_ref = { 1, "hv1", "vm1", "req-1",
    "rejected", "bad_signature", "bad_signature", "line1\nline2", NULL, NULL,
    NULL, 0, 0, T0 + 2 };

/* The result JSON the bridge publishes for res_ok and res_ref. */
#define R_OK "{\"schema\":1,\"id\":\"req-1\",\"host\":\"hv1\",\"vm\":\"vm1\"," \
	"\"status\":\"ok\",\"reason\":\"ok\",\"error\":null,\"colo\":"	\
	"{\"mode\":\"none\",\"last_mode\":\"secondary\",\"reason\":"	\
	"\"request\"},\"sent\":true,\"authenticated\":true,\"time_us\":" \
	"1700000000000001,\"sig\":\"" KAT_RESULT2 "\",\"sig_version\":2}"
#define R_REF "{\"schema\":1,\"id\":\"req-1\",\"host\":\"hv1\",\"vm\":"	\
	"\"vm1\",\"status\":\"rejected\",\"reason\":\"bad_signature\","	\
	"\"error\":{\"class\":\"bad_signature\",\"desc\":\"line1\\nline2\"}," \
	"\"colo\":null,\"sent\":false,\"authenticated\":false,\"time_us\":" \
	"1700000000000002,\"sig\":\"" KAT_REFUSAL "\",\"sig_version\":2}"

static void
test_result_sign(void **state)
{
	struct tk_result_fields	f = res_ok;
	char			buf[512], hex[TK_SIG_HEX + 1];
	int			n;

	n = tk_result_canonical(buf, sizeof(buf), &f);
	assert_int_equal(n, (int)strlen(buf));
	assert_string_equal(buf, "qmp2mqtt-result-v2\n1\n3:hv1\n3:vm1\n5:req-1"
	    "\n2:ok\n2:ok\n-\n-\n4:none\n9:secondary\n7:request\n1\n1\n"
	    "1700000000000001");
	assert_int_equal(tk_result_canonical(NULL, 0, &f), (int)strlen(buf));
	assert_int_equal(tk_result_canonical(buf, strlen(buf), &f), -1);
	assert_int_equal(tk_result_canonical(NULL, 1, &f), -1);
	assert_int_equal(tk_sign_result(key, KEYLEN, &f, hex), 0);
	assert_string_equal(hex, KAT_RESULT2);
	/* A '\n' in a string is length-prefixed: signed, unambiguous. */
	f = res_ref;
	n = tk_result_canonical(buf, sizeof(buf), &f);
	assert_int_equal(n, (int)strlen(buf));
	assert_string_equal(buf, "qmp2mqtt-result-v2\n1\n3:hv1\n3:vm1\n5:req-1"
	    "\n8:rejected\n13:bad_signature\n13:bad_signature\n11:line1\nline2"
	    "\n-\n-\n-\n0\n0\n1700000000000002");
	assert_int_equal(tk_sign_result(key, KEYLEN, &f, hex), 0);
	assert_string_equal(hex, KAT_REFUSAL);
	/* No id: null, which is not the empty string. */
	f.id = NULL;
	n = tk_result_canonical(buf, sizeof(buf), &f);
	assert_int_equal(n, (int)strlen(buf));
	assert_non_null(strstr(buf, "\n3:vm1\n-\n8:rejected\n"));
	f.id = "";
	n = tk_result_canonical(buf, sizeof(buf), &f);
	assert_int_equal(n, (int)strlen(buf));
	assert_non_null(strstr(buf, "\n3:vm1\n0:\n8:rejected\n"));
	/* Every signed field changes the signature. */
	{
		struct tk_result_fields	g;
		char			h0[TK_SIG_HEX + 1], h1[TK_SIG_HEX + 1];
		size_t			k;

		assert_int_equal(tk_sign_result(key, KEYLEN, &res_ok, h0), 0);
		for (k = 0; k < 14; k++) {
			g = res_ok;
			switch (k) {
			case 0: g.schema = 2; break;
			case 1: g.host = "hv2"; break;
			case 2: g.vm = "vm2"; break;
			case 3: g.id = NULL; break;
			case 4: g.status = "error"; break;
			case 5: g.reason = "timeout"; break;
			case 6: g.error_class = "x"; g.error_desc = ""; break;
			case 7: g.colo_mode = NULL; g.colo_last_mode = NULL;
				g.colo_reason = NULL; break;
			case 8: g.colo_last_mode = NULL; break;
			case 9: g.colo_reason = "Request"; break;
			case 10: g.sent = 0; break;
			case 11: g.authenticated = 0; break;
			case 12: g.time_us++; break;
			case 13: g.colo_mode = "nonE"; break;
			}
			assert_int_equal(tk_sign_result(key, KEYLEN, &g, h1), 0);
			assert_string_not_equal(h0, h1);
		}
	}
	/* Refused: a required string NULL, an object half set, no key. */
	f = res_ok;
	f.status = NULL;
	assert_int_equal(tk_sign_result(key, KEYLEN, &f, hex), -1);
	assert_string_equal(hex, "");
	f = res_ok;
	f.error_class = "x";
	assert_int_equal(tk_sign_result(key, KEYLEN, &f, hex), -1);
	f = res_ok;
	f.colo_mode = NULL;
	assert_int_equal(tk_result_canonical(NULL, 0, &f), -1);
	f = res_ok;
	assert_int_equal(tk_sign_result(key, 0, &f, hex), -1);
	assert_int_equal(tk_sign_result(key, KEYLEN, NULL, hex), -1);
	assert_int_equal(tk_sign_result(key, KEYLEN, &f, NULL), -1);
}

/*
 * Writes base into out with the first occurrence of from replaced by to.
 * Returns out; fails the test when from is not in base.
 */
static char *
subst(char *out, size_t len, const char *base, const char *from,
    const char *to)
{
	const char	*at = strstr(base, from);

	assert_non_null(at);
	assert_true((size_t)snprintf(out, len, "%.*s%s%s", (int)(at - base),
	    base, to, at + strlen(from)) < len);
	return out;
}

/* tk_verify_result() of p for hv1/vm1, with why checked against r. */
static enum tk_result_auth
vres(const char *p, char *id)
{
	enum tk_result_auth	 r;
	const char		*why = "unset";
	json_object		*tree = (json_object *)1;

	r = tk_verify_result(key, KEYLEN, "hv1", "vm1", p, strlen(p), id,
	    &why, &tree);
	if (r == TK_RESULT_OK) {
		assert_null(why);
		assert_non_null(tree);
		json_object_put(tree);
	} else {
		assert_non_null(why);
		assert_true(strlen(why) > 5);
		assert_null(tree);
	}
	return r;
}

static void
test_result_verify(void **state)
{
	char		 p[1024], q[1024], id[TK_ID_MAX + 1];
	const char	*why;
	json_object	*tree, *v;
	size_t		 k;

	/* Good, and the tree handed back is the verified object. */
	assert_int_equal(vres(R_OK, id), TK_RESULT_OK);
	assert_string_equal(id, "req-1");
	assert_int_equal(vres(R_REF, id), TK_RESULT_OK);
	assert_int_equal(tk_verify_result(key, KEYLEN, "hv1", "vm1", R_REF,
	    strlen(R_REF), NULL, NULL, &tree), TK_RESULT_OK);
	assert_true(json_object_object_get_ex(tree, "authenticated", &v));
	assert_false(json_object_get_boolean(v));
	json_object_put(tree);
	/* No NUL needed after the payload; none of the out pointers. */
	snprintf(p, sizeof(p), "%sx", R_OK);
	assert_int_equal(tk_verify_result(key, KEYLEN, "hv1", "vm1", p,
	    strlen(R_OK), NULL, NULL, NULL), TK_RESULT_OK);

	/*
	 * Flipping, changing or nulling any covered field breaks the
	 * signature: above all "authenticated", which v1 left open.
	 */
	{
		static const struct {
			const char	*base, *from, *to;
		} flip[] = {
			{ R_REF, "\"authenticated\":false",
			    "\"authenticated\":true" },
			{ R_OK, "\"authenticated\":true",
			    "\"authenticated\":false" },
			{ R_OK, "\"schema\":1", "\"schema\":2" },
			{ R_OK, "\"id\":\"req-1\"", "\"id\":\"req-2\"" },
			{ R_REF, "\"id\":\"req-1\"", "\"id\":null" },
			{ R_OK, "\"status\":\"ok\"", "\"status\":\"error\"" },
			{ R_REF, "\"reason\":\"bad_signature\"",
			    "\"reason\":\"precondition_failed\"" },
			{ R_REF, "\"class\":\"bad_signature\"",
			    "\"class\":\"precondition_failed\"" },
			{ R_REF, "line1\\nline2", "line1\\nline3" },
			{ R_REF, "line1\\nline2", "" },
			{ R_REF, "{\"class\":\"bad_signature\",\"desc\":"
			    "\"line1\\nline2\"}", "null" },
			{ R_OK, "\"error\":null", "\"error\":{\"class\":\"\","
			    "\"desc\":\"\"}" },
			{ R_OK, "\"mode\":\"none\"", "\"mode\":\"primary\"" },
			{ R_OK, "\"last_mode\":\"secondary\"",
			    "\"last_mode\":null" },
			{ R_OK, "\"reason\":\"request\"",
			    "\"reason\":\"checkpoint\"" },
			{ R_OK, "{\"mode\":\"none\",\"last_mode\":\"secondary\","
			    "\"reason\":\"request\"}", "null" },
			{ R_REF, "\"colo\":null", "\"colo\":{\"mode\":\"none\","
			    "\"last_mode\":null,\"reason\":null}" },
			{ R_OK, "\"sent\":true", "\"sent\":false" },
			{ R_OK, "\"time_us\":1700000000000001",
			    "\"time_us\":1700000000000002" },
			/* Without sig_version it is checked as v1: no. */
			{ R_OK, ",\"sig_version\":2", "" },
			/* Another key's signature. */
			{ R_OK, KAT_RESULT2, KAT_REFUSAL },
		};

		for (k = 0; k < NELEM(flip); k++) {
			subst(p, sizeof(p), flip[k].base, flip[k].from,
			    flip[k].to);
			if (vres(p, id) != TK_RESULT_BAD_SIG)
				fail_msg("flip %zu (%s -> %s) not refused", k,
				    flip[k].from, flip[k].to);
		}
	}
	/* For another VM. */
	assert_int_equal(tk_verify_result(key, KEYLEN, "hv1", "vm2", R_OK,
	    strlen(R_OK), id, &why, NULL), TK_RESULT_BAD_SIG);
	assert_string_equal(why, "result for another host or VM");
	assert_int_equal(tk_verify_result(key, KEYLEN, "hv2", "vm1", R_OK,
	    strlen(R_OK), id, &why, NULL), TK_RESULT_BAD_SIG);
	assert_int_equal(tk_verify_result((const unsigned char *)"KEZ", 3,
	    "hv1", "vm1", R_OK, strlen(R_OK), id, &why, NULL),
	    TK_RESULT_BAD_SIG);
	assert_string_equal(why, "signature does not match");
	/* Bad sig: not a string, short, uppercase. */
	assert_int_equal(vres(subst(p, sizeof(p), R_OK, "\"" KAT_RESULT2 "\"",
	    "1"), id), TK_RESULT_BAD_SIG);
	assert_int_equal(vres(subst(p, sizeof(p), R_OK, KAT_RESULT2, "67b9"),
	    id), TK_RESULT_BAD_SIG);
	assert_int_equal(vres(subst(p, sizeof(p), R_OK, "67b9abd8", "67B9ABD8"),
	    id), TK_RESULT_BAD_SIG);

	/* Unsigned: said so, and the id is still read. */
	subst(p, sizeof(p), R_OK, ",\"sig\":\"" KAT_RESULT2 "\"", "");
	assert_int_equal(vres(p, id), TK_RESULT_UNSIGNED);
	assert_string_equal(id, "req-1");

	/* A field missing, or of the wrong type: malformed, with why. */
	{
		static const struct {
			const char	*base, *from, *to, *why;
		} bad[] = {
			{ R_OK, "\"schema\":1,", "", "schema" },
			{ R_OK, "\"schema\":1", "\"schema\":\"1\"", "schema" },
			{ R_OK, "\"schema\":1", "\"schema\":0", "schema" },
			{ R_OK, "\"id\":\"req-1\",", "", "id" },
			{ R_OK, "\"id\":\"req-1\"", "\"id\":7", "id" },
			{ R_OK, "\"host\":\"hv1\",", "", "host" },
			{ R_OK, "\"vm\":\"vm1\"", "\"vm\":null", "vm" },
			{ R_OK, "\"status\":\"ok\",", "", "status" },
			{ R_OK, "\"reason\":\"ok\"", "\"reason\":[]", "reason" },
			{ R_OK, "\"error\":null,", "", "error" },
			{ R_OK, "\"error\":null", "\"error\":\"x\"", "error" },
			{ R_REF, ",\"desc\":\"line1\\nline2\"", "", "error" },
			{ R_REF, "\"class\":\"bad_signature\"", "\"class\":null",
			    "error" },
			{ R_REF, "\"desc\":", "\"extra\":1,\"desc\":", "error" },
			{ R_OK, "\"colo\":{", "\"x\":{", "unknown" },
			{ R_OK, "{\"mode\":\"none\",", "{", "colo" },
			{ R_OK, "\"mode\":\"none\"", "\"mode\":null", "colo" },
			{ R_OK, "\"last_mode\":\"secondary\"",
			    "\"last_mode\":1", "colo" },
			{ R_REF, "\"colo\":null", "\"colo\":[]", "colo" },
			{ R_OK, "\"sent\":true", "\"sent\":1", "sent" },
			{ R_OK, "\"sent\":true,", "", "sent" },
			{ R_OK, "\"authenticated\":true,", "",
			    "authenticated" },
			{ R_OK, "\"authenticated\":true",
			    "\"authenticated\":\"true\"", "authenticated" },
			{ R_OK, "\"authenticated\":true",
			    "\"authenticated\":null", "authenticated" },
			{ R_OK, "\"time_us\":1700000000000001,", "",
			    "time_us" },
			{ R_OK, "\"time_us\":1700000000000001",
			    "\"time_us\":1.7e15", "time_us" },
			{ R_OK, "\"time_us\":1700000000000001",
			    "\"time_us\":9223372036854775808", "time_us" },
			{ R_OK, "\"sig_version\":2", "\"sig_version\":\"2\"",
			    "sig_version" },
			{ R_OK, "\"sig_version\":2", "\"sig_version\":1",
			    "sig_version" },
			{ R_OK, "\"schema\":1", "\"schema\":1,\"forced\":true",
			    "unknown field" },
			{ R_OK, "\"schema\":1", "\"schema\":1,\"authenticated\""
			    ":false", "duplicate" },
			{ R_OK, "\"schema\":1", "\"schema\":1,\"note\":\"x\"",
			    "unknown field" },
			{ R_OK, "}", "} ", NULL },	/* whitespace: fine */
			{ R_OK, "\"sig_version\":2}", "\"sig_version\":2} {}",
			    "malformed" },
			{ R_OK, "\"ok\"", "'ok'", "malformed" },
			{ R_OK, "req-1", "req\\u0000-1", "malformed" },
		};

		for (k = 0; k < NELEM(bad); k++) {
			enum tk_result_auth	r;

			subst(p, sizeof(p), bad[k].base, bad[k].from,
			    bad[k].to);
			why = NULL;
			r = tk_verify_result(key, KEYLEN, "hv1", "vm1", p,
			    strlen(p), id, &why, NULL);
			if (bad[k].why == NULL) {
				assert_int_equal(r, TK_RESULT_OK);
				continue;
			}
			if (r != TK_RESULT_MALFORMED || why == NULL ||
			    strstr(why, bad[k].why) == NULL)
				fail_msg("case %zu (%s -> %s): %s, \"%s\"", k,
				    bad[k].from, bad[k].to,
				    tk_result_auth_name(r), why ? why : "-");
		}
	}
	/* Not JSON, not an object, empty, too large, a NUL byte. */
	assert_int_equal(vres("{", id), TK_RESULT_MALFORMED);
	assert_int_equal(vres("[]", id), TK_RESULT_MALFORMED);
	assert_int_equal(vres("null", id), TK_RESULT_MALFORMED);
	assert_int_equal(tk_verify_result(key, KEYLEN, "hv1", "vm1", NULL, 0,
	    id, &why, NULL), TK_RESULT_MALFORMED);
	assert_string_equal(why, "empty payload");
	assert_int_equal(tk_verify_result(key, KEYLEN, "hv1", "vm1", R_OK,
	    TK_RESULT_MAX + 1, id, &why, NULL), TK_RESULT_MALFORMED);
	assert_string_equal(why, "payload too large");
	memcpy(q, R_OK, strlen(R_OK) + 1);
	q[3] = '\0';
	assert_int_equal(tk_verify_result(key, KEYLEN, "hv1", "vm1", q,
	    strlen(R_OK), id, &why, NULL), TK_RESULT_MALFORMED);
	assert_string_equal(why, "NUL byte in payload");
	/* Deeper than a result nests. */
	assert_int_equal(vres(subst(p, sizeof(p), R_OK, "\"error\":null",
	    "\"error\":{\"class\":{\"a\":{\"b\":[1]}},\"desc\":\"\"}"), id),
	    TK_RESULT_MALFORMED);

	/*
	 * A result signed by a bridge older than this code (v1: no
	 * sig_version): recognised, and refused as such.
	 */
	snprintf(p, sizeof(p), "{\"schema\":1,\"id\":\"req-1\",\"host\":\"hv1\","
	    "\"vm\":\"vm1\",\"status\":\"ok\",\"reason\":\"ok\",\"error\":null,"
	    "\"colo\":null,\"sent\":true,\"authenticated\":true,"
	    "\"time_us\":1700000000000001,\"sig\":\"" KAT_RESULT "\"}");
	assert_int_equal(vres(p, id), TK_RESULT_OLD_VERSION);
	assert_int_equal(tk_verify_result(key, KEYLEN, "hv1", "vm1", p,
	    strlen(p), id, &why, NULL), TK_RESULT_OLD_VERSION);
	assert_non_null(strstr(why, "upgrade the bridge"));
	assert_string_equal(id, "req-1");
	/* ... with "authenticated" flipped: still v1, never believed. */
	assert_int_equal(vres(subst(q, sizeof(q), p, "\"authenticated\":true",
	    "\"authenticated\":false"), id), TK_RESULT_OLD_VERSION);
	/* A v1 result tampered with, or for another VM: a bad signature. */
	assert_int_equal(vres(subst(q, sizeof(q), p, "\"sent\":true",
	    "\"sent\":false"), id), TK_RESULT_BAD_SIG);
	assert_int_equal(tk_verify_result(key, KEYLEN, "hv1", "vm2", p,
	    strlen(p), id, &why, NULL), TK_RESULT_BAD_SIG);
	assert_int_equal(vres(subst(q, sizeof(q), p, "\"sent\":true",
	    "\"sent\":1"), id), TK_RESULT_MALFORMED);
	/* A newer bridge's result: said so. */
	subst(p, sizeof(p), R_OK, "\"sig_version\":2", "\"sig_version\":3");
	assert_int_equal(tk_verify_result(key, KEYLEN, "hv1", "vm1", p,
	    strlen(p), id, &why, NULL), TK_RESULT_NEW_VERSION);
	assert_non_null(strstr(why, "upgrade qmp2mqtt-ctl"));

	/* Round trip: what tk_sign_result signs, tk_verify_result takes. */
	for (k = 0; k < 2; k++) {
		struct tk_result_fields	 f = res_ref;
		char			 hex[TK_SIG_HEX + 1];

		f.id = k == 0 ? NULL : "x";
		f.authenticated = (int)k;
		assert_int_equal(tk_sign_result(key, KEYLEN, &f, hex), 0);
		snprintf(p, sizeof(p), "{\"schema\":1,\"id\":%s,\"host\":\"hv1\","
		    "\"vm\":\"vm1\",\"status\":\"rejected\",\"reason\":"
		    "\"bad_signature\",\"error\":{\"class\":\"bad_signature\","
		    "\"desc\":\"line1\\nline2\"},\"colo\":null,\"sent\":false,"
		    "\"authenticated\":%s,\"time_us\":1700000000000002,"
		    "\"sig\":\"%s\",\"sig_version\":2}", k == 0 ? "null" :
		    "\"x\"", k == 0 ? "false" : "true", hex);
		assert_int_equal(vres(p, id), TK_RESULT_OK);
		assert_string_equal(id, k == 0 ? "" : "x");
	}
	/* The outcome names. */
	assert_string_equal(tk_result_auth_name(TK_RESULT_OK), "ok");
	assert_string_equal(tk_result_auth_name(TK_RESULT_OLD_VERSION),
	    "old_version");
	assert_string_equal(tk_result_auth_name((enum tk_result_auth)99),
	    "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_result_sign),
		cmocka_unit_test(test_result_verify),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
