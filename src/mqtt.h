/*
 * mqtt: the bridge's MQTT client; the only module that includes Paho
 * (mqtt.c, mqttcb.c, mqttcode.c, sharing mqtt_int.h).
 *
 * Paho's MQTTAsync runs its own threads.  Everything they report
 * (connected, lost, message arrived, publish acknowledged) is pushed onto
 * a mutex-protected queue and signalled through an eventfd; the loop
 * thread drains it and calls the callbacks below, so no other module ever
 * sees a thread.  A successful acknowledgement alone does not wake the
 * loop while the in-flight window is at most half full and nothing waits
 * for it: the loop collects it before it next sleeps, or within 100 ms
 * (lazy acks, mqttcb.c), so `published', `buffered', `inflight' and the
 * spool's record of acknowledged messages may lag that much.
 *
 * Outbound messages sit in the module's own FIFO (fifo.h), bounded by
 * buffer_max messages, and at most inflight_max of them (or the MQTT 5
 * broker's Receive Maximum, if lower) are handed to Paho at once (Paho's
 * own queue is O(n) per send and silently drops past 100).  A message
 * leaves the FIFO only when the broker acknowledged it (QoS 1/2) or
 * Paho wrote it (QoS 0); after a connection loss the unacknowledged ones
 * are sent again, in order, so an event can be duplicated (as QoS 1
 * allows) but never lost while it fits the bound.  When the bound is hit
 * the oldest message is dropped, counted and logged.  Retained "state"
 * messages (flag MQTT_PUB_STATE) are not kept across a disconnect: the
 * owner republishes current state from the connected callback.  While
 * connected, at most one state message per topic waits in the FIFO: a
 * newer one replaces it and goes to the tail, behind whatever was queued
 * before it (so a state never overtakes the event that caused it).
 *
 * Paho owns nothing across connections: every connection gets a fresh Paho
 * client (same options, Last Will and callbacks), and the old one is
 * destroyed as soon as its connection is lost, with whatever publishes it
 * still had queued.  After a reconnect the only messages on the wire are
 * the module's own, resent from the oldest, so per-topic order holds.
 *
 * A publish the broker refuses (MQTT 5 PUBACK reason >= 0x80) is retried
 * after a jittered backoff when the refusal is transient (quota exceeded,
 * server busy...): nothing new is handed to Paho until it is accepted.  A
 * permanent refusal (not authorized, topic name invalid, packet too large,
 * payload format invalid) drops it, counted in `refused'.
 *
 * Reconnection is the module's own: jittered exponential backoff between
 * attempts, for the first connection and every later one alike; each
 * failure is logged with its cause in words.  An MQTT 5 broker's Server
 * Keep Alive lower than ours is honoured (one immediate reconnect with it).
 * After each connect the broker socket gets TCP_NODELAY; when a batch of
 * publishes (at least 4) is handed to Paho at once it is corked
 * (TCP_CORK) until that loop iteration ends, so a batch leaves as few
 * segments and a lone publish at once.  Received
 * messages waiting for the loop are bounded in count and bytes, and an
 * MQTT 5 broker is told the largest packet the module accepts
 * (MQTT_MAX_PACKET_IN); a larger payload from an MQTT 3.1.1 broker is
 * dropped on arrival (counted in received_dropped).
 */
#ifndef QMP2MQTT_MQTT_H
#define QMP2MQTT_MQTT_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct config;
struct mqtt;
struct spool;

#define MQTT_PUB_RETAIN	0x01	/* retained message */
#define MQTT_PUB_STATE	0x02	/* current-state message: dropped on disconnect */
#define MQTT_PUB_VOLATILE 0x04	/* not worth spooling (e.g. command results) */

/* mqtt_subscribe() flags. */
#define MQTT_SUB_RETAINED	0x00	/* retained messages too (default) */
#define MQTT_SUB_NO_RETAINED	0x01	/* MQTT 5: retain handling 2 + retain
					   as published */
#define MQTT_SUB_NO_LOCAL	0x02	/* MQTT 5: not our own publishes */

/* Largest packet an MQTT 5 broker may send us (CONNECT property 0x27). */
#define MQTT_MAX_PACKET_IN	(1024 * 1024)

/* A received message; all pointers valid only during the callback. */
struct mqtt_msg {
	const char	*topic;
	const void	*payload;
	size_t		 len;
	int		 qos;
	int		 retained;
	int		 dup;
	const char	*response_topic;	/* MQTT 5, or NULL */
	const void	*correlation;		/* MQTT 5, or NULL */
	size_t		 correlation_len;
};

struct mqtt_callbacks {
	/* Connected (first time and after every reconnect). */
	void	(*connected)(struct mqtt *, void *arg);
	/* Connection lost or attempt failed. */
	void	(*lost)(struct mqtt *, void *arg);
	/* A message arrived on a subscription. */
	void	(*message)(struct mqtt *, const struct mqtt_msg *, void *arg);
	/* The broker answered a SUBSCRIBE for filter (ok: granted). */
	void	(*subscribed)(struct mqtt *, const char *filter, int ok,
		    void *arg);
	/*
	 * Flow control: full is 1 when, while connected, the FIFO reached
	 * its high-water mark (the broker is slower than the producers), and
	 * 0 once it drained to half of it or the connection was lost (while
	 * disconnected, producers keep going and the bound drops the oldest).
	 */
	void	(*flow)(struct mqtt *, int full, void *arg);
};

struct mqtt_stats {
	uint64_t	published;	/* acknowledged by the broker */
	uint64_t	queued;		/* accepted into the FIFO */
	uint64_t	dropped;	/* dropped at the bound */
	uint64_t	resent;		/* sent again after a loss */
	uint64_t	connects;
	uint64_t	received;
	uint64_t	received_dropped;	/* inbound flood dropped */
	uint64_t	refused;	/* refused by the broker for good */
	uint64_t	coalesced;	/* state replaced by a newer one */
	size_t		buffered;	/* now in the FIFO */
	size_t		inflight;	/* now handed to Paho */
};

/* will_topic/will_payload: the Last Will (retained, QoS 1), or NULL. */
struct mqtt	*mqtt_new(struct loop *, const struct config *,
		    const char *will_topic, const char *will_payload,
		    const struct mqtt_callbacks *, void *arg);
void		 mqtt_free(struct mqtt *);	/* NULL is a no-op */
/* Starts the first connection attempt.  0, or -1 (logged). */
int		 mqtt_start(struct mqtt *);

/*
 * Queues a message (copied).  flags: MQTT_PUB_*.  Returns 0, or -1 when
 * out of memory.  While disconnected, MQTT_PUB_STATE messages are not
 * queued (returns 0): the connected callback republishes state.
 */
int		 mqtt_publish(struct mqtt *, const char *topic,
		    const void *payload, size_t len, int qos, int flags);
/*
 * Like mqtt_publish, with MQTT 5 correlation data (may be NULL).
 */
int		 mqtt_publish_corr(struct mqtt *, const char *topic,
		    const void *payload, size_t len, int qos, int flags,
		    const void *corr, size_t corr_len);

/*
 * Subscribes (on every connection, now and after reconnects).  flags:
 * MQTT_SUB_*; MQTT_SUB_NO_RETAINED (1, as the old boolean) asks an MQTT 5
 * broker not to send retained messages (retain handling 2) and to keep the
 * retain flag of messages published retained while the subscription
 * exists (retain as published), so they can be told apart;
 * MQTT_SUB_NO_LOCAL asks it not to send back our own publishes.  Both are
 * ignored under MQTT 3.1.1.  0, or -1 when out of memory.
 */
int		 mqtt_subscribe(struct mqtt *, const char *filter, int qos,
		    int flags);
/* Forgets a subscription (unsubscribes now if connected).  1, or 0 if none. */
int		 mqtt_unsubscribe(struct mqtt *, const char *filter);
/*
 * A reloaded configuration: cf (kept by reference, like mqtt_new's) and
 * the Last Will apply from the next connection on; with reconnect, that
 * next connection is made now (one clean disconnect, nothing lost: what
 * was in flight is sent again in order).  0, or -1 when out of memory
 * (nothing changed).
 */
int		 mqtt_reconfigure(struct mqtt *, const struct config *cf,
		    const char *will_topic, const char *will_payload,
		    int reconnect);

/*
 * Makes the FIFO durable: every message but state messages is appended to
 * sp when queued and marked done there when acknowledged or dropped.
 * Messages recovered from sp are queued first, in their original order.
 * The caller keeps ownership of sp and closes it after mqtt_free().
 */
void		 mqtt_set_spool(struct mqtt *, struct spool *sp);

int		 mqtt_connected(const struct mqtt *);
/* The counters; buffered and inflight as of this call. */
const struct mqtt_stats *mqtt_stats(struct mqtt *);
/* Messages queued or in flight. */
size_t		 mqtt_pending(const struct mqtt *);

/*
 * Graceful stop: publishes (topic, payload) retained, waits up to
 * timeout_ms for the FIFO to drain and that message to be acknowledged,
 * then disconnects.  Runs the loop itself while waiting.
 */
void		 mqtt_shutdown(struct mqtt *, const char *topic,
		    const char *payload, unsigned timeout_ms);

/*
 * Pure helpers, exposed for tests.
 *
 * mqtt_refusal_permanent: whether an MQTT 5 PUBACK reason code (>= 0x80)
 * means the message can never be accepted (1: drop it) rather than "not
 * now" (0: retry it later).
 */
int		 mqtt_refusal_permanent(int reason);
/*
 * mqtt_connect_cause: a connect failure in words, written to buf (always
 * NUL-terminated) and returned.  version: 5 or 3 (3.1.1); code: what Paho
 * reported (a CONNACK return or reason code when > 0, a Paho error when
 * <= 0); text: Paho's message, or NULL.
 */
const char	*mqtt_connect_cause(int version, int code, const char *text,
		    char *buf, size_t len);

#endif
