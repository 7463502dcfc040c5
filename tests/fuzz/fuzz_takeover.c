/*
 * libFuzzer target for src/takeover.c and src/tkresult.c.
 *
 * The input is a takeover request payload.  It is parsed with and without
 * HMAC auth, and every accepted request is checked against the contract
 * in takeover.h and against json-c's lenient parser; its signature,
 * time window and replay cache handling are exercised.  The same bytes
 * are verified as a takeover result (tk_verify_result's contract: why,
 * id, and the tree handed back for a verified result only).  The same bytes
 * also drive a script of replay cache operations that is checked step by
 * step against a simple model.  Beyond "no crash, no leak, no UB", any
 * disagreement aborts.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *     $(pkg-config --cflags json-c) -Isrc -o fuzz_takeover \
 *     tests/fuzz/fuzz_takeover.c src/takeover.c src/tkresult.c src/tkcache.c \
 *     -ljson-c -lcrypto
 *   ./fuzz_takeover -max_total_time=60 tests/fuzz/corpus/takeover
 *
 * The fixed key is "fuzz-key"; a request signed with it for host "hv1",
 * vm "vm1" verifies (see the corpus).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>

#include "takeover.h"
#include "tkcache.h"
#include "tkresult.h"

#define HOST	"hv1"
#define VM	"vm1"
#define NOW	INT64_C(1700000000000000)
#define US	INT64_C(1000000)

static const unsigned char	fkey[] = "fuzz-key";
#define FKEYLEN	(sizeof(fkey) - 1)

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static _Noreturn void
die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_takeover: %s%s%s\n", what,
	    detail != NULL ? ": " : "", detail != NULL ? detail : "");
	abort();
}

/* 1 if the array a of n bytes holds a NUL-terminated string, else 0. */
static int
terminated(const char *a, size_t n)
{
	return memchr(a, '\0', n) != NULL;
}

/* 1 if s is a valid request id per takeover.h, else 0. */
static int
id_ok(const char *s)
{
	size_t	i, n = strlen(s);

	if (n < 1 || n > TK_ID_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return 0;
	return 1;
}

/* 1 if s is 64 lowercase hex digits, else 0. */
static int
sig_ok(const char *s)
{
	size_t	i;

	if (strlen(s) != TK_SIG_HEX)
		return 0;
	for (i = 0; i < TK_SIG_HEX; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* Checks what tk_parse() promises about req and why, whatever r is. */
static void
check_parsed(enum tk_reason r, const struct tk_request *req,
    const char *why, int need_sig, size_t size)
{
	if (r != TK_OK && r != TK_BAD_REQUEST)
		die("tk_parse: unexpected reason", tk_reason_name(r));
	if (!terminated(req->id, sizeof(req->id)) ||
	    !terminated(req->expect_mode, sizeof(req->expect_mode)) ||
	    !terminated(req->sig, sizeof(req->sig)))
		die("tk_parse: unterminated field", NULL);
	if (req->id[0] != '\0' && !id_ok(req->id))
		die("tk_parse: invalid id filled", req->id);
	if (r == TK_BAD_REQUEST) {
		if (why == NULL || *why == '\0')
			die("tk_parse: refusal without description", NULL);
		if (req->issued_us != 0 || req->expect_mode[0] != '\0' ||
		    req->sig[0] != '\0' || req->force != 0)
			die("tk_parse: refusal leaves fields set", why);
		return;
	}
	if (why != NULL)
		die("tk_parse: description on success", why);
	if (size < 1 || size > TK_PAYLOAD_MAX)
		die("tk_parse: accepted a payload of bad size", NULL);
	if (!id_ok(req->id))
		die("tk_parse: accepted without valid id", req->id);
	if (req->issued_us <= 0)
		die("tk_parse: accepted issued_us <= 0", NULL);
	if (strcmp(req->expect_mode, "") != 0 &&
	    strcmp(req->expect_mode, "primary") != 0 &&
	    strcmp(req->expect_mode, "secondary") != 0)
		die("tk_parse: bad expect_mode", req->expect_mode);
	if (req->force != 0 && req->force != 1)
		die("tk_parse: force neither 0 nor 1", NULL);
	if (req->sig[0] != '\0' && !sig_ok(req->sig))
		die("tk_parse: bad sig", req->sig);
	if (!need_sig && req->sig[0] != '\0')
		die("tk_parse: sig kept without HMAC auth", req->sig);
}

/*
 * An accepted request must mean the same to json-c's lenient parser: the
 * same id, issued_us, expect_mode and force, and nothing but the known keys.
 */
static void
check_lenient(const uint8_t *data, size_t size, const struct tk_request *req)
{
	json_object	*o, *v;
	char		*text;
	int		 n = 0;

	if ((text = malloc(size + 1)) == NULL)
		return;
	memcpy(text, data, size);
	text[size] = '\0';
	o = json_tokener_parse(text);
	free(text);
	if (o == NULL || !json_object_is_type(o, json_type_object))
		die("accepted, but json-c does not read an object", NULL);
	if (!json_object_object_get_ex(o, "id", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    strcmp(json_object_get_string(v), req->id) != 0)
		die("accepted id differs from json-c's", req->id);
	n++;
	if (!json_object_object_get_ex(o, "issued_us", &v) ||
	    !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) != req->issued_us)
		die("accepted issued_us differs from json-c's", NULL);
	n++;
	if (json_object_object_get_ex(o, "expect_mode", &v)) {
		if (!json_object_is_type(v, json_type_string) ||
		    strcmp(json_object_get_string(v), req->expect_mode) != 0)
			die("accepted expect_mode differs", req->expect_mode);
		n++;
	} else if (req->expect_mode[0] != '\0')
		die("expect_mode from nowhere", req->expect_mode);
	if (json_object_object_get_ex(o, "force", &v)) {
		if (!json_object_is_type(v, json_type_boolean) ||
		    json_object_get_boolean(v) != req->force)
			die("accepted force differs", NULL);
		n++;
	} else if (req->force)
		die("force from nowhere", NULL);
	if (json_object_object_get_ex(o, "sig", &v)) {
		if (!json_object_is_type(v, json_type_string))
			die("accepted a non-string sig", NULL);
		if (req->sig[0] != '\0' &&
		    strcmp(json_object_get_string(v), req->sig) != 0)
			die("accepted sig differs", req->sig);
		n++;
	} else if (req->sig[0] != '\0')
		die("sig from nowhere", req->sig);
	if (json_object_object_length(o) != n)
		die("accepted with unknown fields", NULL);
	json_object_put(o);
}

/* The time window, computed in 128 bits. */
static void
check_time(int64_t issued, int64_t now, unsigned window)
{
	__int128	d = (__int128)now - issued;
	enum tk_reason	want;

	if (d < 0)
		d = -d;
	want = d <= (__int128)window * US ? TK_OK : TK_STALE;
	if (tk_check_time(issued, now, window) != want)
		die("tk_check_time disagrees with 128-bit arithmetic", NULL);
}

/* Signature and cache checks for an accepted request. */
static void
check_accepted(const uint8_t *data, size_t size, const struct tk_request *req,
    const struct tk_request *sreq, int sok)
{
	struct tk_request	 r2;
	struct tk_cache		*c;
	unsigned char		 d[32], d2[32];
	const char		*res;
	char			 hex[TK_SIG_HEX + 1], buf[512];
	size_t			 pos;
	int			 n;
	struct tk_binding	 bind = { HOST, VM, NULL, NULL, 0 };
	struct tk_binding	 rbind = { HOST, VM, "r/t", data, size };

	n = tk_canonical(buf, sizeof(buf), &bind, req);
	if (n < 0 || (size_t)n != strlen(buf))
		die("tk_canonical failed on an accepted request", req->id);
	if (tk_canonical(NULL, 0, &bind, req) != n)
		die("tk_canonical sizing disagrees", req->id);
	if (tk_sign(fkey, FKEYLEN, &bind, req, hex) != 0 || !sig_ok(hex))
		die("tk_sign failed on an accepted request", req->id);

	/* Without a signature, or the one sent: only the right one passes. */
	if (tk_verify(fkey, FKEYLEN, HOST, VM, req) != TK_BAD_SIGNATURE)
		die("unsigned request verified", NULL);
	if (sok) {
		if ((tk_verify(fkey, FKEYLEN, HOST, VM, sreq) == TK_OK) !=
		    (strcmp(sreq->sig, hex) == 0))
			die("tk_verify disagrees with tk_sign", sreq->sig);
	}
	r2 = *req;
	memcpy(r2.sig, hex, sizeof(hex));
	if (tk_verify(fkey, FKEYLEN, HOST, VM, &r2) != TK_OK)
		die("own signature refused", hex);
	if (tk_verify(fkey, FKEYLEN, HOST, "vm2", &r2) != TK_BAD_SIGNATURE)
		die("signature valid for another vm", hex);
	/* Bound to a Response Topic and the input as Correlation Data. */
	if (size <= TK_CORR_MAX) {
		if (tk_verify_bound(fkey, FKEYLEN, &rbind, &r2) !=
		    TK_BAD_SIGNATURE)
			die("signature valid with a response topic", hex);
		if (tk_sign(fkey, FKEYLEN, &rbind, req, r2.sig) != 0 ||
		    tk_verify_bound(fkey, FKEYLEN, &rbind, &r2) != TK_OK)
			die("bound signature refused", r2.sig);
		if (size > 0 && tk_verify(fkey, FKEYLEN, HOST, VM, &r2) !=
		    TK_BAD_SIGNATURE)
			die("bound signature valid without binding", r2.sig);
		memcpy(r2.sig, hex, sizeof(hex));
	}
	r2.force = !r2.force;
	if (tk_verify(fkey, FKEYLEN, HOST, VM, &r2) != TK_BAD_SIGNATURE)
		die("signature valid with force flipped", hex);
	r2.force = !r2.force;
	pos = size % ((size_t)TK_SIG_HEX * 8);
	r2.sig[pos / 8] ^= (char)(1u << (pos % 8));
	if (tk_verify(fkey, FKEYLEN, HOST, VM, &r2) != TK_BAD_SIGNATURE)
		die("flipped signature accepted", r2.sig);

	check_time(req->issued_us, NOW, 300);
	if (req->issued_us <= INT64_MAX - 301 * US) {
		check_time(req->issued_us, req->issued_us + 300 * US, 300);
		check_time(req->issued_us, req->issued_us + 300 * US + 1, 300);
	}
	check_time(req->issued_us, INT64_MIN, (unsigned)size);
	check_time(req->issued_us, INT64_MAX, UINT32_MAX);

	tk_digest(data, size, d);
	memcpy(d2, d, sizeof(d2));
	d2[size % 32] ^= 1;
	if ((c = tk_cache_new(4)) == NULL)
		return;
	if (tk_cache_check(c, HOST, VM, req->id, d, NOW, 600 * US, &res) !=
	    TK_SEEN_NEW || res != NULL)
		die("cache: not new", req->id);
	if (tk_cache_check(c, HOST, VM, req->id, d, NOW + 1, 600 * US,
	    &res) != TK_SEEN_DUPLICATE || res != NULL)
		die("cache: not a running duplicate", req->id);
	if (tk_cache_set_result(c, HOST, VM, req->id, req->id) != 0)
		die("cache: set_result failed", req->id);
	if (tk_cache_check(c, HOST, VM, req->id, d, NOW + 2, 600 * US,
	    &res) != TK_SEEN_DUPLICATE || res == NULL ||
	    strcmp(res, req->id) != 0)
		die("cache: duplicate without result", req->id);
	if (tk_cache_check(c, HOST, VM, req->id, d2, NOW + 3, 600 * US,
	    &res) != TK_SEEN_REPLAY || res != NULL)
		die("cache: not a replay", req->id);
	if (tk_cache_check(c, HOST, "vm2", req->id, d2, NOW + 3, 600 * US,
	    &res) != TK_SEEN_NEW)
		die("cache: vm not part of the key", req->id);
	if (tk_cache_check(c, HOST, VM, req->id, d2, NOW + 600 * US, 600 * US,
	    &res) != TK_SEEN_NEW)
		die("cache: not expired", req->id);
	if (tk_cache_size(c) != 2)
		die("cache: wrong size", req->id);
	tk_cache_free(c);
}

/* --- the replay cache against a model ------------------------------- */

#define MODEL_MAX	5
#define NKEYS		8

static const char *const keys[NKEYS][3] = {
	{ "hv1", "vm1", "a" }, { "hv1", "vm1", "b" }, { "hv1", "vm2", "a" },
	{ "hv2", "vm1", "a" }, { "ab", "c", "x" }, { "a", "bc", "x" },
	{ "a", "b", "cx" }, { "", "", "abcx" },
};

struct model_entry {
	int		 used;
	int		 key, dig;
	int64_t		 recorded;
	int		 restored;	/* put back by tk_cache_restore() */
	int		 result;	/* -1: none */
};

/* 1 while an entry recorded at rec is live at now for ttl. */
static int
model_live(int64_t rec, int64_t now, int64_t ttl)
{
	return now < (rec > INT64_MAX - ttl ? INT64_MAX : rec + ttl);
}

/*
 * Runs the input as a script of cache operations, two bytes each: the
 * first picks the key (3 bits), the digest (2 bits) and the operation,
 * the second how far the clock moves.
 */
static void
run_cache_script(const uint8_t *data, size_t size)
{
	struct model_entry	 m[MODEL_MAX];
	struct tk_cache		*c;
	unsigned char		 d[32];
	const char		*res;
	char			 rbuf[16];
	int64_t			 now = NOW, ttl;
	size_t			 i, j, count = 0;
	int			 k, dg, op, nres = 0, want, got;
	int			 found;

	if ((c = tk_cache_new(MODEL_MAX)) == NULL)
		return;
	memset(m, 0, sizeof(m));
	for (i = 0; i + 1 < size && i < 512; i += 2) {
		k = data[i] & 7;
		dg = (data[i] >> 3) & 3;
		op = data[i] >> 5;
		now += (int64_t)data[i + 1] * 3;
		ttl = op == 7 ? 40 : 300;
		for (j = 0, found = -1; j < MODEL_MAX; j++)
			if (m[j].used && m[j].key == k)
				found = (int)j;

		if (op == 6) {
			snprintf(rbuf, sizeof(rbuf), "r%d", nres);
			got = tk_cache_set_result(c, keys[k][0], keys[k][1],
			    keys[k][2], rbuf);
			if (got != (found >= 0 ? 0 : -1))
				die("model: set_result", rbuf);
			if (found >= 0)
				m[found].result = nres;
			nres++;
			continue;
		}

		memset(d, 0, sizeof(d));
		d[0] = (unsigned char)dg;
		if (op == 5) {
			got = tk_cache_restore(c, keys[k][0], keys[k][1],
			    keys[k][2], d, now);
			if (found >= 0) {
				m[found].used = 0;
				count--;
			}
			if (count >= MODEL_MAX)
				want = -1;
			else {
				for (j = 0; m[j].used; j++)
					;
				m[j] = (struct model_entry){ 1, k, dg, now, 1,
				    -1 };
				count++;
				want = 0;
			}
			if (got != want)
				die("model: tk_cache_restore disagrees", NULL);
			if (tk_cache_size(c) != count)
				die("model: size disagrees", NULL);
			continue;
		}
		got = (int)tk_cache_check(c, keys[k][0], keys[k][1],
		    keys[k][2], d, now, ttl, &res);
		if (found >= 0 && model_live(m[found].recorded, now, ttl)) {
			if (m[found].restored && m[found].result < 0)
				want = TK_SEEN_REPLAY;
			else if (m[found].dig == dg) {
				want = TK_SEEN_DUPLICATE;
				if (m[found].result < 0 ? res != NULL :
				    (res == NULL || atoi(res + 1) !=
				    m[found].result))
					die("model: duplicate result", res);
			} else
				want = TK_SEEN_REPLAY;
		} else {
			if (found >= 0) {
				m[found].used = 0;
				count--;
			}
			if (count >= MODEL_MAX)
				for (j = 0; j < MODEL_MAX; j++)
					if (m[j].used && !model_live(
					    m[j].recorded, now, ttl)) {
						m[j].used = 0;
						count--;
					}
			if (count >= MODEL_MAX)
				want = TK_SEEN_FULL;
			else {
				for (j = 0; m[j].used; j++)
					;
				m[j] = (struct model_entry){ 1, k, dg, now, 0,
				    -1 };
				count++;
				want = TK_SEEN_NEW;
			}
		}
		if (got != want)
			die("model: tk_cache_check disagrees", keys[k][2]);
		if (want != TK_SEEN_DUPLICATE && res != NULL)
			die("model: result outside a duplicate", res);
		if (tk_cache_size(c) != count)
			die("model: size disagrees", NULL);
	}
	tk_cache_free(c);
}

/*
 * The bytes as a takeover result: tk_verify_result() keeps its contract
 * in takeover.h whatever they are.
 */
static void
check_result(const uint8_t *data, size_t size)
{
	enum tk_result_auth	 r;
	json_object		*tree = (json_object *)&r;
	const char		*why = "unset";
	char			 id[TK_ID_MAX + 1];

	memset(id, 0xa5, sizeof(id));
	r = tk_verify_result(fkey, FKEYLEN, HOST, VM, data, size, id, &why,
	    &tree);
	if (!terminated(id, sizeof(id)))
		die("result id not terminated", NULL);
	if (r == TK_RESULT_OK) {
		if (why != NULL || tree == NULL ||
		    !json_object_is_type(tree, json_type_object))
			die("verified result without its tree", NULL);
		json_object_put(tree);
	} else if (why == NULL || tree != NULL)
		die("refused result without why, or with a tree",
		    tk_result_auth_name(r));
	if (tk_verify_result(fkey, FKEYLEN, HOST, VM, data, size, NULL,
	    NULL, NULL) != r)
		die("tk_verify_result is not deterministic", NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tk_request	 req[2], again;
	const char		*why[2], *w;
	enum tk_reason		 r[2];
	int			 ns;

	for (ns = 0; ns < 2; ns++) {
		memset(&req[ns], 0xa5, sizeof(req[ns]));
		why[ns] = NULL;
		r[ns] = tk_parse(data, size, ns, &req[ns], &why[ns]);
		check_parsed(r[ns], &req[ns], why[ns], ns, size);
		/* Deterministic, whatever req held before. */
		memset(&again, 0, sizeof(again));
		if (tk_parse(data, size, ns, &again, &w) != r[ns] ||
		    strcmp(again.id, req[ns].id) != 0 ||
		    again.issued_us != req[ns].issued_us ||
		    strcmp(again.expect_mode, req[ns].expect_mode) != 0 ||
		    again.force != req[ns].force ||
		    strcmp(again.sig, req[ns].sig) != 0)
			die("tk_parse is not deterministic", NULL);
	}
	/* need_sig changes nothing but the sig. */
	if (strcmp(req[0].id, req[1].id) != 0)
		die("need_sig changes the id", req[0].id);
	if (r[1] == TK_OK && r[0] != TK_OK)
		die("accepted with HMAC auth only", why[0]);
	if (r[0] == TK_OK && r[1] != TK_OK && strcmp(why[1], "missing sig") != 0)
		die("refused with HMAC auth only", why[1]);
	if (r[0] == TK_OK && r[1] == TK_OK &&
	    (req[0].issued_us != req[1].issued_us ||
	    strcmp(req[0].expect_mode, req[1].expect_mode) != 0))
		die("need_sig changes the request", NULL);

	if (r[0] == TK_OK) {
		check_lenient(data, size, &req[0]);
		check_accepted(data, size, &req[0], &req[1], r[1] == TK_OK);
	}
	run_cache_script(data, size);
	check_result(data, size);
	return 0;
}
