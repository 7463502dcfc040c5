/*
 * fifo: see fifo.h.  One list, oldest first; `next' splits it into the
 * entries in flight and those waiting.  Waiting state entries are also
 * chained in a hash table by topic (hnext), which is how a newer state
 * finds the one it replaces: an entry is in it (hashed) from its push
 * until it is sent, and again while a hold makes it wait (fifo_retry).
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "fifo.h"
#include "log.h"
#include "spool.h"

#define STATE_BUCKETS	1024	/* waiting state entries, hashed by topic */
#define TRIM_BYTES	(4u << 20)	/* queued bytes worth a malloc_trim */
#define TRIM_LARGE	(512u << 10)	/* one message worth a malloc_trim */

struct fifo_entry {
	struct fifo_msg		 msg;		/* points into data[]: one
						   allocation per message */
	struct fifo_entry	*next, *prev;
	struct fifo_entry	*hnext;		/* waiting states by topic */
	int			 token;		/* the sender's, in flight */
	int			 inflight;
	uint64_t		 sid;		/* spool id, 0 if not spooled */
	int			 hashed;	/* in f->states */
	char			 data[];
};

struct fifo {
	struct fifo_entry	*head, *tail, *next;
	size_t			 count;
	size_t			 nstate;	/* of count, FIFO_STATE ones */
	size_t			 inflight;
	size_t			 bound;
	fifo_drop_cb		 dropped;
	void			*arg;
	struct spool		*spool;
	size_t			 spooled_bytes;	/* live bytes in the spool */
	size_t			 trim_bytes;	/* queued since the last trim */
	struct fifo_entry	*states[STATE_BUCKETS];
};

struct fifo *
fifo_new(size_t bound, fifo_drop_cb dropped, void *arg)
{
	struct fifo *f;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	f->bound = bound;
	f->dropped = dropped;
	f->arg = arg;
	return f;
}

void
fifo_free(struct fifo *f)
{
	struct fifo_entry *e, *en;

	if (f == NULL)
		return;
	for (e = f->head; e != NULL; e = en) {
		en = e->next;
		free(e);
	}
	free(f);
}

void
fifo_set_spool(struct fifo *f, struct spool *sp)
{
	f->spool = sp;
}

/* --- waiting state entries by topic ------------------------------------- */

static unsigned
topic_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h & (STATE_BUCKETS - 1);
}

/* The waiting state entry for topic, or NULL. */
static struct fifo_entry *
state_find(struct fifo *f, const char *topic)
{
	struct fifo_entry *e;

	for (e = f->states[topic_hash(topic)]; e != NULL; e = e->hnext)
		if (strcmp(e->msg.topic, topic) == 0)
			return e;
	return NULL;
}

static void
state_add(struct fifo *f, struct fifo_entry *e)
{
	unsigned h = topic_hash(e->msg.topic);

	e->hnext = f->states[h];
	f->states[h] = e;
	e->hashed = 1;
}

static void
state_del(struct fifo *f, struct fifo_entry *e)
{
	struct fifo_entry **pp;

	if (!e->hashed)
		return;
	for (pp = &f->states[topic_hash(e->msg.topic)]; *pp != NULL;
	    pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	e->hashed = 0;
	e->hnext = NULL;
}

/* --- the list ----------------------------------------------------------- */

static void
unlink_entry(struct fifo *f, struct fifo_entry *e)
{
	state_del(f, e);
	if (f->next == e)
		f->next = e->next;
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		f->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		f->tail = e->prev;
	if (e->inflight)
		f->inflight--;
	f->count--;
	if (e->msg.flags & FIFO_STATE)
		f->nstate--;
}

static void
link_tail(struct fifo *f, struct fifo_entry *e)
{
	e->prev = f->tail;
	if (f->tail != NULL)
		f->tail->next = e;
	else
		f->head = e;
	f->tail = e;
	if (f->next == NULL)
		f->next = e;
	f->count++;
	if (e->msg.flags & FIFO_STATE) {
		f->nstate++;
		state_add(f, e);
	}
}

/* The entry is finished (acknowledged or dropped): forget it durably. */
static void
entry_done(struct fifo *f, struct fifo_entry *e)
{
	if (e->sid != 0 && f->spool != NULL) {
		spool_ack(f->spool, e->sid);
		f->spooled_bytes -= e->msg.len + strlen(e->msg.topic);
	}
}

void
fifo_done(struct fifo *f, struct fifo_entry *e)
{
	unlink_entry(f, e);
	entry_done(f, e);
	free(e);
}

size_t
fifo_acked(struct fifo *f, struct fifo_entry *e)
{
	struct fifo_entry	*o, *pv;
	size_t			 stale = 0;

	if (e->msg.flags & FIFO_STATE)
		for (o = e->prev; o != NULL; o = pv) {
			pv = o->prev;
			if ((o->msg.flags & FIFO_STATE) && !o->inflight &&
			    strcmp(o->msg.topic, e->msg.topic) == 0) {
				unlink_entry(f, o);
				entry_done(f, o);
				free(o);
				stale++;
			}
		}
	fifo_done(f, e);
	return stale;
}

/*
 * Drops the oldest message that is neither in flight nor a state message
 * (current state is small, bounded by the number of VMs, and must reach
 * the broker); returns 0, or -1 if there is none.
 */
static int
drop_oldest(struct fifo *f)
{
	struct fifo_entry *e = f->next;

	while (e != NULL && (e->msg.flags & FIFO_STATE))
		e = e->next;
	if (e == NULL)
		return -1;
	unlink_entry(f, e);
	entry_done(f, e);
	if (f->dropped != NULL)
		f->dropped(f->arg, e->msg.topic);
	free(e);
	return 0;
}

/* --- pushing ------------------------------------------------------------ */

/* A new entry holding a copy of the message, or NULL. */
static struct fifo_entry *
entry_new(const char *topic, const void *payload, size_t len, int qos,
    int flags, const void *corr, size_t corr_len)
{
	struct fifo_entry	*e;
	size_t			 tlen = strlen(topic) + 1;

	if (corr == NULL)
		corr_len = 0;
	if ((e = malloc(sizeof(*e) + tlen + len + corr_len)) == NULL)
		return NULL;
	memset(e, 0, sizeof(*e));
	e->msg.topic = e->data;
	memcpy(e->msg.topic, topic, tlen);
	e->msg.payload = e->data + tlen;
	memcpy(e->msg.payload, payload, len);
	e->msg.len = len;
	if (corr != NULL) {
		e->msg.corr = e->data + tlen + len;
		memcpy(e->msg.corr, corr, corr_len);
		e->msg.corr_len = corr_len;
	}
	e->msg.qos = qos;
	e->msg.flags = flags;
	return e;
}

int
fifo_push(struct fifo *f, const char *topic, const void *payload,
    size_t len, int qos, int flags, const void *corr, size_t corr_len,
    uint64_t sid)
{
	struct fifo_entry	*e, *old;
	int			 replaced = 0;

	if ((e = entry_new(topic, payload, len, qos, flags, corr,
	    corr_len)) == NULL)
		return -1;
	if (sid == 0 && f->spool != NULL &&
	    !(flags & (FIFO_STATE | FIFO_VOLATILE)) && corr == NULL)
		sid = spool_append(f->spool, topic, payload, len, qos, flags);
	if ((e->sid = sid) != 0)
		f->spooled_bytes += len + strlen(topic);
	if ((flags & FIFO_STATE) && (old = state_find(f, topic)) != NULL) {
		/* Coalesce: the newer state goes to the tail, behind whatever
		 * was queued since the older one. */
		fifo_done(f, old);
		replaced = 1;
	}
	/* The bound counts events and results, not current-state messages. */
	while (!(flags & FIFO_STATE) && f->count - f->nstate >= f->bound)
		if (drop_oldest(f) == -1)
			break;
	link_tail(f, e);
	f->trim_bytes += sizeof(*e) + strlen(topic) + 1 + len;
	/*
	 * A single large message (the stats of thousands of VMs, ~140 bytes
	 * each) is built, copied and freed in holes of the heap whose pages
	 * a trim had given back: trim again after it, or the holes stay
	 * resident (measured at 10 000 VMs: +1.4 MiB for good after the
	 * first stats message).
	 */
	if (len >= TRIM_LARGE)
		f->trim_bytes += TRIM_BYTES;
	return replaced;
}

/* --- the window --------------------------------------------------------- */

struct fifo_entry *
fifo_next(const struct fifo *f)
{
	return f->next;
}

size_t
fifo_waiting(const struct fifo *f, size_t max)
{
	const struct fifo_entry	*e;
	size_t			 n = 0;

	for (e = f->next; e != NULL && n < max; e = e->next)
		n++;
	return n;
}

const struct fifo_msg *
fifo_msg(const struct fifo_entry *e)
{
	return &e->msg;
}

void
fifo_sent(struct fifo *f, int token)
{
	struct fifo_entry *e = f->next;

	state_del(f, e);	/* no longer waiting: not coalesced */
	e->token = token;
	e->inflight = 1;
	f->inflight++;
	f->next = e->next;
}

struct fifo_entry *
fifo_find(const struct fifo *f, int token)
{
	struct fifo_entry *e;

	for (e = f->head; e != NULL && e != f->next; e = e->next)
		if (e->inflight && e->token == token)
			return e;
	return NULL;
}

void
fifo_unsend(struct fifo *f, struct fifo_entry *e)
{
	e->inflight = 0;
	e->token = 0;
	f->inflight--;
}

size_t
fifo_retry(struct fifo *f)
{
	struct fifo_entry	*e, *pv;
	size_t			 stale = 0;

	/*
	 * Newest first, so that of two states of one topic refused together
	 * the newer is kept: a state refused for now that a newer one (still
	 * waiting, or refused after it) replaced is stale.
	 */
	for (e = f->next != NULL ? f->next->prev : f->tail; e != NULL;
	    e = pv) {
		pv = e->prev;
		if (!(e->msg.flags & FIFO_STATE))
			continue;
		if (state_find(f, e->msg.topic) != NULL) {
			unlink_entry(f, e);
			free(e);
			stale++;
		} else
			state_add(f, e);
	}
	f->next = f->head;
	return stale;
}

size_t
fifo_rewind(struct fifo *f)
{
	struct fifo_entry	*e, *nx;
	size_t			 resent = 0;

	for (e = f->head; e != NULL; e = nx) {
		nx = e->next;
		if (e->inflight) {
			e->inflight = 0;
			e->token = 0;
			resent++;
		}
		if (e->msg.flags & FIFO_STATE) {
			unlink_entry(f, e);
			free(e);
		}
	}
	f->inflight = 0;
	f->next = f->head;
	return resent;
}

size_t
fifo_count(const struct fifo *f)
{
	return f->count;
}

size_t
fifo_inflight(const struct fifo *f)
{
	return f->inflight;
}

/* --- memory and spool --------------------------------------------------- */

void
fifo_compact(struct fifo *f)
{
	struct fifo_entry *e;

	if (f->spool == NULL || !spool_should_compact(f->spool,
	    f->spooled_bytes))
		return;
	spool_flush(f->spool);
	if (spool_compact_begin(f->spool) == -1)
		return;
	for (e = f->head; e != NULL; e = e->next)
		if (e->sid != 0 && spool_compact_add(f->spool, e->sid,
		    e->msg.topic, e->msg.payload, e->msg.len, e->msg.qos,
		    e->msg.flags) == -1)
			return;
	if (spool_compact_commit(f->spool) == 0)
		log_debug("mqtt: spool compacted to %llu bytes",
		    (unsigned long long)spool_size(f->spool));
}

int
fifo_trim(struct fifo *f)
{
	/*
	 * The queue drained after many messages (a burst, every VM's
	 * retained state at start): give the memory back (glibc keeps freed
	 * chunks in the middle of the heap otherwise: measured 37 -> 30 MiB
	 * after starting 10 000 VMs).  At most once per TRIM_BYTES queued or
	 * TRIM_LARGE message (a trim walks the heap's free chunks: ~1 ms at
	 * 20 MiB).
	 */
	if (f->count > 0 || f->trim_bytes < TRIM_BYTES)
		return 0;
	f->trim_bytes = 0;
	malloc_trim(0);
	return 1;
}
