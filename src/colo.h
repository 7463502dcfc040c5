/*
 * colo: pure normalisation of QEMU's COLO QMP messages.  No I/O, no clock,
 * no globals: everything the output needs comes in through arguments, so
 * every function here is table-testable.
 *
 * QEMU (qapi/migration.json) emits
 *   {"event": "COLO_EXIT", "data": {"mode": M, "reason": R},
 *    "timestamp": {"seconds": S, "microseconds": U}}
 * with COLOMode M in none|primary|secondary ("unknown" before 3.1) and
 * COLOExitReason R in none|request|error|processing (4.0).  The output is
 * schema 1 of qmp2mqtt's event, documented in README.md:
 *   {"schema":1, "event":"colo_exit", "host", "vm", "mode", "reason",
 *    "time", "time_us", "time_source"?, "seq", "bridge", "qemu",
 *    "malformed"?}
 *
 * Rules: legacy mode "unknown" becomes "none"; any other string of up to
 * COLO_ENUM_MAX printable ASCII characters passes through verbatim (new
 * QEMU values must not be lost); anything else (missing, not a string,
 * empty, too long, spaces, control or non-ASCII bytes) becomes null and
 * marks the event malformed.  A missing, ill-typed or -1 timestamp is
 * replaced by the bridge's receive time and flagged "time_source":
 * "bridge" (that alone does not make the event malformed).
 */
#ifndef QMP2MQTT_COLO_H
#define QMP2MQTT_COLO_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#define COLO_SCHEMA	1
#define COLO_ENUM_MAX	64	/* longest enum string passed through */

struct colo_ctx {
	const char	*host;
	const char	*vm;
	const char	*bridge;	/* bridge id */
	const char	*qemu;		/* version string, NULL if unknown */
	uint64_t	 seq;		/* this event's per-VM sequence number */
	int64_t		 recv_us;	/* bridge wall-clock receive time, µs */
};

/*
 * Normalises one COLO_EXIT event message (the whole QMP object).  Returns
 * a new object (the caller owns the reference), or NULL only when memory
 * runs out.  *malformed (if malformed is not NULL) is set to 1 when data,
 * mode or reason was missing or not acceptable to colo_enum(), else 0.
 * The output then also carries "malformed": true.  event may be NULL or
 * not an object: the result is then malformed, with the bridge's time.
 * An invalid timestamp alone (see colo_timestamp_us) is not malformed.
 * "time" is null only if ctx->recv_us itself cannot be formatted.
 */
json_object	*colo_normalize_exit(json_object *event,
		    const struct colo_ctx *, int *malformed);

/*
 * Normalises one enum value (mode or reason): returns the string to
 * publish (a pointer into s, valid as long as s, or a static string), or
 * NULL when s is not an acceptable enum string: a JSON string of 1 to
 * COLO_ENUM_MAX bytes, each printable ASCII other than space (0x21-0x7e).
 * is_mode maps the legacy "unknown" to "none".
 */
const char	*colo_enum(json_object *s, int is_mode);

/*
 * Enum values kept for long (a VM's mode, last mode, reason): a value QEMU
 * documents (and "", unknown) is a static string shared by every holder,
 * any other one a copy owned by its holder.  A held value (char *, read
 * only) is NULL before the first colo_hold(), "" when unknown.
 *
 * colo_hold() sets *held to s (NULL: ""; at most COLO_ENUM_MAX bytes are
 * kept) and frees what *held owned.  Returns 1 when the value changed, 0
 * when not, -1 when memory ran out (*held is then "").
 */
int		 colo_hold(char **held, const char *s);
/* Frees what *held owns; *held becomes NULL. */
void		 colo_release(char **held);

/*
 * Reads a QMP timestamp object into microseconds since the epoch.
 * Returns 0, or -1 when it is missing, ill-typed (seconds and
 * microseconds must be JSON integers; 1.0 is not), negative, -1/-1
 * (QEMU's "no clock" value), microseconds >= 1000000, or seconds past
 * 9999-12-31T23:59:59Z (so every accepted time formats, and no overflow).
 */
int		 colo_timestamp_us(json_object *event, int64_t *us);

/*
 * Formats µs since the epoch as "YYYY-MM-DDThh:mm:ss.uuuuuuZ" (UTC, 27
 * characters: len must be at least 28).  Returns 0, or -1 when us is
 * negative, past year 9999, or the result does not fit.
 */
int		 colo_format_time(int64_t us, char *buf, size_t len);

/*
 * Extracts "major.minor.micro" from a QMP greeting {"QMP": {"version":
 * {"qemu": {...}, "package": ...}}}.  Returns 0, or -1 when a part is
 * absent or not a non-negative JSON integer, or buf is too small.
 */
int		 colo_qemu_version(json_object *greeting, char *buf, size_t len);

/* The result of query-colo-status (strings NULL when absent/invalid). */
struct colo_status {
	const char	*mode;
	const char	*last_mode;	/* QEMU 4.0+ */
	const char	*reason;
};

/*
 * Reads a query-colo-status "return" object; pointers refer into ret (or
 * static strings) and live as long as ret.  Each field goes through
 * colo_enum() (mode and last-mode as modes).  Returns 0, or -1 when ret is
 * not an object or has no valid mode; all three fields are set either way.
 */
int		 colo_parse_status(json_object *ret, struct colo_status *);

/* Everything the retained <vm>/state payload shows. */
struct colo_vm_state {
	const char	*host;
	const char	*vm;
	const char	*qemu;		/* NULL: null */
	const char	*mode;		/* NULL: null (unknown) */
	const char	*last_mode;	/* NULL: null */
	const char	*reason;	/* NULL: null */
	int		 connected;	/* "qmp": "connected"/"disconnected" */
	int		 colo_status;	/* 1: query-colo-status works, 0: not supported, -1: not yet known */
	int64_t		 updated_us;
	json_object	*last_exit;	/* borrowed; NULL: null */
	const char	*liveness;	/* "alive", "gone", "unreachable" */
	const char	*bridge;	/* the publishing bridge's id */
	const char	*instance;	/* and its process instance */
	int64_t		 started_us;	/* when that instance started */
	json_object	*peer;		/* borrowed; NULL: null (no peer) */
	int		 hb_unconfirmed; /* "heartbeat_unconfirmed" */
};

/* Builds the state payload.  New reference, or NULL on memory exhaustion. */
json_object	*colo_state_json(const struct colo_vm_state *);

#endif
