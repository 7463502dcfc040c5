/*
 * tkresult: signed takeover results, the bridge's answer to a takeover
 * request (takeover.h) on <base>/<host>/<vm>/result/takeover and the
 * request's Response Topic.
 *
 * With HMAC auth the bridge (command.c) signs every result with the
 * takeover key over all of its members, and qmp2mqtt-ctl (ctl.c) believes
 * only a result so signed: whoever may publish on the result topic can
 * write neither the outcome nor "authenticated", the error or the COLO
 * state.  This module writes the canonical string of a result's fields
 * and its HMAC (tk_sign_result), and parses and verifies a result payload
 * as strictly as a request (tk_verify_result), refusing any member it
 * does not know.  Pure: no globals, no I/O, no clock.
 *
 * The result canonical string v2 (what is signed): every member of the
 * result JSON but "sig" itself, in a fixed order, one a line:
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
#ifndef QMP2MQTT_TKRESULT_H
#define QMP2MQTT_TKRESULT_H

#include <stddef.h>
#include <stdint.h>

#include "takeover.h"

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

/*
 * Returns the short name of an outcome ("ok", "unsigned", "bad_sig",
 * "malformed", "old_version", "new_version"), or "unknown" for a value
 * outside the enum.
 */
const char	*tk_result_auth_name(enum tk_result_auth);

struct json_object;

/*
 * Parses a result payload (len bytes, no NUL needed) published for
 * (host, vm) as strictly as a request (RFC 8259 tokens, no NUL byte, no
 * duplicate member, no trailing data, at most TK_RESULT_MAX bytes) and
 * verifies its "sig" in constant time.  Returns TK_RESULT_OK or the
 * refusal (enum tk_result_auth above).  A result is taken
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

#endif
