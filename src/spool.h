/*
 * spool: the durable half of the outbound MQTT queue, in bridge.state_dir.
 *
 * An append-only log, <state_dir>/spool.log, of two record kinds:
 *   'M': a message accepted for publishing (id, qos, flags, topic, payload)
 *   'A': message id acknowledged by the broker (or dropped at the bound)
 * each with a CRC-32, so a torn tail left by a crash is detected and cut.
 * A message record is written with one write(2) as soon as the message is
 * queued, so once the bridge has accepted an event a kill -9 cannot lose
 * it (it is in the kernel's page cache); acknowledgements are batched (a
 * lost one only means a duplicate, which QoS 1 allows).
 *
 * Durability policy: every record survives the death of the process.
 * Across a power cut, the log survives as of its last fsync: each
 * compaction (the compacted file is fsync()ed before it is renamed over
 * the log, and the directory after) and each clean stop (spool_close);
 * appends in between are not fsync()ed (one fsync per event would cost
 * more than the whole bridge) and are as durable as the kernel's
 * writeback made them.  A power cut can never leave an empty log in
 * place of a good one.
 *
 * A failed write (a full disk) never stops the bridge: the message stays
 * in memory only, the failure is counted (spool_errors), reported
 * (spool_problems) and logged at most once every 10 s.  Recovery needs no
 * free space: when the compacted log cannot be written at start, the old
 * log (cut back to its last valid record) stays the log.
 *
 * At start, spool_open() locks the directory (flock on <dir>/lock: one
 * bridge per state_dir), reads the log, keeps the messages never
 * acknowledged, in order, and rewrites the log with only those
 * (tmp + rename); the owner takes them back with spool_replay().  The log
 * is compacted the same way at run time when it has grown well past what
 * is still live.
 */
#ifndef QMP2MQTT_SPOOL_H
#define QMP2MQTT_SPOOL_H

#include <stddef.h>
#include <stdint.h>

struct spool;

/* Receives one unacknowledged message; strings valid during the call. */
typedef void (*spool_cb)(void *arg, uint64_t id, const char *topic,
    const void *payload, size_t len, int qos, int flags);

/*
 * Opens (creating dir and log as needed), locks the directory and
 * recovers the log.  Returns the spool, or NULL with a message in err
 * (the directory is locked by another process, or cannot be used at all).
 */
struct spool	*spool_open(const char *dir, char *err, size_t errlen);
/* Flushes pending acknowledgements and closes.  NULL is a no-op. */
void		 spool_close(struct spool *);

/* Hands every recovered message to cb, oldest first, then forgets them. */
void		 spool_replay(struct spool *, spool_cb, void *arg);
/* Hands every recovered message to cb, oldest first; keeps them. */
void		 spool_peek(const struct spool *, spool_cb, void *arg);

/*
 * Appends a message; returns its id (> 0), or 0 when it could not be
 * written (counted, logged rate-limited; the message then lives in memory
 * only).
 */
uint64_t	 spool_append(struct spool *, const char *topic,
		    const void *payload, size_t len, int qos, int flags);
/* Records that id is done (acknowledged or dropped). */
void		 spool_ack(struct spool *, uint64_t id);
/* Writes batched acknowledgements out now. */
void		 spool_flush(struct spool *);

/* Whether the log has grown enough to be worth compacting. */
int		 spool_should_compact(const struct spool *, size_t live_bytes);
/*
 * Compaction: begin, add every live message (with its id) in order, then
 * commit (atomic rename) or, on any failure, the old log stays.  0 or -1.
 */
int		 spool_compact_begin(struct spool *);
int		 spool_compact_add(struct spool *, uint64_t id, const char *topic,
		    const void *payload, size_t len, int qos, int flags);
int		 spool_compact_commit(struct spool *);

/* Log size in bytes and records recovered at open (for stats/tests). */
uint64_t	 spool_size(const struct spool *);
uint64_t	 spool_recovered(const struct spool *);
/* Messages in the log not acknowledged yet (recovered or appended). */
uint64_t	 spool_live(const struct spool *);
/* Writes that failed (messages, acknowledgements, compactions). */
uint64_t	 spool_errors(const struct spool *);

/* What is wrong now, as a mask; 0 when healthy. */
#define SPOOL_WRITE_FAILING	0x01	/* the last message/ack write failed */
#define SPOOL_COMPACT_FAILING	0x02	/* the last compaction failed */
int		 spool_problems(const struct spool *);

#endif
