/*
 * mqtt: the bridge's MQTT client; the only file that includes Paho.
 *
 * Paho's MQTTAsync runs its own threads.  Everything they report
 * (connected, lost, message arrived, publish acknowledged) is pushed onto
 * a mutex-protected queue and signalled through an eventfd; the loop
 * thread drains it and calls the callbacks below, so no other module ever
 * sees a thread.
 *
 * Outbound messages sit in the module's own FIFO, bounded by buffer_max
 * messages, and at most inflight_max of them are handed to Paho at once
 * (Paho's own queue is O(n) per send and silently drops past 100).  A
 * message leaves the FIFO only when the broker acknowledged it (QoS 1/2) or
 * Paho wrote it (QoS 0); after a connection loss the unacknowledged ones
 * are sent again, in order, so an event can be duplicated (as QoS 1
 * allows) but never lost while it fits the bound.  When the bound is hit
 * the oldest message is dropped, counted and logged.  Retained "state"
 * messages (flag MQTT_PUB_STATE) are not kept across a disconnect: the
 * owner republishes current state from the connected callback.
 *
 * Reconnection is the module's own: jittered exponential backoff between
 * attempts, for the first connection and every later one alike.  After
 * each connect the broker socket gets TCP_NODELAY.
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
 * Subscribes (on every connection, now and after reconnects): no_retained
 * asks an MQTT 5 broker not to send retained messages (retain handling 2)
 * and to keep the retain flag of messages published retained while the
 * subscription exists (retain as published), so they can be told apart.
 */
#define MQTT_SUB_RETAINED	0x00	/* retained messages wanted */
#define MQTT_SUB_NO_RETAINED	0x01	/* no_retained as above */
#define MQTT_SUB_NO_LOCAL	0x02	/* MQTT 5: not our own publishes */
int		 mqtt_subscribe(struct mqtt *, const char *filter, int qos,
		    int no_retained);

/*
 * Makes the FIFO durable: every message but state messages is appended to
 * sp when queued and marked done there when acknowledged or dropped.
 * Messages recovered from sp are queued first, in their original order.
 * The caller keeps ownership of sp and closes it after mqtt_free().
 */
void		 mqtt_set_spool(struct mqtt *, struct spool *sp);

int		 mqtt_connected(const struct mqtt *);
const struct mqtt_stats *mqtt_stats(const struct mqtt *);
/* Messages queued or in flight. */
size_t		 mqtt_pending(const struct mqtt *);

/*
 * Graceful stop: publishes (topic, payload) retained, waits up to
 * timeout_ms for the FIFO to drain and that message to be acknowledged,
 * then disconnects.  Runs the loop itself while waiting.
 */
void		 mqtt_shutdown(struct mqtt *, const char *topic,
		    const char *payload, unsigned timeout_ms);

#endif
