/*
 * qmpsim -- a QEMU QMP simulator for the qmp2mqtt tests and benchmarks.
 *
 * Serves N unix QMP sockets DIR/PREFIXi.qmp the way QEMU 7.2 does around
 * COLO, and takes orders on stdin (one per line, each answered on stdout by
 * one line starting with "ok " or "err ").  See tests/sim/README.md.
 *
 * One thread, one epoll set, non-blocking sockets.  Output to a client is
 * queued in a growable buffer plus a queue of lazily produced "jobs" (huge
 * pads, garbage, ...) and bursts of events are generated only while little is
 * queued, so a client that does not read costs a bounded amount of memory and
 * never stalls the other VMs.  Writes to stdout are blocking and flushed
 * after every line.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#define GEN_LOW       (64u * 1024)          /* lazy output is produced below this */
#define OUT_HIGH      (1024u * 1024)        /* client input is not read above this */
#define OUT_HARD_MAX  (256u * 1024 * 1024)  /* client is dropped above this */
#define FLUSH_BUDGET  (256u * 1024)         /* bytes per client per wake-up */
#define READ_CHUNK    65536
#define READS_PER_WAKE 4
#define MAX_MSG       (64u * 1024 * 1024)   /* QEMU's MAX_TOKEN_SIZE */
#define MAX_DEPTH     1024                  /* QEMU's MAX_NESTING */
#define STDIN_MAX     (16u * 1024 * 1024)   /* longest control line */
#define STDIN_PAUSE   (1024u * 1024)        /* stop reading stdin while busy */
#define SLOW_NS       1000000LL             /* 1 ms between bytes in slow mode */
#define K_BASE_S      1700000000LL
#define NAME_SHOW_MAX 200

/* epoll tags: type in the top bits, client generation, VM index */
#define T_LISTEN 1ULL
#define T_CLIENT 2ULL
#define T_STDIN  3ULL
#define T_SIGNAL 0ULL
#define TAG(t, gen, idx) (((uint64_t)(t) << 62) | (((uint64_t)(gen) & 0x3fffffffULL) << 32) | (uint64_t)(idx))
#define TAG_TYPE(u) ((u) >> 62)
#define TAG_GEN(u)  ((uint32_t)(((u) >> 32) & 0x3fffffffULL))
#define TAG_IDX(u)  ((uint32_t)(u))

/* ------------------------------------------------------------------ */
/* small helpers                                                        */

static void die(const char *what) __attribute__((noreturn));
static void die(const char *what)
{
	fprintf(stderr, "qmpsim: %s\n", what);
	exit(1);
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		die("out of memory");
	return q;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		die("out of memory");
	return d;
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* growable byte buffer; bytes [off, len) are pending */
struct dbuf {
	char *d;
	size_t off, len, cap;
};

static size_t db_pending(const struct dbuf *b)
{
	return b->len - b->off;
}

static void db_reserve(struct dbuf *b, size_t n)
{
	if (b->cap - b->len >= n)
		return;
	if (b->off) {
		memmove(b->d, b->d + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->cap - b->len >= n)
			return;
	}
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < n) {
		if (cap > SIZE_MAX / 2)
			die("buffer too large");
		cap *= 2;
	}
	b->d = xrealloc(b->d, cap);
	b->cap = cap;
}

static void db_put(struct dbuf *b, const void *p, size_t n)
{
	if (!n)
		return;
	db_reserve(b, n);
	memcpy(b->d + b->len, p, n);
	b->len += n;
}

static void db_puts(struct dbuf *b, const char *s)
{
	db_put(b, s, strlen(s));
}

static void db_printf(struct dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void db_printf(struct dbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	db_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(b->d + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static void db_reset(struct dbuf *b)
{
	b->off = b->len = 0;
}

static void db_free(struct dbuf *b)
{
	free(b->d);
	b->d = NULL;
	b->off = b->len = b->cap = 0;
}

static void db_consume(struct dbuf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len) {
		b->off = b->len = 0;
		if (b->cap > 256 * 1024)  /* give memory back after a burst */
			db_free(b);
	}
}

/* UTF-8 decoding as QEMU's mod_utf8_codepoint, roughly: -1 when invalid */
static int utf8_cp(const unsigned char *s, size_t n, size_t *used)
{
	unsigned c = s[0], cp, min;
	size_t len;
	if (c < 0x80) {
		*used = 1;
		return (int)c;
	}
	if ((c & 0xE0) == 0xC0) {
		len = 2; cp = c & 0x1F; min = 0x80;
	} else if ((c & 0xF0) == 0xE0) {
		len = 3; cp = c & 0x0F; min = 0x800;
	} else if ((c & 0xF8) == 0xF0) {
		len = 4; cp = c & 0x07; min = 0x10000;
	} else {
		*used = 1;
		return -1;
	}
	for (size_t i = 1; i < len; i++) {
		if (i >= n || (s[i] & 0xC0) != 0x80) {
			*used = i;
			return -1;
		}
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	*used = len;
	if (c == 0xC0 && s[1] == 0x80)  /* modified UTF-8 NUL */
		return 0;
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return -1;
	return (int)cp;
}

/* a JSON string the way QEMU's qobject_to_json writes it (ASCII only) */
static void db_jstr_len(struct dbuf *b, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	db_reserve(b, n + 2);
	b->d[b->len++] = '"';
	while (n) {
		size_t used;
		int cp = utf8_cp(s, n, &used);
		s += used;
		n -= used;
		switch (cp) {
		case '"': db_puts(b, "\\\""); break;
		case '\\': db_puts(b, "\\\\"); break;
		case '\b': db_puts(b, "\\b"); break;
		case '\f': db_puts(b, "\\f"); break;
		case '\n': db_puts(b, "\\n"); break;
		case '\r': db_puts(b, "\\r"); break;
		case '\t': db_puts(b, "\\t"); break;
		default:
			if (cp < 0)
				cp = 0xFFFD;
			if (cp > 0xFFFF)
				db_printf(b, "\\u%04X\\u%04X", 0xD800 + ((cp - 0x10000) >> 10),
					  0xDC00 + ((cp - 0x10000) & 0x3FF));
			else if (cp < 0x20 || cp >= 0x7F)
				db_printf(b, "\\u%04X", cp);
			else {
				db_reserve(b, 1);
				b->d[b->len++] = (char)cp;
			}
		}
	}
	db_put(b, "\"", 1);
}

static void db_jstr(struct dbuf *b, const char *s)
{
	db_jstr_len(b, s, strlen(s));
}

/* any JSON value, QEMU style (", " and ": " separators) */
static void db_json(struct dbuf *b, struct json_object *o)
{
	switch (json_object_get_type(o)) {
	case json_type_null:
		db_puts(b, "null");
		break;
	case json_type_boolean:
		db_puts(b, json_object_get_boolean(o) ? "true" : "false");
		break;
	case json_type_int:
	case json_type_double:
		db_puts(b, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		break;
	case json_type_string:
		db_jstr_len(b, json_object_get_string(o), (size_t)json_object_get_string_len(o));
		break;
	case json_type_array: {
		size_t n = json_object_array_length(o);
		db_puts(b, "[");
		for (size_t i = 0; i < n; i++) {
			if (i)
				db_puts(b, ", ");
			db_json(b, json_object_array_get_idx(o, i));
		}
		db_puts(b, "]");
		break;
	}
	case json_type_object: {
		struct json_object_iterator it = json_object_iter_begin(o);
		struct json_object_iterator end = json_object_iter_end(o);
		bool first = true;
		db_puts(b, "{");
		while (!json_object_iter_equal(&it, &end)) {
			if (!first)
				db_puts(b, ", ");
			first = false;
			db_jstr(b, json_object_iter_peek_name(&it));
			db_puts(b, ": ");
			db_json(b, json_object_iter_peek_value(&it));
			json_object_iter_next(&it);
		}
		db_puts(b, "}");
		break;
	}
	}
}

/* decode \r \n \t \\ \xHH; other backslashes stay literal */
static size_t unescape(char *s)
{
	char *w = s;
	const char *r = s;
	while (*r) {
		if (r[0] == '\\' && r[1]) {
			char c = r[1];
			if (c == 'r' || c == 'n' || c == 't' || c == '\\') {
				*w++ = c == 'r' ? '\r' : c == 'n' ? '\n' : c == 't' ? '\t' : '\\';
				r += 2;
				continue;
			}
			if (c == 'x' && isxdigit((unsigned char)r[2]) && isxdigit((unsigned char)r[3])) {
				char hex[3] = { r[2], r[3], 0 };
				*w++ = (char)strtoul(hex, NULL, 16);
				r += 4;
				continue;
			}
		}
		*w++ = *r++;
	}
	*w = 0;
	return (size_t)(w - s);
}

/* ------------------------------------------------------------------ */
/* state                                                                */

enum job_kind { JOB_LIT, JOB_REPEAT, JOB_RANDOM };

struct job {
	struct job *next;
	enum job_kind kind;
	unsigned char ch;       /* JOB_REPEAT */
	uint64_t remain;        /* JOB_REPEAT, JOB_RANDOM */
	size_t len;             /* JOB_LIT */
	char data[];
};

struct client {
	int fd;
	uint32_t gen;
	uint32_t mask;          /* epoll events currently registered */
	bool negotiated;
	bool overflow;          /* output over OUT_HARD_MAX: drop the client */
	bool recovering;        /* skipping input after a JSON error */
	json_tokener *tok;      /* only while an input message is incomplete */
	size_t msg_bytes;
	struct dbuf out;
	struct job *jobs, *jobs_tail;
	size_t job_bytes;       /* literal bytes held by jobs */
	uint64_t queued_total;  /* bytes ever put into out */
	uint64_t written_total; /* bytes ever written to the socket */
};

struct vm {
	uint32_t idx;
	char *name, *path;
	int lfd;
	bool enabled;           /* listen wanted (not after "unlisten") */
	bool mute, slow;
	bool deaf;              /* greets and writes, reads nothing (QEMU's lost monitor) */
	char *stall;            /* a command read but never answered nor done, or NULL */
	uint32_t gen;
	uint32_t slow_pos;
	struct client *c;
	char *mode, *last_mode, *reason;
	uint64_t k;             /* COLO_EXIT events emitted (the timestamp counter) */
	char *early_mode, *early_reason; /* "early": COLO_EXIT before the next capabilities reply */
	uint64_t heartbeats, commands, connects;
	/* burst */
	bool in_burst, burst_done;
	uint32_t burst_pos;
	uint64_t burst_gen, burst_end;
};

enum pending { P_NONE, P_WAIT_READY, P_BURST };

static struct {
	/* options */
	const char *dir, *prefix, *init_mode;
	uint32_t nvms;
	int vmaj, vmin, vmic, ver;
	bool no_colo_status, stamp_now, close_listener;
	uint64_t rng;

	int ep, sfd, reserve_fd;
	struct vm *vms;
	uint32_t nready;
	uint32_t *slow_list, nslow;
	bool slow_armed;
	int64_t slow_deadline;

	/* stdin */
	struct dbuf in, line;
	bool stdin_eof, stdin_watched, stdin_always, stdin_file, stdin_discard;

	/* the one pending control command */
	enum pending pending;
	uint32_t want_ready;
	int64_t ready_deadline;
	struct {
		uint32_t *vms, n, remaining, not_ready, aborted;
		uint64_t count, total, due;
		double rate;    /* total events/s, 0 = as fast as possible */
		int64_t t0;
	} b;

	struct dbuf scratch, desc, shown;
} S;

static void finish(int code) __attribute__((noreturn));

/* ------------------------------------------------------------------ */
/* stdout                                                               */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = vfprintf(stdout, fmt, ap);
	va_end(ap);
	if (r < 0 || fputc('\n', stdout) == EOF || fflush(stdout) == EOF)
		finish(1);      /* whoever read us is gone */
}

/* a client-provided string, made safe for one stdout word */
static const char *shown(const char *s, size_t n)
{
	struct dbuf *bp = &S.shown, b = *bp;
	db_reset(&b);
	for (size_t i = 0; i < n && i < NAME_SHOW_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= ' ' || ch >= 0x7f || ch == '\\')
			db_printf(&b, "\\x%02x", ch);
		else
			db_put(&b, &ch, 1);
	}
	if (n > NAME_SHOW_MAX)
		db_puts(&b, "...");
	if (!n)
		db_puts(&b, "\"\"");
	db_put(&b, "", 1);
	*bp = b;
	return b.d;
}

/* ------------------------------------------------------------------ */
/* client output                                                        */

static uint64_t rng_next(void)
{
	uint64_t x = S.rng;     /* xorshift64* */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	S.rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void burst_vm_done(struct vm *v, bool aborted);

static uint64_t burst_target(const struct vm *v)
{
	if (S.b.rate <= 0)
		return S.b.count;
	uint64_t j = v->burst_pos, n = S.b.n;
	if (S.b.due <= j)
		return 0;
	uint64_t t = (S.b.due - j + n - 1) / n;
	return t < S.b.count ? t : S.b.count;
}

static bool burst_can_gen(const struct vm *v)
{
	return S.pending == P_BURST && v->in_burst && !v->burst_done &&
	       v->burst_gen < burst_target(v);
}

static bool has_more(const struct vm *v)
{
	const struct client *c = v->c;
	return db_pending(&c->out) || c->jobs || burst_can_gen(v);
}

static void out_append(struct client *c, const void *p, size_t n)
{
	db_put(&c->out, p, n);
	c->queued_total += n;
}

static void check_overflow(struct vm *v)
{
	struct client *c = v->c;
	if (!c->overflow && db_pending(&c->out) + c->job_bytes > OUT_HARD_MAX) {
		fprintf(stderr, "qmpsim: %s: more than %u bytes queued, dropping the client\n",
			v->name, OUT_HARD_MAX);
		c->overflow = true;
	}
}

static struct job *job_new(struct client *c, enum job_kind kind, size_t extra)
{
	struct job *j = xrealloc(NULL, sizeof *j + extra);
	memset(j, 0, sizeof *j);
	j->kind = kind;
	if (c->jobs_tail)
		c->jobs_tail->next = j;
	else
		c->jobs = j;
	c->jobs_tail = j;
	return j;
}

/* queue bytes behind whatever is already queued */
static void client_emit(struct vm *v, const void *p, size_t n)
{
	struct client *c = v->c;
	if (!c || c->overflow)
		return;
	if (c->jobs) {
		struct job *j = job_new(c, JOB_LIT, n);
		memcpy(j->data, p, n);
		j->len = n;
		c->job_bytes += n;
	} else {
		out_append(c, p, n);
	}
	check_overflow(v);
}

static void client_emit_lit(struct vm *v, const char *s)
{
	struct client *c = v->c;
	if (!c)
		return;
	struct job *j = job_new(c, JOB_LIT, strlen(s));
	j->len = strlen(s);
	memcpy(j->data, s, j->len);
	c->job_bytes += j->len;
}

static void client_emit_repeat(struct vm *v, enum job_kind kind, unsigned char ch, uint64_t n)
{
	if (!v->c || !n)
		return;
	struct job *j = job_new(v->c, kind, 0);
	j->ch = ch;
	j->remain = n;
}

static void job_produce(struct client *c)
{
	struct job *j = c->jobs;
	size_t room = GEN_LOW - db_pending(&c->out);
	if (room < 4096)
		room = 4096;
	if (j->kind == JOB_LIT) {
		out_append(c, j->data, j->len);
		c->job_bytes -= j->len;
		j->remain = 0;
	} else {
		size_t n = j->remain < room ? (size_t)j->remain : room;
		db_reserve(&c->out, n);
		char *p = c->out.d + c->out.len;
		if (j->kind == JOB_REPEAT) {
			memset(p, j->ch, n);
		} else {
			for (size_t i = 0; i < n; i += 8) {
				uint64_t r = rng_next();
				size_t m = n - i < 8 ? n - i : 8;
				memcpy(p + i, &r, m);
			}
		}
		c->out.len += n;
		c->queued_total += n;
		j->remain -= n;
	}
	if (!j->remain) {
		c->jobs = j->next;
		if (!c->jobs)
			c->jobs_tail = NULL;
		free(j);
	}
}

static void put_timestamp(struct dbuf *b, uint64_t k)
{
	long long s;
	long us;
	if (S.stamp_now || !k) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		s = ts.tv_sec;
		us = ts.tv_nsec / 1000;
	} else {
		s = K_BASE_S + (long long)(k / 1000000);
		us = (long)(k % 1000000);
	}
	db_printf(b, "{\"timestamp\": {\"seconds\": %lld, \"microseconds\": %ld}, ", s, us);
}

static void format_colo_exit(struct dbuf *b, struct vm *v, const char *mode, const char *reason)
{
	db_reset(b);
	put_timestamp(b, ++v->k);
	db_puts(b, "\"event\": \"COLO_EXIT\", \"data\": {\"mode\": ");
	db_jstr(b, mode);
	db_puts(b, ", \"reason\": ");
	db_jstr(b, reason);
	db_puts(b, "}}\r\n");
}

static void emit_colo_exit(struct vm *v, const char *mode, const char *reason)
{
	format_colo_exit(&S.scratch, v, mode, reason);
	client_emit(v, S.scratch.d, S.scratch.len);
}

/* produce lazy output until GEN_LOW bytes are queued */
static void client_fill(struct vm *v)
{
	struct client *c = v->c;
	while (db_pending(&c->out) < GEN_LOW) {
		if (c->jobs) {
			job_produce(c);
		} else if (burst_can_gen(v)) {
			format_colo_exit(&S.scratch, v, v->mode, "error");
			out_append(c, S.scratch.d, S.scratch.len);
			if (++v->burst_gen == S.b.count)
				v->burst_end = c->queued_total;
		} else {
			break;
		}
	}
}

static void burst_check_vm(struct vm *v)
{
	if (S.pending == P_BURST && v->in_burst && !v->burst_done && v->c &&
	    v->burst_gen == S.b.count && v->c->written_total >= v->burst_end)
		burst_vm_done(v, false);
}

static void client_update_events(struct vm *v)
{
	struct client *c = v->c;
	uint32_t m = 0;
	if (!v->mute) {
		if (v->deaf)
			m |= EPOLLRDHUP;        /* only to see the client go */
		else if (db_pending(&c->out) <= OUT_HIGH)
			m |= EPOLLIN | EPOLLRDHUP;
		if (!v->slow && has_more(v))
			m |= EPOLLOUT;
	}
	if (m != c->mask) {
		struct epoll_event ev = { .events = m, .data.u64 = TAG(T_CLIENT, c->gen, v->idx) };
		if (epoll_ctl(S.ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
			fprintf(stderr, "qmpsim: epoll_ctl: %s\n", strerror(errno));
		c->mask = m;
	}
}

static void client_close(struct vm *v, bool announce);

static void slow_arm(void)
{
	if (!S.slow_armed) {
		S.slow_armed = true;
		S.slow_deadline = mono_ns();
	}
}

/* write what is queued (and generate more) until EAGAIN or the budget */
static void client_flush(struct vm *v)
{
	struct client *c = v->c;
	if (!c)
		return;
	if (c->overflow) {
		client_close(v, true);
		return;
	}
	if (!v->mute && !v->slow) {
		size_t budget = FLUSH_BUDGET;
		while (budget) {
			if (db_pending(&c->out) < GEN_LOW)
				client_fill(v);
			size_t n = db_pending(&c->out);
			if (!n)
				break;
			if (n > budget)
				n = budget;
			ssize_t w = send(c->fd, c->out.d + c->out.off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				client_close(v, true);
				return;
			}
			db_consume(&c->out, (size_t)w);
			c->written_total += (uint64_t)w;
			budget -= (size_t)w;
		}
	} else if (v->slow && !v->mute && has_more(v)) {
		slow_arm();
	}
	burst_check_vm(v);
	client_update_events(v);
}

/* ------------------------------------------------------------------ */
/* listeners and connections                                            */

static int vm_listen(struct vm *v)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memcpy(a.sun_path, v->path, strlen(v->path) + 1);
	unlink(v->path);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG(T_LISTEN, 0, v->idx) };
	if (epoll_ctl(S.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = errno;
		close(fd);
		unlink(v->path);
		return -e;
	}
	v->lfd = fd;
	return 0;
}

static void vm_unlisten_fd(struct vm *v)
{
	if (v->lfd >= 0) {
		close(v->lfd);
		v->lfd = -1;
	}
}

static int vm_relisten(struct vm *v)
{
	if (!v->enabled || v->lfd >= 0 || (S.close_listener && v->c))
		return 0;
	int r = vm_listen(v);
	if (r < 0)
		fprintf(stderr, "qmpsim: %s: cannot listen on %s: %s\n", v->name, v->path, strerror(-r));
	return r;
}

static void client_free(struct client *c)
{
	if (c->tok)
		json_tokener_free(c->tok);
	db_free(&c->out);
	while (c->jobs) {
		struct job *j = c->jobs;
		c->jobs = j->next;
		free(j);
	}
	free(c);
}

static void client_close(struct vm *v, bool announce)
{
	struct client *c = v->c;
	if (!c)
		return;
	close(c->fd);
	if (c->negotiated)
		S.nready--;
	v->c = NULL;
	client_free(c);
	if (S.pending == P_BURST && v->in_burst && !v->burst_done)
		burst_vm_done(v, true);
	if (announce)
		say("client %s closed", v->name);
	vm_relisten(v);
}

static void vm_accept(struct vm *v)
{
	while (v->lfd >= 0) {
		int fd = accept4(v->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if ((errno == EMFILE || errno == ENFILE) && S.reserve_fd >= 0) {
				/* out of fds: take the connection with the reserve fd and drop it */
				close(S.reserve_fd);
				fd = accept(v->lfd, NULL, NULL);
				if (fd >= 0)
					close(fd);
				S.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				fprintf(stderr, "qmpsim: %s: out of file descriptors, connection dropped\n", v->name);
				if (fd >= 0)
					continue;
			}
			return;
		}
		if (v->c || !v->enabled) {
			close(fd);      /* one client at a time */
			say("client %s rejected", v->name);
			continue;
		}
		struct client *c = xrealloc(NULL, sizeof *c);
		memset(c, 0, sizeof *c);
		c->fd = fd;
		c->gen = ++v->gen;
		v->c = c;
		v->connects++;
		struct epoll_event ev = { .events = 0, .data.u64 = TAG(T_CLIENT, c->gen, v->idx) };
		if (epoll_ctl(S.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			fprintf(stderr, "qmpsim: epoll_ctl: %s\n", strerror(errno));
			client_close(v, false);
			continue;
		}
		say("client %s connected", v->name);
		struct dbuf *b = &S.scratch;
		db_reset(b);
		db_printf(b, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": %d, \"minor\": %d, \"major\": %d}, "
			  "\"package\": \"qmpsim\"}, \"capabilities\": [\"oob\"]}}\r\n",
			  S.vmic, S.vmin, S.vmaj);
		client_emit(v, b->d, b->len);
		if (S.close_listener) {
			vm_unlisten_fd(v);  /* the path stays: connect() gets ECONNREFUSED */
			client_flush(v);
			return;
		}
		client_flush(v);
	}
}

/* ------------------------------------------------------------------ */
/* QMP                                                                  */

static void reply_tail(struct dbuf *b, bool has_id, struct json_object *id)
{
	if (has_id) {
		db_puts(b, ", \"id\": ");
		db_json(b, id);
	}
	db_puts(b, "}\r\n");
}

static void reply_return(struct vm *v, const char *ret, bool has_id, struct json_object *id)
{
	struct dbuf *b = &S.scratch;
	db_reset(b);
	db_puts(b, "{\"return\": ");
	db_puts(b, ret);
	reply_tail(b, has_id, id);
	client_emit(v, b->d, b->len);
}

static void reply_error(struct vm *v, const char *cls, bool has_id, struct json_object *id,
			const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void reply_error(struct vm *v, const char *cls, bool has_id, struct json_object *id,
			const char *fmt, ...)
{
	struct dbuf *d = &S.desc;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	db_reset(d);
	if (n >= 0) {
		db_reserve(d, (size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(d->d, (size_t)n + 1, fmt, ap);
		va_end(ap);
		d->len = (size_t)n;
	}
	struct dbuf *b = &S.scratch;
	db_reset(b);
	db_puts(b, "{\"error\": {\"class\": ");
	db_jstr(b, cls);
	db_puts(b, ", \"desc\": ");
	db_jstr_len(b, d->d ? d->d : "", d->len);
	db_puts(b, "}");
	reply_tail(b, has_id, id);
	client_emit(v, b->d, b->len);
}

static void set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = xstrdup(s);
}

static void handle_msg(struct vm *v, struct json_object *o)
{
	struct client *c = v->c;
	struct json_object *id = NULL, *exec = NULL;
	bool has_id = false, oob = false;

	if (!json_object_is_type(o, json_type_object)) {
		say("invalid %s not-an-object", v->name);
		reply_error(v, "GenericError", false, NULL, "QMP input must be a JSON object");
		return;
	}
	has_id = json_object_object_get_ex(o, "id", &id);
	struct json_object_iterator it = json_object_iter_begin(o);
	struct json_object_iterator end = json_object_iter_end(o);
	for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		const char *key = json_object_iter_peek_name(&it);
		struct json_object *val = json_object_iter_peek_value(&it);
		if (!strcmp(key, "execute") || !strcmp(key, "exec-oob")) {
			if (!json_object_is_type(val, json_type_string)) {
				say("invalid %s bad-member %s", v->name, key);
				reply_error(v, "GenericError", has_id, id,
					    "QMP input member '%s' must be a string", key);
				return;
			}
			if (exec) {
				say("invalid %s bad-member %s", v->name, key);
				reply_error(v, "GenericError", has_id, id,
					    "QMP input member '%s' is unexpected", key);
				return;
			}
			exec = val;
			oob = key[4] == '-';
		} else if (!strcmp(key, "arguments")) {
			if (!json_object_is_type(val, json_type_object)) {
				say("invalid %s bad-member %s", v->name, key);
				reply_error(v, "GenericError", has_id, id,
					    "QMP input member 'arguments' must be an object");
				return;
			}
		} else if (strcmp(key, "id") != 0) {
			say("invalid %s bad-member %s", v->name, shown(key, strlen(key)));
			reply_error(v, "GenericError", has_id, id,
				    "QMP input member '%s' is unexpected", key);
			return;
		}
	}
	if (!exec) {
		say("invalid %s no-execute", v->name);
		reply_error(v, "GenericError", has_id, id, "QMP input lacks member 'execute'");
		return;
	}

	const char *name = json_object_get_string(exec);
	size_t nlen = (size_t)json_object_get_string_len(exec);
	say("recv %s %s", v->name, shown(name, nlen));
	v->commands++;
	if (!strcmp(name, "x-colo-lost-heartbeat"))
		v->heartbeats++;

	if (oob) {
		reply_error(v, "GenericError", has_id, id, "The command %s does not support OOB", name);
		return;
	}
	if (v->stall && c->negotiated && !strcmp(name, v->stall))
		return;         /* "stall": no answer, no effect */
	if (!c->negotiated) {
		if (strcmp(name, "qmp_capabilities") != 0) {
			reply_error(v, "CommandNotFound", has_id, id,
				    "Expecting capabilities negotiation with 'qmp_capabilities'");
			return;
		}
		c->negotiated = true;
		S.nready++;
		if (v->early_mode) {
			/* QEMU may emit an event between negotiating and replying. */
			emit_colo_exit(v, v->early_mode, v->early_reason);
			free(v->early_mode);
			free(v->early_reason);
			v->early_mode = v->early_reason = NULL;
		}
		reply_return(v, "{}", has_id, id);
		say("client %s ready", v->name);
		return;
	}
	if (!strcmp(name, "qmp_capabilities")) {
		reply_error(v, "CommandNotFound", has_id, id,
			    "Capabilities negotiation is already complete, command ignored");
	} else if (!strcmp(name, "query-colo-status") && !S.no_colo_status && S.ver >= 30100) {
		struct dbuf r = { 0 };
		db_puts(&r, "{");
		if (S.ver >= 40000) {
			db_puts(&r, "\"last-mode\": ");
			db_jstr(&r, v->last_mode);
			db_puts(&r, ", ");
		}
		db_puts(&r, "\"mode\": ");
		db_jstr(&r, v->mode);
		db_puts(&r, ", \"reason\": ");
		db_jstr(&r, v->reason);
		db_puts(&r, "}");
		db_put(&r, "", 1);
		reply_return(v, r.d, has_id, id);
		db_free(&r);
	} else if (!strcmp(name, "x-colo-lost-heartbeat") && S.ver >= 20800) {
		if (!strcmp(v->mode, "none")) {
			reply_error(v, "GenericError", has_id, id, "%s",
				    S.ver >= 80000 ? "VM is not in COLO mode"
						   : "The feature 'colo' is not enabled");
			return;
		}
		emit_colo_exit(v, v->mode, "request");
		char *old = v->mode;
		v->mode = xstrdup("none");
		free(v->last_mode);
		v->last_mode = old;
		set_str(&v->reason, "request");
		reply_return(v, "{}", has_id, id);
	} else if (!strcmp(name, "query-status")) {
		reply_return(v, "{\"status\": \"running\", \"singlestep\": false, \"running\": true}",
			     has_id, id);
	} else {
		reply_error(v, "CommandNotFound", has_id, id, "The command %s has not been found", name);
	}
}

/* drop the parser; give memory back after a huge input message */
static void tok_done(struct client *c)
{
	json_tokener_free(c->tok);
	c->tok = NULL;
	if (c->msg_bytes > OUT_HIGH)
		malloc_trim(0);
}

static void parse_failed(struct vm *v, const char *desc)
{
	struct client *c = v->c;
	say("invalid %s %s", v->name, desc);
	reply_error(v, "GenericError", false, NULL, "%s", desc);
	tok_done(c);
	c->recovering = true;
}

/* feed received bytes to the incremental JSON parser */
static void client_feed(struct vm *v, const char *p, size_t len)
{
	struct client *c = v->c;
	while (len && v->c == c) {
		if (c->recovering) {
			/* resynchronise at the next line or object start */
			while (len && *p != '\n' && *p != '{') {
				p++;
				len--;
			}
			if (!len)
				break;
			if (*p == '\n') {
				p++;
				len--;
			}
			c->recovering = false;
			continue;
		}
		if (!c->tok) {
			while (len && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
				p++;
				len--;
			}
			if (!len)
				break;
			c->tok = json_tokener_new_ex(MAX_DEPTH + 1);
			if (!c->tok)
				die("out of memory");
			c->msg_bytes = 0;
		}
		int chunk = len > INT_MAX ? INT_MAX : (int)len;
		struct json_object *o = json_tokener_parse_ex(c->tok, p, chunk);
		enum json_tokener_error e = json_tokener_get_error(c->tok);
		if (e == json_tokener_continue) {
			c->msg_bytes += (size_t)chunk;
			p += chunk;
			len -= (size_t)chunk;
			if (c->msg_bytes > MAX_MSG)
				parse_failed(v, "JSON token size limit exceeded");
			continue;
		}
		size_t used = json_tokener_get_parse_end(c->tok);
		if (used > (size_t)chunk)
			used = (size_t)chunk;
		if (e == json_tokener_success) {
			p += used;
			len -= used;
			handle_msg(v, o);
			json_object_put(o);
			tok_done(c);
			continue;
		}
		if (e == json_tokener_error_depth)
			parse_failed(v, "JSON nesting depth limit exceeded");
		else {
			struct dbuf d = { 0 };
			db_printf(&d, "JSON parse error, %s", json_tokener_error_desc(e));
			db_put(&d, "", 1);
			parse_failed(v, d.d);
			db_free(&d);
		}
		used++;         /* skip the offending byte */
		if (used > len)
			used = len;
		p += used;
		len -= used;
	}
}

static void client_read(struct vm *v)
{
	static char buf[READ_CHUNK];
	struct client *c = v->c;
	for (int i = 0; i < READS_PER_WAKE; i++) {
		if (v->c != c || v->mute || v->deaf || db_pending(&c->out) > OUT_HIGH || c->overflow)
			break;
		ssize_t n = read(c->fd, buf, sizeof buf);
		if (n == 0) {
			client_close(v, true);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			client_close(v, true);
			return;
		}
		client_feed(v, buf, (size_t)n);
		if ((size_t)n < sizeof buf)
			break;
	}
	if (v->c == c)
		client_flush(v);
}

static void client_event(struct vm *v, uint32_t gen, uint32_t events)
{
	struct client *c = v->c;
	if (!c || c->gen != gen)
		return;         /* stale: that client is gone */
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		if (v->deaf && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
			client_close(v, true);  /* its input is never read */
			return;
		}
		if (!v->mute && db_pending(&c->out) <= OUT_HIGH)
			client_read(v);
		if (v->c == c && (events & (EPOLLHUP | EPOLLERR)))
			client_close(v, true);
		if (v->c != c)
			return;
	}
	if (events & EPOLLOUT)
		client_flush(v);
}

/* ------------------------------------------------------------------ */
/* slow mode, bursts, pending control commands                          */

static void slow_set(struct vm *v, bool on)
{
	if (on == v->slow)
		return;
	v->slow = on;
	if (on) {
		v->slow_pos = S.nslow;
		S.slow_list[S.nslow++] = v->idx;
	} else {
		uint32_t last = S.slow_list[--S.nslow];
		S.slow_list[v->slow_pos] = last;
		S.vms[last].slow_pos = v->slow_pos;
	}
	if (v->c)
		client_flush(v);
}

static void slow_tick(void)
{
	bool more = false;
	S.slow_armed = false;
	for (uint32_t i = 0; i < S.nslow; i++) {
		struct vm *v = &S.vms[S.slow_list[i]];
		struct client *c = v->c;
		if (!c || v->mute)
			continue;
		if (c->overflow) {
			client_close(v, true);
			continue;
		}
		if (!db_pending(&c->out))
			client_fill(v);
		if (db_pending(&c->out)) {
			ssize_t w = send(c->fd, c->out.d + c->out.off, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				client_close(v, true);
				continue;
			}
			if (w == 1) {
				db_consume(&c->out, 1);
				c->written_total++;
			}
		}
		burst_check_vm(v);
		client_update_events(v);
		if (has_more(v))
			more = true;
	}
	if (more) {
		S.slow_armed = true;
		S.slow_deadline = mono_ns() + SLOW_NS;
	}
}

static void burst_vm_done(struct vm *v, bool aborted)
{
	v->burst_done = true;
	if (aborted)
		S.b.aborted++;
	S.b.remaining--;
}

static void burst_end(const char *extra)
{
	for (uint32_t i = 0; i < S.b.n; i++)
		S.vms[S.b.vms[i]].in_burst = false;
	free(S.b.vms);
	S.b.vms = NULL;
	S.pending = P_NONE;
	if (extra)
		say("err burst %s", extra);
	else if (!S.b.not_ready && !S.b.aborted)
		say("ok burst");
	else if (!S.b.aborted)
		say("err burst not-ready=%u", S.b.not_ready);
	else
		say("err burst not-ready=%u aborted=%u", S.b.not_ready, S.b.aborted);
}

static void kick(struct vm *v)
{
	if (v->c && v->in_burst && !v->burst_done)
		client_flush(v);
}

/* rate-driven bursts: advance the number of events due */
static void burst_tick(int64_t now)
{
	if (S.pending != P_BURST || S.b.rate <= 0 || S.b.due >= S.b.total)
		return;
	double d = (double)(now - S.b.t0) / 1e9 * S.b.rate + 1;  /* truncation = floor */
	uint64_t due = d >= (double)S.b.total ? S.b.total : (uint64_t)d;
	if (due <= S.b.due)
		return;
	uint64_t old = S.b.due;
	S.b.due = due;
	if (due - old >= S.b.n) {
		for (uint32_t i = 0; i < S.b.n; i++)
			kick(&S.vms[S.b.vms[i]]);
	} else {
		for (uint64_t i = old; i < due; i++)
			kick(&S.vms[S.b.vms[i % S.b.n]]);
	}
}

static int64_t burst_deadline(void)
{
	if (S.pending != P_BURST || S.b.rate <= 0 || S.b.due >= S.b.total)
		return -1;
	return S.b.t0 + (int64_t)((double)S.b.due * 1e9 / S.b.rate) + 1;
}

static void check_pending(void)
{
	if (S.pending == P_WAIT_READY) {
		if (S.nready >= S.want_ready) {
			S.pending = P_NONE;
			say("ok ready %u", S.want_ready);
		} else if ((S.stdin_eof && !S.stdin_file) || mono_ns() >= S.ready_deadline) {
			S.pending = P_NONE;
			say("err timeout ready=%u", S.nready);
		}
	} else if (S.pending == P_BURST) {
		if (S.b.remaining == 0)
			burst_end(NULL);
		else if (S.stdin_eof && !S.stdin_file)
			burst_end("interrupted");  /* the controller is gone */
	}
}

/* ------------------------------------------------------------------ */
/* control commands                                                     */

static char *word(char **pp)
{
	char *p = *pp;
	while (*p == ' ' || *p == '\t')
		p++;
	if (!*p) {
		*pp = p;
		return NULL;
	}
	char *w = p;
	while (*p && *p != ' ' && *p != '\t')
		p++;
	if (*p)
		*p++ = 0;
	*pp = p;
	return w;
}

static bool vm_index(const char *s, size_t n, uint32_t *idx)
{
	size_t pl = strlen(S.prefix);
	if (n <= pl || memcmp(s, S.prefix, pl) != 0 || s[pl] == '0')
		return false;
	uint64_t val = 0;
	for (size_t i = pl; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		val = val * 10 + (uint64_t)(s[i] - '0');
		if (val > S.nvms)
			return false;
	}
	*idx = (uint32_t)(val - 1);
	return true;
}

static bool parse_sel(const char *s, uint32_t *lo, uint32_t *hi)
{
	if (!s)
		return false;
	if (!strcmp(s, "all")) {
		*lo = 0;
		*hi = S.nvms - 1;
		return true;
	}
	size_t n = strlen(s);
	if (vm_index(s, n, lo)) {
		*hi = *lo;
		return true;
	}
	for (const char *d = strchr(s, '-'); d; d = strchr(d + 1, '-')) {
		uint32_t a, b;
		if (vm_index(s, (size_t)(d - s), &a) && vm_index(d + 1, strlen(d + 1), &b)) {
			*lo = a < b ? a : b;
			*hi = a < b ? b : a;
			return true;
		}
	}
	return false;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	if (!s || !*s || *s == '-' || *s == '+')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool parse_onoff(const char *s, bool *on)
{
	if (s && !strcmp(s, "on"))
		*on = true;
	else if (s && !strcmp(s, "off"))
		*on = false;
	else
		return false;
	return true;
}

static void cmd_burst(uint32_t lo, uint32_t hi, uint64_t count, double rate, bool per_vm)
{
	S.b.n = 0;
	S.b.not_ready = S.b.aborted = 0;
	S.b.vms = xrealloc(NULL, sizeof *S.b.vms * (hi - lo + 1));
	for (uint32_t i = lo; i <= hi; i++) {
		struct vm *v = &S.vms[i];
		if (!v->c || !v->c->negotiated) {
			S.b.not_ready++;
			continue;
		}
		v->in_burst = true;
		v->burst_done = false;
		v->burst_pos = S.b.n;
		v->burst_gen = 0;
		v->burst_end = 0;
		S.b.vms[S.b.n++] = i;
	}
	S.b.count = count;
	S.b.total = count * S.b.n;
	S.b.remaining = S.b.n;
	S.b.rate = per_vm ? rate * S.b.n : rate;
	S.b.t0 = mono_ns();
	S.b.due = S.b.rate > 0 ? 0 : S.b.total;
	S.pending = P_BURST;
	if (count == 0) {
		for (uint32_t i = 0; i < S.b.n; i++)
			burst_vm_done(&S.vms[S.b.vms[i]], false);
		return;
	}
	if (S.b.rate > 0)
		burst_tick(S.b.t0);
	else
		for (uint32_t i = 0; i < S.b.n; i++)
			kick(&S.vms[S.b.vms[i]]);
}

static void exec_line(char *line)
{
	char *p = line;
	char *cmd = word(&p);
	uint32_t lo = 0, hi = 0;
	if (!cmd || cmd[0] == '#')
		return;

	if (!strcmp(cmd, "quit")) {
		say("ok quit");
		finish(0);
	}
	if (!strcmp(cmd, "wait-ready")) {
		uint64_t n, ms;
		if (!parse_u64(word(&p), &n) || !parse_u64(word(&p), &ms) || n > UINT32_MAX ||
		    ms > 86400000ULL) {
			say("err usage: wait-ready N TIMEOUT_MS");
			return;
		}
		S.want_ready = (uint32_t)n;
		S.ready_deadline = mono_ns() + (int64_t)ms * 1000000LL;
		S.pending = P_WAIT_READY;
		return;
	}

	static const char *const sel_cmds[] = {
		"exit", "burst", "raw", "garbage", "big", "endless", "deep", "slow", "close",
		"unlisten", "listen", "mute", "deaf", "stall", "state", "count", "early", NULL
	};
	bool known = false;
	for (int i = 0; sel_cmds[i]; i++)
		known = known || !strcmp(cmd, sel_cmds[i]);
	if (!known) {
		say("err unknown command %s", shown(cmd, strlen(cmd)));
		return;
	}
	char *sel = word(&p);
	if (!parse_sel(sel, &lo, &hi)) {
		say("err unknown vm %s", sel ? shown(sel, strlen(sel)) : "(none)");
		return;
	}

	if (!strcmp(cmd, "exit")) {
		char *mode = word(&p), *reason = word(&p);
		if (!mode || !reason || word(&p)) {
			say("err usage: exit SEL MODE REASON");
			return;
		}
		unescape(mode);
		unescape(reason);
		for (uint32_t i = lo; i <= hi; i++) {
			struct vm *v = &S.vms[i];
			if (v->c && v->c->negotiated) {
				emit_colo_exit(v, mode, reason);
				client_flush(v);
			}
		}
		say("ok exit");
	} else if (!strcmp(cmd, "early")) {
		char *mode = word(&p), *reason = word(&p);
		if (!mode || !reason || word(&p)) {
			say("err usage: early SEL MODE REASON");
			return;
		}
		unescape(mode);
		unescape(reason);
		for (uint32_t i = lo; i <= hi; i++) {
			struct vm *v = &S.vms[i];
			free(v->early_mode);
			free(v->early_reason);
			v->early_mode = xstrdup(mode);
			v->early_reason = xstrdup(reason);
		}
		say("ok early");
	} else if (!strcmp(cmd, "burst")) {
		uint64_t count;
		char *r = NULL;
		double rate = 0;
		bool per_vm = false;
		if (!parse_u64(word(&p), &count) || count > 1000000000ULL) {
			say("err usage: burst SEL COUNT [RATE|RATE/vm]");
			return;
		}
		if ((r = word(&p))) {
			char *end;
			errno = 0;
			rate = strtod(r, &end);
			if (!strcmp(end, "/vm"))
				per_vm = true;
			else if (*end)
				rate = -1;
			if (errno || !(rate > 0) || rate > 1e9) {
				say("err usage: burst SEL COUNT [RATE|RATE/vm]");
				return;
			}
		}
		cmd_burst(lo, hi, count, rate, per_vm);
	} else if (!strcmp(cmd, "raw")) {
		size_t n = unescape(p);
		for (uint32_t i = lo; i <= hi; i++) {
			client_emit(&S.vms[i], p, n);
			client_flush(&S.vms[i]);
		}
		say("ok raw");
	} else if (!strcmp(cmd, "garbage") || !strcmp(cmd, "big") || !strcmp(cmd, "endless") ||
		   !strcmp(cmd, "deep")) {
		uint64_t n;
		if (!parse_u64(word(&p), &n) || n > (1ULL << 40)) {
			say("err usage: %s SEL %s", cmd, strcmp(cmd, "deep") ? "BYTES" : "DEPTH");
			return;
		}
		for (uint32_t i = lo; i <= hi; i++) {
			struct vm *v = &S.vms[i];
			if (!v->c)
				continue;
			if (cmd[0] == 'g') {
				client_emit_repeat(v, JOB_RANDOM, 0, n);
				client_emit_lit(v, "\r\n");
			} else if (cmd[0] == 'b') {
				struct dbuf *b = &S.scratch;
				db_reset(b);
				put_timestamp(b, 0);
				db_puts(b, "\"event\": \"BIG\", \"data\": {\"pad\": \"");
				db_put(b, "", 1);
				size_t fixed = b->len - 1 + 3;
				client_emit_lit(v, b->d);
				client_emit_repeat(v, JOB_REPEAT, 'x', n > fixed ? n - fixed : 0);
				client_emit_lit(v, "\"}}\r\n");
			} else if (cmd[0] == 'e') {
				client_emit_lit(v, "{\"x\": \"");
				client_emit_repeat(v, JOB_REPEAT, 'a', n);
			} else {
				client_emit_repeat(v, JOB_REPEAT, '[', n);
				client_emit_repeat(v, JOB_REPEAT, ']', n);
				client_emit_lit(v, "\r\n");
			}
			check_overflow(v);
			client_flush(v);
		}
		say("ok %s", cmd);
	} else if (!strcmp(cmd, "slow") || !strcmp(cmd, "mute") || !strcmp(cmd, "deaf")) {
		bool on;
		if (!parse_onoff(word(&p), &on)) {
			say("err usage: %s SEL on|off", cmd);
			return;
		}
		for (uint32_t i = lo; i <= hi; i++) {
			struct vm *v = &S.vms[i];
			if (cmd[0] == 's') {
				slow_set(v, on);
			} else if (cmd[0] == 'd') {
				if (v->deaf != on) {
					v->deaf = on;
					if (v->c)
						client_read(v);  /* what waited; re-registers */
				}
			} else if (v->mute != on) {
				v->mute = on;
				if (v->c)
					client_flush(v);  /* also re-registers for input */
			}
		}
		say("ok %s", cmd);
	} else if (!strcmp(cmd, "stall")) {
		char *what = word(&p), *onoff = word(&p);
		bool on;
		if (!*what || !parse_onoff(onoff, &on)) {
			say("err usage: stall SEL COMMAND on|off");
			return;
		}
		for (uint32_t i = lo; i <= hi; i++) {
			struct vm *v = &S.vms[i];
			free(v->stall);
			v->stall = on ? xstrdup(what) : NULL;
		}
		say("ok stall");
	} else if (!strcmp(cmd, "close")) {
		for (uint32_t i = lo; i <= hi; i++)
			client_close(&S.vms[i], true);
		say("ok close");
	} else if (!strcmp(cmd, "unlisten")) {
		for (uint32_t i = lo; i <= hi; i++) {
			struct vm *v = &S.vms[i];
			v->enabled = false;
			client_close(v, true);
			vm_unlisten_fd(v);
			unlink(v->path);
		}
		say("ok unlisten");
	} else if (!strcmp(cmd, "listen")) {
		uint32_t failed = 0;
		for (uint32_t i = lo; i <= hi; i++) {
			struct vm *v = &S.vms[i];
			v->enabled = true;
			if (vm_relisten(v) < 0)
				failed++;
		}
		if (failed)
			say("err listen failed=%u", failed);
		else
			say("ok listen");
	} else if (!strcmp(cmd, "state")) {
		char *m = word(&p), *lm = word(&p), *r = word(&p);
		if (!m || !lm || !r || word(&p)) {
			say("err usage: state SEL MODE LAST_MODE REASON");
			return;
		}
		unescape(m);
		unescape(lm);
		unescape(r);
		for (uint32_t i = lo; i <= hi; i++) {
			set_str(&S.vms[i].mode, m);
			set_str(&S.vms[i].last_mode, lm);
			set_str(&S.vms[i].reason, r);
		}
		say("ok state");
	} else if (!strcmp(cmd, "count")) {
		uint64_t h = 0, c = 0, e = 0, n = 0;
		for (uint32_t i = lo; i <= hi; i++) {
			h += S.vms[i].heartbeats;
			c += S.vms[i].commands;
			e += S.vms[i].k;
			n += S.vms[i].connects;
		}
		say("ok count heartbeats=%" PRIu64 " commands=%" PRIu64 " events=%" PRIu64
		    " connects=%" PRIu64, h, c, e, n);
	}
}

/* ------------------------------------------------------------------ */
/* stdin                                                                */

static void stdin_watch(bool on)
{
	if (S.stdin_always || on == S.stdin_watched)
		return;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG(T_STDIN, 0, 0) };
	if (on) {
		if (epoll_ctl(S.ep, EPOLL_CTL_ADD, 0, &ev) < 0) {
			if (errno == EPERM) {
				S.stdin_always = true;   /* a regular file: always readable */
				S.stdin_file = true;
				return;
			}
			die("cannot watch stdin");
		}
	} else {
		epoll_ctl(S.ep, EPOLL_CTL_DEL, 0, &ev);
	}
	S.stdin_watched = on;
}

static void stdin_read(void)
{
	db_reserve(&S.in, READ_CHUNK);
	ssize_t n = read(0, S.in.d + S.in.len, READ_CHUNK);
	if (n > 0) {
		S.in.len += (size_t)n;
	} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
		S.stdin_eof = true;
		stdin_watch(false);
		S.stdin_always = false;
	}
}

static void stdin_process(void)
{
	for (;;) {
		check_pending();
		if (S.pending)
			break;
		char *base = S.in.d + S.in.off;
		size_t n = db_pending(&S.in);
		char *nl = n ? memchr(base, '\n', n) : NULL;
		size_t take;
		if (nl) {
			take = (size_t)(nl - base) + 1;
		} else if (S.stdin_eof) {
			if (!n)
				finish(0);
			take = n;
		} else {
			if (n > STDIN_MAX) {
				db_consume(&S.in, n);
				if (!S.stdin_discard)
					say("err line too long");
				S.stdin_discard = true;
			}
			break;
		}
		if (S.stdin_discard) {
			S.stdin_discard = false;
			db_consume(&S.in, take);
			continue;
		}
		db_reset(&S.line);
		db_put(&S.line, base, take);
		db_consume(&S.in, take);
		while (S.line.len && (S.line.d[S.line.len - 1] == '\n' || S.line.d[S.line.len - 1] == '\r'))
			S.line.len--;
		db_put(&S.line, "", 1);
		exec_line(S.line.d);
	}
	/* keep reading while idle; while busy, read ahead only a little */
	if (!S.stdin_eof)
		stdin_watch(!S.pending || db_pending(&S.in) < STDIN_PAUSE);
}

/* ------------------------------------------------------------------ */
/* start and stop                                                       */

static void finish(int code)
{
	for (uint32_t i = 0; S.vms && i < S.nvms; i++) {
		struct vm *v = &S.vms[i];
		if (v->c) {
			close(v->c->fd);
			client_free(v->c);
			v->c = NULL;
		}
		vm_unlisten_fd(v);
		if (v->enabled)
			unlink(v->path);
		free(v->name);
		free(v->path);
		free(v->early_mode);
		free(v->early_reason);
		free(v->stall);
		free(v->mode);
		free(v->last_mode);
		free(v->reason);
	}
	free(S.vms);
	free(S.slow_list);
	free(S.b.vms);
	db_free(&S.in);
	db_free(&S.line);
	db_free(&S.scratch);
	db_free(&S.desc);
	db_free(&S.shown);
	if (S.ep >= 0)
		close(S.ep);
	if (S.sfd >= 0)
		close(S.sfd);
	if (S.reserve_fd >= 0)
		close(S.reserve_fd);
	fflush(stdout);
	exit(code);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: qmpsim --dir DIR --vms N [--prefix vm] [--version 7.2.0]\n"
		"              [--mode primary|secondary|none] [--no-colo-status]\n"
		"              [--stamp-now] [--close-listener] [--seed N]\n"
		"Serves DIR/PREFIXi.qmp (i = 1..N) like QEMU's QMP; control commands on stdin.\n"
		"See tests/sim/README.md.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "vms", required_argument, NULL, 'n' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "version", required_argument, NULL, 'V' },
		{ "mode", required_argument, NULL, 'm' },
		{ "no-colo-status", no_argument, NULL, 'C' },
		{ "stamp-now", no_argument, NULL, 'T' },
		{ "close-listener", no_argument, NULL, 'L' },
		{ "seed", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t nvms = 0, seed = 1;
	S.prefix = "vm";
	S.init_mode = "primary";
	S.vmaj = 7;
	S.vmin = 2;
	S.vmic = 0;
	S.ep = S.sfd = S.reserve_fd = -1;
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'd': S.dir = optarg; break;
		case 'n':
			if (!parse_u64(optarg, &nvms) || nvms < 1 || nvms > 1000000)
				die("--vms: expected 1..1000000");
			break;
		case 'p': S.prefix = optarg; break;
		case 'V':
			S.vmic = 0;
			if (sscanf(optarg, "%d.%d.%d", &S.vmaj, &S.vmin, &S.vmic) < 2 || S.vmaj < 0 ||
			    S.vmin < 0 || S.vmic < 0 || S.vmin > 99 || S.vmic > 99)
				die("--version: expected MAJOR.MINOR[.MICRO]");
			break;
		case 'm': S.init_mode = optarg; break;
		case 'C': S.no_colo_status = true; break;
		case 'T': S.stamp_now = true; break;
		case 'L': S.close_listener = true; break;
		case 's':
			if (!parse_u64(optarg, &seed))
				die("--seed: expected a number");
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!S.dir || !nvms || optind != argc) {
		usage(stderr);
		return 2;
	}
	S.nvms = (uint32_t)nvms;
	S.ver = S.vmaj * 10000 + S.vmin * 100 + S.vmic;
	S.rng = seed * 0x9E3779B97F4A7C15ULL ^ 0xD1B54A32D192ED03ULL;
	if (!S.rng)
		S.rng = 1;

	signal(SIGPIPE, SIG_IGN);
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	S.sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
	S.ep = epoll_create1(EPOLL_CLOEXEC);
	if (S.sfd < 0 || S.ep < 0)
		die("cannot create epoll/signalfd");
	struct epoll_event sev = { .events = EPOLLIN, .data.u64 = TAG(T_SIGNAL, 0, 0) };
	epoll_ctl(S.ep, EPOLL_CTL_ADD, S.sfd, &sev);

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
		uint64_t need = nvms * (S.close_listener ? 1 : 2) + 16;
		if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur)
			fprintf(stderr, "qmpsim: warning: %" PRIu64 " VMs may need %" PRIu64
				" file descriptors, the limit is %llu%s\n", nvms, need,
				(unsigned long long)rl.rlim_cur,
				S.close_listener ? "" : " (try --close-listener)");
	}
	S.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	if (mkdir(S.dir, 0755) < 0 && errno != EEXIST)
		die("cannot create --dir");
	S.vms = xrealloc(NULL, sizeof *S.vms * S.nvms);
	S.slow_list = xrealloc(NULL, sizeof *S.slow_list * S.nvms);
	memset(S.vms, 0, sizeof *S.vms * S.nvms);
	for (uint32_t i = 0; i < S.nvms; i++) {
		struct vm *v = &S.vms[i];
		struct dbuf b = { 0 };
		v->idx = i;
		v->lfd = -1;
		v->enabled = true;
		db_printf(&b, "%s%u", S.prefix, i + 1);
		db_put(&b, "", 1);
		v->name = b.d;
		b = (struct dbuf){ 0 };
		db_printf(&b, "%s/%s.qmp", S.dir, v->name);
		db_put(&b, "", 1);
		v->path = b.d;
		v->mode = xstrdup(S.init_mode);
		v->last_mode = xstrdup("none");
		v->reason = xstrdup("none");
		if (strlen(v->path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
			fprintf(stderr, "qmpsim: socket path too long: %s\n", v->path);
			finish(1);
		}
		int r = vm_listen(v);
		if (r < 0) {
			fprintf(stderr, "qmpsim: cannot listen on %s: %s\n", v->path, strerror(-r));
			finish(1);
		}
	}
	say("listening %u %s", S.nvms, S.dir);
	stdin_watch(true);

	static struct epoll_event evs[1024];
	for (;;) {
		int64_t now = mono_ns(), dl = -1;
		int64_t cand[3] = { S.slow_armed ? S.slow_deadline : -1, burst_deadline(),
				    S.pending == P_WAIT_READY ? S.ready_deadline : -1 };
		for (int i = 0; i < 3; i++)
			if (cand[i] >= 0 && (dl < 0 || cand[i] < dl))
				dl = cand[i];
		int timeout = -1;
		if (S.stdin_always && !(S.pending && db_pending(&S.in) >= STDIN_PAUSE))
			timeout = 0;
		else if (dl >= 0)
			timeout = dl <= now ? 0 : (int)((dl - now + 999999) / 1000000);
		int n = epoll_wait(S.ep, evs, 1024, timeout);
		if (n < 0 && errno != EINTR)
			die("epoll_wait failed");
		for (int i = 0; i < n; i++) {
			uint64_t u = evs[i].data.u64;
			switch (TAG_TYPE(u)) {
			case T_SIGNAL: {
				struct signalfd_siginfo si;
				if (read(S.sfd, &si, sizeof si) == (ssize_t)sizeof si)
					finish(0);
				break;
			}
			case T_STDIN:
				stdin_read();
				break;
			case T_LISTEN:
				vm_accept(&S.vms[TAG_IDX(u)]);
				break;
			case T_CLIENT:
				client_event(&S.vms[TAG_IDX(u)], TAG_GEN(u), evs[i].events);
				break;
			}
		}
		if (S.stdin_always && !S.stdin_eof && !(S.pending && db_pending(&S.in) >= STDIN_PAUSE))
			stdin_read();
		now = mono_ns();
		if (S.slow_armed && now >= S.slow_deadline)
			slow_tick();
		burst_tick(now);
		stdin_process();
	}
}
