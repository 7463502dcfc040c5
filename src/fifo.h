/*
 * fifo: the outbound message queue of the MQTT client, oldest first, with
 * the window of messages in flight.  mqtt.c owns the connection and hands
 * messages to Paho; this module knows neither, only the entries, their
 * order and their tokens.  Loop thread only; no locking.
 *
 * The queue is one list.  Entries [head, next) have been sent (in flight,
 * each with the token the sender got for it); [next, tail] wait, and
 * fifo_next() is the first of them.  An entry leaves the queue through
 * fifo_done() (acknowledged, refused for good, never sendable) wherever
 * it is, or when the bound drops it; a state message also when a newer
 * one of its topic replaces it, and at a rewind.  After a connection
 * loss fifo_rewind() marks every in-flight entry waiting again by moving
 * `next' back to the head: they are sent again from the oldest, in their
 * original order.
 *
 * Current-state messages (FIFO_STATE) are coalesced per topic through a
 * small hash map: at most one waits per topic, and a newer one replaces
 * it and goes to the tail, behind whatever was queued before it, so a
 * state never overtakes the event that caused it.  One in flight is never
 * replaced.  They are not kept across a rewind (the owner republishes
 * current state once reconnected), do not count against the bound and
 * are never dropped by it.
 *
 * The bound: pushing a message other than a state one while `bound' such
 * messages are queued first drops the oldest waiting one that is not a
 * state message, reported through the drop callback; never one in flight
 * (with none waiting, the bound is exceeded).  With a spool set, every
 * message but state, volatile and correlated ones is appended to it when
 * pushed, and marked done there when it leaves the queue.
 */
#ifndef QMP2MQTT_FIFO_H
#define QMP2MQTT_FIFO_H

#include <stddef.h>
#include <stdint.h>

struct fifo;
struct fifo_entry;
struct spool;

/*
 * The flags the queue acts on (the rest are the owner's, kept and spooled
 * as they are); the same bits as MQTT_PUB_STATE and MQTT_PUB_VOLATILE.
 */
#define FIFO_STATE	0x02	/* coalesced per topic, gone after a rewind */
#define FIFO_VOLATILE	0x04	/* never spooled */

/*
 * A queued message, as the entry holds it: its own copy, valid until the
 * entry leaves the queue.  Read only (not const, for Paho's sake).
 */
struct fifo_msg {
	char	*topic;
	void	*payload;
	size_t	 len;
	int	 qos;
	int	 flags;
	void	*corr;		/* MQTT 5 correlation data, or NULL */
	size_t	 corr_len;
};

/* Told each message the bound drops (topic valid during the call). */
typedef void	(*fifo_drop_cb)(void *arg, const char *topic);

/* Returns an empty queue, or NULL when out of memory. */
struct fifo	*fifo_new(size_t bound, fifo_drop_cb, void *arg);
/* Frees the queue and its entries (the spool keeps them).  NULL: no-op. */
void		 fifo_free(struct fifo *);
/*
 * Makes the queue durable from now on (see above); the caller keeps
 * ownership of sp and closes it after fifo_free().
 */
void		 fifo_set_spool(struct fifo *, struct spool *sp);

/*
 * Appends a copy of a message (corr may be NULL); sid is its spool id
 * when it comes from the spool, or 0 to spool it now if it qualifies.  A
 * state message replaces the waiting one of its topic; any other makes
 * room at the bound first.  Returns 1 when a waiting state message was
 * replaced, 0 when none was, or -1 when out of memory (nothing changed).
 */
int		 fifo_push(struct fifo *, const char *topic,
		    const void *payload, size_t len, int qos, int flags,
		    const void *corr, size_t corr_len, uint64_t sid);

/* The first waiting entry (the next to send), or NULL. */
struct fifo_entry *fifo_next(const struct fifo *);
/* How many entries wait, counting up to max at most. */
size_t		 fifo_waiting(const struct fifo *, size_t max);
/* The message of an entry. */
const struct fifo_msg *fifo_msg(const struct fifo_entry *);
/*
 * Marks the first waiting entry (fifo_next(), which must exist) in flight
 * under token; a state message is no longer coalesced from then on.
 */
void		 fifo_sent(struct fifo *, int token);
/* The entry in flight under token, or NULL (stale). */
struct fifo_entry *fifo_find(const struct fifo *, int token);
/*
 * Marks an entry in flight not in flight any more (refused for now): it
 * keeps its place, before the waiting ones, until fifo_retry().
 */
void		 fifo_unsend(struct fifo *, struct fifo_entry *);
/*
 * With nothing in flight, makes the entries before `next' (refused for
 * now) the first waiting ones again; a state message among them that a
 * newer one of its topic replaced meanwhile is dropped.  Returns how many
 * were dropped so.
 */
size_t		 fifo_retry(struct fifo *);
/*
 * After a connection loss: every in-flight entry waits again, in its
 * place; state messages go.  Returns how many entries were in flight.
 */
size_t		 fifo_rewind(struct fifo *);
/* Removes an entry (acknowledged or dropped), done in the spool too. */
void		 fifo_done(struct fifo *, struct fifo_entry *);
/*
 * Removes an entry the broker acknowledged (fifo_done); when it is a state
 * message, also the older ones of its topic refused for now, which would
 * otherwise be sent again over it.  Returns how many of those went.
 */
size_t		 fifo_acked(struct fifo *, struct fifo_entry *);

/* Messages queued (waiting or in flight), and those in flight. */
size_t		 fifo_count(const struct fifo *);
size_t		 fifo_inflight(const struct fifo *);

/*
 * When the spool has grown well past what is live, rewrites it with the
 * live entries, in order (failures leave the old one, logged by spool).
 */
void		 fifo_compact(struct fifo *);
/*
 * When the queue is empty after many bytes (4 MiB, or a message of 512
 * KiB) were queued since the last time, gives the freed memory back to
 * the system (malloc_trim).  Returns 1 if it did, else 0.
 */
int		 fifo_trim(struct fifo *);

#endif
