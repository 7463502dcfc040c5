/*
 * qmp: see qmp.h.
 *
 * One timer per connection serves every state: the backoff delay in
 * BACKOFF, the connect-and-greet deadline in CONNECTING/GREETING/
 * NEGOTIATING, and the oldest command's deadline in READY.  Commands are
 * answered by QEMU in order, so the oldest pending command always has the
 * earliest deadline and one timer suffices.
 *
 * A connection is never torn down from inside jstream's callback (the
 * framer's state would be freed under it): errors found there set
 * q->failing and the read path drops the connection once the feed returns.
 */
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backoff.h"
#include "jstream.h"
#include "log.h"
#include "loop.h"
#include "qmp.h"
#include "ratelim.h"

#define QMP_READ_CHUNK	65536
#define QMP_READS_MAX	16		/* reads per wakeup, for fairness */
#define QMP_WBUF_MAX	(256 * 1024)	/* queued output limit */
#define QMP_EARLY_MAX	1024		/* events held during negotiation */

enum qstate {
	Q_IDLE, Q_BACKOFF, Q_CONNECTING, Q_GREETING, Q_NEGOTIATING, Q_READY
};

static const char *const qstate_names[] = {
	"idle", "backoff", "connecting", "greeting", "negotiating", "ready"
};

struct pending {
	struct pending	*next;
	uint64_t	 id;
	uint64_t	 deadline;
	qmp_reply_cb	 cb;
	void		*arg;
};

struct qmp_gate {
	int		 closed;
	struct qmp	*waiting;	/* connections stopped at the gate */
};

struct qmp {
	struct loop		*loop;
	struct qmp		*gnext, *gprev;	/* on gate->waiting */
	int			 gated;
	struct qmp_opts		 o;
	struct qmp_callbacks	 cb;
	void			*arg;

	enum qstate		 st;
	int			 fd;
	uint32_t		 evmask;
	int			 paused;
	int			 failing;	/* drop after the current feed */
	int			 quiesced;	/* qmp_quiesce(): no more I/O */
	int			 attempts;
	size_t			 buffered;	/* our share of *total_buffered */
	struct loop_timer	*timer;
	struct backoff		 bo;
	struct jstream		*js;

	char			*wbuf;
	size_t			 wlen, woff, wcap;

	uint64_t		 next_id;
	struct pending		*phead, *ptail;
	/* Events that arrived while NEGOTIATING, delivered once READY. */
	json_object		**early;
	size_t			 nearly;
	enum qmp_liveness	 live;
	int			 gone;		/* this attempt proved QMP_GONE */
	struct sockaddr_storage	 peer;		/* address of the attempt */

	struct qmp_stats	 stats;
};

static void	qmp_connect(struct qmp *);
static void	gate_leave(struct qmp *);
static void	qmp_drop(struct qmp *, const char *why);
static void	qmp_io(struct loop *, int, uint32_t, void *);
static void	qmp_timer(struct loop *, struct loop_timer *, void *);

/* 1 when a line about the peer's input may be logged now (see qmp.h). */
static int
input_log(const struct qmp *q)
{
	return q->o.input_log == NULL ||
	    ratelim_allow(q->o.input_log, loop_now_ms());
}

struct qmp *
qmp_new(struct loop *loop, const struct qmp_opts *o,
    const struct qmp_callbacks *cb, void *arg)
{
	struct qmp	*q;

	if ((q = calloc(1, sizeof(*q))) == NULL) {
		log_warn("qmp_new");
		return NULL;
	}
	q->loop = loop;
	q->o = *o;
	/* Own copies: the configuration they came from may be reloaded. */
	q->o.name = q->o.path = q->o.host = q->o.port = NULL;
	if ((q->o.name = strdup(o->name)) == NULL ||
	    (o->path != NULL && (q->o.path = strdup(o->path)) == NULL) ||
	    (o->host != NULL && (q->o.host = strdup(o->host)) == NULL) ||
	    (o->port != NULL && (q->o.port = strdup(o->port)) == NULL)) {
		log_warnx("%s: out of memory", o->name);
		qmp_free(q);
		return NULL;
	}
	q->cb = *cb;
	q->arg = arg;
	q->fd = -1;
	q->next_id = 1;
	backoff_init(&q->bo, o->backoff_min_ms, o->backoff_max_ms, o->seed);
	if ((q->timer = loop_timer_new(loop, qmp_timer, q)) == NULL ||
	    (q->js = jstream_new(o->max_msg, QMP_MAX_DEPTH)) == NULL) {
		log_warnx("%s: out of memory", o->name);
		qmp_free(q);
		return NULL;
	}
	return q;
}

/* Fails every pending command: their callbacks get NULL. */
static void
fail_pending(struct qmp *q)
{
	struct pending	*p;

	while ((p = q->phead) != NULL) {
		q->phead = p->next;
		if (q->phead == NULL)
			q->ptail = NULL;
		if (p->cb != NULL)
			p->cb(q, NULL, p->arg);
		free(p);
	}
}

/* Forgets the events held during negotiation (the connection is gone). */
static void
early_clear(struct qmp *q)
{
	for (size_t i = 0; i < q->nearly; i++)
		json_object_put(q->early[i]);
	free(q->early);
	q->early = NULL;
	q->nearly = 0;
}

static void
close_fd(struct qmp *q)
{
	early_clear(q);
	gate_leave(q);
	if (q->fd != -1) {
		loop_fd_del(q->loop, q->fd);
		close(q->fd);
		q->fd = -1;
	}
	q->wlen = q->woff = 0;
	free(q->wbuf);
	q->wbuf = NULL;
	q->wcap = 0;
	q->failing = 0;
	jstream_reset(q->js);
	if (q->o.total_buffered != NULL)
		*q->o.total_buffered -= q->buffered;
	q->buffered = 0;
}

void
qmp_free(struct qmp *q)
{
	if (q == NULL)
		return;
	gate_leave(q);
	q->st = Q_IDLE;
	close_fd(q);
	fail_pending(q);
	loop_timer_free(q->timer);
	jstream_free(q->js);
	free((char *)(uintptr_t)q->o.name);
	free((char *)(uintptr_t)q->o.path);
	free((char *)(uintptr_t)q->o.host);
	free((char *)(uintptr_t)q->o.port);
	free(q);
}

const char *
qmp_name(const struct qmp *q)
{
	return q->o.name;
}

int
qmp_ready(const struct qmp *q)
{
	return q->st == Q_READY;
}

enum qmp_liveness
qmp_liveness(const struct qmp *q)
{
	return q->live;
}

const char *
qmp_liveness_name(enum qmp_liveness l)
{
	switch (l) {
	case QMP_ALIVE:
		return "alive";
	case QMP_GONE:
		return "gone";
	default:
		return "unreachable";
	}
}

static void
set_liveness(struct qmp *q, enum qmp_liveness l)
{
	if (q->live == l)
		return;
	q->live = l;
	if (q->cb.liveness != NULL)
		q->cb.liveness(q, q->arg);
}

/* Whether a connect() error proves that nothing listens (see qmp.h). */
static int
proves_gone(const struct qmp *q, const struct sockaddr_storage *ss, int err)
{
	/*
	 * ENOENT alone is weak: a wrong path or a QEMU that has not created
	 * its socket yet look the same; it counts once this connection has
	 * seen a QEMU there (QEMU unlinks its socket when it quits cleanly).
	 */
	if (q->o.unix_socket)
		return err == ECONNREFUSED ||
		    (err == ENOENT && q->stats.connects > 0);
	if (err != ECONNREFUSED)
		return 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
		return IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
	}
	return 0;
}

const struct qmp_stats *
qmp_stats(const struct qmp *q)
{
	return &q->stats;
}

size_t
qmp_memory(const struct qmp *q)
{
	return sizeof(*q) + q->wcap + jstream_capacity(q->js);
}

void
qmp_start(struct qmp *q)
{
	if (q->st == Q_IDLE)
		qmp_connect(q);
}

/* Schedules the next attempt after a jittered delay. */
static void
schedule_reconnect(struct qmp *q)
{
	uint32_t	delay = backoff_next(&q->bo);

	q->st = Q_BACKOFF;
	log_debug("%s: reconnecting in %u ms", q->o.name, delay);
	loop_timer_arm(q->timer, delay);
}

/*
 * Drops the connection for the reason given and schedules a reconnect.
 * Pending commands fail; a READY connection reports down().
 */
static void
qmp_drop(struct qmp *q, const char *why)
{
	int	was_ready = q->st == Q_READY;

	if (was_ready)
		log_warnx("%s: QMP connection lost: %s", q->o.name, why);
	else if (q->attempts <= 1 || log_getverbose() > 0)
		log_warnx("%s: QMP connect failed (%s): %s", q->o.name,
		    qstate_names[q->st], why);
	close_fd(q);
	q->st = Q_BACKOFF;
	fail_pending(q);
	schedule_reconnect(q);
	if (was_ready && q->cb.down != NULL)
		q->cb.down(q, q->arg);
	if (!q->gone)
		set_liveness(q, QMP_UNREACHABLE);
	else
		set_liveness(q, QMP_GONE);
	q->gone = 0;
}

static void
set_events(struct qmp *q)
{
	uint32_t ev = 0;

	if (q->fd == -1 || q->quiesced)
		return;
	if (q->st == Q_CONNECTING || q->wlen > q->woff)
		ev |= EPOLLOUT;
	if (q->st != Q_CONNECTING && !q->paused && !q->gated)
		ev |= EPOLLIN;
	if (ev != q->evmask) {
		q->evmask = ev;
		loop_fd_mod(q->loop, q->fd, ev);
	}
}

struct qmp_gate *
qmp_gate_new(void)
{
	return calloc(1, sizeof(struct qmp_gate));
}

void
qmp_gate_free(struct qmp_gate *g)
{
	free(g);
}

int
qmp_gate_closed(const struct qmp_gate *g)
{
	return g != NULL && g->closed;
}

static void
gate_leave(struct qmp *q)
{
	struct qmp_gate *g = q->o.gate;

	if (!q->gated)
		return;
	if (q->gprev != NULL)
		q->gprev->gnext = q->gnext;
	else
		g->waiting = q->gnext;
	if (q->gnext != NULL)
		q->gnext->gprev = q->gprev;
	q->gnext = q->gprev = NULL;
	q->gated = 0;
}

static void
gate_wait(struct qmp *q)
{
	struct qmp_gate *g = q->o.gate;

	if (q->gated)
		return;
	q->gated = 1;
	q->gprev = NULL;
	q->gnext = g->waiting;
	if (g->waiting != NULL)
		g->waiting->gprev = q;
	g->waiting = q;
	set_events(q);
}

void
qmp_gate_set(struct qmp_gate *g, int closed)
{
	struct qmp	*q;
	uint64_t	 now = loop_now_ms();

	g->closed = closed != 0;
	if (g->closed)
		return;
	while ((q = g->waiting) != NULL) {
		gate_leave(q);
		set_events(q);
		/* Time spent at the gate does not count against commands. */
		for (struct pending *p = q->phead; p != NULL; p = p->next)
			p->deadline = now + q->o.command_timeout_ms;
		if (q->phead != NULL && q->st == Q_READY)
			loop_timer_arm(q->timer, q->o.command_timeout_ms);
	}
}

void
qmp_pause(struct qmp *q, int paused)
{
	q->paused = paused != 0;
	set_events(q);
}

/* Opens a non-blocking socket and starts connecting. */
static void
qmp_connect(struct qmp *q)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sslen;
	int			 fd, r, one = 1;

	/* Every attempt but the very first is a reconnect, counted. */
	if (q->attempts > 0 || q->stats.connects > 0)
		q->stats.reconnects++;
	q->attempts++;
	memset(&ss, 0, sizeof(ss));
	if (q->o.unix_socket) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
		sun->sun_family = AF_UNIX;
		snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", q->o.path);
		sslen = sizeof(*sun);
	} else {
		struct addrinfo hints, *res;
		memset(&hints, 0, sizeof(hints));
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_NUMERICSERV;
		if ((r = getaddrinfo(q->o.host, q->o.port, &hints, &res)) != 0) {
			q->st = Q_CONNECTING;
			qmp_drop(q, gai_strerror(r));
			return;
		}
		memcpy(&ss, res->ai_addr, res->ai_addrlen);
		sslen = res->ai_addrlen;
		freeaddrinfo(res);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		q->st = Q_CONNECTING;
		qmp_drop(q, strerror(errno));
		return;
	}
	if (!q->o.unix_socket) {
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	}
	q->fd = fd;
	q->evmask = EPOLLOUT;
	if (loop_fd_add(q->loop, fd, EPOLLOUT, qmp_io, q) == -1) {
		close(fd);
		q->fd = -1;
		q->st = Q_CONNECTING;
		qmp_drop(q, "cannot watch socket");
		return;
	}
	q->st = Q_CONNECTING;
	loop_timer_arm(q->timer, q->o.greeting_timeout_ms);
	q->peer = ss;
	r = connect(fd, (struct sockaddr *)&ss, sslen);
	if (r == -1 && errno != EINPROGRESS) {
		q->gone = proves_gone(q, &q->peer, errno);
		qmp_drop(q, strerror(errno));
		return;
	}
	/* Completion (or failure) is reported through EPOLLOUT. */
}

/* Writes as much queued output as the socket takes.  0, or -1 (dropped). */
static int
flush_out(struct qmp *q)
{
	while (q->woff < q->wlen) {
		ssize_t n = write(q->fd, q->wbuf + q->woff, q->wlen - q->woff);
		if (n == -1) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			q->failing = 1;
			return -1;
		}
		q->woff += (size_t)n;
	}
	if (q->woff == q->wlen) {
		/* Nothing left: an idle connection holds no write buffer
		 * (10 000 VMs: 2.5 MiB). */
		q->woff = q->wlen = 0;
		free(q->wbuf);
		q->wbuf = NULL;
		q->wcap = 0;
	}
	set_events(q);
	return 0;
}

/* Queues one serialized message plus CRLF.  0, or -1 when over the bound. */
static int
queue_out(struct qmp *q, const char *s, size_t len)
{
	size_t	need = q->wlen - q->woff + len + 2;

	if (need > QMP_WBUF_MAX)
		return -1;
	if (q->woff > 0) {
		memmove(q->wbuf, q->wbuf + q->woff, q->wlen - q->woff);
		q->wlen -= q->woff;
		q->woff = 0;
	}
	if (need > q->wcap) {
		size_t n = q->wcap ? q->wcap : 256;
		while (n < need)
			n *= 2;
		char *nb = realloc(q->wbuf, n);
		if (nb == NULL)
			return -1;
		q->wbuf = nb;
		q->wcap = n;
	}
	memcpy(q->wbuf + q->wlen, s, len);
	memcpy(q->wbuf + q->wlen + len, "\r\n", 2);
	q->wlen += len + 2;
	return 0;
}

/* Sends a command now; used for qmp_capabilities and by qmp_command. */
static int
send_command(struct qmp *q, const char *cmd, json_object *args,
    qmp_reply_cb cb, void *arg)
{
	json_object	*o;
	struct pending	*p;
	const char	*s;
	size_t		 len;

	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (o = json_object_new_object()) == NULL) {
		free(p);
		json_object_put(args);
		return -1;
	}
	p->id = q->next_id++;
	p->cb = cb;
	p->arg = arg;
	p->deadline = loop_now_ms() + q->o.command_timeout_ms;
	json_object_object_add(o, "execute", json_object_new_string(cmd));
	if (args != NULL)
		json_object_object_add(o, "arguments", args);
	json_object_object_add(o, "id", json_object_new_int64((int64_t)p->id));
	s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
	if (queue_out(q, s, len) == -1) {
		log_warnx("%s: output queue full, command %s not sent",
		    q->o.name, cmd);
		json_object_put(o);
		free(p);
		return -1;
	}
	log_debug("%s: -> %s", q->o.name, s);
	json_object_put(o);
	if (q->ptail != NULL)
		q->ptail->next = p;
	else
		q->phead = p;
	q->ptail = p;
	if (q->st == Q_READY && !loop_timer_armed(q->timer))
		loop_timer_arm(q->timer, q->o.command_timeout_ms);
	if (flush_out(q) == -1)
		log_debug("%s: write failed", q->o.name);
	return 0;
}

int
qmp_command(struct qmp *q, const char *cmd, json_object *args,
    qmp_reply_cb cb, void *arg)
{
	if (q->st != Q_READY || q->failing || q->quiesced) {
		json_object_put(args);
		return -1;
	}
	return send_command(q, cmd, args, cb, arg);
}

const char *
qmp_error_class(json_object *reply, const char **desc)
{
	json_object	*e, *c, *d;

	*desc = "";
	if (reply == NULL || !json_object_object_get_ex(reply, "error", &e) ||
	    !json_object_is_type(e, json_type_object))
		return NULL;
	if (json_object_object_get_ex(e, "desc", &d) &&
	    json_object_is_type(d, json_type_string))
		*desc = json_object_get_string(d);
	if (json_object_object_get_ex(e, "class", &c) &&
	    json_object_is_type(c, json_type_string))
		return json_object_get_string(c);
	return "GenericError";
}

static void
capabilities_reply(struct qmp *q, json_object *reply, void *arg)
{
	const char	*desc, *cls;

	if (reply == NULL)
		return;		/* connection already dropped */
	if ((cls = qmp_error_class(reply, &desc)) != NULL) {
		log_warnx("%s: qmp_capabilities refused: %s: %s", q->o.name,
		    cls, desc);
		q->failing = 1;
		return;
	}
	q->st = Q_READY;
	q->stats.connects++;
	backoff_reset(&q->bo);
	q->attempts = 0;
	loop_timer_disarm(q->timer);
	log_info("%s: QMP ready", q->o.name);
	if (q->cb.ready != NULL)
		q->cb.ready(q, q->arg);
	/*
	 * Then the events QEMU sent before this reply (it may emit events as
	 * soon as it switched to command mode, before it writes the reply),
	 * in order.  Taken off q first: a callback may drop the connection.
	 */
	{
		json_object	**ev = q->early;
		size_t		  n = q->nearly;

		q->early = NULL;
		q->nearly = 0;
		for (size_t i = 0; i < n; i++) {
			if (q->st == Q_READY && !q->failing) {
				q->stats.events++;
				if (q->cb.event != NULL)
					q->cb.event(q, ev[i], q->arg);
			}
			json_object_put(ev[i]);
		}
		free(ev);
	}
}

/*
 * An event before the capabilities reply: held (a reference) for
 * capabilities_reply(), at most QMP_EARLY_MAX of them (more means a
 * broken peer; the excess is logged and counted unexpected).
 */
static void
early_hold(struct qmp *q, json_object *msg)
{
	json_object **n;

	if (q->nearly >= QMP_EARLY_MAX || (n = realloc(q->early,
	    (q->nearly + 1) * sizeof(*n))) == NULL) {
		q->stats.unexpected++;
		log_warnx("%s: event during capabilities negotiation dropped "
		    "(%zu already held)", q->o.name, q->nearly);
		return;
	}
	q->early = n;
	q->early[q->nearly++] = json_object_get(msg);
}

static void
handle_reply(struct qmp *q, json_object *msg)
{
	json_object	*idv;
	struct pending	*p, *prev = NULL;
	uint64_t	 id;

	if (!json_object_object_get_ex(msg, "id", &idv) ||
	    !json_object_is_type(idv, json_type_int)) {
		q->stats.unexpected++;
		if (input_log(q))
			log_warnx("%s: reply without a valid id ignored",
			    q->o.name);
		return;
	}
	id = (uint64_t)json_object_get_int64(idv);
	for (p = q->phead; p != NULL; prev = p, p = p->next)
		if (p->id == id)
			break;
	if (p == NULL) {
		q->stats.unexpected++;
		if (input_log(q))
			log_warnx("%s: reply to unknown id %llu ignored",
			    q->o.name, (unsigned long long)id);
		return;
	}
	if (prev != NULL)
		prev->next = p->next;
	else
		q->phead = p->next;
	if (q->ptail == p)
		q->ptail = prev;
	if (q->st == Q_READY) {
		if (q->phead != NULL) {
			uint64_t now = loop_now_ms();
			loop_timer_arm(q->timer, q->phead->deadline > now ?
			    q->phead->deadline - now : 0);
		} else
			loop_timer_disarm(q->timer);
	}
	if (p->cb != NULL)
		p->cb(q, msg, p->arg);
	free(p);
}

static void
handle_msg(struct qmp *q, json_object *msg)
{
	json_object	*v;

	if (!json_object_is_type(msg, json_type_object)) {
		q->stats.unexpected++;
		if (input_log(q))
			log_warnx("%s: non-object message ignored", q->o.name);
		return;
	}
	if (q->st == Q_GREETING) {
		if (!json_object_object_get_ex(msg, "QMP", &v)) {
			log_warnx("%s: expected a QMP greeting", q->o.name);
			q->stats.unexpected++;
			q->failing = 1;
			return;
		}
		q->st = Q_NEGOTIATING;
		/* Nothing of the greeting is kept: 10 000 VMs greet at once. */
		if (q->cb.greeting != NULL)
			q->cb.greeting(q, msg, q->arg);
		if (send_command(q, "qmp_capabilities", NULL,
		    capabilities_reply, NULL) == -1)
			q->failing = 1;
		return;
	}
	if (json_object_object_get_ex(msg, "event", &v) &&
	    json_object_is_type(v, json_type_string)) {
		if (q->st == Q_NEGOTIATING) {
			early_hold(q, msg);
			return;
		}
		if (q->st != Q_READY)
			return;
		q->stats.events++;
		if (q->cb.event != NULL)
			q->cb.event(q, msg, q->arg);
		return;
	}
	if (json_object_object_get_ex(msg, "return", &v) ||
	    json_object_object_get_ex(msg, "error", &v)) {
		handle_reply(q, msg);
		return;
	}
	q->stats.unexpected++;
	if (input_log(q))
		log_warnx("%s: message of unknown shape ignored", q->o.name);
}

/* A printable, bounded excerpt of bad input for a log line. */
static void
excerpt(char *dst, size_t dlen, const char *buf, size_t len)
{
	size_t	j = 0;

	for (size_t i = 0; i < len && j + 5 < dlen; i++) {
		unsigned char ch = (unsigned char)buf[i];
		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			dst[j++] = (char)ch;
		else
			j += (size_t)snprintf(dst + j, dlen - j, "\\x%02x", ch);
	}
	dst[j < dlen ? j : dlen - 1] = '\0';
}

static void
on_frame(void *arg, enum jstream_kind kind, const char *buf, size_t len)
{
	struct qmp		*q = arg;
	struct json_tokener	*tok;
	json_object		*msg;
	char			 ex[100];

	if (q->failing)
		return;
	switch (kind) {
	case JSTREAM_INVALID:
		q->stats.invalid++;
		excerpt(ex, sizeof(ex), buf, len > 40 ? 40 : len);
		if (input_log(q))
			log_warnx("%s: invalid QMP input skipped: \"%s\"",
			    q->o.name, ex);
		return;
	case JSTREAM_OVERSIZED:
		q->stats.oversized++;
		excerpt(ex, sizeof(ex), buf, len > 40 ? 40 : len);
		if (input_log(q))
			log_warnx("%s: QMP message over %zu bytes skipped: "
			    "\"%s...\"", q->o.name, q->o.max_msg, ex);
		return;
	case JSTREAM_MSG:
		break;
	}
	if ((tok = q->o.tok) != NULL)
		json_tokener_reset(tok);
	else if ((tok = json_tokener_new_ex(QMP_MAX_DEPTH)) == NULL) {
		log_warnx("%s: out of memory", q->o.name);
		return;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
	    JSON_TOKENER_VALIDATE_UTF8);
	msg = json_tokener_parse_ex(tok, buf, (int)len);
	if (msg == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != len) {
		q->stats.invalid++;
		excerpt(ex, sizeof(ex), buf, len > 40 ? 40 : len);
		if (input_log(q))
			log_warnx("%s: invalid JSON skipped (%s): \"%s\"",
			    q->o.name, json_tokener_error_desc(
			    json_tokener_get_error(tok)), ex);
		json_object_put(msg);
		if (tok != q->o.tok)
			json_tokener_free(tok);
		return;
	}
	if (tok != q->o.tok)
		json_tokener_free(tok);
	if (log_getverbose() > 1)
		log_debug("%s: <- %.*s", q->o.name, (int)(len > 300 ? 300 : len),
		    buf);
	handle_msg(q, msg);
	json_object_put(msg);
}

/*
 * Keeps the shared total of buffered input up to date and enforces its
 * bound: the connection whose partial message crosses it loses that
 * message (the framer resynchronises on what follows).
 */
static void
account(struct qmp *q)
{
	size_t	now = jstream_buffered(q->js);

	if (q->o.total_buffered == NULL)
		return;
	*q->o.total_buffered += now - q->buffered;	/* wraps correctly */
	q->buffered = now;
	if (q->o.total_max > 0 && *q->o.total_buffered > q->o.total_max &&
	    now > 0) {
		q->stats.oversized++;
		if (input_log(q))
			log_warnx("%s: input buffers of all VMs over %zu "
			    "bytes: partial message of %zu bytes dropped",
			    q->o.name, q->o.total_max, now);
		jstream_reset(q->js);
		*q->o.total_buffered -= now;
		q->buffered = 0;
	}
}

/*
 * Reads until EAGAIN, at most QMP_READS_MAX chunks (fairness), and stops
 * early when the connection is paused or its gate closes, unless force
 * (a hang-up: what is left must be read to see the EOF).
 */
static void
do_read(struct qmp *q, int force)
{
	char	buf[QMP_READ_CHUNK];

	for (int i = 0; i < QMP_READS_MAX && q->fd != -1; i++) {
		if (!force && q->paused)
			return;
		if (!force && q->st == Q_READY && qmp_gate_closed(q->o.gate)) {
			gate_wait(q);
			return;
		}
		ssize_t n = read(q->fd, buf, sizeof(buf));
		if (n == 0) {
			qmp_drop(q, "closed by QEMU");
			return;
		}
		if (n == -1) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			qmp_drop(q, strerror(errno));
			return;
		}
		if (jstream_feed(q->js, buf, (size_t)n, on_frame, q) == -1)
			log_warnx("%s: out of memory framing input", q->o.name);
		account(q);
		if (q->failing) {
			qmp_drop(q, "protocol error");
			return;
		}
		if ((size_t)n < sizeof(buf))
			return;
	}
}

void
qmp_quiesce(struct qmp *q)
{
	if (q->fd != -1 && q->st != Q_CONNECTING && !q->failing)
		do_read(q, 1);
	q->paused = 1;
	q->quiesced = 1;
	loop_timer_disarm(q->timer);	/* no reconnect, no deadline */
	gate_leave(q);
	if (q->fd != -1)
		loop_fd_del(q->loop, q->fd);	/* not even EPOLLHUP */
}

static void
qmp_io(struct loop *l, int fd, uint32_t events, void *arg)
{
	struct qmp	*q = arg;

	if (q->st == Q_CONNECTING) {
		int err = 0;
		socklen_t elen = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1)
			err = errno;
		if (err != 0) {
			q->gone = proves_gone(q, &q->peer, err);
			qmp_drop(q, strerror(err));
			return;
		}
		set_liveness(q, QMP_ALIVE);	/* a process accepted */
		q->st = Q_GREETING;
		set_events(q);
		log_debug("%s: connected, waiting for greeting", q->o.name);
		return;
	}
	if (events & EPOLLOUT) {
		if (flush_out(q) == -1) {
			qmp_drop(q, strerror(errno));
			return;
		}
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (q->st == Q_READY && qmp_gate_closed(q->o.gate) &&
		    !(events & (EPOLLHUP | EPOLLERR))) {
			gate_wait(q);
			return;
		}
		if (q->paused && !(events & (EPOLLHUP | EPOLLERR)))
			return;
		do_read(q, (events & (EPOLLHUP | EPOLLERR)) != 0);
	}
}

static void
qmp_timer(struct loop *l, struct loop_timer *t, void *arg)
{
	struct qmp	*q = arg;
	uint64_t	 now;

	if (q->quiesced)
		return;
	switch (q->st) {
	case Q_BACKOFF:
		qmp_connect(q);
		break;
	case Q_CONNECTING:
	case Q_GREETING:
	case Q_NEGOTIATING:
		q->stats.timeouts++;
		qmp_drop(q, q->st == Q_CONNECTING ? "connect timed out" :
		    q->st == Q_GREETING ?
		    "no greeting (is another client connected?)" :
		    "greeted, but qmp_capabilities was not answered (QEMU "
		    "before 11.0 can lose a monitor connection made while it "
		    "starts)");
		break;
	case Q_READY:
		/*
		 * A monitor that stopped answering is broken (QEMU answers
		 * every command we send in milliseconds): reconnect, which
		 * fails the pending commands and resynchronises the stream.
		 */
		now = loop_now_ms();
		if (q->gated || qmp_gate_closed(q->o.gate)) {
			/* Not its fault: its replies wait behind the gate. */
			if (q->phead != NULL)
				loop_timer_arm(q->timer, q->o.command_timeout_ms);
			break;
		}
		if (q->phead != NULL && q->phead->deadline <= now) {
			char why[64];
			q->stats.timeouts++;
			snprintf(why, sizeof(why), "command id %llu timed out",
			    (unsigned long long)q->phead->id);
			qmp_drop(q, why);
		} else if (q->phead != NULL)
			loop_timer_arm(q->timer, q->phead->deadline - now);
		break;
	case Q_IDLE:
		break;
	}
}
