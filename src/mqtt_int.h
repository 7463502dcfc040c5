/*
 * mqtt_int: what the broker client's files share (mqtt.c: the loop
 * thread's side, the connection and the FIFO's window (the FIFO itself is
 * fifo.c's); mqttcb.c: Paho's threads, which only post events; mqttcode.c:
 * reason codes in words).  Not for other modules: mqtt.h is the interface.
 */
#ifndef QMP2MQTT_MQTT_INT_H
#define QMP2MQTT_MQTT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <MQTTAsync.h>

#include "backoff.h"
#include "mqtt.h"

struct fifo;
struct loop;
struct loop_timer;
struct spool;

enum mev_type { MEV_CONNECTED, MEV_CONNECT_FAILED, MEV_LOST, MEV_ACK,
    MEV_NACK, MEV_MESSAGE, MEV_DISCONNECTED, MEV_SUBACK, MEV_TLS_ERROR };

struct mev {
	struct mev	*next;
	enum mev_type	 type;
	unsigned	 gen;		/* the client's generation */
	int		 token;
	int		 code;
	int		 keepalive;	/* MEV_CONNECTED: Server Keep Alive */
	int		 recvmax;	/* MEV_CONNECTED: Receive Maximum */
	size_t		 size;		/* MEV_MESSAGE: bytes counted */
	struct mqtt_msg	 msg;		/* MEV_MESSAGE; strings in data[] */
	char		*text;		/* cause, for logs */
	char		 data[];
};

/* The context of one Paho client's callbacks (see above). */
struct conn {
	struct mqtt	*m;
	unsigned	 gen;
};

struct sub {
	struct sub	*next;
	char		*filter;
	int		 qos;
	int		 flags;		/* MQTT_SUB_* */
	int		 token;		/* of the SUBSCRIBE in flight, or 0 */
};

/*
 * A log line that outside input can trigger: at most one a second, the
 * rest summed up by one line a second later.
 */
struct ratelog {
	uint64_t	last_ms;
	uint64_t	suppressed;
};

#define ACK_LAZY_MS	100	/* longest wait of a queued ack (lazy acks) */

struct mqtt {
	struct loop		*loop;
	const struct config	*cf;
	struct mqtt_callbacks	 cb;
	void			*arg;
	MQTTAsync		 cli;		/* this connection's, or NULL */
	struct conn		*conn;		/* its callbacks' context */
	unsigned		 gen;		/* its generation */
	int			 keepalive;	/* s, lowered by the broker */
	char			*will_topic;
	char			*will_payload;

	int			 efd;
	pthread_mutex_t		 lock;
	struct mev		*evq, *evq_tail;
	int			 evq_woken;	/* efd written, not yet read
						   by drain (locked) */
	int			 ack_urgent;	/* every ack wakes the loop
						   (locked; see lazy acks) */
	atomic_int		 evq_any;	/* evq not empty: the hook's
						   peek without the lock */
	size_t			 evq_msgs;	/* MEV_MESSAGE queued (locked) */
	size_t			 evq_bytes;	/* their size (locked) */
	uint64_t		 evq_dropped;	/* messages refused (locked) */

	int			 connected;
	int			 connecting;
	int			 stopping;
	int			 disconnected;	/* shutdown's disconnect done */
	struct backoff		 bo;
	struct loop_timer	*timer;

	struct fifo		*fifo;		/* the outbound queue */
	size_t			 window;	/* inflight_max, or the broker's
						   Receive Maximum if lower */
	struct sub		*subs;
	int			 full;		/* flow: above high water */
	size_t			 high_water;
	struct spool		*spool;
	struct mqtt_stats	 stats;

	/* Lazy acks: the loop's side (see ack_mode in mqtt.c). */
	int			 urgent;	/* the value set in ack_urgent */
	int			 ack_wait;	/* the bound elapsed: the next
						   ack wakes the loop */
	int			 draining;	/* mqtt_shutdown waits for acks */
	struct loop_timer	*ack_timer;	/* bounds a queued ack's wait */
	int			 hooked;	/* before_wait is the loop's */

	/* Batching: TCP_CORK while a batch is handed to Paho (see pump). */
	int			 sock;		/* the broker socket, or -1 */
	int			 corked;
	struct loop_timer	*uncork_timer;	/* end of this loop iteration */

	/* Transient refusals: hold the FIFO, retry after a backoff. */
	int			 holding;	/* no new sends */
	int			 hold_due;	/* the backoff elapsed */
	struct backoff		 rbo;
	struct loop_timer	*hold_timer;

	/* Connect failures: a changed cause at once, a repeat rarely. */
	char			 cause[256];
	uint64_t		 cause_ms;
	uint64_t		 cause_repeats;
	char			 tls_err[200];	/* this attempt's first */

	struct ratelog		 rl_drop, rl_refused, rl_retry, rl_indrop;
	struct loop_timer	*drop_timer;	/* reports suppressed lines */
};

/*
 * Received messages waiting for the loop are bounded, in count and in
 * bytes: a flood on a subscribed topic while the loop is busy is dropped
 * here, counted, rather than growing without limit.  Only commands and
 * peer state arrive this way, a few KiB each: a payload larger than
 * MQTT_MAX_PACKET_IN is dropped whatever the queue holds.
 */
#define EVQ_MSGS_MAX	10000
#define EVQ_BYTES_MAX	(16 * 1024 * 1024)

/* mqttcb.c: Paho's callbacks (on its threads): post an event, return. */
void	post_simple(struct conn *c, enum mev_type type, int token, int code,
	    const char *text);
void	cb_lost(void *ctx, char *cause);
int	cb_arrived(void *ctx, char *topic, int topiclen, MQTTAsync_message *pm);
void	cb_conn_ok(void *ctx, MQTTAsync_successData *r);
int	cb_tls_error(const char *str, size_t len, void *u);
void	cb_conn_ok5(void *ctx, MQTTAsync_successData5 *r);
void	cb_conn_fail(void *ctx, MQTTAsync_failureData *r);
void	cb_conn_fail5(void *ctx, MQTTAsync_failureData5 *r);
void	cb_pub_ok(void *ctx, MQTTAsync_successData *r);
void	cb_pub_ok5(void *ctx, MQTTAsync_successData5 *r);
void	cb_pub_fail(void *ctx, MQTTAsync_failureData *r);
void	cb_pub_fail5(void *ctx, MQTTAsync_failureData5 *r);
void	cb_sub_ok(void *ctx, MQTTAsync_successData *r);
void	cb_sub_ok5(void *ctx, MQTTAsync_successData5 *r);
void	cb_sub_fail(void *ctx, MQTTAsync_failureData *r);
void	cb_sub_fail5(void *ctx, MQTTAsync_failureData5 *r);
void	cb_disc_ok(void *ctx, MQTTAsync_successData *r);
void	cb_disc_ok5(void *ctx, MQTTAsync_successData5 *r);
void	cb_disc_fail(void *ctx, MQTTAsync_failureData *r);
void	cb_disc_fail5(void *ctx, MQTTAsync_failureData5 *r);

/* mqtt.c: the publishing side. */
void	mq_pump(struct mqtt *);		/* hands waiting messages to Paho */
void	mq_flow_check(struct mqtt *);	/* tells the owner full/not full */

/* mqttconn.c: the connection. */
int	mq_client_renew(struct mqtt *);	/* a fresh Paho client: 0 or -1 */
void	mq_reconnect_timer(struct loop *, struct loop_timer *, void *);
void	mq_start_connect(struct mqtt *);
void	mq_subscribe_one(struct mqtt *, struct sub *);
void	mq_on_suback(struct mqtt *, int token, int ok);
void	mq_on_connected(struct mqtt *, int server_keepalive, int recvmax,
	    const char *uri);
const char *mq_tls_cause(struct mqtt *, int code, const char *text);
void	mq_log_connect_failure(struct mqtt *, int code, const char *text);
/* A lost (or failed) connection: FIFO rewound, a fresh client, retry. */
void	mq_on_lost(struct mqtt *, const char *why, int attempt);

/* mqttcode.c: an MQTT 5 reason code's name ("not authorized"), or NULL. */
const char	*mqtt_reason_str(int code);

#endif
