/*
 * tkresult: the canonical string, HMAC and verification of signed
 * takeover results (see tkresult.h).  Pure: no globals, no I/O, no clock.
 * Every refusal fails closed.  The strict JSON parse, the signature format
 * check and the HMAC are takeover.c's (tk_int.h), the same as for
 * requests.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>
#include <openssl/crypto.h>

#include "tk_int.h"
#include "tkresult.h"

#define TK_RPREFIX	"qmp2mqtt-result-v2"

/* --- result signature ----------------------------------------------- */

/* A canonical string being built; err is set once anything failed. */
struct canon {
	char	*p;
	size_t	 n, cap;
	int	 err;
};

/* Appends s[0..n) to c (on failure c->err is set, c->p freed). */
static void
canon_put(struct canon *c, const char *s, size_t n)
{
	char	*np;
	size_t	 cap;

	if (c->err)
		return;
	if (n > SIZE_MAX - c->n - 1) {
		c->err = 1;
		return;
	}
	if (c->n + n + 1 > c->cap) {
		cap = c->cap != 0 ? c->cap : 256;
		while (cap < c->n + n + 1)
			cap = cap > SIZE_MAX / 2 ? c->n + n + 1 : cap * 2;
		if ((np = realloc(c->p, cap)) == NULL) {
			free(c->p);
			c->p = NULL;
			c->err = 1;
			return;
		}
		c->p = np;
		c->cap = cap;
	}
	memcpy(c->p + c->n, s, n);
	c->n += n;
	c->p[c->n] = '\0';
}

/* Appends '\n' and the decimal v. */
static void
canon_int(struct canon *c, int64_t v)
{
	char	b[32];
	int	n;

	n = snprintf(b, sizeof(b), "\n%" PRId64, v);
	if (n < 0 || (size_t)n >= sizeof(b)) {
		c->err = 1;
		return;
	}
	canon_put(c, b, (size_t)n);
}

/* Appends '\n' and s as "<length>:<bytes>", or "-" for NULL. */
static void
canon_str(struct canon *c, const char *s)
{
	size_t	n;
	char	b[32];
	int	k;

	if (s == NULL) {
		canon_put(c, "\n-", 2);
		return;
	}
	n = strlen(s);
	k = snprintf(b, sizeof(b), "\n%zu:", n);
	if (k < 0 || (size_t)k >= sizeof(b)) {
		c->err = 1;
		return;
	}
	canon_put(c, b, (size_t)k);
	canon_put(c, s, n);
}

/*
 * Returns the v2 result canonical string of f in a new buffer with its
 * length in *np, or NULL (a required field NULL, error or colo half set,
 * no memory).  See tkresult.h for the format.
 */
static char *
rcanon_alloc(const struct tk_result_fields *f, size_t *np)
{
	struct canon	c = { NULL, 0, 0, 0 };

	if (f == NULL || f->host == NULL || f->vm == NULL ||
	    f->status == NULL || f->reason == NULL ||
	    (f->error_class == NULL) != (f->error_desc == NULL) ||
	    (f->colo_mode == NULL &&
	    (f->colo_last_mode != NULL || f->colo_reason != NULL)))
		return NULL;
	canon_put(&c, TK_RPREFIX, strlen(TK_RPREFIX));
	canon_int(&c, f->schema);
	canon_str(&c, f->host);
	canon_str(&c, f->vm);
	canon_str(&c, f->id);
	canon_str(&c, f->status);
	canon_str(&c, f->reason);
	canon_str(&c, f->error_class);
	canon_str(&c, f->error_desc);
	canon_str(&c, f->colo_mode);
	canon_str(&c, f->colo_last_mode);
	canon_str(&c, f->colo_reason);
	canon_put(&c, f->sent ? "\n1" : "\n0", 2);
	canon_put(&c, f->authenticated ? "\n1" : "\n0", 2);
	canon_int(&c, f->time_us);
	if (c.err || c.n >= INT_MAX) {
		free(c.p);
		return NULL;
	}
	*np = c.n;
	return c.p;
}

/* Returns the length of the result canonical string, or -1. */
int
tk_result_canonical(char *buf, size_t len, const struct tk_result_fields *f)
{
	char	*s;
	size_t	 n = 0;

	s = rcanon_alloc(f, &n);
	return tk_canon_copy(s, n, buf, len);
}

/* Writes the lowercase hex HMAC of the result into hex.  0, or -1. */
int
tk_sign_result(const unsigned char *key, size_t keylen,
    const struct tk_result_fields *f, char hex[TK_SIG_HEX + 1])
{
	char	*s;
	size_t	 n = 0;

	s = rcanon_alloc(f, &n);
	return tk_canon_mac(key, keylen, s, n, hex);
}

/* Returns the short name of an outcome of tk_verify_result(). */
const char *
tk_result_auth_name(enum tk_result_auth a)
{
	switch (a) {
	case TK_RESULT_OK:		return "ok";
	case TK_RESULT_UNSIGNED:	return "unsigned";
	case TK_RESULT_BAD_SIG:		return "bad_sig";
	case TK_RESULT_MALFORMED:	return "malformed";
	case TK_RESULT_OLD_VERSION:	return "old_version";
	case TK_RESULT_NEW_VERSION:	return "new_version";
	}
	return "unknown";
}

/* Sets *why to msg.  Returns a. */
static enum tk_result_auth
rbad(const char **why, enum tk_result_auth a, const char *msg)
{
	*why = msg;
	return a;
}

/*
 * Reads the string member key of o into *s: 1 when a string, 0 when null
 * and nullable, -1 when absent or of another type.
 */
static int
member_str(json_object *o, const char *key, int nullable, const char **s)
{
	json_object	*v;

	*s = NULL;
	if (!json_object_object_get_ex(o, key, &v))
		return -1;
	if (v == NULL || json_object_is_type(v, json_type_null))
		return nullable ? 0 : -1;
	if (!json_object_is_type(v, json_type_string))
		return -1;
	*s = json_object_get_string(v);
	return 1;
}

/* Reads the boolean member key of o into *b.  0, or -1. */
static int
member_bool(json_object *o, const char *key, int *b)
{
	json_object	*v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_boolean))
		return -1;
	*b = json_object_get_boolean(v) ? 1 : 0;
	return 0;
}

/*
 * Reads the integer member key of o into *t: it must be positive and
 * representable as int64_t (json-c would saturate a larger one, so that
 * two payloads would verify alike).  0, or -1.
 */
static int
member_pos_int(json_object *o, const char *key, int64_t *t)
{
	json_object	*v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_int))
		return -1;
	*t = json_object_get_int64(v);
	if (*t <= 0 || json_object_get_uint64(v) != (uint64_t)*t)
		return -1;
	return 0;
}

/* 1 when every member name of o is one of names[0..n), else 0. */
static int
members_known(json_object *o, const char *const *names, size_t n)
{
	size_t	k;

	json_object_object_foreach(o, key, val) {
		(void)val;
		for (k = 0; k < n; k++)
			if (strcmp(key, names[k]) == 0)
				break;
		if (k == n)
			return 0;
	}
	return 1;
}

/* Compares the HMAC of canon[0..n) with sig in constant time: 1 if equal. */
static int
mac_equal(const unsigned char *key, size_t keylen, const char *canon,
    size_t n, const char *sig)
{
	char	want[TK_SIG_HEX + 1];
	int	eq;

	if (tk_mac_hex(key, keylen, canon, n, want) == -1)
		return 0;
	eq = CRYPTO_memcmp(want, sig, TK_SIG_HEX) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	return eq;
}

/*
 * A result without "sig_version": checks whether sig is a valid v1
 * signature (a bridge older than this code) over the v1 canonical string
 *   "qmp2mqtt-result-v1\n<host>\n<vm>\n<id>\n<status>\n<reason>\n<sent>
 *    \n<time_us>"
 * so that the caller can say so.  Returns TK_RESULT_OLD_VERSION when it
 * is (never TK_RESULT_OK: v1 leaves "authenticated" unsigned), else
 * TK_RESULT_BAD_SIG or TK_RESULT_MALFORMED, with *why set.
 */
static enum tk_result_auth
result_check_v1(const unsigned char *key, size_t keylen, const char *host,
    const char *vm, json_object *o, const char *sig, const char **why)
{
	const char	*id, *h, *v, *st, *rs;
	char		*s;
	int64_t		 t;
	int		 sent, n, eq;

	if (member_str(o, "id", 1, &id) == -1 ||
	    member_str(o, "host", 0, &h) == -1 ||
	    member_str(o, "vm", 0, &v) == -1 ||
	    member_str(o, "status", 0, &st) == -1 ||
	    member_str(o, "reason", 0, &rs) == -1 ||
	    member_bool(o, "sent", &sent) == -1 ||
	    member_pos_int(o, "time_us", &t) == -1)
		return rbad(why, TK_RESULT_MALFORMED, "no sig_version, and "
		    "not a v1 result either");
	if (host == NULL || vm == NULL || strcmp(h, host) != 0 ||
	    strcmp(v, vm) != 0)
		return rbad(why, TK_RESULT_BAD_SIG, "result for another "
		    "host or VM");
	if (id == NULL)
		id = "";
	n = snprintf(NULL, 0, "qmp2mqtt-result-v1\n%s\n%s\n%s\n%s\n%s\n%c\n%"
	    PRId64, h, v, id, st, rs, sent ? '1' : '0', t);
	if (n < 0 || n == INT_MAX || (s = malloc((size_t)n + 1)) == NULL)
		return rbad(why, TK_RESULT_BAD_SIG, "out of memory");
	(void)snprintf(s, (size_t)n + 1, "qmp2mqtt-result-v1\n%s\n%s\n%s\n%s"
	    "\n%s\n%c\n%" PRId64, h, v, id, st, rs, sent ? '1' : '0', t);
	eq = mac_equal(key, keylen, s, (size_t)n, sig);
	free(s);
	if (!eq)
		return rbad(why, TK_RESULT_BAD_SIG, "signature does not match "
		    "(no sig_version: v1)");
	return rbad(why, TK_RESULT_OLD_VERSION, "signed by a bridge older "
	    "than this client (result signature v1, which does not cover "
	    "authenticated, error, colo and schema): upgrade the bridge");
}

/*
 * Checks the members of the result object o against (host, vm) and its
 * "sig".  Returns a tk_result_auth outcome with *why set (NULL for
 * TK_RESULT_OK).
 */
static enum tk_result_auth
result_check(const unsigned char *key, size_t keylen, const char *host,
    const char *vm, json_object *o, const char **why)
{
	static const char *const top[] = { "schema", "id", "host", "vm",
	    "status", "reason", "error", "colo", "sent", "authenticated",
	    "time_us", "sig", "sig_version" };
	static const char *const err_names[] = { "class", "desc" };
	static const char *const colo_names[] = { "mode", "last_mode",
	    "reason" };
	struct tk_result_fields	 f;
	json_object		*v;
	const char		*sig;
	char			*s;
	size_t			 n;
	int64_t			 ver;
	int			 eq;

	if (!json_object_object_get_ex(o, "sig", &v))
		return rbad(why, TK_RESULT_UNSIGNED, "no sig");
	if (member_str(o, "sig", 0, &sig) != 1 || strlen(sig) != TK_SIG_HEX ||
	    !tk_is_sig_hex(sig, TK_SIG_HEX))
		return rbad(why, TK_RESULT_BAD_SIG, "sig is not 64 lowercase "
		    "hex digits");
	if (!json_object_object_get_ex(o, "sig_version", &v))
		return result_check_v1(key, keylen, host, vm, o, sig, why);
	if (member_pos_int(o, "sig_version", &ver) == -1)
		return rbad(why, TK_RESULT_MALFORMED, "sig_version must be a "
		    "positive integer");
	if (ver > TK_RESULT_VERSION)
		return rbad(why, TK_RESULT_NEW_VERSION, "signed by a bridge "
		    "newer than this client (result sig_version above 2): "
		    "upgrade qmp2mqtt-ctl");
	if (ver != TK_RESULT_VERSION)
		return rbad(why, TK_RESULT_MALFORMED, "sig_version must be 2");
	if (!members_known(o, top, sizeof(top) / sizeof(top[0])))
		return rbad(why, TK_RESULT_MALFORMED, "unknown field (not "
		    "covered by the signature)");

	memset(&f, 0, sizeof(f));
	if (member_pos_int(o, "schema", &f.schema) == -1)
		return rbad(why, TK_RESULT_MALFORMED, "schema missing or not "
		    "a positive integer");
	if (member_str(o, "id", 1, &f.id) == -1)
		return rbad(why, TK_RESULT_MALFORMED, "id missing or not a "
		    "string or null");
	if (member_str(o, "host", 0, &f.host) == -1 ||
	    member_str(o, "vm", 0, &f.vm) == -1 ||
	    member_str(o, "status", 0, &f.status) == -1 ||
	    member_str(o, "reason", 0, &f.reason) == -1)
		return rbad(why, TK_RESULT_MALFORMED, "host, vm, status or "
		    "reason missing or not a string");
	if (!json_object_object_get_ex(o, "error", &v))
		return rbad(why, TK_RESULT_MALFORMED, "error missing");
	if (v != NULL && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_object) ||
		    !members_known(v, err_names, 2) ||
		    member_str(v, "class", 0, &f.error_class) == -1 ||
		    member_str(v, "desc", 0, &f.error_desc) == -1)
			return rbad(why, TK_RESULT_MALFORMED, "error must be "
			    "null or {\"class\",\"desc\"} with strings");
	}
	if (!json_object_object_get_ex(o, "colo", &v))
		return rbad(why, TK_RESULT_MALFORMED, "colo missing");
	if (v != NULL && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_object) ||
		    !members_known(v, colo_names, 3) ||
		    member_str(v, "mode", 0, &f.colo_mode) == -1 ||
		    member_str(v, "last_mode", 1, &f.colo_last_mode) == -1 ||
		    member_str(v, "reason", 1, &f.colo_reason) == -1)
			return rbad(why, TK_RESULT_MALFORMED, "colo must be "
			    "null or {\"mode\",\"last_mode\",\"reason\"} with "
			    "strings (last_mode, reason: or null)");
	}
	if (member_bool(o, "sent", &f.sent) == -1)
		return rbad(why, TK_RESULT_MALFORMED, "sent missing or not a "
		    "boolean");
	if (member_bool(o, "authenticated", &f.authenticated) == -1)
		return rbad(why, TK_RESULT_MALFORMED, "authenticated missing "
		    "or not a boolean");
	if (member_pos_int(o, "time_us", &f.time_us) == -1)
		return rbad(why, TK_RESULT_MALFORMED, "time_us missing or not "
		    "a positive integer");
	/* A result for another VM is no answer for this one. */
	if (host == NULL || vm == NULL || strcmp(f.host, host) != 0 ||
	    strcmp(f.vm, vm) != 0)
		return rbad(why, TK_RESULT_BAD_SIG, "result for another host "
		    "or VM");
	if ((s = rcanon_alloc(&f, &n)) == NULL)
		return rbad(why, TK_RESULT_BAD_SIG, "out of memory");
	eq = mac_equal(key, keylen, s, n, sig);
	free(s);
	if (!eq)
		return rbad(why, TK_RESULT_BAD_SIG, "signature does not match");
	*why = NULL;
	return TK_RESULT_OK;
}

/*
 * Parses the result payload[0..len) as strictly as a request (RFC 8259
 * tokens, no NUL, no duplicate member, no trailing data) and verifies it
 * for (host, vm).  Returns a tk_result_auth outcome; id, why and tree as
 * tkresult.h says.
 */
enum tk_result_auth
tk_verify_result(const unsigned char *key, size_t keylen, const char *host,
    const char *vm, const void *payload, size_t len, char id[TK_ID_MAX + 1],
    const char **why, struct json_object **tree)
{
	json_object		*o;
	const char		*s, *dummy;
	enum tk_result_auth	 r;

	if (why == NULL)
		why = &dummy;
	*why = NULL;
	if (id != NULL)
		id[0] = '\0';
	if (tree != NULL)
		*tree = NULL;
	if ((o = tk_strict_object(payload, len, TK_RESULT_MAX, why)) == NULL)
		return TK_RESULT_MALFORMED;
	if (id != NULL && member_str(o, "id", 0, &s) == 1 &&
	    strlen(s) <= TK_ID_MAX)
		memcpy(id, s, strlen(s) + 1);
	r = result_check(key, keylen, host, vm, o, why);
	if (r == TK_RESULT_OK && tree != NULL)
		*tree = o;
	else
		json_object_put(o);
	return r;
}
