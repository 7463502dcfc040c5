/*
 * takeover: strict parsing, HMAC verification and time window of remote
 * takeover requests (see takeover.h); the strict JSON parse, the signature
 * format check and the HMAC are shared with tkresult.c through tk_int.h.
 * Pure: no globals, no I/O, no clock.  Every refusal fails closed.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "takeover.h"
#include "tk_int.h"

#define TK_PREFIX	"qmp2mqtt-takeover-v2"
#define TK_MAC_LEN	32		/* bytes of an HMAC-SHA256 */
/*
 * Nesting json-c may build: a request is flat, a result has objects in
 * its object; deeper is malformed.
 */
#define TK_DEPTH	3
#define US_PER_S	UINT64_C(1000000)

/* Returns the wire name of r, or "unknown" for a value outside the enum. */
const char *
tk_reason_name(enum tk_reason r)
{
	switch (r) {
	case TK_OK:			return "ok";
	case TK_DISABLED:		return "disabled";
	case TK_BAD_REQUEST:		return "bad_request";
	case TK_BAD_SIGNATURE:		return "bad_signature";
	case TK_STALE:			return "stale";
	case TK_REPLAY:			return "replay";
	case TK_RETAINED:		return "retained";
	case TK_PRECONDITION_FAILED:	return "precondition_failed";
	case TK_NOT_CONNECTED:		return "not_connected";
	case TK_NOT_IN_COLO:		return "not_in_colo";
	case TK_RATE_LIMITED:		return "rate_limited";
	case TK_QEMU_ERROR:		return "qemu_error";
	case TK_TIMEOUT:		return "timeout";
	case TK_PEER_ALIVE:		return "peer_alive";
	case TK_PEER_UNKNOWN:		return "peer_unknown";
	case TK_PEER_TOOK_OVER:		return "peer_took_over";
	case TK_CLASH:			return "clash";
	case TK_STORE_ERROR:		return "store_error";
	case TK_NREASONS:		break;
	}
	return "unknown";
}

/* --- parsing -------------------------------------------------------- */

/* 1 for the four bytes JSON allows between tokens, else 0. */
static int
is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int
is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* 1 if s[0..n) is exactly 64 lowercase hex digits, else 0. */
int
tk_is_sig_hex(const char *s, size_t n)
{
	size_t	i;

	if (n != TK_SIG_HEX)
		return 0;
	for (i = 0; i < n; i++)
		if (!is_digit((unsigned char)s[i]) &&
		    (s[i] < 'a' || s[i] > 'f'))
			return 0;
	return 1;
}

/* The value of the 4 hex digits at p, or -1. */
static long
hex4(const unsigned char *p)
{
	long	v = 0;
	int	k;

	for (k = 0; k < 4; k++) {
		if (!is_hex(p[k]))
			return -1;
		v = v * 16 + (is_digit(p[k]) ? p[k] - '0' :
		    (p[k] | 0x20) - 'a' + 10);
	}
	return v;
}

/*
 * Returns the length of the well-formed UTF-8 sequence (RFC 3629: no
 * overlong form, no surrogate, nothing above U+10FFFF) at p[0..n), whose
 * first byte is >= 0x80, or 0.  json-c's own check lets overlong forms
 * through.
 */
static size_t
utf8_len(const unsigned char *p, size_t n)
{
	unsigned char	lo = 0x80, hi = 0xbf;
	size_t		len, k;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (k = 2; k < len; k++)
		if (p[k] < 0x80 || p[k] > 0xbf)
			return 0;
	return len;
}

/*
 * Skips the string token starting at p[*i] == '"'.  Refuses what json-c
 * lets through: raw control bytes, malformed UTF-8, unpaired surrogate
 * escapes, and \u0000 (which json-c would silently cut a key at, so that
 * "id\u0000x" became "id").  0 with *i past the closing quote, or -1.
 */
static int
lex_string(const unsigned char *p, size_t len, size_t *i)
{
	size_t	j = *i + 1, n;
	long	u, u2;

	while (j < len) {
		if (p[j] == '"') {
			*i = j + 1;
			return 0;
		}
		if (p[j] < 0x20)
			return -1;
		if (p[j] >= 0x80) {
			if ((n = utf8_len(p + j, len - j)) == 0)
				return -1;
			j += n;
			continue;
		}
		if (p[j] != '\\') {
			j++;
			continue;
		}
		if (++j >= len)
			return -1;
		switch (p[j]) {
		case '"': case '\\': case '/':
		case 'b': case 'f': case 'n': case 'r': case 't':
			j++;
			break;
		case 'u':
			if (len - j < 5 || (u = hex4(p + j + 1)) <= 0 ||
			    (u >= 0xdc00 && u <= 0xdfff))
				return -1;
			j += 5;
			if (u < 0xd800 || u > 0xdbff)
				break;
			/* A high surrogate: its low half must follow. */
			if (len - j < 6 || p[j] != '\\' || p[j + 1] != 'u' ||
			    (u2 = hex4(p + j + 2)) < 0xdc00 || u2 > 0xdfff)
				return -1;
			j += 6;
			break;
		default:
			return -1;
		}
	}
	return -1;
}

/*
 * Skips the number token at p[*i], which must follow RFC 8259 exactly
 * (json-c's strict mode still takes "00", "1." and "1e400").  0 with *i
 * past it, or -1.
 */
static int
lex_number(const unsigned char *p, size_t len, size_t *i)
{
	size_t	j = *i;

	if (j < len && p[j] == '-')
		j++;
	if (j < len && p[j] == '0')
		j++;
	else if (j < len && p[j] >= '1' && p[j] <= '9')
		while (j < len && is_digit(p[j]))
			j++;
	else
		return -1;
	if (j < len && p[j] == '.') {
		if (++j >= len || !is_digit(p[j]))
			return -1;
		while (j < len && is_digit(p[j]))
			j++;
	}
	if (j < len && (p[j] == 'e' || p[j] == 'E')) {
		if (++j < len && (p[j] == '+' || p[j] == '-'))
			j++;
		if (j >= len || !is_digit(p[j]))
			return -1;
		while (j < len && is_digit(p[j]))
			j++;
	}
	/* "00", "1.", "1x": the token must end here. */
	if (j < len && (is_digit(p[j]) || p[j] == '.' || p[j] == 'e' ||
	    p[j] == 'E' || p[j] == '-' || p[j] == '+' ||
	    (p[j] >= 'a' && p[j] <= 'z') || (p[j] >= 'A' && p[j] <= 'Z')))
		return -1;
	*i = j;
	return 0;
}

/*
 * A lexical pass over the payload that json-c does not make: every token
 * must be RFC 8259 JSON (json-c's strict mode still accepts single-quoted
 * strings, NaN, Infinity, control bytes in strings...), and the members
 * of the top-level object are counted (the ':' at depth 1) so that a
 * duplicate key, which json-c silently collapses, can be detected.  Only
 * tokens are checked here; json-c checks the grammar.  0 with *members
 * set, or -1.
 */
static int
lex(const unsigned char *p, size_t len, size_t *members)
{
	static const char *const lits[] = { "true", "false", "null" };
	size_t	i = 0, depth = 0, n = 0, l, k;

	while (i < len) {
		switch (p[i]) {
		case ' ': case '\t': case '\n': case '\r': case ',':
			i++;
			break;
		case '{': case '[':
			depth++;
			i++;
			break;
		case '}': case ']':
			if (depth == 0)
				return -1;
			depth--;
			i++;
			break;
		case ':':
			if (depth == 1)
				n++;
			i++;
			break;
		case '"':
			if (lex_string(p, len, &i) == -1)
				return -1;
			break;
		case '-': case '0': case '1': case '2': case '3': case '4':
		case '5': case '6': case '7': case '8': case '9':
			if (lex_number(p, len, &i) == -1)
				return -1;
			break;
		default:
			for (k = 0; k < sizeof(lits) / sizeof(lits[0]); k++) {
				l = strlen(lits[k]);
				if (len - i >= l && memcmp(p + i, lits[k], l) == 0)
					break;
			}
			if (k == sizeof(lits) / sizeof(lits[0]))
				return -1;
			i += l;
			if (i < len && ((p[i] >= 'a' && p[i] <= 'z') ||
			    (p[i] >= 'A' && p[i] <= 'Z') || is_digit(p[i])))
				return -1;
			break;
		}
	}
	*members = n;
	return 0;
}

/* Sets *why to the static description msg.  Returns TK_BAD_REQUEST. */
static enum tk_reason
bad(const char **why, const char *msg)
{
	*why = msg;
	return TK_BAD_REQUEST;
}

/*
 * Reads the string member key of o into *s and *n.  Returns 1 when
 * present and a string, 0 when absent, -1 when present with another type.
 */
static int
get_str(json_object *o, const char *key, const char **s, size_t *n)
{
	json_object	*v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -1;
	*s = json_object_get_string(v);
	*n = (size_t)json_object_get_string_len(v);
	return 1;
}

/*
 * Checks the members of the request object o and fills req.  The id is
 * read first so that a refusal for any other member can name it.
 * Returns TK_OK, or TK_BAD_REQUEST with *why set.
 */
static enum tk_reason
parse_members(json_object *o, int need_sig, struct tk_request *req,
    const char **why)
{
	json_object	*v;
	const char	*s;
	size_t		 n, i;
	int64_t		 t;
	int		 rv;

	if ((rv = get_str(o, "id", &s, &n)) == 0)
		return bad(why, "missing id");
	if (rv == -1)
		return bad(why, "id must be a string");
	if (n < 1 || n > TK_ID_MAX)
		return bad(why, "id must be 1 to 64 bytes");
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return bad(why, "id must be printable ASCII without "
			    "spaces");
	memcpy(req->id, s, n);
	req->id[n] = '\0';

	json_object_object_foreach(o, key, val) {
		(void)val;
		if (strcmp(key, "id") != 0 && strcmp(key, "issued_us") != 0 &&
		    strcmp(key, "expect_mode") != 0 && strcmp(key, "force") != 0 &&
		    strcmp(key, "sig") != 0)
			return bad(why, "unknown field");
	}

	if (!json_object_object_get_ex(o, "issued_us", &v))
		return bad(why, "missing issued_us");
	if (!json_object_is_type(v, json_type_int))
		return bad(why, "issued_us must be an integer");
	t = json_object_get_int64(v);
	if (t <= 0)
		return bad(why, "issued_us must be positive");
	/* json-c saturates a uint64 above INT64_MAX to INT64_MAX. */
	if (json_object_get_uint64(v) != (uint64_t)t)
		return bad(why, "issued_us out of range");
	req->issued_us = t;

	if ((rv = get_str(o, "expect_mode", &s, &n)) == -1)
		return bad(why, "expect_mode must be a string");
	if (rv == 1) {
		if (!(n == 7 && memcmp(s, "primary", 7) == 0) &&
		    !(n == 9 && memcmp(s, "secondary", 9) == 0))
			return bad(why, "expect_mode must be \"primary\" or "
			    "\"secondary\"");
		memcpy(req->expect_mode, s, n);
		req->expect_mode[n] = '\0';
	}

	if (json_object_object_get_ex(o, "force", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return bad(why, "force must be true or false");
		req->force = json_object_get_boolean(v) ? 1 : 0;
	}

	/*
	 * A missing or malformed signature (short, long, uppercase) is not a
	 * bad request: req->sig stays "" and tk_verify() refuses it as a bad
	 * signature.  Without HMAC auth a "sig" is tolerated and ignored.
	 */
	if ((rv = get_str(o, "sig", &s, &n)) == -1)
		return bad(why, "sig must be a string");
	if (rv == 1 && need_sig && tk_is_sig_hex(s, n)) {
		memcpy(req->sig, s, n);
		req->sig[n] = '\0';
	}
	return TK_OK;
}

/* Frees o (NULL or not) and sets *why to msg.  Returns NULL. */
static json_object *
obj_bad(json_object *o, const char **why, const char *msg)
{
	json_object_put(o);
	*why = msg;
	return NULL;
}

/*
 * Parses payload[0..len) as strictly as a request or a result must be
 * (see tk_int.h): at most max bytes, no NUL, RFC 8259 tokens (lex), no
 * nesting deeper than TK_DEPTH, no trailing data, a JSON object without
 * duplicate member.  Returns the object, or NULL with *why set.
 */
json_object *
tk_strict_object(const void *payload, size_t len, size_t max,
    const char **why)
{
	const unsigned char	*p = payload;
	struct json_tokener	*tok;
	json_object		*o;
	size_t			 members, end;
	int			 err;

	if (p == NULL || len == 0)
		return obj_bad(NULL, why, "empty payload");
	if (len > max)
		return obj_bad(NULL, why, "payload too large");
	if (memchr(p, '\0', len) != NULL)
		return obj_bad(NULL, why, "NUL byte in payload");
	if (lex(p, len, &members) == -1)
		return obj_bad(NULL, why, "malformed JSON");
	if ((tok = json_tokener_new_ex(TK_DEPTH)) == NULL)
		return obj_bad(NULL, why, "out of memory");
	json_tokener_set_flags(tok,
	    JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, (const char *)p, (int)len);
	err = json_tokener_get_error(tok) != json_tokener_success;
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (o == NULL || err || end > len)
		return obj_bad(o, why, "malformed JSON");
	for (; end < len; end++)
		if (!is_ws(p[end]))
			return obj_bad(o, why, "trailing data after JSON");
	if (!json_object_is_type(o, json_type_object))
		return obj_bad(o, why, "not a JSON object");
	if ((size_t)json_object_object_length(o) != members)
		return obj_bad(o, why, "duplicate field");
	return o;
}

/*
 * Returns TK_OK with req filled, or TK_BAD_REQUEST with *why (if why is
 * not NULL) set to a static description and req zeroed but for req->id,
 * filled when a valid id was read (never when the payload has a
 * duplicate key, as the id is then ambiguous).
 */
enum tk_reason
tk_parse(const void *payload, size_t len, int need_sig,
    struct tk_request *req, const char **why)
{
	json_object		*o;
	const char		*dummy;
	enum tk_reason		 r;

	if (why == NULL)
		why = &dummy;
	*why = NULL;
	if (req == NULL)
		return bad(why, "no request");
	memset(req, 0, sizeof(*req));
	if ((o = tk_strict_object(payload, len, TK_PAYLOAD_MAX, why)) == NULL)
		return TK_BAD_REQUEST;
	r = parse_members(o, need_sig, req, why);
	json_object_put(o);
	if (r != TK_OK) {
		/* Only the id survives a refusal. */
		memset(req->expect_mode, 0, sizeof(req->expect_mode));
		memset(req->sig, 0, sizeof(req->sig));
		req->issued_us = 0;
		req->force = 0;
	}
	return r;
}

/* --- signature ------------------------------------------------------ */

/*
 * 1 if s is a NUL-terminated string (within max bytes when max is not 0)
 * without '\n', which would make the canonical string ambiguous; else 0.
 */
static int
canon_field_ok(const char *s, size_t max)
{
	size_t	n;

	if (s == NULL)
		return 0;
	n = max != 0 ? strnlen(s, max) : strlen(s);
	if (max != 0 && n == max)
		return 0;
	return memchr(s, '\n', n) == NULL;
}

static const char	hexdigits[] = "0123456789abcdef";

/* Writes the lowercase hex of p[0..n) and a NUL into out (2n+1 bytes). */
static void
to_hex(const unsigned char *p, size_t n, char *out)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hexdigits[p[i] >> 4];
		out[2 * i + 1] = hexdigits[p[i] & 0x0f];
	}
	out[2 * n] = '\0';
}

/*
 * Returns the canonical string of req bound by b in a new buffer, with
 * its length in *np, or NULL (a field NULL or with '\n', response topic
 * or correlation data too long, no memory).  The length is computed
 * before anything is written: nothing is ever truncated.
 */
static char *
canon_alloc(const struct tk_binding *b, const struct tk_request *req,
    size_t *np)
{
	const char	*rt;
	char		*buf, *p;
	size_t		 corr_len, n, rtlen;
	int		 head;

	if (b == NULL || req == NULL || !canon_field_ok(b->host, 0) ||
	    !canon_field_ok(b->vm, 0) ||
	    !canon_field_ok(req->id, sizeof(req->id)) ||
	    !canon_field_ok(req->expect_mode, sizeof(req->expect_mode)))
		return NULL;
	rt = b->resp_topic != NULL ? b->resp_topic : "";
	if ((rtlen = strnlen(rt, TK_RESP_TOPIC_MAX + 1)) > TK_RESP_TOPIC_MAX ||
	    memchr(rt, '\n', rtlen) != NULL)
		return NULL;
	corr_len = b->corr != NULL ? b->corr_len : 0;
	if (corr_len > TK_CORR_MAX)
		return NULL;
	head = snprintf(NULL, 0, "%s\n%s\n%s\n%s\n%" PRId64 "\n%s\n%c\n",
	    TK_PREFIX, b->host, b->vm, req->id, req->issued_us,
	    req->expect_mode, req->force ? '1' : '0');
	/* head < INT_MAX; rtlen and corr_len are below 2^16. */
	if (head < 0 || (size_t)head > SIZE_MAX - rtlen - 2 * corr_len - 2)
		return NULL;
	n = (size_t)head + rtlen + 1 + 2 * corr_len;
	if ((buf = malloc(n + 1)) == NULL)
		return NULL;
	if (snprintf(buf, (size_t)head + 1, "%s\n%s\n%s\n%s\n%" PRId64
	    "\n%s\n%c\n", TK_PREFIX, b->host, b->vm, req->id, req->issued_us,
	    req->expect_mode, req->force ? '1' : '0') != head) {
		free(buf);
		return NULL;
	}
	p = buf + head;
	memcpy(p, rt, rtlen);
	p += rtlen;
	*p++ = '\n';
	to_hex(b->corr, corr_len, p);	/* writes the final NUL */
	*np = n;
	return buf;
}

/*
 * Copies the canonical string s[0..n) that canon_alloc() or
 * rcanon_alloc() made (NULL: it refused the fields) with its NUL into buf
 * and frees s.  Returns n, or -1 when s is NULL, n is above INT_MAX, buf
 * is NULL with len not 0, or it does not fit in len bytes.
 */
int
tk_canon_copy(char *s, size_t n, char *buf, size_t len)
{
	int	rv = -1;

	if (s == NULL)
		return -1;
	if (n <= INT_MAX && (buf == NULL ? len == 0 : n < len)) {
		if (buf != NULL)
			memcpy(buf, s, n + 1);
		rv = (int)n;
	}
	free(s);
	return rv;
}

/*
 * Returns the length of the canonical string, or -1 when it does not fit
 * in len bytes (with its NUL) or canon_alloc() refuses the fields.
 */
int
tk_canonical(char *buf, size_t len, const struct tk_binding *b,
    const struct tk_request *req)
{
	char	*s;
	size_t	 n = 0;

	s = canon_alloc(b, req, &n);
	return tk_canon_copy(s, n, buf, len);
}

/*
 * Computes the raw HMAC-SHA256 of msg[0..n) into mac.  Returns 0, or -1
 * (also for an empty key, which would let anyone sign).
 */
static int
mac_raw(const unsigned char *key, size_t keylen, const char *msg, size_t n,
    unsigned char mac[TK_MAC_LEN])
{
	unsigned int	maclen = 0;

	OPENSSL_cleanse(mac, TK_MAC_LEN);
	if (key == NULL || keylen == 0 || keylen > INT_MAX || msg == NULL)
		return -1;
	if (HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg,
	    n, mac, &maclen) == NULL || maclen != TK_MAC_LEN) {
		OPENSSL_cleanse(mac, TK_MAC_LEN);
		return -1;
	}
	return 0;
}

/* HMACs msg[0..n) into hex (lowercase).  0, or -1 with hex "". */
int
tk_mac_hex(const unsigned char *key, size_t keylen, const char *msg,
    size_t n, char *hex)
{
	unsigned char	mac[TK_MAC_LEN];

	if (mac_raw(key, keylen, msg, n, mac) == -1) {
		hex[0] = '\0';
		return -1;
	}
	to_hex(mac, TK_MAC_LEN, hex);
	OPENSSL_cleanse(mac, sizeof(mac));
	return 0;
}

/*
 * HMACs the canonical string s[0..n) that canon_alloc() or rcanon_alloc()
 * made (NULL: it refused the fields) into hex and frees s.  0, or -1
 * (hex NULL, s NULL, tk_mac_hex() fails) with hex "" if not NULL.
 */
int
tk_canon_mac(const unsigned char *key, size_t keylen, char *s, size_t n,
    char *hex)
{
	int	rv = -1;

	if (hex != NULL) {
		hex[0] = '\0';
		if (s != NULL)
			rv = tk_mac_hex(key, keylen, s, n, hex);
	}
	free(s);
	return rv;
}

/* Writes the lowercase hex of the request's HMAC into hex.  0, or -1. */
int
tk_sign(const unsigned char *key, size_t keylen, const struct tk_binding *b,
    const struct tk_request *req, char hex[TK_SIG_HEX + 1])
{
	char	*s;
	size_t	 n = 0;

	s = canon_alloc(b, req, &n);
	return tk_canon_mac(key, keylen, s, n, hex);
}

/*
 * Returns TK_OK when req->sig is exactly 64 lowercase hex digits and
 * equal to the HMAC of req as bound by b, else TK_BAD_SIGNATURE.  The
 * format check looks only at what the sender sent; the comparison with
 * the expected value runs in constant time.
 */
enum tk_reason
tk_verify_bound(const unsigned char *key, size_t keylen,
    const struct tk_binding *b, const struct tk_request *req)
{
	char	want[TK_SIG_HEX + 1];
	int	eq;

	if (req == NULL || req->id[0] == '\0' ||
	    strnlen(req->sig, sizeof(req->sig)) != TK_SIG_HEX ||
	    !tk_is_sig_hex(req->sig, TK_SIG_HEX))
		return TK_BAD_SIGNATURE;
	if (tk_sign(key, keylen, b, req, want) == -1) {
		OPENSSL_cleanse(want, sizeof(want));
		return TK_BAD_SIGNATURE;
	}
	eq = CRYPTO_memcmp(want, req->sig, TK_SIG_HEX) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	return eq ? TK_OK : TK_BAD_SIGNATURE;
}

/* tk_verify_bound() without Response Topic and Correlation Data. */
enum tk_reason
tk_verify(const unsigned char *key, size_t keylen, const char *host,
    const char *vm, const struct tk_request *req)
{
	struct tk_binding	b = { host, vm, NULL, NULL, 0 };

	return tk_verify_bound(key, keylen, &b, req);
}

/* --- time and digest ------------------------------------------------ */

/*
 * TK_OK when |now_us - issued_us| <= window_s seconds, else TK_STALE.
 * Computed in unsigned 64-bit arithmetic: no overflow for any inputs.
 */
enum tk_reason
tk_check_time(int64_t issued_us, int64_t now_us, unsigned window_s)
{
	uint64_t	d, w;

	/* For a >= b, (uint64_t)a - (uint64_t)b is exactly a - b. */
	if (issued_us >= now_us)
		d = (uint64_t)issued_us - (uint64_t)now_us;
	else
		d = (uint64_t)now_us - (uint64_t)issued_us;
	w = (uint64_t)window_s * US_PER_S;	/* < 2^52: cannot overflow */
	return d <= w ? TK_OK : TK_STALE;
}

/*
 * Writes the SHA-256 of payload into out.  On failure (no memory) out is
 * all zeroes: the worst outcome is a replay answered with the first
 * result as a duplicate, never an execution.
 */
void
tk_digest(const void *payload, size_t len, unsigned char out[32])
{
	static const unsigned char	empty = 0;
	unsigned int			n = 0;

	if (out == NULL)
		return;
	if (payload == NULL) {
		if (len != 0) {
			memset(out, 0, 32);
			return;
		}
		payload = &empty;
	}
	if (EVP_Digest(payload, len, out, &n, EVP_sha256(), NULL) != 1 ||
	    n != 32)
		memset(out, 0, 32);
}
