/*
 * mqtt: see mqtt.h.  The only file that includes Paho.
 *
 * Threads: Paho's callbacks (on its threads) only allocate a struct mev,
 * append it to m->evq under m->lock and write the eventfd.  Everything
 * else, the FIFO included, belongs to the loop thread and needs no lock.
 *
 * The FIFO is one list, oldest first.  Entries [head, next) have been
 * handed to Paho (in flight, at most inflight_max); [next, tail] wait.
 * An acknowledgement removes its entry wherever it is (tokens identify
 * them).  On a connection loss every in-flight entry is simply marked
 * unsent again by moving `next` back to the head, so the order on the
 * wire after reconnecting is the original order.
 */
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "backoff.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "spool.h"

enum mev_type { MEV_CONNECTED, MEV_CONNECT_FAILED, MEV_LOST, MEV_ACK,
    MEV_NACK, MEV_MESSAGE, MEV_DISCONNECTED, MEV_SUBACK };

struct mev {
	struct mev	*next;
	enum mev_type	 type;
	int		 token;
	int		 code;
	struct mqtt_msg	 msg;		/* MEV_MESSAGE; strings in data[] */
	struct sub	*sub;		/* MEV_SUBACK */
	char		*text;		/* cause, for logs */
	char		 data[];
};

struct entry {
	struct entry	*next, *prev;
	int		 token;		/* Paho's, while in flight */
	uint64_t	 sid;		/* spool id, 0 if not spooled */
	int		 inflight;
	int		 qos;
	int		 flags;
	size_t		 len;
	size_t		 corr_len;
	char		*topic;		/* these three point into data[]: */
	char		*payload;	/* one allocation per message */
	char		*corr;		/* NULL when none */
	char		 data[];
};

struct sub {
	struct sub	*next;
	struct mqtt	*m;
	char		*filter;
	int		 qos;
	int		 no_retained;
};

struct mqtt {
	struct loop		*loop;
	const struct config	*cf;
	struct mqtt_callbacks	 cb;
	void			*arg;
	MQTTAsync		 cli;
	char			*will_topic;
	char			*will_payload;

	int			 efd;
	pthread_mutex_t		 lock;
	struct mev		*evq, *evq_tail;
	size_t			 evq_msgs;	/* MEV_MESSAGE queued (locked) */
	uint64_t		 evq_dropped;	/* messages refused (locked) */

	int			 connected;
	int			 connecting;
	int			 stopping;
	int			 disconnected;	/* shutdown's disconnect done */
	struct backoff		 bo;
	struct loop_timer	*timer;

	struct entry		*head, *tail, *next;
	size_t			 count;
	size_t			 nstate;	/* MQTT_PUB_STATE entries in count */
	size_t			 inflight;
	struct sub		*subs;
	int			 full;		/* flow: above high water */
	size_t			 high_water;
	struct spool		*spool;
	size_t			 spooled_bytes;	/* live bytes in the spool */
	struct mqtt_stats	 stats;
	uint64_t		 last_drop_log;
	uint64_t		 drops_unlogged;
	struct loop_timer	*drop_timer;	/* reports unlogged drops */
};

static void	pump(struct mqtt *);
static void	flow_check(struct mqtt *);
static void	start_connect(struct mqtt *);

/* --- Paho's threads: post and return ---------------------------------- */

/*
 * Received messages waiting for the loop are bounded: a flood on a
 * subscribed topic while the loop is busy is dropped here, counted, rather
 * than growing without limit.  Only commands arrive this way.
 */
#define EVQ_MSGS_MAX	10000

static void
post(struct mqtt *m, struct mev *e)
{
	uint64_t one = 1;
	int	 wake;

	pthread_mutex_lock(&m->lock);
	if (e->type == MEV_MESSAGE) {
		if (m->evq_msgs >= EVQ_MSGS_MAX) {
			m->evq_dropped++;
			pthread_mutex_unlock(&m->lock);
			free(e);
			return;
		}
		m->evq_msgs++;
	}
	/* Only the first event of a batch needs to wake the loop. */
	wake = m->evq == NULL;
	if (m->evq_tail != NULL)
		m->evq_tail->next = e;
	else
		m->evq = e;
	m->evq_tail = e;
	pthread_mutex_unlock(&m->lock);
	if (wake)
		(void)!write(m->efd, &one, sizeof(one));
}

static void
post_simple(struct mqtt *m, enum mev_type type, int token, int code,
    const char *text)
{
	struct mev *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return;		/* nothing sane to do on a Paho thread */
	e->type = type;
	e->token = token;
	e->code = code;
	if (text != NULL)
		e->text = strdup(text);
	post(m, e);
}

static void
cb_lost(void *ctx, char *cause)
{
	post_simple(ctx, MEV_LOST, 0, 0, cause ? cause : "connection lost");
}

static int
cb_arrived(void *ctx, char *topic, int topiclen, MQTTAsync_message *pm)
{
	struct mqtt	*m = ctx;
	size_t		 tlen = topiclen > 0 ? (size_t)topiclen : strlen(topic);
	size_t		 plen = pm->payloadlen > 0 ? (size_t)pm->payloadlen : 0;
	MQTTProperty	*rt = NULL, *cd = NULL;
	size_t		 rtlen = 0, cdlen = 0;
	struct mev	*e;
	char		*p;

	rt = MQTTProperties_getProperty(&pm->properties,
	    MQTTPROPERTY_CODE_RESPONSE_TOPIC);
	cd = MQTTProperties_getProperty(&pm->properties,
	    MQTTPROPERTY_CODE_CORRELATION_DATA);
	if (rt != NULL)
		rtlen = (size_t)rt->value.data.len;
	if (cd != NULL)
		cdlen = (size_t)cd->value.data.len;
	e = calloc(1, sizeof(*e) + tlen + 1 + plen + 1 + rtlen + 1 + cdlen + 1);
	if (e != NULL) {
		e->type = MEV_MESSAGE;
		p = e->data;
		memcpy(p, topic, tlen);
		p[tlen] = '\0';
		e->msg.topic = p;
		p += tlen + 1;
		if (plen)
			memcpy(p, pm->payload, plen);
		p[plen] = '\0';
		e->msg.payload = p;
		e->msg.len = plen;
		p += plen + 1;
		if (rt != NULL) {
			memcpy(p, rt->value.data.data, rtlen);
			p[rtlen] = '\0';
			e->msg.response_topic = p;
		}
		p += rtlen + 1;
		if (cd != NULL) {
			memcpy(p, cd->value.data.data, cdlen);
			e->msg.correlation = p;
			e->msg.correlation_len = cdlen;
		}
		e->msg.qos = pm->qos;
		e->msg.retained = pm->retained;
		e->msg.dup = pm->dup;
		post(m, e);
	}
	MQTTAsync_freeMessage(&pm);
	MQTTAsync_free(topic);
	return 1;
}

static void
cb_conn_ok(void *ctx, MQTTAsync_successData *r)
{
	post_simple(ctx, MEV_CONNECTED, 0, 0, NULL);
}

static void
cb_conn_ok5(void *ctx, MQTTAsync_successData5 *r)
{
	post_simple(ctx, MEV_CONNECTED, 0, 0, NULL);
}

static void
cb_conn_fail(void *ctx, MQTTAsync_failureData *r)
{
	post_simple(ctx, MEV_CONNECT_FAILED, 0, r ? r->code : 0,
	    r && r->message ? r->message : NULL);
}

static void
cb_conn_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
	post_simple(ctx, MEV_CONNECT_FAILED, 0, r ? r->code : 0,
	    r && r->message ? r->message : NULL);
}

static void
cb_pub_ok(void *ctx, MQTTAsync_successData *r)
{
	post_simple(ctx, MEV_ACK, r ? r->token : 0, 0, NULL);
}

static void
cb_pub_ok5(void *ctx, MQTTAsync_successData5 *r)
{
	post_simple(ctx, r && r->reasonCode >= 0x80 ? MEV_NACK : MEV_ACK,
	    r ? r->token : 0, r ? (int)r->reasonCode : 0, NULL);
}

static void
cb_pub_fail(void *ctx, MQTTAsync_failureData *r)
{
	post_simple(ctx, MEV_NACK, r ? r->token : 0, r ? r->code : 0,
	    r && r->message ? r->message : NULL);
}

static void
cb_pub_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
	int code = r ? r->code : 0;

	if (r != NULL && (int)r->reasonCode >= 0x80)
		code = (int)r->reasonCode;
	post_simple(ctx, MEV_NACK, r ? r->token : 0, code,
	    r && r->message ? r->message : NULL);
}

static void
post_suback(struct sub *sub, int ok)
{
	struct mev *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return;
	e->type = MEV_SUBACK;
	e->sub = sub;
	e->code = ok;
	post(sub->m, e);
}

static void
cb_sub_ok(void *ctx, MQTTAsync_successData *r)
{
	post_suback(ctx, r == NULL || r->alt.qos < 0x80);
}

static void
cb_sub_ok5(void *ctx, MQTTAsync_successData5 *r)
{
	post_suback(ctx, r == NULL || r->reasonCode < 0x80);
}

static void
cb_sub_fail(void *ctx, MQTTAsync_failureData *r)
{
	post_suback(ctx, 0);
}

static void
cb_sub_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
	post_suback(ctx, 0);
}

static void
cb_disc_ok(void *ctx, MQTTAsync_successData *r)
{
	post_simple(ctx, MEV_DISCONNECTED, 0, 0, NULL);
}

static void
cb_disc_ok5(void *ctx, MQTTAsync_successData5 *r)
{
	post_simple(ctx, MEV_DISCONNECTED, 0, 0, NULL);
}

static void
cb_disc_fail(void *ctx, MQTTAsync_failureData *r)
{
	post_simple(ctx, MEV_DISCONNECTED, 0, 0, NULL);
}

static void
cb_disc_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
	post_simple(ctx, MEV_DISCONNECTED, 0, 0, NULL);
}

/* --- the FIFO ----------------------------------------------------------- */

/* The entry is finished (acknowledged or dropped): forget it durably. */
static void
entry_done(struct mqtt *m, struct entry *e)
{
	if (e->sid != 0 && m->spool != NULL) {
		spool_ack(m->spool, e->sid);
		m->spooled_bytes -= e->len + strlen(e->topic);
	}
}

static void
entry_free(struct entry *e)
{
	free(e);
}

static void
unlink_entry(struct mqtt *m, struct entry *e)
{
	if (m->next == e)
		m->next = e->next;
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		m->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		m->tail = e->prev;
	if (e->inflight)
		m->inflight--;
	m->count--;
	if (e->flags & MQTT_PUB_STATE)
		m->nstate--;
	m->stats.buffered = m->count;
	m->stats.inflight = m->inflight;
}

/*
 * Drops the oldest message that is neither in flight nor a state message
 * (current state is small, bounded by the number of VMs, and must reach
 * the broker); returns 0, or -1 if there is none.
 */
static int
drop_oldest(struct mqtt *m)
{
	struct entry	*e = m->next;
	uint64_t	 now = loop_now_ms();

	while (e != NULL && (e->flags & MQTT_PUB_STATE))
		e = e->next;
	if (e == NULL)
		return -1;
	unlink_entry(m, e);
	entry_done(m, e);
	m->stats.dropped++;
	if (now - m->last_drop_log >= 1000 || m->last_drop_log == 0) {
		log_warnx("MQTT buffer full (%zu messages): dropped the oldest "
		    "(%s); %llu dropped so far", m->cf->buffer_max, e->topic,
		    (unsigned long long)m->stats.dropped);
		m->last_drop_log = now;
	} else {
		/* At most one line a second; the rest is summed up later. */
		m->drops_unlogged++;
		if (!loop_timer_armed(m->drop_timer))
			loop_timer_arm(m->drop_timer, 1000);
	}
	entry_free(e);
	return 0;
}

static void
drop_report(struct loop *l, struct loop_timer *t, void *arg)
{
	struct mqtt *m = arg;

	if (m->drops_unlogged == 0)
		return;
	log_warnx("MQTT buffer full (%zu messages): %llu more dropped; %llu "
	    "dropped so far", m->cf->buffer_max,
	    (unsigned long long)m->drops_unlogged,
	    (unsigned long long)m->stats.dropped);
	m->drops_unlogged = 0;
	m->last_drop_log = loop_now_ms();
}

/* In-flight entries become unsent again, in order. */
static void
rewind_inflight(struct mqtt *m)
{
	size_t n = 0;

	for (struct entry *e = m->head; e != NULL && e != m->next; e = e->next)
		if (e->inflight) {
			e->inflight = 0;
			e->token = 0;
			n++;
		}
	m->inflight = 0;
	m->next = m->head;
	m->stats.resent += n;
	m->stats.inflight = 0;
}

/* After a loss: in-flight entries are unsent again; state entries go. */
static void
rewind_fifo(struct mqtt *m)
{
	struct entry	*e, *nx;
	size_t		 resent = 0;

	for (e = m->head; e != NULL; e = nx) {
		nx = e->next;
		if (e->inflight) {
			e->inflight = 0;
			e->token = 0;
			resent++;
		}
		if (e->flags & MQTT_PUB_STATE) {
			unlink_entry(m, e);
			entry_free(e);
		}
	}
	m->inflight = 0;
	m->next = m->head;
	m->stats.resent += resent;
	m->stats.buffered = m->count;
	m->stats.inflight = 0;
}

/*
 * Appends a message to the FIFO (sid: its spool id, or 0 to spool it now
 * when a spool is set and it is not a state message).  0 or -1.
 */
static int
enqueue(struct mqtt *m, const char *topic, const void *payload,
    size_t len, int qos, int flags, const void *corr, size_t corr_len,
    uint64_t sid)
{
	struct entry	*e;
	size_t		 tlen = strlen(topic) + 1;

	if (corr == NULL)
		corr_len = 0;
	if ((e = malloc(sizeof(*e) + tlen + len + corr_len)) == NULL) {
		log_warnx("mqtt: out of memory queueing %s", topic);
		m->stats.dropped++;
		return -1;
	}
	memset(e, 0, sizeof(*e));
	e->topic = e->data;
	memcpy(e->topic, topic, tlen);
	e->payload = e->data + tlen;
	memcpy(e->payload, payload, len);
	e->len = len;
	if (corr != NULL) {
		e->corr = e->payload + len;
		memcpy(e->corr, corr, corr_len);
		e->corr_len = corr_len;
	}
	e->qos = qos;
	e->flags = flags;
	if (sid == 0 && m->spool != NULL &&
	    !(flags & (MQTT_PUB_STATE | MQTT_PUB_VOLATILE)) && corr == NULL)
		sid = spool_append(m->spool, topic, payload, len, qos, flags);
	if ((e->sid = sid) != 0)
		m->spooled_bytes += len + strlen(topic);
	/* The bound counts events and results, not current-state messages. */
	while (!(flags & MQTT_PUB_STATE) &&
	    m->count - m->nstate >= m->cf->buffer_max)
		if (drop_oldest(m) == -1)
			break;
	e->prev = m->tail;
	if (m->tail != NULL)
		m->tail->next = e;
	else
		m->head = e;
	m->tail = e;
	if (m->next == NULL)
		m->next = e;
	m->count++;
	if (flags & MQTT_PUB_STATE)
		m->nstate++;
	m->stats.queued++;
	m->stats.buffered = m->count;
	pump(m);
	flow_check(m);
	return 0;
}

int
mqtt_publish_corr(struct mqtt *m, const char *topic, const void *payload,
    size_t len, int qos, int flags, const void *corr, size_t corr_len)
{
	if ((flags & MQTT_PUB_STATE) && !m->connected)
		return 0;	/* republished by the connected callback */
	return enqueue(m, topic, payload, len, qos, flags, corr, corr_len, 0);
}

static void
replay_one(void *arg, uint64_t id, const char *topic, const void *payload,
    size_t len, int qos, int flags)
{
	struct mqtt *m = arg;

	enqueue(m, topic, payload, len, qos, flags & ~MQTT_PUB_STATE, NULL, 0,
	    id);
}

void
mqtt_set_spool(struct mqtt *m, struct spool *sp)
{
	m->spool = sp;
	spool_replay(sp, replay_one, m);
}

/* Rewrites the spool with only the live messages when it has grown. */
static void
maybe_compact(struct mqtt *m)
{
	struct entry *e;

	if (m->spool == NULL || !spool_should_compact(m->spool,
	    m->spooled_bytes))
		return;
	spool_flush(m->spool);
	if (spool_compact_begin(m->spool) == -1)
		return;
	for (e = m->head; e != NULL; e = e->next)
		if (e->sid != 0 && spool_compact_add(m->spool, e->sid, e->topic,
		    e->payload, e->len, e->qos, e->flags) == -1)
			return;
	if (spool_compact_commit(m->spool) == 0)
		log_debug("mqtt: spool compacted to %llu bytes",
		    (unsigned long long)spool_size(m->spool));
}

int
mqtt_publish(struct mqtt *m, const char *topic, const void *payload,
    size_t len, int qos, int flags)
{
	return mqtt_publish_corr(m, topic, payload, len, qos, flags, NULL, 0);
}

/*
 * Backpressure with hysteresis: full from high_water, not full again
 * below half of it; never full while disconnected.
 */
static void
flow_check(struct mqtt *m)
{
	int full;

	if (!m->connected)
		full = 0;
	else if (m->full)
		full = m->count > m->high_water / 2;
	else
		full = m->count >= m->high_water;
	if (full == m->full)
		return;
	m->full = full;
	log_debug("mqtt: %s (%zu queued)", full ? "backpressure on" :
	    "backpressure off", m->count);
	if (m->cb.flow != NULL)
		m->cb.flow(m, full, m->arg);
}

/* Hands waiting entries to Paho while the window has room. */
static void
pump(struct mqtt *m)
{
	while (m->connected && m->next != NULL &&
	    m->inflight < m->cf->inflight_max) {
		struct entry		*e = m->next;
		MQTTAsync_message	 pm = MQTTAsync_message_initializer;
		MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
		MQTTProperty		 prop;
		int			 rc;

		pm.payload = e->payload;
		pm.payloadlen = (int)e->len;
		pm.qos = e->qos;
		pm.retained = (e->flags & MQTT_PUB_RETAIN) != 0;
		ro.context = m;
		if (m->cf->mqtt_version == 5) {
			ro.onSuccess5 = cb_pub_ok5;
			ro.onFailure5 = cb_pub_fail5;
			if (e->corr != NULL) {
				memset(&prop, 0, sizeof(prop));
				prop.identifier = MQTTPROPERTY_CODE_CORRELATION_DATA;
				prop.value.data.data = e->corr;
				prop.value.data.len = (int)e->corr_len;
				MQTTProperties_add(&pm.properties, &prop);
			}
		} else {
			ro.onSuccess = cb_pub_ok;
			ro.onFailure = cb_pub_fail;
		}
		rc = MQTTAsync_sendMessage(m->cli, e->topic, &pm, &ro);
		MQTTProperties_free(&pm.properties);
		if (rc == MQTTASYNC_DISCONNECTED ||
		    rc == MQTTASYNC_MAX_BUFFERED_MESSAGES ||
		    rc == MQTTASYNC_OPERATION_INCOMPLETE) {
			log_debug("mqtt: send %s deferred: %s", e->topic,
			    MQTTAsync_strerror(rc));
			return;	/* retried on the next ack or connect */
		}
		if (rc != MQTTASYNC_SUCCESS) {
			/* Never sendable (bad topic...): must not block the rest. */
			log_warnx("mqtt: cannot publish to %s: %s; dropped",
			    e->topic, MQTTAsync_strerror(rc));
			unlink_entry(m, e);
			entry_done(m, e);
			m->stats.dropped++;
			entry_free(e);
			continue;
		}
		e->token = ro.token;
		e->inflight = 1;
		m->inflight++;
		m->next = e->next;
		m->stats.inflight = m->inflight;
	}
}

static void
on_ack(struct mqtt *m, int token, int ok, int code)
{
	struct entry	*e;

	for (e = m->head; e != NULL && e != m->next; e = e->next)
		if (e->inflight && e->token == token)
			break;
	if (e == NULL || e == m->next)
		return;		/* stale: from before a reconnect */
	if (!ok && code > 0) {
		/* The broker refused it (MQTT 5 reason code): final. */
		log_warnx("mqtt: broker refused publish to %s (reason 0x%02x); "
		    "dropped", e->topic, code);
		unlink_entry(m, e);
		entry_done(m, e);
		m->stats.dropped++;
		entry_free(e);
		return;
	}
	if (!ok) {
		/*
		 * A client-side failure: Paho released the token, so the
		 * entry is no longer in flight.  Everything in flight is sent
		 * again from the oldest (duplicates, as QoS 1 allows), which
		 * keeps the order and the window's bookkeeping simple.
		 */
		log_warnx("mqtt: publish to %s failed (%s); resending",
		    e->topic, MQTTAsync_strerror(code));
		rewind_inflight(m);
		return;
	}
	unlink_entry(m, e);
	entry_done(m, e);
	m->stats.published++;
	entry_free(e);
	if (m->full)
		flow_check(m);
}

/* --- connection --------------------------------------------------------- */

/*
 * Paho exposes no socket, and does not set TCP_NODELAY: set it on every TCP
 * socket of the process (the QMP ones already have it).  O(open fds), once
 * per broker connection.
 */
static void
set_nodelay_all(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 one = 1, n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		int fd, proto, domain;
		socklen_t len = sizeof(int);
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		fd = atoi(de->d_name);
		if (fd == dirfd(d))
			continue;
		if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == -1 ||
		    proto != IPPROTO_TCP)
			continue;
		len = sizeof(int);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == -1 ||
		    (domain != AF_INET && domain != AF_INET6))
			continue;
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one)) == 0)
			n++;
	}
	closedir(d);
	log_debug("mqtt: TCP_NODELAY set on %d socket(s)", n);
}

static void
reconnect_timer(struct loop *l, struct loop_timer *t, void *arg)
{
	start_connect(arg);
}

static void
schedule_connect(struct mqtt *m)
{
	uint32_t delay;

	if (m->stopping)
		return;
	delay = backoff_next(&m->bo);
	log_debug("mqtt: reconnecting in %u ms", delay);
	loop_timer_arm(m->timer, delay);
}

static void
start_connect(struct mqtt *m)
{
	MQTTAsync_connectOptions	 co = MQTTAsync_connectOptions_initializer;
	MQTTAsync_connectOptions	 co5 = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_willOptions		 wo = MQTTAsync_willOptions_initializer;
	MQTTAsync_SSLOptions		 so = MQTTAsync_SSLOptions_initializer;
	const struct config		*cf = m->cf;
	MQTTAsync_connectOptions	*o;
	int				 rc;

	if (m->stopping || m->connecting || m->connected)
		return;
	if (cf->mqtt_version == 5) {
		o = &co5;
		o->cleanstart = 1;
		o->onSuccess5 = cb_conn_ok5;
		o->onFailure5 = cb_conn_fail5;
	} else {
		o = &co;
		o->cleansession = 1;
		o->onSuccess = cb_conn_ok;
		o->onFailure = cb_conn_fail;
	}
	o->context = m;
	o->keepAliveInterval = cf->keepalive_s;
	o->connectTimeout = 10;
	o->automaticReconnect = 0;
	o->maxInflight = (int)cf->inflight_max + 16;
	o->username = cf->username;
	o->password = cf->password;
	if (cf->nuris > 1) {
		o->serverURIs = cf->uris;
		o->serverURIcount = (int)cf->nuris;
	}
	if (m->will_topic != NULL) {
		wo.topicName = m->will_topic;
		wo.message = m->will_payload;
		wo.retained = 1;
		wo.qos = 1;
		o->will = &wo;
	}
	for (size_t i = 0; i < cf->nuris; i++) {
		const char *u = cf->uris[i];
		if (strncmp(u, "ssl://", 6) == 0 || strncmp(u, "mqtts://", 8) == 0 ||
		    strncmp(u, "wss://", 6) == 0) {
			so.trustStore = cf->cafile;
			so.CApath = cf->capath;
			so.keyStore = cf->certfile;
			so.privateKey = cf->keyfile;
			so.enableServerCertAuth = cf->tls_verify;
			so.verify = cf->tls_verify;
			o->ssl = &so;
		}
	}
	m->connecting = 1;
	if ((rc = MQTTAsync_connect(m->cli, o)) != MQTTASYNC_SUCCESS) {
		m->connecting = 0;
		log_warnx("mqtt: connect: %s", MQTTAsync_strerror(rc));
		schedule_connect(m);
	}
}

static void
do_subscribe(struct mqtt *m, struct sub *s)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	int rc;

	ro.context = s;
	if (m->cf->mqtt_version == 5) {
		if (s->no_retained) {
			/* Never send retained ones, and keep the retain flag
			 * of live ones so that they can be refused. */
			ro.subscribeOptions.retainHandling = 2;
			ro.subscribeOptions.retainAsPublished = 1;
		}
		ro.onSuccess5 = cb_sub_ok5;
		ro.onFailure5 = cb_sub_fail5;
	} else {
		ro.onSuccess = cb_sub_ok;
		ro.onFailure = cb_sub_fail;
	}
	rc = MQTTAsync_subscribe(m->cli, s->filter, s->qos, &ro);
	if (rc != MQTTASYNC_SUCCESS)
		log_warnx("mqtt: subscribe %s: %s", s->filter,
		    MQTTAsync_strerror(rc));
}

static void
on_connected(struct mqtt *m)
{
	struct sub	*s;

	m->connecting = 0;
	m->connected = 1;
	m->stats.connects++;
	backoff_reset(&m->bo);
	log_info("mqtt: connected to %s", m->cf->uris[0]);
	if (m->cf->tcp_nodelay)
		set_nodelay_all();
	for (s = m->subs; s != NULL; s = s->next)
		do_subscribe(m, s);
	if (m->cb.connected != NULL)
		m->cb.connected(m, m->arg);
	pump(m);
	flow_check(m);
}

static void
on_lost(struct mqtt *m, const char *why, int attempt)
{
	int	was = m->connected;

	m->connecting = 0;
	m->connected = 0;
	if (was)
		log_warnx("mqtt: connection lost: %s; %zu message(s) buffered",
		    why ? why : "?", m->count);
	else if (m->stats.connects == 0 || log_getverbose() > 0)
		log_warnx("mqtt: cannot connect to %s: %s", m->cf->uris[0],
		    why ? why : "?");
	rewind_fifo(m);
	flow_check(m);
	if (m->cb.lost != NULL && (was || attempt))
		m->cb.lost(m, m->arg);
	schedule_connect(m);
}

static void
drain(struct loop *l, int fd, uint32_t events, void *arg)
{
	struct mqtt	*m = arg;
	struct mev	*e, *nx;
	uint64_t	 v;

	(void)!read(m->efd, &v, sizeof(v));
	pthread_mutex_lock(&m->lock);
	e = m->evq;
	m->evq = m->evq_tail = NULL;
	m->evq_msgs = 0;
	if (m->evq_dropped > 0) {
		m->stats.received_dropped += m->evq_dropped;
		log_warnx("mqtt: %llu received message(s) dropped: the event "
		    "queue was full", (unsigned long long)m->evq_dropped);
		m->evq_dropped = 0;
	}
	pthread_mutex_unlock(&m->lock);
	for (; e != NULL; e = nx) {
		nx = e->next;
		switch (e->type) {
		case MEV_CONNECTED:
			if (!m->stopping)
				on_connected(m);
			break;
		case MEV_CONNECT_FAILED:
			on_lost(m, e->text ? e->text : "connect failed", 1);
			break;
		case MEV_LOST:
			on_lost(m, e->text, 0);
			break;
		case MEV_ACK:
			on_ack(m, e->token, 1, 0);
			pump(m);
			break;
		case MEV_NACK:
			on_ack(m, e->token, 0, e->code);
			pump(m);
			flow_check(m);
			break;
		case MEV_MESSAGE:
			m->stats.received++;
			if (m->cb.message != NULL && !m->stopping)
				m->cb.message(m, &e->msg, m->arg);
			break;
		case MEV_DISCONNECTED:
			m->disconnected = 1;
			break;
		case MEV_SUBACK:
			if (!e->code)
				log_warnx("mqtt: subscription to %s refused",
				    e->sub->filter);
			else
				log_debug("mqtt: subscribed to %s",
				    e->sub->filter);
			if (m->cb.subscribed != NULL && !m->stopping)
				m->cb.subscribed(m, e->sub->filter, e->code,
				    m->arg);
			break;
		}
		free(e->text);
		free(e);
	}
	if (m->spool != NULL) {
		spool_flush(m->spool);	/* this batch's acknowledgements */
		maybe_compact(m);
	}
}

struct mqtt *
mqtt_new(struct loop *loop, const struct config *cf, const char *will_topic,
    const char *will_payload, const struct mqtt_callbacks *cb, void *arg)
{
	MQTTAsync_createOptions	 co = MQTTAsync_createOptions_initializer;
	struct mqtt		*m;
	int			 rc;

	if ((m = calloc(1, sizeof(*m))) == NULL) {
		log_warn("mqtt_new");
		return NULL;
	}
	m->loop = loop;
	m->cf = cf;
	m->cb = *cb;
	m->arg = arg;
	m->efd = -1;
	pthread_mutex_init(&m->lock, NULL);
	backoff_init(&m->bo, cf->backoff_min_ms, cf->backoff_max_ms,
	    (uint64_t)loop_wall_us() ^ (uint64_t)getpid());
	if (will_topic != NULL &&
	    ((m->will_topic = strdup(will_topic)) == NULL ||
	    (m->will_payload = strdup(will_payload)) == NULL))
		goto fail;
	if ((m->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		log_warn("eventfd");
		goto fail;
	}
	if ((m->timer = loop_timer_new(loop, reconnect_timer, m)) == NULL ||
	    (m->drop_timer = loop_timer_new(loop, drop_report, m)) == NULL ||
	    loop_fd_add(loop, m->efd, EPOLLIN, drain, m) == -1)
		goto fail;
	/* Backpressure from a few windows' worth, well below the bound. */
	m->high_water = 4 * (size_t)cf->inflight_max;
	if (m->high_water < 1024)
		m->high_water = 1024;
	if (m->high_water > cf->buffer_max / 2)
		m->high_water = cf->buffer_max / 2 > 0 ? cf->buffer_max / 2 : 1;
	co.MQTTVersion = cf->mqtt_version == 5 ? MQTTVERSION_5 :
	    MQTTVERSION_3_1_1;
	co.sendWhileDisconnected = 0;
	co.maxBufferedMessages = (int)cf->inflight_max + 16;
	rc = MQTTAsync_createWithOptions(&m->cli, cf->uris[0], cf->client_id,
	    MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
	if (rc != MQTTASYNC_SUCCESS) {
		log_warnx("mqtt: create client: %s", MQTTAsync_strerror(rc));
		m->cli = NULL;
		goto fail;
	}
	rc = MQTTAsync_setCallbacks(m->cli, m, cb_lost, cb_arrived, NULL);
	if (rc != MQTTASYNC_SUCCESS) {
		log_warnx("mqtt: set callbacks: %s", MQTTAsync_strerror(rc));
		goto fail;
	}
	return m;
fail:
	mqtt_free(m);
	return NULL;
}

void
mqtt_free(struct mqtt *m)
{
	struct entry	*e, *en;
	struct sub	*s, *sn;
	struct mev	*v, *vn;

	if (m == NULL)
		return;
	m->stopping = 1;
	if (m->cli != NULL)
		MQTTAsync_destroy(&m->cli);	/* joins nothing; stops callbacks */
	if (m->efd != -1) {
		loop_fd_del(m->loop, m->efd);
		close(m->efd);
	}
	loop_timer_free(m->timer);
	if (m->drop_timer != NULL)
		drop_report(m->loop, m->drop_timer, m);
	loop_timer_free(m->drop_timer);
	for (e = m->head; e != NULL; e = en) {
		en = e->next;
		entry_free(e);
	}
	for (s = m->subs; s != NULL; s = sn) {
		sn = s->next;
		free(s->filter);
		free(s);
	}
	for (v = m->evq; v != NULL; v = vn) {
		vn = v->next;
		free(v->text);
		free(v);
	}
	pthread_mutex_destroy(&m->lock);
	free(m->will_topic);
	free(m->will_payload);
	free(m);
}

int
mqtt_start(struct mqtt *m)
{
	start_connect(m);
	return 0;
}

int
mqtt_subscribe(struct mqtt *m, const char *filter, int qos, int no_retained)
{
	struct sub	*s;

	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->filter = strdup(filter)) == NULL) {
		free(s);
		log_warnx("mqtt: out of memory");
		return -1;
	}
	s->m = m;
	s->qos = qos;
	s->no_retained = no_retained;
	s->next = m->subs;
	m->subs = s;
	if (m->connected)
		do_subscribe(m, s);
	return 0;
}

int
mqtt_connected(const struct mqtt *m)
{
	return m->connected;
}

const struct mqtt_stats *
mqtt_stats(const struct mqtt *m)
{
	return &m->stats;
}

size_t
mqtt_pending(const struct mqtt *m)
{
	return m->count;
}

void
mqtt_shutdown(struct mqtt *m, const char *topic, const char *payload,
    unsigned timeout_ms)
{
	uint64_t	deadline = loop_now_ms() + timeout_ms;

	if (m->connected && topic != NULL)
		mqtt_publish(m, topic, payload, strlen(payload), 1,
		    MQTT_PUB_RETAIN);
	while (m->connected && m->count > 0 && loop_now_ms() < deadline)
		loop_run_once(m->loop, 50);
	if (m->spool != NULL)
		spool_flush(m->spool);
	if (m->count > 0)
		log_warnx("mqtt: %zu message(s) not delivered at shutdown",
		    m->count);
	m->stopping = 1;
	loop_timer_disarm(m->timer);
	if (m->connected) {
		MQTTAsync_disconnectOptions do_ =
		    MQTTAsync_disconnectOptions_initializer;
		do_.timeout = 1000;
		do_.context = m;
		if (m->cf->mqtt_version == 5) {
			do_.onSuccess5 = cb_disc_ok5;
			do_.onFailure5 = cb_disc_fail5;
		} else {
			do_.onSuccess = cb_disc_ok;
			do_.onFailure = cb_disc_fail;
		}
		if (MQTTAsync_disconnect(m->cli, &do_) == MQTTASYNC_SUCCESS) {
			deadline = loop_now_ms() + 2000;
			while (!m->disconnected && loop_now_ms() < deadline)
				loop_run_once(m->loop, 50);
		}
		m->connected = 0;
	}
}
