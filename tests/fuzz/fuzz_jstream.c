/*
 * libFuzzer target for jstream.
 *
 * Input: byte 0 picks max_msg, byte 1 max_depth, bytes 2-3 seed the
 * generator of chunk sizes; the rest is the stream.  The stream is fed
 * whole, in random chunks and one byte at a time, and each run must give
 * the same callbacks as a naive byte-at-a-time reference model of the
 * contract below.  Every callback is checked on its own as well: a frame
 * is one balanced value of 2..max_msg bytes, an error report shows at most
 * min(64, max_msg) bytes, and the buffer never grows past max_msg.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *       -o fj tests/fuzz/fuzz_jstream.c src/jstream.c
 *   ./fj -max_total_time=60 tests/fuzz/corpus/jstream
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jstream.h"

#define PFX_MAX		64
#define DEPTH_MAX	16

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

struct ev {
	enum jstream_kind	 kind;
	size_t			 off;	/* into the recorder's arena */
	size_t			 len;
};

struct rec {
	struct jstream	*js;
	size_t		 max_msg;
	unsigned	 max_depth;
	size_t		 pfx;
	struct ev	*ev;
	size_t		 n, evcap;
	char		*arena;
	size_t		 used, arenacap;
};

#define check(x)	do { if (!(x)) abort(); } while (0)

static void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	check(p != NULL);
	return p;
}

static void
rec_add(struct rec *r, enum jstream_kind kind, const char *buf, size_t len)
{
	if (r->n == r->evcap) {
		r->evcap = r->evcap ? r->evcap * 2 : 64;
		r->ev = xrealloc(r->ev, r->evcap * sizeof(*r->ev));
	}
	while (r->used + len > r->arenacap) {
		r->arenacap = r->arenacap ? r->arenacap * 2 : 4096;
		r->arena = xrealloc(r->arena, r->arenacap);
	}
	if (len > 0)
		memcpy(r->arena + r->used, buf, len);
	r->ev[r->n].kind = kind;
	r->ev[r->n].off = r->used;
	r->ev[r->n].len = len;
	r->n++;
	r->used += len;
}

/*
 * Returns 1 if buf[0..len) is exactly one balanced value (brackets match,
 * strings and escapes are closed, no raw control byte in a string, depth
 * within max_depth) that closes at its last byte, else 0.
 */
static int
balanced(const unsigned char *buf, size_t len, unsigned max_depth)
{
	unsigned char	 stack[DEPTH_MAX];
	unsigned	 depth = 0;
	int		 in_str = 0, esc = 0;
	size_t		 i;
	unsigned char	 c;

	if (len < 2 || (buf[0] != '{' && buf[0] != '['))
		return 0;
	for (i = 0; i < len; i++) {
		c = buf[i];
		if (in_str) {
			if (c < 0x20)
				return 0;
			if (esc)
				esc = 0;
			else if (c == '\\')
				esc = 1;
			else if (c == '"')
				in_str = 0;
		} else if (c == '"')
			in_str = 1;
		else if (c == '{' || c == '[') {
			if (depth == max_depth)
				return 0;
			stack[depth++] = c == '{' ? '}' : ']';
		} else if (c == '}' || c == ']') {
			if (depth == 0 || stack[depth - 1] != c)
				return 0;
			if (--depth == 0)
				return i == len - 1;
		}
	}
	return 0;
}

static void
cb(void *arg, enum jstream_kind kind, const char *buf, size_t len)
{
	struct rec	*r = arg;

	check(buf != NULL);
	check(jstream_capacity(r->js) <= r->max_msg);
	switch (kind) {
	case JSTREAM_MSG:
		check(len >= 2 && len <= r->max_msg);
		check(balanced((const unsigned char *)buf, len, r->max_depth));
		break;
	case JSTREAM_OVERSIZED:
		check(len == r->pfx);
		check(buf[0] == '{' || buf[0] == '[');
		break;
	case JSTREAM_INVALID:
		check(len <= r->pfx);
		break;
	default:
		abort();
	}
	rec_add(r, kind, buf, len);
}

/*
 * The reference model: one byte at a time, the whole value kept (it only
 * counts up to max_msg + 1), no fast path.
 */
enum { R_IDLE, R_VALUE, R_SKIP, R_GARBAGE, R_DISCARD };

struct ref {
	struct rec	*r;
	int		 mode;
	unsigned char	*val;		/* the value so far, or the garbage */
	size_t		 len;
	unsigned char	 stack[DEPTH_MAX];
	unsigned	 depth;
	int		 in_str, esc;
	unsigned char	 prev;
};

static void
ref_report(struct ref *f, enum jstream_kind kind, size_t len)
{
	if (len > f->r->pfx)
		len = f->r->pfx;
	rec_add(f->r, kind, (const char *)f->val, len);
}

static void
ref_byte(struct ref *f, unsigned char c)
{
	struct rec	*r = f->r;
	int		 err = 0;

 again:
	switch (f->mode) {
	case R_IDLE:
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			break;
		f->len = 0;
		f->val[f->len++] = c;
		if (c == '{' || c == '[') {
			f->stack[0] = c == '{' ? '}' : ']';
			f->depth = 1;
			f->in_str = f->esc = 0;
			f->mode = R_VALUE;
			break;
		}
		f->mode = R_GARBAGE;
		if (f->len == r->pfx) {
			ref_report(f, JSTREAM_INVALID, f->len);
			f->mode = R_DISCARD;
		}
		break;
	case R_GARBAGE:
		if (c == '\n') {
			if (f->val[f->len - 1] == '\r')
				f->len--;
			ref_report(f, JSTREAM_INVALID, f->len);
			f->mode = R_IDLE;
			break;
		}
		f->val[f->len++] = c;
		if (f->len == r->pfx) {
			ref_report(f, JSTREAM_INVALID, f->len);
			f->mode = R_DISCARD;
		}
		break;
	case R_DISCARD:
		if (c == '\n')
			f->mode = R_IDLE;
		break;
	case R_VALUE:
	case R_SKIP:
		if (!f->in_str && (c == '{' || c == '[') && f->prev == '\n') {
			ref_report(f, JSTREAM_INVALID,
			    f->mode == R_VALUE ? f->len : 0);
			f->mode = R_IDLE;
			goto again;
		}
		if (f->mode == R_VALUE && f->len == r->max_msg) {
			ref_report(f, JSTREAM_OVERSIZED, r->pfx);
			f->mode = R_SKIP;
		}
		if (f->mode == R_VALUE)
			f->val[f->len++] = c;
		if (f->in_str) {
			if (c < 0x20)
				err = 1;
			else if (f->esc)
				f->esc = 0;
			else if (c == '\\')
				f->esc = 1;
			else if (c == '"')
				f->in_str = 0;
		} else if (c == '"')
			f->in_str = 1;
		else if (c == '{' || c == '[') {
			if (f->depth == r->max_depth)
				err = 1;
			else
				f->stack[f->depth++] = c == '{' ? '}' : ']';
		} else if (c == '}' || c == ']') {
			if (f->stack[f->depth - 1] != c)
				err = 1;
			else if (--f->depth == 0) {
				if (f->mode == R_VALUE)
					rec_add(r, JSTREAM_MSG,
					    (const char *)f->val, f->len);
				f->mode = R_IDLE;
			}
		}
		if (err) {
			ref_report(f, JSTREAM_INVALID,
			    f->mode == R_VALUE ? f->len : 0);
			f->mode = c == '\n' ? R_IDLE : R_DISCARD;
		}
		break;
	}
	f->prev = c;
}

static void
rec_init(struct rec *r, size_t max_msg, unsigned max_depth)
{
	memset(r, 0, sizeof(*r));
	r->max_msg = max_msg;
	r->max_depth = max_depth;
	r->pfx = max_msg < PFX_MAX ? max_msg : PFX_MAX;
	r->js = jstream_new(max_msg, max_depth);
	check(r->js != NULL);
}

static void
rec_free(struct rec *r)
{
	jstream_free(r->js);
	free(r->ev);
	free(r->arena);
}

static void
rec_feed(struct rec *r, const uint8_t *p, size_t len)
{
	check(jstream_feed(r->js, (const char *)p, len, cb, r) == 0);
	check(jstream_capacity(r->js) <= r->max_msg);
	check(jstream_buffered(r->js) <= jstream_capacity(r->js));
}

static void
rec_same(const struct rec *a, const struct rec *b)
{
	size_t	 i;

	check(a->n == b->n);
	for (i = 0; i < a->n; i++) {
		check(a->ev[i].kind == b->ev[i].kind);
		check(a->ev[i].len == b->ev[i].len);
		check(memcmp(a->arena + a->ev[i].off, b->arena + b->ev[i].off,
		    a->ev[i].len) == 0);
	}
}

static uint32_t
next(uint32_t *s)
{
	uint32_t	 x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rec	 whole, chunked, bytes, model;
	struct ref	 f;
	size_t		 max_msg, i, k;
	unsigned	 max_depth;
	uint32_t	 seed, x;

	if (size < 4)
		return 0;
	max_msg = data[0] < 128 ? 2 + (size_t)data[0] :
	    256 + (size_t)(data[0] - 128) * 64;
	max_depth = 1 + (data[1] & (DEPTH_MAX - 1));
	seed = 0x9e3779b9u ^ ((uint32_t)data[2] << 8 | data[3]);
	data += 4;
	size -= 4;

	rec_init(&whole, max_msg, max_depth);
	rec_feed(&whole, data, size);

	rec_init(&chunked, max_msg, max_depth);
	for (i = 0; i < size; i += k) {
		x = next(&seed);
		k = x & 3 ? 1 + (x >> 8) % 8 : 1 + (x >> 8) % 300;
		if (k > size - i)
			k = size - i;
		rec_feed(&chunked, data + i, k);
	}
	rec_same(&whole, &chunked);

	rec_init(&bytes, max_msg, max_depth);
	for (i = 0; i < size; i++)
		rec_feed(&bytes, data + i, 1);
	rec_same(&whole, &bytes);

	/* what is held at the end is what the model has not decided yet */
	memset(&f, 0, sizeof(f));
	rec_init(&model, max_msg, max_depth);
	f.r = &model;
	f.mode = R_IDLE;
	f.prev = '\n';
	f.val = xrealloc(NULL, max_msg + 1);
	for (i = 0; i < size; i++)
		ref_byte(&f, data[i]);
	rec_same(&whole, &model);
	if (f.mode == R_VALUE || f.mode == R_GARBAGE)
		check(jstream_buffered(whole.js) == f.len);
	else
		check(jstream_buffered(whole.js) == 0);
	check(jstream_buffered(bytes.js) == jstream_buffered(chunked.js));

	/* after a reset, a message goes through on its own */
	jstream_reset(whole.js);
	check(jstream_buffered(whole.js) == 0);
	k = whole.n;
	rec_feed(&whole, (const uint8_t *)"{}", 2);
	check(whole.n == k + 1 && whole.ev[k].kind == JSTREAM_MSG);

	free(f.val);
	rec_free(&whole);
	rec_free(&chunked);
	rec_free(&bytes);
	rec_free(&model);
	return 0;
}
