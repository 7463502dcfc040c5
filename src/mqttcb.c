/*
 * mqttcb: Paho's side of the broker client.  Paho calls these on its own
 * threads; each only builds a struct mev, appends it to the module's
 * event queue under its lock and wakes the loop through the eventfd (see
 * mqtt.c).  Nothing here touches the FIFO or anything else of the loop
 * thread's.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mqtt_int.h"



/*
 * Appends e to the loop's queue; wakes the loop unless the eventfd is
 * already pending, or e is a lazy acknowledgement.
 *
 * Lazy acks: at a low rate every event cost four thread wake-ups (the
 * loop for the QMP read, Paho's send thread, Paho's receive thread for
 * the PUBACK, the loop again for this eventfd).  A successful PUBACK is
 * not urgent while the window has room and nothing waits for it, so
 * unless the loop asked for them (m->ack_urgent: window more than half
 * full, messages waiting, backpressure, a transient refusal held,
 * shutdown draining, or the bound elapsed) it is only queued: the loop
 * collects it before it next sleeps (its hook in mqtt.c), or within
 * ACK_LAZY_MS (its ack_timer).  Everything else wakes the loop at once.
 */
static void
post(struct conn *c, struct mev *e)
{
	struct mqtt	*m = c->m;
	uint64_t	 one = 1;
	int		 wake;

	e->gen = c->gen;
	pthread_mutex_lock(&m->lock);
	if (e->type == MEV_MESSAGE) {
		if (m->evq_msgs >= EVQ_MSGS_MAX ||
		    m->evq_bytes + e->size > EVQ_BYTES_MAX) {
			m->evq_dropped++;
			pthread_mutex_unlock(&m->lock);
			free(e);
			return;
		}
		m->evq_msgs++;
		m->evq_bytes += e->size;
	}
	if (m->evq_tail != NULL)
		m->evq_tail->next = e;
	else
		m->evq = e;
	m->evq_tail = e;
	atomic_store_explicit(&m->evq_any, 1, memory_order_relaxed);
	/* Only the first urgent event since the last drain writes. */
	wake = !m->evq_woken && (e->type != MEV_ACK || m->ack_urgent);
	if (wake)
		m->evq_woken = 1;
	pthread_mutex_unlock(&m->lock);
	if (wake)
		(void)!write(m->efd, &one, sizeof(one));
}

void
post_simple(struct conn *c, enum mev_type type, int token, int code,
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
	post(c, e);
}

void
cb_lost(void *ctx, char *cause)
{
	post_simple(ctx, MEV_LOST, 0, 0, cause ? cause : "connection lost");
}

int
cb_arrived(void *ctx, char *topic, int topiclen, MQTTAsync_message *pm)
{
	size_t		 tlen = topiclen > 0 ? (size_t)topiclen : strlen(topic);
	size_t		 plen = pm->payloadlen > 0 ? (size_t)pm->payloadlen : 0;
	MQTTProperty	*rt = NULL, *cd = NULL;
	size_t		 rtlen = 0, cdlen = 0, size;
	struct mev	*e = NULL;
	char		*p;

	rt = MQTTProperties_getProperty(&pm->properties,
	    MQTTPROPERTY_CODE_RESPONSE_TOPIC);
	cd = MQTTProperties_getProperty(&pm->properties,
	    MQTTPROPERTY_CODE_CORRELATION_DATA);
	if (rt != NULL)
		rtlen = (size_t)rt->value.data.len;
	if (cd != NULL)
		cdlen = (size_t)cd->value.data.len;
	size = tlen + 1 + plen + 1 + rtlen + 1 + cdlen + 1;
	/*
	 * Larger than an MQTT 5 broker may send us (an MQTT 3.1.1 one cannot
	 * be told): count it without copying it.
	 */
	if (plen > MQTT_MAX_PACKET_IN ||
	    (e = calloc(1, sizeof(*e) + size)) == NULL) {
		struct mqtt *m = ((struct conn *)ctx)->m;

		pthread_mutex_lock(&m->lock);
		m->evq_dropped++;
		pthread_mutex_unlock(&m->lock);
	}
	if (e != NULL) {
		e->type = MEV_MESSAGE;
		e->size = size;
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
		post(ctx, e);
	}
	MQTTAsync_freeMessage(&pm);
	MQTTAsync_free(topic);
	return 1;
}

void
cb_conn_ok(void *ctx, MQTTAsync_successData *r)
{
	post_simple(ctx, MEV_CONNECTED, 0, 0,
	    r != NULL ? r->alt.connect.serverURI : NULL);
}

/*
 * OpenSSL's error queue during a TLS connect ("...:certificate verify
 * failed"), one line per call; the loop keeps the first of an attempt and
 * names it in the connect failure.
 */
int
cb_tls_error(const char *str, size_t len, void *u)
{
	char	buf[200];

	while (len > 0 && (str[len - 1] == '\n' || str[len - 1] == '\r'))
		len--;
	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	memcpy(buf, str, len);
	buf[len] = '\0';
	post_simple(u, MEV_TLS_ERROR, 0, 0, buf);
	return 0;
}

void
cb_conn_ok5(void *ctx, MQTTAsync_successData5 *r)
{
	struct mev *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return;
	e->type = MEV_CONNECTED;
	if (r != NULL && r->alt.connect.serverURI != NULL)
		e->text = strdup(r->alt.connect.serverURI);
	if (r != NULL && MQTTProperties_hasProperty(&r->properties,
	    MQTTPROPERTY_CODE_SERVER_KEEP_ALIVE))
		e->keepalive = MQTTProperties_getNumericValue(&r->properties,
		    MQTTPROPERTY_CODE_SERVER_KEEP_ALIVE);
	if (r != NULL && MQTTProperties_hasProperty(&r->properties,
	    MQTTPROPERTY_CODE_RECEIVE_MAXIMUM))
		e->recvmax = MQTTProperties_getNumericValue(&r->properties,
		    MQTTPROPERTY_CODE_RECEIVE_MAXIMUM);
	post(ctx, e);
}

void
cb_conn_fail(void *ctx, MQTTAsync_failureData *r)
{
	post_simple(ctx, MEV_CONNECT_FAILED, 0, r ? r->code : 0,
	    r && r->message ? r->message : NULL);
}

void
cb_conn_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
	int code = r ? r->code : 0;

	if (r != NULL && (int)r->reasonCode >= 0x80)
		code = (int)r->reasonCode;
	post_simple(ctx, MEV_CONNECT_FAILED, 0, code,
	    r && r->message ? r->message : NULL);
}

void
cb_pub_ok(void *ctx, MQTTAsync_successData *r)
{
	post_simple(ctx, MEV_ACK, r ? r->token : 0, 0, NULL);
}

void
cb_pub_ok5(void *ctx, MQTTAsync_successData5 *r)
{
	post_simple(ctx, r && r->reasonCode >= 0x80 ? MEV_NACK : MEV_ACK,
	    r ? r->token : 0, r ? (int)r->reasonCode : 0, NULL);
}

void
cb_pub_fail(void *ctx, MQTTAsync_failureData *r)
{
	post_simple(ctx, MEV_NACK, r ? r->token : 0, r ? r->code : 0,
	    r && r->message ? r->message : NULL);
}

void
cb_pub_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
	int code = r ? r->code : 0;

	if (r != NULL && (int)r->reasonCode >= 0x80)
		code = (int)r->reasonCode;
	post_simple(ctx, MEV_NACK, r ? r->token : 0, code,
	    r && r->message ? r->message : NULL);
}

void
cb_sub_ok(void *ctx, MQTTAsync_successData *r)
{
	post_simple(ctx, MEV_SUBACK, r ? r->token : 0,
	    r == NULL || r->alt.qos < 0x80, NULL);
}

void
cb_sub_ok5(void *ctx, MQTTAsync_successData5 *r)
{
	post_simple(ctx, MEV_SUBACK, r ? r->token : 0,
	    r == NULL || r->reasonCode < 0x80, NULL);
}

void
cb_sub_fail(void *ctx, MQTTAsync_failureData *r)
{
	post_simple(ctx, MEV_SUBACK, r ? r->token : 0, 0, NULL);
}

void
cb_sub_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
	post_simple(ctx, MEV_SUBACK, r ? r->token : 0, 0, NULL);
}

void
cb_disc_ok(void *ctx, MQTTAsync_successData *r)
{
	post_simple(ctx, MEV_DISCONNECTED, 0, 0, NULL);
}

void
cb_disc_ok5(void *ctx, MQTTAsync_successData5 *r)
{
	post_simple(ctx, MEV_DISCONNECTED, 0, 0, NULL);
}

void
cb_disc_fail(void *ctx, MQTTAsync_failureData *r)
{
	post_simple(ctx, MEV_DISCONNECTED, 0, 0, NULL);
}

void
cb_disc_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
	post_simple(ctx, MEV_DISCONNECTED, 0, 0, NULL);
}
