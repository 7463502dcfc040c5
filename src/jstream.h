/*
 * jstream: incremental framing of a byte stream into JSON messages.
 *
 * QMP is a stream of JSON objects.  QEMU ends each with CRLF, but with
 * -qmp-pretty one message spans many lines, one read may hold several
 * messages and one message may span many reads.  jstream finds message
 * boundaries by JSON structure (braces, brackets, strings and escapes),
 * never by line, and hands each complete top-level value to a callback.
 * It does not parse values: the caller does (json-c), so a frame that is
 * structurally complete but invalid JSON is the caller's to count.
 *
 * Memory is bounded: a message is copied only while it is incomplete at
 * the end of a feed, and only up to max_msg bytes.  A message that grows
 * past max_msg is reported once as JSTREAM_OVERSIZED and then skipped to
 * its structural end without buffering another byte of it.
 *
 * Garbage (bytes outside a value that are not whitespace, unbalanced
 * closers, raw control characters inside strings, nesting deeper than
 * max_depth) is reported once as JSTREAM_INVALID and skipped up to the next
 * line end, where framing resynchronises.  A '{' or '[' that starts a line
 * while a value is still open also ends the broken value (reported
 * invalid) and starts a new one: QEMU's pretty printer indents every inner
 * line, so only a broken message can leave a column-0 opener inside a value.
 * Nothing after a broken or oversized message is lost.
 *
 * Parsing is resumable at every byte offset: feeding a stream in one call
 * or one byte per call yields the same frames.
 */
#ifndef QMP2MQTT_JSTREAM_H
#define QMP2MQTT_JSTREAM_H

#include <stddef.h>

enum jstream_kind {
	JSTREAM_MSG,		/* buf/len: one complete top-level value */
	JSTREAM_INVALID,	/* structural garbage skipped; buf/len: a prefix of it (may be empty) */
	JSTREAM_OVERSIZED	/* a value over max_msg is being skipped; buf/len: its first bytes */
};

/* Called for every frame or error.  buf is valid only during the call. */
typedef void (*jstream_cb)(void *arg, enum jstream_kind, const char *buf,
    size_t len);

struct jstream;

/* max_msg: largest message in bytes (>= 2); max_depth: deepest nesting. */
struct jstream	*jstream_new(size_t max_msg, unsigned max_depth);
void		 jstream_free(struct jstream *);	/* NULL is a no-op */
/* Forgets any partial message (use on reconnect). */
void		 jstream_reset(struct jstream *);

/*
 * Feeds len bytes.  Calls cb for each frame completed by these bytes, in
 * stream order.  Returns 0, or -1 if memory for a partial message could not
 * be allocated (that message is then reported JSTREAM_INVALID and skipped).
 */
int		 jstream_feed(struct jstream *, const char *data, size_t len,
		    jstream_cb cb, void *arg);

/* Bytes currently held for an incomplete message (for stats/tests). */
size_t		 jstream_buffered(const struct jstream *);
/* Capacity currently allocated (for memory accounting). */
size_t		 jstream_capacity(const struct jstream *);

#endif
