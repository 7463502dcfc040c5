/*
 * jstream: incremental framing of a byte stream into JSON messages.
 *
 * The stream is in one of five modes:
 *
 *   IDLE     between values: whitespace is skipped, '{' or '[' starts a
 *            value, any other byte starts a garbage line.
 *   VALUE    inside a value that is being framed: its bytes are either
 *            still in the caller's input (from vstart on) or, once a feed
 *            ends inside it, copied into buf.
 *   SKIP     inside a value already reported oversized (or one whose
 *            buffer could not be allocated): structure is tracked, no byte
 *            is kept, and its end is silent.
 *   GARBAGE  a garbage line outside any value: up to pfx bytes of it are
 *            collected for the report, which is made when pfx bytes are
 *            known or the line ends, whichever comes first.
 *   DISCARD  the rest of a bad line, skipped up to and including '\n'.
 *
 * Structure is depth, one bit per level telling '{' from '[' (so that
 * mismatched closers are caught), "inside a string" and "after a
 * backslash".  Whether the previous byte of the stream was '\n' is only
 * needed when an opener is met, so it is read from the input itself, or
 * from bol for the first byte of a feed.
 *
 * Everything a callback sees depends only on the stream, never on how it
 * was cut into feeds: reports are made at the byte that decides them, and
 * a prefix that spans feeds is completed into buf before it is shown.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jstream.h"

#define JSTREAM_BUF_MIN		256	/* first allocation, and what is kept */
#define JSTREAM_PREFIX		64	/* bytes shown with an error report */
#define JSTREAM_DEPTH_MAX	65536	/* largest max_depth accepted */

enum jstream_mode {
	M_IDLE,
	M_VALUE,
	M_SKIP,
	M_GARBAGE,
	M_DISCARD
};

enum scan_result {
	S_MORE,		/* reached the end of the given range */
	S_DONE,		/* the value closed; *ip is just past its closer */
	S_ERR,		/* structural error; *ip is the offending byte */
	S_BREAK		/* column-0 opener; *ip is that opener */
};

struct jstream {
	char		*buf;		/* partial message or garbage prefix */
	size_t		 len;		/* bytes held in buf */
	size_t		 cap;		/* bytes allocated for buf */
	size_t		 max_msg;
	unsigned	 max_depth;
	unsigned	 depth;		/* open levels of the current value */
	unsigned char	 mode;		/* enum jstream_mode */
	unsigned char	 in_str;	/* inside a string */
	unsigned char	 esc;		/* inside a string, after a backslash */
	unsigned char	 bol;		/* last byte fed was '\n' (or none yet) */
	unsigned char	 pfx;		/* min(JSTREAM_PREFIX, max_msg) */
	unsigned char	 stack[];	/* bit d set: level d opened with '[' */
};

/* Bytes that matter outside strings, inside a value. */
static const unsigned char cls_value[256] = {
	['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1
};

/* Bytes that end a run of plain string content. */
static const unsigned char cls_string[256] = {
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	['"'] = 1, ['\\'] = 1
};

/* Whitespace allowed between values. */
static const unsigned char cls_space[256] = {
	[' '] = 1, ['\t'] = 1, ['\r'] = 1, ['\n'] = 1
};

struct jstream *
jstream_new(size_t max_msg, unsigned max_depth)
{
	struct jstream	*js;

	if (max_msg < 2 || max_depth < 1 || max_depth > JSTREAM_DEPTH_MAX) {
		errno = EINVAL;
		return NULL;
	}
	js = calloc(1, sizeof(*js) + (max_depth + 7) / 8);
	if (js == NULL)
		return NULL;
	js->max_msg = max_msg;
	js->max_depth = max_depth;
	js->pfx = max_msg < JSTREAM_PREFIX ? max_msg : JSTREAM_PREFIX;
	js->mode = M_IDLE;
	js->bol = 1;
	return js;
}

void
jstream_free(struct jstream *js)
{
	if (js == NULL)
		return;
	free(js->buf);
	free(js);
}

void
jstream_reset(struct jstream *js)
{
	free(js->buf);
	js->buf = NULL;
	js->len = js->cap = 0;
	js->depth = 0;
	js->mode = M_IDLE;
	js->in_str = js->esc = 0;
	js->bol = 1;
}

size_t
jstream_buffered(const struct jstream *js)
{
	return js->len;
}

size_t
jstream_capacity(const struct jstream *js)
{
	return js->cap;
}

/*
 * Makes room for need bytes (need <= max_msg) in buf, growing it
 * geometrically from JSTREAM_BUF_MIN and never past max_msg.  Returns 0,
 * or -1 when memory runs out (buf is then unchanged).
 */
static int
reserve(struct jstream *js, size_t need)
{
	size_t	 ncap;
	char	*nbuf;

	if (need <= js->cap)
		return 0;
	ncap = js->cap != 0 ? js->cap : JSTREAM_BUF_MIN;
	while (ncap < need && ncap <= js->max_msg / 2)
		ncap *= 2;
	if (ncap < need || ncap > js->max_msg)
		ncap = js->max_msg;
	nbuf = realloc(js->buf, ncap);
	if (nbuf == NULL)
		return -1;
	js->buf = nbuf;
	js->cap = ncap;
	return 0;
}

/*
 * Forgets the bytes held and frees buf, so that an idle stream holds no
 * buffer (a message split across reads is the exception: 10 000 idle
 * streams kept 2.5 MiB of them).
 */
static void
release(struct jstream *js)
{
	js->len = 0;
	free(js->buf);
	js->buf = NULL;
	js->cap = 0;
}

/*
 * Returns the first want bytes (want <= pfx) of the item whose bytes are
 * buf[0..len) followed by p[start..], where at least want - len bytes are
 * available.  Copies into buf only when the prefix spans both; buf then
 * has room, as it was allocated with at least min(JSTREAM_BUF_MIN,
 * max_msg) >= pfx bytes.
 */
static const char *
prefix(struct jstream *js, const unsigned char *p, size_t start, size_t want)
{
	if (js->len == 0)
		return (const char *)p + start;
	if (js->len < want) {
		memcpy(js->buf + js->len, p + start, want - js->len);
		js->len = want;
	}
	return js->buf;
}

/*
 * Returns the index of the first byte in p[i..end) that ends plain string
 * content ('"', '\\' or a control byte), or end.  Eight bytes at a time
 * while none of them can be one.
 */
static size_t
string_skip(const unsigned char *p, size_t i, size_t end)
{
	const uint64_t	 ones = 0x0101010101010101ULL;
	const uint64_t	 highs = 0x8080808080808080ULL;
	uint64_t	 w, q, b;

	while (end - i >= 8) {
		memcpy(&w, p + i, 8);
		q = w ^ (ones * '"');
		b = w ^ (ones * '\\');
		/* a zero byte in q or b, or a byte of w below 0x20 */
		if ((((q - ones) & ~q) | ((b - ones) & ~b) |
		    ((w - ones * 0x20) & ~w)) & highs)
			break;
		i += 8;
	}
	while (i < end && !cls_string[p[i]])
		i++;
	return i;
}

/*
 * Follows the structure of the open value through p[*ip..end).  Returns
 * an enum scan_result with *ip set as it describes; the structural state
 * is saved in js in every case.
 */
static int
scan(struct jstream *js, const unsigned char *p, size_t *ip, size_t end)
{
	size_t		 i = *ip;
	unsigned	 depth = js->depth, bit;
	int		 in_str = js->in_str, esc = js->esc, r;
	unsigned char	 c, prev;

	for (;;) {
		if (!in_str) {
			while (i < end && !cls_value[p[i]])
				i++;
			if (i == end) {
				r = S_MORE;
				break;
			}
			c = p[i];
			if (c == '"') {
				in_str = 1;
				i++;
				continue;
			}
			if (c == '{' || c == '[') {
				prev = i > 0 ? p[i - 1] : js->bol ? '\n' : 0;
				if (prev == '\n') {
					r = S_BREAK;
					break;
				}
				if (depth >= js->max_depth) {
					r = S_ERR;
					break;
				}
				bit = 1U << (depth & 7);
				if (c == '[')
					js->stack[depth >> 3] |= bit;
				else
					js->stack[depth >> 3] &= ~bit;
				depth++;
				i++;
				continue;
			}
			/* a closer; depth >= 1 while a value is open */
			bit = js->stack[(depth - 1) >> 3] >>
			    ((depth - 1) & 7) & 1;
			if (bit != (c == ']')) {
				r = S_ERR;
				break;
			}
			i++;
			if (--depth == 0) {
				r = S_DONE;
				break;
			}
			continue;
		}
		if (esc) {
			if (i == end) {
				r = S_MORE;
				break;
			}
			if (p[i] < 0x20) {
				r = S_ERR;
				break;
			}
			esc = 0;
			i++;
		}
		i = string_skip(p, i, end);
		if (i == end) {
			r = S_MORE;
			break;
		}
		c = p[i];
		if (c == '"')
			in_str = 0;
		else if (c == '\\')
			esc = 1;
		else {
			r = S_ERR;	/* raw control byte */
			break;
		}
		i++;
	}
	js->depth = depth;
	js->in_str = in_str;
	js->esc = esc;
	*ip = i;
	return r;
}

/*
 * Keeps p[vstart..n), the open value's part of this feed, after the bytes
 * already held (together at most max_msg).  Returns 0, or -1 when memory
 * runs out: the value is then reported invalid and skipped by structure.
 */
static int
save_tail(struct jstream *js, const unsigned char *p, size_t vstart,
    size_t n, jstream_cb cb, void *arg)
{
	const char	*s;
	size_t		 k = n - vstart;

	if (reserve(js, js->len + k) == 0) {
		memcpy(js->buf + js->len, p + vstart, k);
		js->len += k;
		return 0;
	}
	k += js->len;
	if (k > js->pfx)
		k = js->pfx;
	s = prefix(js, p, vstart, k);
	cb(arg, JSTREAM_INVALID, s, k);
	release(js);
	js->mode = M_SKIP;
	return -1;
}

/* Starts a value at its opener c. */
static void
begin(struct jstream *js, unsigned char c)
{
	js->stack[0] = c == '[';
	js->depth = 1;
	js->in_str = js->esc = 0;
	js->mode = M_VALUE;
}

/* One call of jstream_feed(): its input, its position, its callback. */
struct feed {
	const unsigned char	*p;
	size_t			 n;
	size_t			 i;	/* next byte to look at */
	size_t			 vstart; /* the open value's first byte in p */
	jstream_cb		 cb;
	void			*arg;
	int			 rc;	/* -1 once memory ran out */
};

/*
 * Reports the open value as invalid with its first k bytes (at most pfx),
 * from buf and p[vstart..), and forgets it.
 */
static void
value_invalid(struct jstream *js, struct feed *f, size_t k)
{
	if (k > js->pfx)
		k = js->pfx;
	f->cb(f->arg, JSTREAM_INVALID, prefix(js, f->p, f->vstart, k), k);
	release(js);
}

/* IDLE: skips whitespace; an opener starts a value, anything else garbage. */
static void
feed_idle(struct jstream *js, struct feed *f)
{
	const unsigned char *p = f->p;

	while (f->i < f->n && cls_space[p[f->i]])
		f->i++;
	if (f->i == f->n)
		return;
	if (p[f->i] != '{' && p[f->i] != '[') {
		js->mode = M_GARBAGE;
		return;
	}
	begin(js, p[f->i]);
	f->vstart = f->i++;
	/* the feed ends: keep the opener */
	if (f->i == f->n && save_tail(js, p, f->vstart, f->n, f->cb,
	    f->arg) == -1)
		f->rc = -1;
}

/* VALUE closed at f->i: the message is buf + p[0..i), or p[vstart..i). */
static void
value_done(struct jstream *js, struct feed *f)
{
	js->mode = M_IDLE;
	if (js->len == 0) {
		f->cb(f->arg, JSTREAM_MSG, (const char *)f->p + f->vstart,
		    f->i - f->vstart);
		return;
	}
	if (reserve(js, js->len + f->i) == -1) {
		f->rc = -1;
		f->cb(f->arg, JSTREAM_INVALID, js->buf,
		    js->len < js->pfx ? js->len : js->pfx);
		release(js);
		return;
	}
	memcpy(js->buf + js->len, f->p, f->i);
	js->len += f->i;
	f->cb(f->arg, JSTREAM_MSG, js->buf, js->len);
	release(js);
}

/*
 * VALUE: follows it up to the byte that would make it max_msg + 1 bytes
 * long (the value holds len + (i - vstart) bytes).
 */
static void
feed_value(struct jstream *js, struct feed *f)
{
	const unsigned char	*p = f->p;
	size_t			 room = js->max_msg - js->len, end, i;

	end = f->n - f->vstart > room ? f->vstart + room : f->n;
	switch (scan(js, p, &f->i, end)) {
	case S_DONE:
		value_done(js, f);
		return;
	case S_MORE:
		i = f->i;
		if (i == f->n) {
			if (save_tail(js, p, f->vstart, f->n, f->cb,
			    f->arg) == -1)
				f->rc = -1;
			return;
		}
		/* p[i] would be byte max_msg + 1: a column-0 opener there
		 * breaks the value off as any other would. */
		if (!js->in_str && (p[i] == '{' || p[i] == '[') &&
		    (i > 0 ? p[i - 1] == '\n' : js->bol))
			break;
		f->cb(f->arg, JSTREAM_OVERSIZED, prefix(js, p, f->vstart,
		    js->pfx), js->pfx);
		release(js);
		js->mode = M_SKIP;
		return;
	case S_BREAK:
		break;
	case S_ERR:
		/* the value is p[vstart..i], offender included */
		value_invalid(js, f, js->len + (f->i - f->vstart) + 1);
		js->mode = p[f->i++] == '\n' ? M_IDLE : M_DISCARD;
		return;
	}
	/* broken off: the value is p[vstart..i), the opener excluded */
	value_invalid(js, f, js->len + (f->i - f->vstart));
	js->mode = M_IDLE;
}

/* SKIP: follows a value already reported, silently to its end. */
static void
feed_skip(struct jstream *js, struct feed *f)
{
	switch (scan(js, f->p, &f->i, f->n)) {
	case S_DONE:
		js->mode = M_IDLE;
		break;
	case S_MORE:
		break;
	case S_BREAK:
		f->cb(f->arg, JSTREAM_INVALID, "", 0);
		js->mode = M_IDLE;
		break;
	case S_ERR:
		f->cb(f->arg, JSTREAM_INVALID, "", 0);
		js->mode = f->p[f->i++] == '\n' ? M_IDLE : M_DISCARD;
		break;
	}
}

/*
 * GARBAGE: the line so far is buf[0..len) + p[i..); looks for its end
 * among the bytes still missing from the prefix, reports it once that
 * prefix or the line is complete, or keeps it for the next feed.
 */
static void
feed_garbage(struct jstream *js, struct feed *f)
{
	const unsigned char	*p = f->p, *nl;
	const char		*s;
	size_t			 i = f->i, n = f->n, room, end, k;

	room = js->pfx - js->len;
	end = n - i > room ? i + room : n;
	if ((nl = memchr(p + i, '\n', end - i)) != NULL) {
		k = js->len + (size_t)(nl - p) - i;
		s = prefix(js, p, i, k);
		if (k > 0 && s[k - 1] == '\r')
			k--;
		f->cb(f->arg, JSTREAM_INVALID, s, k);
		release(js);
		f->i = (size_t)(nl - p) + 1;
		js->mode = M_IDLE;
		return;
	}
	if (js->len + (end - i) == js->pfx) {
		s = prefix(js, p, i, js->pfx);
		f->cb(f->arg, JSTREAM_INVALID, s, js->pfx);
		release(js);
		f->i = end;
		js->mode = M_DISCARD;
		return;
	}
	/* end == n: keep what there is for the next feed */
	k = n - i;
	f->i = n;
	if (reserve(js, js->len + k) == -1) {
		f->rc = -1;
		f->cb(f->arg, JSTREAM_INVALID, js->buf != NULL ? js->buf : "",
		    js->len);
		release(js);
		js->mode = M_DISCARD;
		return;
	}
	memcpy(js->buf + js->len, p + i, k);
	js->len += k;
}

/* DISCARD: the rest of a bad line, up to and including its '\n'. */
static void
feed_discard(struct jstream *js, struct feed *f)
{
	const unsigned char *nl = memchr(f->p + f->i, '\n', f->n - f->i);

	if (nl == NULL) {
		f->i = f->n;
		return;
	}
	f->i = (size_t)(nl - f->p) + 1;
	js->mode = M_IDLE;
}

int
jstream_feed(struct jstream *js, const char *data, size_t n, jstream_cb cb,
    void *arg)
{
	struct feed	f = { (const unsigned char *)data, n, 0, 0, cb, arg, 0 };

	if (n == 0)
		return 0;
	while (f.i < n) {
		switch (js->mode) {
		case M_IDLE:
			feed_idle(js, &f);
			break;
		case M_VALUE:
			feed_value(js, &f);
			break;
		case M_SKIP:
			feed_skip(js, &f);
			break;
		case M_GARBAGE:
			feed_garbage(js, &f);
			break;
		case M_DISCARD:
			feed_discard(js, &f);
			break;
		}
	}
	js->bol = f.p[n - 1] == '\n';
	return f.rc;
}
