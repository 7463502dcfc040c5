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
 * checks its age against a window, and remembers the ids it has accepted
 * so that a replay is refused and a QoS 1 duplicate is answered with the
 * first result instead of being executed twice.  No I/O, no clock: the
 * caller passes the time in.  Executing a request is bridge.c's job.
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
 * The bridge signs its results with the same key (see tk_sign_result),
 * over the result canonical string v2: every member of the result JSON
 * but "sig" itself, in a fixed order, one a line:
 *   "qmp2mqtt-result-v2\n<schema>\n<host>\n<vm>\n<id>\n<status>\n<reason>
 *    \n<error.class>\n<error.desc>\n<colo.mode>\n<colo.last_mode>
 *    \n<colo.reason>\n<sent>\n<authenticated>\n<time_us>"
 * where a string is written as its length in bytes (decimal), ':' and its
 * bytes (so that '\n' in an error description is unambiguous), a JSON
 * null as "-" ("error": null gives "-" for class and desc, "colo": null
 * "-" for its three), a boolean as "1" or "0" and an integer in decimal.
 * The result JSON carries the signature as "sig" and the version as
 * "sig_version": 2.  v1 (no "sig_version"; host, vm, id, status, reason,
 * sent and time_us only) left "authenticated", "error", "colo" and
 * "schema" open to whoever may publish on the result topic; it is no
 * longer produced, and tk_verify_result() refuses it
 * (TK_RESULT_OLD_VERSION).
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

#define TK_RESULT_VERSION 2		/* "sig_version" of the results */
#define TK_RESULT_MAX	65536		/* largest result payload verified */

/*
 * The fields of a takeover result: all of them are signed.  A NULL
 * pointer stands for a JSON null: id NULL is a refusal without id;
 * error_class and error_desc are both NULL ("error": null) or both set;
 * colo_mode NULL is "colo": null, and then so are colo_last_mode and
 * colo_reason.
 */
struct tk_result_fields {
	int64_t		 schema;	/* the result's "schema" (1) */
	const char	*host;
	const char	*vm;
	const char	*id;
	const char	*status;	/* "ok", "rejected", "error" */
	const char	*reason;	/* tk_reason_name() */
	const char	*error_class;
	const char	*error_desc;
	const char	*colo_mode;
	const char	*colo_last_mode;
	const char	*colo_reason;
	int		 sent;		/* x-colo-lost-heartbeat was sent */
	int		 authenticated;	/* the request passed authentication */
	int64_t		 time_us;
};

/*
 * Writes the result canonical string (v2) of f into buf.  Returns its
 * length, or -1 (does not fit with its NUL, f NULL, host, vm, status or
 * reason NULL, error or colo half set).  buf may be NULL when len is 0.
 */
int		 tk_result_canonical(char *buf, size_t len,
		    const struct tk_result_fields *f);

/*
 * Computes the lowercase hex HMAC-SHA256 of the result canonical string
 * into hex: the result JSON's "sig".  Returns 0, or -1 with hex "" (empty
 * key, or tk_result_canonical refuses f, or no memory).
 */
int		 tk_sign_result(const unsigned char *key, size_t keylen,
		    const struct tk_result_fields *f,
		    char hex[TK_SIG_HEX + 1]);

enum tk_result_auth {
	TK_RESULT_OK,		/* "sig" is the bridge's v2 HMAC of every
				   member of the result */
	TK_RESULT_UNSIGNED,	/* a well-formed result without "sig" */
	TK_RESULT_BAD_SIG,	/* "sig" is not the HMAC, or the result names
				   another host or vm */
	TK_RESULT_MALFORMED,	/* not a JSON object, too large, duplicate,
				   unknown, missing member, or of the wrong
				   type */
	TK_RESULT_OLD_VERSION,	/* a valid v1 signature (bridge older than
				   this code): "authenticated", "error",
				   "colo" and "schema" are not covered */
	TK_RESULT_NEW_VERSION	/* "sig_version" newer than this code */
};

/* A short name of an outcome ("ok", "unsigned", "bad_sig", ...). */
const char	*tk_result_auth_name(enum tk_result_auth);

struct json_object;

/*
 * Parses a result payload (len bytes, no NUL needed) published for
 * (host, vm) and verifies its "sig" in constant time.  A result is taken
 * only when every member is known and of its type: "schema" (integer),
 * "id" (string or null), "host", "vm", "status", "reason" (strings),
 * "error" (null or {"class","desc"}, strings), "colo" (null or {"mode":
 * string, "last_mode", "reason": string or null}), "sent",
 * "authenticated" (booleans), "time_us" (integer), "sig" (64 lowercase
 * hex digits) and "sig_version" (integer); anything else is malformed, so
 * that nothing a caller reads or prints is left unsigned.
 * id (if not NULL) receives the result's id whenever it is a string of
 * at most TK_ID_MAX bytes, whatever the outcome, so that the caller can
 * tell whether a forgery named its request; else "".
 * why (if not NULL) is set to a static description of a refusal, NULL
 * for TK_RESULT_OK.
 * tree (if not NULL) receives, for TK_RESULT_OK only, the parsed result
 * (json_object_put() it): the very object that was verified, to read and
 * print from; else NULL.
 */
enum tk_result_auth tk_verify_result(const unsigned char *key,
		    size_t keylen, const char *host, const char *vm,
		    const void *payload, size_t len,
		    char id[TK_ID_MAX + 1], const char **why,
		    struct json_object **tree);

/* TK_OK when |now_us - issued_us| <= window_s seconds, else TK_STALE. */
enum tk_reason	 tk_check_time(int64_t issued_us, int64_t now_us,
		    unsigned window_s);

/* SHA-256 of a payload, for telling duplicates from replays. */
void		 tk_digest(const void *payload, size_t len,
		    unsigned char out[32]);

#endif
