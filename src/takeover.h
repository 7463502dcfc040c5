/*
 * takeover: the pure, security-critical half of remote takeover.
 *
 * A takeover request is a small JSON object published on
 * <base>/<host>/<vm>/cmd/takeover:
 *   {"id": "<1..64 printable ASCII>", "issued_us": <µs since epoch>,
 *    "expect_mode": "primary"|"secondary" (optional),
 *    "force": true|false (optional, default false),
 *    "sig": "<64 lowercase hex digits>" (with HMAC auth)}
 * This module parses it strictly (unknown fields, wrong types, oversize
 * payloads are bad requests), computes and verifies its HMAC-SHA256 over a
 * canonical string that binds host, vm, id, issued_us, expect_mode, force
 * and the MQTT 5 Response Topic and Correlation Data it came with,
 * and checks its age against a window.  Remembering the ids accepted (a
 * replay refused, a QoS 1 duplicate answered with the first result) is
 * tkcache.c's job, signing and checking results tkresult.c's, executing a
 * request command.c's.  No I/O, no clock: the caller passes the time in.
 *
 * Canonical request string (what is signed), fields separated by '\n':
 *   "qmp2mqtt-takeover-v2\n<host>\n<vm>\n<id>\n<issued_us>\n<expect_mode>
 *    \n<force>\n<response_topic>\n<correlation_data>"
 * where issued_us is in decimal, expect_mode is "" when absent, force is
 * "1" or "0", response_topic is "" when absent and correlation_data is
 * its lowercase hex ("" when absent).  v1 (without force, response topic
 * and correlation data) is no longer produced nor accepted: it let
 * whoever saw a request re-send it with a Response Topic of their own.
 *
 * The bridge signs its takeover results with the same key: tkresult.h.
 */
#ifndef QMP2MQTT_TAKEOVER_H
#define QMP2MQTT_TAKEOVER_H

#include <stddef.h>
#include <stdint.h>

#define TK_ID_MAX	64		/* bytes in a request id */
#define TK_PAYLOAD_MAX	4096		/* largest request payload */
#define TK_SIG_HEX	64		/* hex digits of an HMAC-SHA256 */
#define TK_RESP_TOPIC_MAX 65535		/* bytes in a Response Topic */
#define TK_CORR_MAX	65535		/* bytes of Correlation Data */

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
	TK_TIMEOUT,		/* "timeout": failover not complete in time */
	TK_PEER_ALIVE,		/* "peer_alive": the peer still answers */
	TK_PEER_UNKNOWN,	/* "peer_unknown": the peer's state is not known */
	TK_PEER_TOOK_OVER,	/* "peer_took_over": the peer is primary now */
	TK_CLASH,		/* "clash": another bridge serves this VM */
	TK_STORE_ERROR,		/* "store_error": the replay store could not
				   record the id */
	TK_NREASONS		/* not a reason: the number of reasons, for
				   arrays indexed by reason; always last */
};

const char	*tk_reason_name(enum tk_reason);

struct tk_request {
	char		id[TK_ID_MAX + 1];	/* "" when unreadable */
	int64_t		issued_us;
	char		expect_mode[16];	/* "" when absent */
	int		force;			/* "force": true; 0 when absent */
	char		sig[TK_SIG_HEX + 1];	/* "" when absent */
};

/*
 * What a request is bound to besides its JSON: the topic it was published
 * on (host, vm) and the MQTT 5 properties that steer its answer.
 * resp_topic NULL or "" means none; corr NULL or corr_len 0 means none.
 */
struct tk_binding {
	const char	*host;
	const char	*vm;
	const char	*resp_topic;	/* at most TK_RESP_TOPIC_MAX bytes */
	const void	*corr;		/* at most TK_CORR_MAX bytes */
	size_t		 corr_len;
};

/*
 * Parses a request payload.  Returns TK_OK, or TK_BAD_REQUEST with *why
 * set to a static description.  req->id is filled whenever a valid id was
 * found, even when another field is bad, so that a refusal can name it
 * (not with duplicate keys); the rest of req is then zeroed.
 * "force" must be a boolean (anything else is a bad request).
 * need_sig: "sig" (HMAC auth) is kept only when it is 64 lowercase hex
 * digits; when it is missing or malformed req->sig is "" and tk_verify()
 * refuses the request as a bad signature;
 * without need_sig a string "sig" is tolerated and ignored.
 */
enum tk_reason	 tk_parse(const void *payload, size_t len, int need_sig,
		    struct tk_request *req, const char **why);

/*
 * Writes the v2 canonical string of req (req->sig is ignored) as bound
 * by b into buf.  Returns its length, or -1 when it does not fit (with
 * its NUL) or a field is NULL, contains '\n', or the response topic or
 * correlation data is longer than 65535 bytes.  buf may be NULL when len
 * is 0: the length is then returned all the same, to size a buffer.
 */
int		 tk_canonical(char *buf, size_t len, const struct tk_binding *b,
		    const struct tk_request *req);

/*
 * Computes the lowercase hex HMAC-SHA256 of the canonical string of req
 * bound by b into hex.  Returns 0, or -1 with hex "" when the key is
 * empty or the canonical string cannot be made (see tk_canonical).
 */
int		 tk_sign(const unsigned char *key, size_t keylen,
		    const struct tk_binding *b, const struct tk_request *req,
		    char hex[TK_SIG_HEX + 1]);

/*
 * Verifies req->sig against the request as bound by b, in constant time.
 * Returns TK_OK or TK_BAD_SIGNATURE (also for a missing, short or non-hex
 * signature, and for a binding tk_canonical refuses).
 */
enum tk_reason	 tk_verify_bound(const unsigned char *key, size_t keylen,
		    const struct tk_binding *b, const struct tk_request *req);

/*
 * tk_verify_bound() for a request that came without Response Topic and
 * Correlation Data (MQTT 3.1.1, or MQTT 5 without them).  A request that
 * carried either must be verified with tk_verify_bound(), or its answer
 * could be steered to a topic the signer never chose.  Kept for callers
 * that predate the binding; still the v2 canonical string.
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

#endif
