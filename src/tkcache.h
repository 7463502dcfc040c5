/*
 * tkcache: the takeover replay cache, (host, vm, id) -> the request's
 * payload digest and its first result.  An id is remembered once its
 * request's signature verified; a QoS 1 duplicate (same payload) is then
 * answered with the first result instead of running again, and the same
 * id with another payload is a replay.  Entries live ttl_us and at most
 * max are kept (expired ones are evicted first; a cache full of live ids
 * refuses new ones rather than forget one).  A hash table with chaining
 * plus an insertion-ordered list for eviction: O(1) per lookup.  Pure: the
 * caller passes the time in.  tkstore.h persists it across restarts.
 */
#ifndef QMP2MQTT_TKCACHE_H
#define QMP2MQTT_TKCACHE_H

#include <stddef.h>
#include <stdint.h>

struct tk_cache;

enum tk_seen {
	TK_SEEN_NEW,		/* recorded now: execute it */
	TK_SEEN_DUPLICATE,	/* same id, same payload: answer again */
	TK_SEEN_REPLAY,		/* same id, other payload: refuse */
	TK_SEEN_FULL		/* no room without forgetting a live id: refuse */
};

struct tk_cache	*tk_cache_new(size_t max);	/* NULL: max 0 or no memory */
void		 tk_cache_free(struct tk_cache *);	/* NULL is a no-op */
/*
 * Looks (host, vm, id) up and records it when new.  On TK_SEEN_DUPLICATE
 * *result is the stored result JSON, or NULL while the first request is
 * still running.  Record only requests whose signature was verified.
 * An entry is live while now_us < recorded + ttl_us.  Bad arguments,
 * ttl_us <= 0 and memory exhaustion also give TK_SEEN_FULL.
 * An entry put back by tk_cache_restore() gives TK_SEEN_REPLAY for any
 * payload, the same one included, until a result is set: it was accepted
 * by an earlier bridge process whose result is lost, so it must never
 * execute again, and the bridge answers "replay" (the operator checks
 * the VM's state and sends a new id).
 */
enum tk_seen	 tk_cache_check(struct tk_cache *, const char *host,
		    const char *vm, const char *id,
		    const unsigned char digest[32], int64_t now_us,
		    int64_t ttl_us, const char **result);
/* Stores the result of (host, vm, id) for duplicates.  0, or -1. */
int		 tk_cache_set_result(struct tk_cache *, const char *host,
		    const char *vm, const char *id, const char *result);
size_t		 tk_cache_size(const struct tk_cache *);
/*
 * Puts back an id recorded at recorded_us by an earlier process (see
 * tkstore.h), without result; an existing entry of the same key is
 * replaced.  Returns 0, or -1 (bad arguments, no memory, or the cache
 * holds max entries: the caller evicts nothing and fails closed).
 */
int		 tk_cache_restore(struct tk_cache *, const char *host,
		    const char *vm, const char *id,
		    const unsigned char digest[32], int64_t recorded_us);

#endif
