/*
 * tk_int: what the takeover request and result files share (takeover.c,
 * which defines these, and tkresult.c): the strict JSON parse, the
 * signature format check, the HMAC and the two ends of a canonical
 * string, so that a request and a result are held to the same rules.
 * Not for other modules: takeover.h and tkresult.h are the interfaces.
 */
#ifndef QMP2MQTT_TK_INT_H
#define QMP2MQTT_TK_INT_H

#include <stddef.h>

struct json_object;

/*
 * Parses payload[0..len) strictly: at most max bytes, no NUL byte,
 * RFC 8259 tokens only (json-c's strict mode lets single quotes, NaN,
 * "00", overlong UTF-8 and \u0000 through), nesting within json-c's
 * depth TK_DEPTH (takeover.c: an object in the object is the deepest a
 * result needs), nothing but white space after it, a JSON object without
 * duplicate member.  Returns the object (json_object_put() it),
 * or NULL with *why (not NULL) set to a static description: "empty
 * payload", "payload too large", "NUL byte in payload", "malformed JSON",
 * "out of memory", "trailing data after JSON", "not a JSON object" or
 * "duplicate field".
 */
struct json_object *tk_strict_object(const void *payload, size_t len,
		    size_t max, const char **why);

/* 1 if s[0..n) is exactly TK_SIG_HEX lowercase hex digits, else 0. */
int		 tk_is_sig_hex(const char *s, size_t n);

/*
 * Writes the lowercase hex HMAC-SHA256 of msg[0..n) and a NUL into hex
 * (TK_SIG_HEX + 1 bytes).  Returns 0, or -1 with hex "" (key NULL, empty
 * or longer than INT_MAX bytes, msg NULL, HMAC failure).
 */
int		 tk_mac_hex(const unsigned char *key, size_t keylen,
		    const char *msg, size_t n, char *hex);

/*
 * The two ends of a canonical string made in a new buffer (s, n) by
 * takeover.c or tkresult.c, s NULL when the fields were refused; both
 * free s.  tk_canon_copy() copies it with its NUL into buf: returns n, or
 * -1 (s NULL, n above INT_MAX, buf NULL with len not 0, does not fit in
 * len bytes).  tk_canon_mac() writes its HMAC into hex as tk_mac_hex():
 * returns 0, or -1 (hex NULL, s NULL, tk_mac_hex() fails) with hex "" if
 * hex is not NULL.
 */
int		 tk_canon_copy(char *s, size_t n, char *buf, size_t len);
int		 tk_canon_mac(const unsigned char *key, size_t keylen, char *s,
		    size_t n, char *hex);

#endif
