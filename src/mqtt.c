/*
 * mqtt: see mqtt.h.  This file is the loop thread's publishing side (the
 * FIFO's window, acknowledgements, holds after refusals, corking, lazy
 * acknowledgements, events from the queue, the API); mqttconn.c is the
 * connection (client, options, connect, CONNACK, loss), mqttcb.c Paho's
 * side (callbacks that only post events), mqttcode.c the reason codes in
 * words; they share mqtt_int.h.  No other module includes Paho.  The FIFO
 * itself (order, coalescing, the bound, the spool's records) is fifo.c's,
 * which knows nothing of Paho.
 *
 * Threads: Paho's callbacks (on its threads) only allocate a struct mev,
 * append it to m->evq under m->lock and write the eventfd.  Everything
 * else, the FIFO included, belongs to the loop thread and needs no lock.
 *
 * Clients: one Paho client per connection.  Its callbacks get a struct
 * conn as context, holding the module and the client's generation, which
 * every event carries; the loop ignores events of an older generation (a
 * late acknowledgement of the previous connection must not match a token
 * of the new one).  Paho 1.3.12 runs every callback with its global mutex
 * held, and MQTTAsync_destroy() takes that mutex and unlinks the client:
 * once it returned, no callback of that client runs or will run, so its
 * conn can be freed right after.  The new client is created before the
 * old one is destroyed: destroying the last client stops Paho's threads
 * (sleeping 100 ms steps on the loop thread).
 *
 * The FIFO is one list, oldest first (fifo.h).  Entries [head, next) have
 * been handed to Paho (in flight, at most the window); [next, tail] wait.
 * mq_pump() hands fifo_next() to Paho while the window has room and marks
 * it sent under Paho's token; an acknowledgement finds its entry by that
 * token (fifo_find) and removes it wherever it is.  On a connection loss
 * fifo_rewind() marks every in-flight entry unsent again by moving `next'
 * back to the head, so the order on the wire after reconnecting is the
 * original order.
 */
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "backoff.h"
#include "config.h"
#include "fifo.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "mqtt_int.h"
#include "spool.h"

/* --- rate-limited logging ----------------------------------------------- */

/* 1 when a line may be logged now; otherwise counts it for the summary. */
static int
ratelog_ok(struct mqtt *m, struct ratelog *rl)
{
	uint64_t now = loop_now_ms();

	if (rl->last_ms == 0 || now - rl->last_ms >= 1000) {
		rl->last_ms = now;
		return 1;
	}
	rl->suppressed++;
	if (m->drop_timer != NULL && !loop_timer_armed(m->drop_timer))
		loop_timer_arm(m->drop_timer, 1000);
	return 0;
}

/* Sums up what ratelog_ok() suppressed (the drop_timer's callback). */
static void
ratelog_report(struct loop *l, struct loop_timer *t, void *arg)
{
	struct mqtt *m = arg;
	uint64_t     now = loop_now_ms();

	if (m->rl_drop.suppressed > 0) {
		log_warnx("MQTT buffer full (%zu messages): %llu more dropped; "
		    "%llu dropped so far", m->cf->buffer_max,
		    (unsigned long long)m->rl_drop.suppressed,
		    (unsigned long long)m->stats.dropped);
		m->rl_drop.suppressed = 0;
		m->rl_drop.last_ms = now;
	}
	if (m->rl_refused.suppressed > 0) {
		log_warnx("mqtt: the broker refused %llu more publish(es) for "
		    "good; %llu refused so far",
		    (unsigned long long)m->rl_refused.suppressed,
		    (unsigned long long)m->stats.refused);
		m->rl_refused.suppressed = 0;
		m->rl_refused.last_ms = now;
	}
	if (m->rl_retry.suppressed > 0) {
		log_warnx("mqtt: the broker refused %llu more publish(es) for "
		    "now; retrying", (unsigned long long)m->rl_retry.suppressed);
		m->rl_retry.suppressed = 0;
		m->rl_retry.last_ms = now;
	}
	if (m->rl_indrop.suppressed > 0) {
		log_warnx("mqtt: received messages dropped %llu more time(s); "
		    "%llu dropped so far",
		    (unsigned long long)m->rl_indrop.suppressed,
		    (unsigned long long)m->stats.received_dropped);
		m->rl_indrop.suppressed = 0;
		m->rl_indrop.last_ms = now;
	}
}

/* --- queueing ----------------------------------------------------------- */

_Static_assert(MQTT_PUB_STATE == FIFO_STATE, "fifo.h's flags are mqtt.h's");
_Static_assert(MQTT_PUB_VOLATILE == FIFO_VOLATILE,
    "fifo.h's flags are mqtt.h's");

/* The FIFO's drop callback: a message dropped at the bound. */
static void
fifo_dropped(void *arg, const char *topic)
{
	struct mqtt *m = arg;

	m->stats.dropped++;
	if (ratelog_ok(m, &m->rl_drop))
		log_warnx("MQTT buffer full (%zu messages): dropped the oldest "
		    "(%s); %llu dropped so far", m->cf->buffer_max, topic,
		    (unsigned long long)m->stats.dropped);
}

/*
 * Appends a message to the FIFO (sid: its spool id, or 0 to spool it now
 * when it qualifies) and sends what the window allows.  0 or -1.
 */
static int
enqueue(struct mqtt *m, const char *topic, const void *payload,
    size_t len, int qos, int flags, const void *corr, size_t corr_len,
    uint64_t sid)
{
	int replaced;

	replaced = fifo_push(m->fifo, topic, payload, len, qos, flags, corr,
	    corr_len, sid);
	if (replaced == -1) {
		log_warnx("mqtt: out of memory queueing %s", topic);
		m->stats.dropped++;
		return -1;
	}
	m->stats.coalesced += (uint64_t)replaced;
	m->stats.queued++;
	mq_pump(m);
	mq_flow_check(m);
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
	fifo_set_spool(m->fifo, sp);
	spool_replay(sp, replay_one, m);
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
void
mq_flow_check(struct mqtt *m)
{
	size_t	count = fifo_count(m->fifo);
	int	full;

	if (!m->connected)
		full = 0;
	else if (m->full)
		full = count > m->high_water / 2;
	else
		full = count >= m->high_water;
	if (full == m->full)
		return;
	m->full = full;
	log_debug("mqtt: %s (%zu queued)", full ? "backpressure on" :
	    "backpressure off", count);
	if (m->cb.flow != NULL)
		m->cb.flow(m, full, m->arg);
}

/*
 * Batching without latency.  Paho writes each publish from its own send
 * thread, one segment each with TCP_NODELAY.  When at least CORK_MIN
 * messages are ready to be handed to Paho at once (a batch of PUBACKs
 * freeing the window, a reconnect or a spool replay resending), the
 * broker socket is corked until the end of that iteration (a 0 ms timer:
 * timers run after every fd event of the iteration, right before the
 * loop sleeps), so that what the send thread wrote meanwhile leaves as
 * few full segments.  Fewer are never corked: the cork costs two
 * setsockopt calls on the loop thread, more than the segments it saves
 * (at 2 000 ev/s, corking every iteration that sent two messages cost
 * ~1 setsockopt per event).  Whatever the send thread writes after the
 * uncork leaves at once (TCP_NODELAY).
 */
#define CORK_MIN	4

/* Whether a batch worth a cork is ready: CORK_MIN waiting, and room. */
static int
batch_ready(const struct mqtt *m)
{
	if (m->window - fifo_inflight(m->fifo) < CORK_MIN)
		return 0;
	return fifo_waiting(m->fifo, CORK_MIN) == CORK_MIN;
}

static void
cork(struct mqtt *m)
{
	int one = 1;

	if (setsockopt(m->sock, IPPROTO_TCP, TCP_CORK, &one, sizeof(one)) == 0)
		m->corked = 1;
}

static void
uncork(struct loop *l, struct loop_timer *t, void *arg)
{
	struct mqtt	*m = arg;
	int		 zero = 0;

	if (!m->corked)
		return;
	m->corked = 0;
	if (m->sock != -1)
		(void)setsockopt(m->sock, IPPROTO_TCP, TCP_CORK, &zero,
		    sizeof(zero));
}

/*
 * Hands one message to Paho, corking the socket first when a batch is
 * ready; sets *token.  Paho's return code.
 */
static int
send_msg(struct mqtt *m, const struct fifo_msg *msg, int *token)
{
	MQTTAsync_message	  pm = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	MQTTProperty		  prop;
	int			  rc;

	pm.payload = msg->payload;
	pm.payloadlen = (int)msg->len;
	pm.qos = msg->qos;
	pm.retained = (msg->flags & MQTT_PUB_RETAIN) != 0;
	ro.context = m->conn;
	if (m->cf->mqtt_version == 5) {
		ro.onSuccess5 = cb_pub_ok5;
		ro.onFailure5 = cb_pub_fail5;
		if (msg->corr != NULL) {
			memset(&prop, 0, sizeof(prop));
			prop.identifier = MQTTPROPERTY_CODE_CORRELATION_DATA;
			prop.value.data.data = msg->corr;
			prop.value.data.len = (int)msg->corr_len;
			MQTTProperties_add(&pm.properties, &prop);
		}
	} else {
		ro.onSuccess = cb_pub_ok;
		ro.onFailure = cb_pub_fail;
	}
	if (!m->corked && m->sock != -1 && batch_ready(m)) {
		cork(m);
		if (m->corked && m->uncork_timer != NULL)
			loop_timer_arm(m->uncork_timer, 0);
	}
	rc = MQTTAsync_sendMessage(m->cli, msg->topic, &pm, &ro);
	MQTTProperties_free(&pm.properties);
	*token = ro.token;
	return rc;
}

/* Hands waiting entries to Paho while the window has room. */
void
mq_pump(struct mqtt *m)
{
	struct fifo_entry	*e;
	const struct fifo_msg	*msg;
	int			 rc, token;

	while (m->connected && !m->holding &&
	    (e = fifo_next(m->fifo)) != NULL &&
	    fifo_inflight(m->fifo) < m->window) {
		msg = fifo_msg(e);
		rc = send_msg(m, msg, &token);
		if (rc == MQTTASYNC_DISCONNECTED ||
		    rc == MQTTASYNC_MAX_BUFFERED_MESSAGES ||
		    rc == MQTTASYNC_OPERATION_INCOMPLETE) {
			log_debug("mqtt: send %s deferred: %s", msg->topic,
			    MQTTAsync_strerror(rc));
			return;	/* retried on the next ack or connect */
		}
		if (rc != MQTTASYNC_SUCCESS) {
			/* Never sendable (bad topic...): must not block the rest. */
			log_warnx("mqtt: cannot publish to %s: %s; dropped",
			    msg->topic, MQTTAsync_strerror(rc));
			fifo_done(m->fifo, e);
			m->stats.dropped++;
			continue;
		}
		fifo_sent(m->fifo, token);
	}
}

/*
 * The end of a hold (transient refusal): once the backoff elapsed and
 * nothing else is in flight, the refused entries, which are all that is
 * left before `next', are sent again first.
 */
static void
hold_release(struct mqtt *m)
{
	if (!m->holding || !m->hold_due || fifo_inflight(m->fifo) > 0)
		return;
	m->holding = 0;
	m->hold_due = 0;
	m->stats.coalesced += fifo_retry(m->fifo);
	mq_pump(m);
	mq_flow_check(m);
}

static void
hold_timer_cb(struct loop *l, struct loop_timer *t, void *arg)
{
	struct mqtt *m = arg;

	m->hold_due = 1;
	hold_release(m);
}

/*
 * Refused for now (quota, busy...): the entry stays where it is, no new
 * message is handed to Paho, and after a jittered backoff (and once the
 * rest of the window is answered) it goes again first.  Messages already
 * in flight behind it may still get through before it.
 */
static void
refused_for_now(struct mqtt *m, struct fifo_entry *e, int code)
{
	const char	*s = mqtt_reason_str(code);
	const char	*topic = fifo_msg(e)->topic;
	uint32_t	 delay;

	fifo_unsend(m->fifo, e);
	m->stats.resent++;
	/*
	 * A hold ends once its backoff ran out and nothing is in flight.  A
	 * refusal that comes after the backoff ran out (this entry was still
	 * in flight) means the broker still refuses: back off again.
	 */
	if (!m->holding || m->hold_due) {
		m->holding = 1;
		m->hold_due = 0;
		delay = backoff_next(&m->rbo);
		loop_timer_arm(m->hold_timer, delay);
		if (ratelog_ok(m, &m->rl_retry))
			log_warnx("mqtt: broker refused publish to %s for now: "
			    "%s (reason 0x%02x); retrying in %u ms", topic,
			    s ? s : "?", code, delay);
	} else if (ratelog_ok(m, &m->rl_retry))
		log_warnx("mqtt: broker refused publish to %s for now: "
		    "%s (reason 0x%02x)", topic, s ? s : "?", code);
}

static void
on_ack(struct mqtt *m, int token, int ok, int code)
{
	struct fifo_entry	*e;
	const char		*topic, *s;
	char			 why[256];

	if ((e = fifo_find(m->fifo, token)) == NULL)
		return;		/* stale */
	topic = fifo_msg(e)->topic;
	if (!ok && code >= 0x80 && !mqtt_refusal_permanent(code)) {
		refused_for_now(m, e, code);
		return;
	}
	if (!ok && code < 0x80) {
		/*
		 * A client-side failure: Paho released the token, but may
		 * still hold later messages.  Only a fresh connection puts
		 * everything back in order: drop this one.
		 */
		snprintf(why, sizeof(why), "publish to %s failed (%s)",
		    topic, MQTTAsync_strerror(code));
		mq_on_lost(m, why, 0);
		return;
	}
	if (ok) {
		m->stats.coalesced += fifo_acked(m->fifo, e);
		m->stats.published++;
		fifo_trim(m->fifo);
		if (!m->holding)
			backoff_reset(&m->rbo);
	} else {
		/* The broker will never take it: drop it, counted. */
		m->stats.refused++;
		if (ratelog_ok(m, &m->rl_refused)) {
			s = mqtt_reason_str(code);
			log_warnx("mqtt: broker refused publish to %s: %s "
			    "(reason 0x%02x); dropped; %llu refused so far",
			    topic, s ? s : "?", code,
			    (unsigned long long)m->stats.refused);
		}
		fifo_done(m->fifo, e);
	}
	hold_release(m);
	if (m->full)
		mq_flow_check(m);
}

/*
 * Takes everything queued by Paho's threads (with the count of received
 * messages it dropped).  drained: the caller read the eventfd, so the
 * next urgent event must write it again.
 */
static struct mev *
evq_take(struct mqtt *m, uint64_t *dropped, int drained)
{
	struct mev	*e;

	pthread_mutex_lock(&m->lock);
	e = m->evq;
	m->evq = m->evq_tail = NULL;
	m->evq_msgs = 0;
	m->evq_bytes = 0;
	*dropped = m->evq_dropped;
	m->evq_dropped = 0;
	atomic_store_explicit(&m->evq_any, 0, memory_order_relaxed);
	if (drained)
		m->evq_woken = 0;
	pthread_mutex_unlock(&m->lock);
	return e;
}

/*
 * Handles one event of Paho's (the loop thread's side of a callback).
 * Returns 1 for a successful acknowledgement (the caller pumps once for
 * the whole batch), else 0.
 */
static int
evq_one(struct mqtt *m, struct mev *e)
{
	/* Messages are data whatever client brought them; the rest of an
	 * older client is stale. */
	if (e->type != MEV_MESSAGE && e->gen != m->gen)
		return 0;
	switch (e->type) {
	case MEV_CONNECTED:
		if (!m->stopping)
			mq_on_connected(m, e->keepalive, e->recvmax, e->text);
		break;
	case MEV_TLS_ERROR:
		if (m->tls_err[0] == '\0' && e->text != NULL)
			snprintf(m->tls_err, sizeof(m->tls_err), "%s",
			    e->text);
		break;
	case MEV_CONNECT_FAILED:
		mq_log_connect_failure(m, e->code, mq_tls_cause(m, e->code,
		    e->text));
		mq_on_lost(m, e->text ? e->text : "connect failed", 1);
		break;
	case MEV_LOST:
		mq_on_lost(m, e->text, 0);
		break;
	case MEV_ACK:
		on_ack(m, e->token, 1, 0);
		return 1;
	case MEV_NACK:
		on_ack(m, e->token, 0, e->code);
		mq_pump(m);
		mq_flow_check(m);
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
		mq_on_suback(m, e->token, e->code);
		break;
	}
	return 0;
}

/*
 * Handles the events taken by evq_take(), oldest first (e: a list, freed
 * here), after counting the messages the full queue dropped.
 */
static void
evq_run(struct mqtt *m, struct mev *e, uint64_t dropped)
{
	struct mev	*nx;
	size_t		 acks = 0;

	if (e == NULL && dropped == 0)
		return;
	if (dropped > 0) {
		m->stats.received_dropped += dropped;
		if (ratelog_ok(m, &m->rl_indrop))
			log_warnx("mqtt: %llu received message(s) dropped: "
			    "the event queue was full (%d messages, %d bytes); "
			    "%llu dropped so far", (unsigned long long)dropped,
			    EVQ_MSGS_MAX, EVQ_BYTES_MAX,
			    (unsigned long long)m->stats.received_dropped);
	}
	for (; e != NULL; e = nx) {
		nx = e->next;
		acks += (size_t)evq_one(m, e);
		free(e->text);
		free(e);
	}
	if (acks > 0)
		mq_pump(m);	/* one mq_pump for the whole batch */
	if (m->spool != NULL) {
		spool_flush(m->spool);	/* this batch's acknowledgements */
		fifo_compact(m->fifo);
	}
}

/* The eventfd: Paho's threads queued an urgent event. */
static void
drain(struct loop *l, int fd, uint32_t events, void *arg)
{
	struct mqtt	*m = arg;
	struct mev	*e;
	uint64_t	 v, dropped;

	(void)!read(m->efd, &v, sizeof(v));
	e = evq_take(m, &dropped, 1);
	m->ack_wait = 0;	/* whatever woke us, acks are lazy again */
	evq_run(m, e, dropped);
}

/*
 * Lazy acks, the loop's side (Paho's side is post() in mqttcb.c).  Before
 * the loop sleeps (its hook), acknowledgements Paho queued without waking
 * it are collected, and the module says whether the next ones must wake
 * it: they must while the window is more than half full or messages wait
 * for room (a full window would stall the FIFO), under backpressure (the
 * producers wait for the queue to shrink), while a transient refusal holds
 * the FIFO (released when the window empties), while shutdown drains, and
 * once ACK_LAZY_MS passed with messages in flight (ack_wait: the bound;
 * cleared by the next wake-up).  Otherwise a queued ack waits for the
 * next wake-up (the next QMP event) or ack_timer, armed while messages
 * are in flight: an idle bridge (nothing in flight) keeps no timer.  What
 * an ack drives (published, the spool's delete after PUBACK, buffered and
 * inflight in stats) is thus at most ACK_LAZY_MS late; a crash in that
 * window resends the message after the restart (QoS 1 allows duplicates).
 * Cost: an atomic load per iteration; the lock only when something is
 * queued or the mode changes.
 */
static void
ack_mode(struct mqtt *m)
{
	size_t	inflight = fifo_inflight(m->fifo);
	int	want, kick = 0;

	if (inflight == 0)
		m->ack_wait = 0;
	want = m->draining || m->stopping || m->holding || m->full ||
	    m->ack_wait || (m->connected && fifo_next(m->fifo) != NULL) ||
	    2 * inflight > m->window;
	if (want != m->urgent) {
		pthread_mutex_lock(&m->lock);
		m->ack_urgent = want;
		/* Acks queued lazily meanwhile: wake now, once. */
		if (want && m->evq != NULL && !m->evq_woken)
			kick = m->evq_woken = 1;
		pthread_mutex_unlock(&m->lock);
		m->urgent = want;
		if (kick) {
			uint64_t one = 1;
			(void)!write(m->efd, &one, sizeof(one));
		}
	}
	if (!want && inflight > 0) {
		if (!loop_timer_armed(m->ack_timer))
			loop_timer_arm(m->ack_timer, ACK_LAZY_MS);
	} else if (inflight == 0)
		loop_timer_disarm(m->ack_timer);
}

/* The loop's hook: collect what was queued lazily, then set the mode. */
static void
before_wait(struct loop *l, void *arg)
{
	struct mqtt	*m = arg;
	struct mev	*e;
	uint64_t	 dropped;

	/*
	 * Only while acks are lazy: urgent ones come through the eventfd,
	 * in whole batches.  Taking them here too, at every iteration of a
	 * busy loop, split them into batches of one or two, each pumping
	 * the window and handing Paho a message or two at a time: starting
	 * 10 000 VMs (20 000 retained messages) took 0.55 -> 0.85 s.
	 */
	if (!m->urgent &&
	    atomic_load_explicit(&m->evq_any, memory_order_relaxed)) {
		e = evq_take(m, &dropped, 0);
		evq_run(m, e, dropped);
	}
	ack_mode(m);
}

/*
 * The bound: collect what is queued; if messages are still in flight,
 * their acks wake the loop from now on (until the next wake-up).
 */
static void
ack_timer_cb(struct loop *l, struct loop_timer *t, void *arg)
{
	struct mqtt	*m = arg;
	struct mev	*e;
	uint64_t	 dropped;

	e = evq_take(m, &dropped, 0);
	evq_run(m, e, dropped);
	if (fifo_inflight(m->fifo) > 0)
		m->ack_wait = 1;
}

struct mqtt *
mqtt_new(struct loop *loop, const struct config *cf, const char *will_topic,
    const char *will_payload, const struct mqtt_callbacks *cb, void *arg)
{
	struct mqtt		*m;

	if ((m = calloc(1, sizeof(*m))) == NULL) {
		log_warn("mqtt_new");
		return NULL;
	}
	m->loop = loop;
	m->cf = cf;
	m->cb = *cb;
	m->arg = arg;
	m->efd = -1;
	m->sock = -1;
	m->keepalive = cf->keepalive_s;
	m->window = cf->inflight_max;
	pthread_mutex_init(&m->lock, NULL);
	if ((m->fifo = fifo_new(cf->buffer_max, fifo_dropped, m)) == NULL) {
		log_warn("mqtt_new");
		goto fail;
	}
	backoff_init(&m->bo, cf->backoff_min_ms, cf->backoff_max_ms,
	    (uint64_t)loop_wall_us() ^ (uint64_t)getpid());
	/* Transient refusals: from 100 ms to 10 s. */
	backoff_init(&m->rbo, 100, 10000,
	    ((uint64_t)loop_wall_us() ^ (uint64_t)getpid()) * 3 + 1);
	if (will_topic != NULL &&
	    ((m->will_topic = strdup(will_topic)) == NULL ||
	    (m->will_payload = strdup(will_payload)) == NULL))
		goto fail;
	if ((m->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		log_warn("eventfd");
		goto fail;
	}
	if ((m->timer = loop_timer_new(loop, mq_reconnect_timer, m)) == NULL ||
	    (m->drop_timer = loop_timer_new(loop, ratelog_report, m)) == NULL ||
	    (m->hold_timer = loop_timer_new(loop, hold_timer_cb, m)) == NULL ||
	    (m->uncork_timer = loop_timer_new(loop, uncork, m)) == NULL ||
	    (m->ack_timer = loop_timer_new(loop, ack_timer_cb, m)) == NULL ||
	    loop_fd_add(loop, m->efd, EPOLLIN, drain, m) == -1)
		goto fail;
	if (loop_hook_add(loop, before_wait, m) == -1) {
		log_warnx("mqtt: no loop hook left");
		goto fail;
	}
	m->hooked = 1;
	/* Backpressure from a few windows' worth, well below the bound. */
	m->high_water = 4 * (size_t)cf->inflight_max;
	if (m->high_water < 1024)
		m->high_water = 1024;
	if (m->high_water > cf->buffer_max / 2)
		m->high_water = cf->buffer_max / 2 > 0 ? cf->buffer_max / 2 : 1;
	/* The first client now: a bad URI or client id fails here. */
	if (mq_client_renew(m) == -1)
		goto fail;
	return m;
fail:
	mqtt_free(m);
	return NULL;
}

void
mqtt_free(struct mqtt *m)
{
	struct sub	*s, *sn;
	struct mev	*v, *vn;

	if (m == NULL)
		return;
	m->stopping = 1;
	if (m->cli != NULL)
		MQTTAsync_destroy(&m->cli);	/* no callback runs after it */
	free(m->conn);
	m->conn = NULL;
	if (m->efd != -1) {
		loop_fd_del(m->loop, m->efd);
		close(m->efd);
	}
	loop_timer_free(m->timer);
	loop_timer_free(m->hold_timer);
	loop_timer_free(m->uncork_timer);
	loop_timer_free(m->ack_timer);
	if (m->hooked)
		loop_hook_del(m->loop, before_wait, m);
	if (m->drop_timer != NULL)
		ratelog_report(m->loop, m->drop_timer, m);
	loop_timer_free(m->drop_timer);
	fifo_free(m->fifo);
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
	mq_start_connect(m);
	return 0;
}

int
mqtt_subscribe(struct mqtt *m, const char *filter, int qos, int flags)
{
	struct sub	*s;

	for (s = m->subs; s != NULL; s = s->next)
		if (strcmp(s->filter, filter) == 0 && s->qos == qos &&
		    s->flags == flags)
			return 0;	/* already there */
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->filter = strdup(filter)) == NULL) {
		free(s);
		log_warnx("mqtt: out of memory");
		return -1;
	}
	s->qos = qos;
	s->flags = flags;
	s->next = m->subs;
	m->subs = s;
	if (m->connected)
		mq_subscribe_one(m, s);
	return 0;
}

int
mqtt_unsubscribe(struct mqtt *m, const char *filter)
{
	struct sub	**sp, *s;

	for (sp = &m->subs; (s = *sp) != NULL; sp = &s->next)
		if (strcmp(s->filter, filter) == 0)
			break;
	if (s == NULL)
		return 0;
	*sp = s->next;
	if (m->connected && m->cli != NULL) {
		MQTTAsync_responseOptions ro =
		    MQTTAsync_responseOptions_initializer;
		int rc = MQTTAsync_unsubscribe(m->cli, filter, &ro);
		if (rc != MQTTASYNC_SUCCESS)
			log_warnx("mqtt: unsubscribe %s: %s", filter,
			    MQTTAsync_strerror(rc));
	}
	free(s->filter);
	free(s);
	return 1;
}

int
mqtt_reconfigure(struct mqtt *m, const struct config *cf,
    const char *will_topic, const char *will_payload, int reconnect)
{
	char	*wt = NULL, *wp = NULL;

	if (will_topic != NULL && ((wt = strdup(will_topic)) == NULL ||
	    (wp = strdup(will_payload)) == NULL)) {
		free(wt);
		log_warnx("mqtt: out of memory");
		return -1;
	}
	free(m->will_topic);
	free(m->will_payload);
	m->will_topic = wt;
	m->will_payload = wp;
	m->cf = cf;
	m->keepalive = cf->keepalive_s;
	if (!reconnect || m->stopping)
		return 0;
	/*
	 * One clean reconnect: the old client sends DISCONNECT (no Last
	 * Will), what was in flight is resent in order on the new one.
	 */
	log_info("mqtt: broker settings changed: reconnecting");
	loop_timer_disarm(m->timer);
	backoff_reset(&m->bo);
	mq_on_lost(m, "configuration reloaded", 1);
	return 0;
}

int
mqtt_connected(const struct mqtt *m)
{
	return m->connected;
}

const struct mqtt_stats *
mqtt_stats(struct mqtt *m)
{
	m->stats.buffered = fifo_count(m->fifo);
	m->stats.inflight = fifo_inflight(m->fifo);
	return &m->stats;
}

size_t
mqtt_pending(const struct mqtt *m)
{
	return fifo_count(m->fifo);
}

void
mqtt_shutdown(struct mqtt *m, const char *topic, const char *payload,
    unsigned timeout_ms)
{
	uint64_t	deadline = loop_now_ms() + timeout_ms;

	m->draining = 1;	/* every ack wakes the loop (ack_mode) */
	if (m->connected && topic != NULL)
		mqtt_publish(m, topic, payload, strlen(payload), 1,
		    MQTT_PUB_RETAIN);
	while (m->connected && fifo_count(m->fifo) > 0 &&
	    loop_now_ms() < deadline)
		loop_run_once(m->loop, 50);
	if (m->spool != NULL)
		spool_flush(m->spool);
	if (fifo_count(m->fifo) > 0)
		log_warnx("mqtt: %zu message(s) not delivered at shutdown",
		    fifo_count(m->fifo));
	m->stopping = 1;
	loop_timer_disarm(m->timer);
	loop_timer_disarm(m->hold_timer);
	if (m->connected) {
		MQTTAsync_disconnectOptions do_ =
		    MQTTAsync_disconnectOptions_initializer;
		do_.timeout = 1000;
		do_.context = m->conn;
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
