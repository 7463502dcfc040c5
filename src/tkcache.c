/*
 * tkcache: see tkcache.h.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "tkcache.h"

#define BUCKETS_MIN	16
#define BUCKETS_MAX	((size_t)1 << 16)

/* --- replay cache --------------------------------------------------- */

struct tk_entry {
	struct tk_entry	*hnext;		/* bucket chain */
	struct tk_entry	*prev, *next;	/* insertion order, oldest first */
	uint32_t	 hash;
	int64_t		 recorded_us;
	int		 restored;	/* from tk_cache_restore() */
	unsigned char	 digest[32];
	char		*result;	/* NULL while running */
	size_t		 keylen;
	char		 key[];		/* host \0 vm \0 id */
};

struct tk_cache {
	struct tk_entry	**buckets;
	size_t		  nbuckets;	/* a power of two */
	struct tk_entry	 *head, *tail;
	size_t		  count, max;
};

/* The parts of a key, as passed in. */
struct tk_key {
	const char	*s[3];
	size_t		 n[3];
	size_t		 len;		/* n[0] + n[1] + n[2] + 2 */
	uint32_t	 hash;
};

/* Fills k from (host, vm, id) and hashes it (FNV-1a).  0, or -1. */
static int
key_make(struct tk_key *k, const char *host, const char *vm, const char *id)
{
	uint32_t	h = UINT32_C(2166136261);
	size_t		i, j;

	if (host == NULL || vm == NULL || id == NULL)
		return -1;
	k->s[0] = host;
	k->s[1] = vm;
	k->s[2] = id;
	k->len = 2;
	for (i = 0; i < 3; i++) {
		k->n[i] = strlen(k->s[i]);
		if (k->n[i] > SIZE_MAX - sizeof(struct tk_entry) - 1 -
		    k->len)
			return -1;
		k->len += k->n[i];
		for (j = 0; j < k->n[i]; j++) {
			h ^= (unsigned char)k->s[i][j];
			h *= UINT32_C(16777619);
		}
		if (i < 2)		/* the '\0' separator: h ^= 0 */
			h *= UINT32_C(16777619);
	}
	k->hash = h;
	return 0;
}

/* 1 if e holds exactly key k, else 0. */
static int
key_eq(const struct tk_entry *e, const struct tk_key *k)
{
	const char	*p = e->key;
	size_t		 i;

	if (e->hash != k->hash || e->keylen != k->len)
		return 0;
	for (i = 0; i < 3; i++) {
		if (memcmp(p, k->s[i], k->n[i]) != 0 ||
		    (i < 2 && p[k->n[i]] != '\0'))
			return 0;
		p += k->n[i] + 1;
	}
	return 1;
}

/* Returns the entry holding k, live or not, or NULL. */
static struct tk_entry *
lookup(const struct tk_cache *c, const struct tk_key *k)
{
	struct tk_entry	*e;

	for (e = c->buckets[k->hash & (c->nbuckets - 1)]; e != NULL;
	    e = e->hnext)
		if (key_eq(e, k))
			return e;
	return NULL;
}

/* Unlinks e from its bucket and from the order list, and frees it. */
static void
remove_entry(struct tk_cache *c, struct tk_entry *e)
{
	struct tk_entry	**pp;

	for (pp = &c->buckets[e->hash & (c->nbuckets - 1)]; *pp != NULL;
	    pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	c->count--;
	free(e->result);
	free(e);
}

/* 1 while e is live at now_us: now_us < recorded + ttl_us (saturated). */
static int
is_live(const struct tk_entry *e, int64_t now_us, int64_t ttl_us)
{
	int64_t	exp;

	exp = e->recorded_us > INT64_MAX - ttl_us ? INT64_MAX :
	    e->recorded_us + ttl_us;
	return now_us < exp;
}

/* Frees every entry that is no longer live at now_us, wherever it is. */
static void
evict_expired(struct tk_cache *c, int64_t now_us, int64_t ttl_us)
{
	struct tk_entry	*e, *next;

	for (e = c->head; e != NULL; e = next) {
		next = e->next;
		if (!is_live(e, now_us, ttl_us))
			remove_entry(c, e);
	}
}

/* Creates the entry for k and links it last.  Returns it, or NULL. */
static struct tk_entry *
insert(struct tk_cache *c, const struct tk_key *k,
    const unsigned char digest[32], int64_t recorded_us)
{
	struct tk_entry	*e;
	size_t		 i, off;

	if ((e = malloc(sizeof(*e) + k->len)) == NULL)
		return NULL;
	memset(e, 0, sizeof(*e));
	for (i = 0, off = 0; i < 3; i++) {
		memcpy(e->key + off, k->s[i], k->n[i]);
		off += k->n[i];
		if (i < 2)
			e->key[off++] = '\0';
	}
	e->keylen = k->len;
	e->hash = k->hash;
	memcpy(e->digest, digest, 32);
	e->recorded_us = recorded_us;
	e->hnext = c->buckets[k->hash & (c->nbuckets - 1)];
	c->buckets[k->hash & (c->nbuckets - 1)] = e;
	e->prev = c->tail;
	if (c->tail != NULL)
		c->tail->next = e;
	else
		c->head = e;
	c->tail = e;
	c->count++;
	return e;
}

/* Returns a cache for at most max ids, or NULL (max 0, no memory). */
struct tk_cache *
tk_cache_new(size_t max)
{
	struct tk_cache	*c;
	size_t		 nb = BUCKETS_MIN;

	if (max == 0)
		return NULL;
	while (nb < max && nb < BUCKETS_MAX)
		nb <<= 1;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->buckets = calloc(nb, sizeof(*c->buckets))) == NULL) {
		free(c);
		return NULL;
	}
	c->nbuckets = nb;
	c->max = max;
	return c;
}

/* Frees c and every entry; NULL is a no-op. */
void
tk_cache_free(struct tk_cache *c)
{
	struct tk_entry	*e, *next;

	if (c == NULL)
		return;
	for (e = c->head; e != NULL; e = next) {
		next = e->next;
		free(e->result);
		free(e);
	}
	free(c->buckets);
	free(c);
}

/*
 * Returns TK_SEEN_NEW (recorded, live until now_us + ttl_us), or, for a
 * live entry of the same key, TK_SEEN_DUPLICATE (same digest; *result is
 * the stored result or NULL) or TK_SEEN_REPLAY (other digest).  An entry
 * is live while now_us < its expiry.  TK_SEEN_FULL when max live entries
 * leave no room, and also (failing closed) on bad arguments, ttl_us <= 0
 * or no memory.  *result is NULL unless TK_SEEN_DUPLICATE.
 */
enum tk_seen
tk_cache_check(struct tk_cache *c, const char *host, const char *vm,
    const char *id, const unsigned char digest[32], int64_t now_us,
    int64_t ttl_us, const char **result)
{
	struct tk_entry	*e;
	struct tk_key	 k;

	if (result != NULL)
		*result = NULL;
	if (c == NULL || digest == NULL || ttl_us <= 0 ||
	    key_make(&k, host, vm, id) == -1)
		return TK_SEEN_FULL;
	if ((e = lookup(c, &k)) != NULL) {
		if (is_live(e, now_us, ttl_us)) {
			/* Accepted by an earlier process, result lost. */
			if (e->restored && e->result == NULL)
				return TK_SEEN_REPLAY;
			if (CRYPTO_memcmp(e->digest, digest, 32) != 0)
				return TK_SEEN_REPLAY;
			if (result != NULL)
				*result = e->result;
			return TK_SEEN_DUPLICATE;
		}
		remove_entry(c, e);
	}
	if (c->count >= c->max)
		evict_expired(c, now_us, ttl_us);
	if (c->count >= c->max)
		return TK_SEEN_FULL;
	if (insert(c, &k, digest, now_us) == NULL)
		return TK_SEEN_FULL;
	return TK_SEEN_NEW;
}

/*
 * Stores a copy of result for (host, vm, id), replacing any previous one.
 * Returns 0, or -1 when the key is not cached, an argument is NULL or
 * memory runs out (the previous result is then kept).
 */
int
tk_cache_set_result(struct tk_cache *c, const char *host, const char *vm,
    const char *id, const char *result)
{
	struct tk_entry	*e;
	struct tk_key	 k;
	char		*copy;

	if (c == NULL || result == NULL || key_make(&k, host, vm, id) == -1 ||
	    (e = lookup(c, &k)) == NULL)
		return -1;
	if ((copy = strdup(result)) == NULL)
		return -1;
	free(e->result);
	e->result = copy;
	return 0;
}

/* Returns the number of entries held, live or not yet evicted. */
size_t
tk_cache_size(const struct tk_cache *c)
{
	return c == NULL ? 0 : c->count;
}

/*
 * Puts back (host, vm, id) recorded at recorded_us, without result,
 * replacing any entry of the same key.  Returns 0, or -1 (bad arguments,
 * cache full, no memory).
 */
int
tk_cache_restore(struct tk_cache *c, const char *host, const char *vm,
    const char *id, const unsigned char digest[32], int64_t recorded_us)
{
	struct tk_entry	*e;
	struct tk_key	 k;

	if (c == NULL || digest == NULL || key_make(&k, host, vm, id) == -1)
		return -1;
	if ((e = lookup(c, &k)) != NULL)
		remove_entry(c, e);
	if (c->count >= c->max || (e = insert(c, &k, digest,
	    recorded_us)) == NULL)
		return -1;
	e->restored = 1;
	return 0;
}
