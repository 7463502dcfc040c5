/*
 * qmp: one QMP client connection, kept alive forever.
 *
 * A connection runs the state machine
 *   BACKOFF -> CONNECTING -> GREETING -> NEGOTIATING -> READY
 * on the loop thread, with a non-blocking connect to unix:PATH or
 * tcp:HOST:PORT, a timeout for the greeting (a QMP socket that serves
 * another client accepts but never greets), "qmp_capabilities", and then
 * commands and events.  Every command carries an id and its reply is
 * matched by id, never by order: QEMU may emit the events a command causes
 * before that command's reply.  Input is framed by jstream (bounded, by
 * JSON structure).  Any EOF, error, timeout or protocol violation drops the
 * connection, fails the pending commands (their callback gets NULL) and
 * schedules a reconnect with jittered exponential backoff.
 */
#ifndef QMP2MQTT_QMP_H
#define QMP2MQTT_QMP_H

#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

struct loop;
struct qmp;
struct qmp_gate;
struct ratelim;

#define QMP_MAX_DEPTH	64	/* deepest nesting accepted in a message */

struct qmp_opts {
	const char	*name;		/* for log lines */
	int		 unix_socket;	/* 1: path, 0: host/port */
	const char	*path;
	const char	*host;
	const char	*port;
	size_t		 max_msg;	/* largest accepted message, bytes */
	unsigned	 backoff_min_ms;
	unsigned	 backoff_max_ms;
	unsigned	 greeting_timeout_ms;
	unsigned	 command_timeout_ms;
	uint64_t	 seed;		/* backoff jitter seed */
	/*
	 * Shared by all connections: bytes of input buffered for incomplete
	 * messages, and its bound (0: none).  A connection that pushes the
	 * total over the bound drops its own partial message (counted
	 * oversized) and resynchronises.
	 */
	size_t		*total_buffered;
	size_t		 total_max;
	/*
	 * A json-c tokener shared by all connections of one loop (they parse
	 * one message at a time), or NULL to create one per message.
	 */
	struct json_tokener *tok;
	/* Backpressure shared by many connections (see qmp_gate), or NULL. */
	struct qmp_gate	*gate;
	/*
	 * Caps the log lines a peer's input can trigger (garbage, oversized
	 * or unexpected messages), shared by many connections, or NULL.
	 */
	struct ratelim	*input_log;
};

struct qmp_callbacks {
	/* The QMP greeting arrived (borrowed: copy what is needed). */
	void	(*greeting)(struct qmp *, json_object *greeting, void *arg);
	/* Capabilities negotiated: commands may be sent. */
	void	(*ready)(struct qmp *, void *arg);
	/*
	 * An event object ({"event": ...}) arrived while READY; those that
	 * arrived during negotiation (QEMU may send them before the
	 * capabilities reply) come right after ready(), in order.
	 */
	void	(*event)(struct qmp *, json_object *event, void *arg);
	/* A READY connection was lost (not called for failed attempts). */
	void	(*down)(struct qmp *, void *arg);
	/* qmp_liveness() changed (may be NULL). */
	void	(*liveness)(struct qmp *, void *arg);
};

/*
 * What the connection attempts say about the process behind the socket,
 * which a dropped connection alone cannot tell:
 *   QMP_ALIVE        a process accepted the connection (READY, or it
 *                    accepted but has not greeted: another client holds it)
 *   QMP_GONE         nothing listens: the unix socket refuses
 *                    connections (ECONNREFUSED: QEMU leaves the file
 *                    behind when it is killed) or, once a QEMU was seen
 *                    there, no longer exists (ENOENT: QEMU unlinks it when
 *                    it quits); or a TCP connect to a loopback address was
 *                    refused
 *   QMP_UNREACHABLE  anything else (a lost connection before the next
 *                    attempt, a timeout, a remote TCP peer, not tried yet)
 * Only QMP_GONE is proof that QEMU is not running.
 */
enum qmp_liveness { QMP_UNREACHABLE, QMP_ALIVE, QMP_GONE };

/*
 * Reply callback: reply is the whole reply object ({"return": ...} or
 * {"error": {...}}), or NULL when the connection dropped or the command
 * timed out.  Borrowed: take a reference to keep it.
 */
typedef void (*qmp_reply_cb)(struct qmp *, json_object *reply, void *arg);

struct qmp_stats {
	uint64_t	connects;	/* successful handshakes */
	uint64_t	reconnects;	/* attempts after the first */
	uint64_t	events;
	uint64_t	invalid;	/* invalid JSON / garbage skipped */
	uint64_t	oversized;	/* messages over max_msg skipped */
	uint64_t	unexpected;	/* valid JSON of no QMP shape, stray replies */
	uint64_t	timeouts;	/* greeting or command timeouts */
};

/* Returns a stopped connection, or NULL (logged).  opts strings are copied. */
struct qmp	*qmp_new(struct loop *, const struct qmp_opts *,
		    const struct qmp_callbacks *, void *arg);
/* Closes and frees; pending reply callbacks get NULL first.  NULL: no-op. */
void		 qmp_free(struct qmp *);
/* Starts connecting now. */
void		 qmp_start(struct qmp *);

/*
 * Sends {"execute": cmd, "arguments": args, "id": N} (args may be NULL; the
 * reference to args is taken).  cb (may be NULL) is called exactly once.
 * Returns 0, or -1 when not READY (cb is not called then).
 */
int		 qmp_command(struct qmp *, const char *cmd, json_object *args,
		    qmp_reply_cb cb, void *arg);

int		 qmp_ready(const struct qmp *);
enum qmp_liveness qmp_liveness(const struct qmp *);
const char	*qmp_liveness_name(enum qmp_liveness); /* "alive", ... */
const char	*qmp_name(const struct qmp *);
const struct qmp_stats *qmp_stats(const struct qmp *);
/*
 * Shutdown: processes what QEMU already wrote to the socket (bounded:
 * about 1 MiB; events are delivered to the callbacks as usual), then
 * stops reading for good.  What QEMU emits afterwards is not read (QEMU
 * drops events without a client; the next start reconciles exits).
 */
void		 qmp_quiesce(struct qmp *);
/* Stops/starts reading input (backpressure); events stay queued in the kernel. */
void		 qmp_pause(struct qmp *, int paused);
/*
 * A gate stops reading on every READY connection attached to it
 * (backpressure: the broker is slower than QEMU; handshakes go on).  Closing costs nothing per connection:
 * a connection notices the closed gate the next time it has input, stops
 * watching for input and waits on the gate's list; opening re-arms only
 * the connections on that list.  Input stays in the kernel and in QEMU
 * meanwhile, so nothing is lost; command deadlines do not run out while a
 * connection waits at the gate.  Free the gate after its connections.
 */
struct qmp_gate	*qmp_gate_new(void);
void		 qmp_gate_free(struct qmp_gate *);	/* NULL is a no-op */
void		 qmp_gate_set(struct qmp_gate *, int closed);
int		 qmp_gate_closed(const struct qmp_gate *);

/* Bytes of memory held by the connection's buffers. */
size_t		 qmp_memory(const struct qmp *);

/*
 * Classifies an error reply: returns its "class" string (or NULL when the
 * reply is not an error) and sets *desc to its "desc" (or "").
 */
const char	*qmp_error_class(json_object *reply, const char **desc);

#endif
