/*
 * takeover: the pure, security-critical half of remote takeover.
 *
 * A takeover request is a small JSON object published on
 * <base>/<host>/<vm>/cmd/takeover:
 *   {"id": "<1..64 printable ASCII>", "issued_us": <µs since epoch>,
 *    "expect_mode": "primary"|"secondary" (optional),
 *    "sig": "<64 lowercase hex digits>" (with HMAC auth)}
 * This module parses it strictly (unknown fields, wrong types, oversize
 * payloads are bad requests), computes and verifies its HMAC-SHA256 over a
 * canonical string that binds host, vm, id, issued_us and expect_mode,
 * checks its age against a window, and remembers the ids it has accepted
 * so that a replay is refused and a QoS 1 duplicate is answered with the
 * first result instead of being executed twice.  No I/O, no clock: the
 * caller passes the time in.  Executing a request is bridge.c's job.
 *
 * Canonical string (what is signed), fields separated by '\n':
 *   "qmp2mqtt-takeover-v1\n<host>\n<vm>\n<id>\n<issued_us>\n<expect_mode>"
 * where issued_us is in decimal and expect_mode is "" when absent.
 */
#ifndef QMP2MQTT_TAKEOVER_H
#define QMP2MQTT_TAKEOVER_H

#include <stddef.h>
#include <stdint.h>

#define TK_ID_MAX	64		/* bytes in a request id */
#define TK_PAYLOAD_MAX	4096		/* largest request payload */
#define TK_SIG_HEX	64		/* hex digits of an HMAC-SHA256 */

/* Outcomes; tk_reason_name() gives the wire name ("ok", "stale", ...). */
enum tk_reason {
	TK_OK = 0,
	TK_DISABLED,		/* "disabled" */
	TK_BAD_REQUEST,		/* "bad_request" */
	TK_BAD_SIGNATURE,	/* "bad_signature" */
	TK_STALE,		/* "stale" */
	TK_REPLAY,		/* "replay" */
	TK_RETAINED,		/* "retained" */
	TK_PRECONDITION_FAILED,	/* "precondition_failed" */
	TK_NOT_CONNECTED,	/* "not_connected" */
	TK_NOT_IN_COLO,		/* "not_in_colo" */
	TK_RATE_LIMITED,	/* "rate_limited" */
	TK_QEMU_ERROR,		/* "qemu_error" */
	TK_TIMEOUT		/* "timeout": failover not complete in time */
};

const char	*tk_reason_name(enum tk_reason);

struct tk_request {
	char		id[TK_ID_MAX + 1];	/* "" when unreadable */
	int64_t		issued_us;
	char		expect_mode[16];	/* "" when absent */
	char		sig[TK_SIG_HEX + 1];	/* "" when absent */
};

/*
 * Parses a request payload.  Returns TK_OK, or TK_BAD_REQUEST with *why
 * set to a static description.  req->id is filled whenever a valid id was
 * found, even when another field is bad, so that a refusal can name it
 * (not with duplicate keys); the rest of req is then zeroed.
 * need_sig: "sig" (HMAC auth) is kept only when it is 64 lowercase hex
 * digits; when it is missing or malformed req->sig is "" and tk_verify()
 * refuses the request as a bad signature;
 * without need_sig a string "sig" is tolerated and ignored.
 */
enum tk_reason	 tk_parse(const void *payload, size_t len, int need_sig,
		    struct tk_request *req, const char **why);

/*
 * Writes the canonical string into buf.  Returns its length, or -1 when it
 * does not fit or a field is NULL or contains '\n' (NULL expect_mode: "").
 */
int		 tk_canonical(char *buf, size_t len, const char *host,
		    const char *vm, const char *id, int64_t issued_us,
		    const char *expect_mode);

/*
 * Computes the lowercase hex HMAC-SHA256 of the canonical string into
 * hex (TK_SIG_HEX + 1 bytes).  Returns 0, or -1 on failure (empty key).
 */
int		 tk_sign(const unsigned char *key, size_t keylen,
		    const char *host, const char *vm, const char *id,
		    int64_t issued_us, const char *expect_mode, char *hex);

/*
 * Verifies req->sig for (host, vm) in constant time.  Returns TK_OK or
 * TK_BAD_SIGNATURE (also for a missing, short or non-hex signature).
 */
enum tk_reason	 tk_verify(const unsigned char *key, size_t keylen,
		    const char *host, const char *vm,
		    const struct tk_request *req);

/* TK_OK when |now_us - issued_us| <= window_s seconds, else TK_STALE. */
enum tk_reason	 tk_check_time(int64_t issued_us, int64_t now_us,
		    unsigned window_s);

/* SHA-256 of a payload, for telling duplicates from replays. */
void		 tk_digest(const void *payload, size_t len,
		    unsigned char out[32]);

/*
 * The replay cache: (host, vm, id) -> payload digest and first result,
 * kept for ttl_us, at most max entries (expired ones are evicted first).
 */
struct tk_cache;

enum tk_seen {
	TK_SEEN_NEW,		/* recorded now: execute it */
	TK_SEEN_DUPLICATE,	/* same id, same payload: answer again */
	TK_SEEN_REPLAY,		/* same id, other payload: refuse */
	TK_SEEN_FULL		/* no room without forgetting a live id: refuse */
};

struct tk_cache	*tk_cache_new(size_t max);	/* NULL: max 0 or no memory */
void		 tk_cache_free(struct tk_cache *);	/* NULL is a no-op */
/*
 * Looks (host, vm, id) up and records it when new.  On TK_SEEN_DUPLICATE
 * *result is the stored result JSON, or NULL while the first request is
 * still running.  Record only requests whose signature was verified.
 * An entry is live while now_us < recorded + ttl_us.  Bad arguments,
 * ttl_us <= 0 and memory exhaustion also give TK_SEEN_FULL.
 */
enum tk_seen	 tk_cache_check(struct tk_cache *, const char *host,
		    const char *vm, const char *id,
		    const unsigned char digest[32], int64_t now_us,
		    int64_t ttl_us, const char **result);
/* Stores the result of (host, vm, id) for duplicates.  0, or -1. */
int		 tk_cache_set_result(struct tk_cache *, const char *host,
		    const char *vm, const char *id, const char *result);
size_t		 tk_cache_size(const struct tk_cache *);

#endif
