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
 * or one byte per call yields the same callbacks, with the same bytes.
 * Each report is made at the byte that decides it:
 *   - a frame at its closing byte;
 *   - OVERSIZED at byte max_msg + 1 of a value, showing its first 64
 *     bytes; the rest of the value is then skipped by structure and its
 *     end is silent;
 *   - INVALID inside a value (unbalanced or mismatched closer, control
 *     byte in a string, nesting past max_depth) at the offending byte,
 *     showing up to 64 bytes of the value, that byte included; after an
 *     oversized value it shows nothing;
 *   - INVALID for a broken value at the column-0 opener that ends it,
 *     showing up to 64 bytes of the value, the opener excluded;
 *   - INVALID for garbage outside a value once 64 bytes of its line are
 *     known or at the line end, whichever comes first, showing the line up
 *     to 64 bytes (without a CR right before the LF).
 * (64 stands for min(64, max_msg) throughout.)  A value reported OVERSIZED
 * that then turns out broken is also reported INVALID.  A frame that lies
 * wholly inside one feed is passed straight from the input (no copy); only
 * a value still open at the end of a feed is copied.
 *
 * Memory: about 64 bytes per stream plus max_depth / 8, and the buffer:
 * none until a feed ends inside a value (or garbage line), then 256 bytes,
 * grown geometrically up to max_msg for a long message and freed back to
 * at most 256 bytes as soon as that message is done.
 */
#ifndef QMP2MQTT_JSTREAM_H
#define QMP2MQTT_JSTREAM_H

#include <stddef.h>

enum jstream_kind {
	JSTREAM_MSG,		/* buf/len: one complete top-level value */
	JSTREAM_INVALID,	/* garbage skipped; buf/len: a prefix of it,
				   at most 64 bytes, may be empty */
	JSTREAM_OVERSIZED	/* a value over max_msg is being skipped;
				   buf/len: its first 64 bytes */
};

/*
 * Called for every frame or error, in stream order.  buf is never NULL and
 * is valid only during the call.  The callback must not call jstream_feed,
 * jstream_reset or jstream_free on the stream that called it (other streams
 * are fine); to stop on an error, note it and act after jstream_feed
 * returns.
 */
typedef void (*jstream_cb)(void *arg, enum jstream_kind, const char *buf,
    size_t len);

struct jstream;

/*
 * max_msg: largest message in bytes (>= 2); max_depth: deepest nesting
 * (1..65536; "{}" is 1 deep).  Returns NULL with errno EINVAL for values
 * out of range, or ENOMEM.
 */
struct jstream	*jstream_new(size_t max_msg, unsigned max_depth);
void		 jstream_free(struct jstream *);	/* NULL is a no-op */
/* Forgets any partial message or garbage line, frees the buffer (reconnect). */
void		 jstream_reset(struct jstream *);

/*
 * Feeds len bytes (len 0 is a no-op).  Calls cb for each frame or error
 * decided by these bytes, in stream order.  Returns 0, or -1 if memory for
 * a partial message could not be allocated: that message is then reported
 * JSTREAM_INVALID and skipped to its structural end, and framing goes on.
 */
int		 jstream_feed(struct jstream *, const char *data, size_t len,
		    jstream_cb cb, void *arg);

/* Bytes held for an incomplete message or garbage line (stats/tests). */
size_t		 jstream_buffered(const struct jstream *);
/* Bytes allocated (memory accounting): <= max_msg, <= 256 when idle. */
size_t		 jstream_capacity(const struct jstream *);

#endif
