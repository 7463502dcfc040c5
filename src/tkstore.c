/*
 * tkstore: see tkstore.h.
 *
 * Record layout (little endian, as this daemon only reads its own files):
 *   "QTK1", u32 body_len,
 *   body: i64 recorded_us, 32 bytes digest, u16 host_len, u16 vm_len,
 *         u16 id_len, host, vm, id
 *   u32 crc32 of everything before it.
 * The magic lets recovery find the next record after a corrupted one.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "rec.h"
#include "tkcache.h"
#include "tkstore.h"

#define MAGIC		"QTK1"
#define HDR		8		/* magic, body_len */
#define BODY_FIXED	(8 + 32 + 6)
#define FIELD_MAX	65535
#define BODY_MAX	(BODY_FIXED + 3 * FIELD_MAX)
#define FILE_MAX	(256u * 1024 * 1024)	/* refuse to load more */

/* One record, as written. */
struct ent {
	int64_t		 recorded_us;
	size_t		 len;
	unsigned char	*raw;
};

struct tkstore {
	char		*dir;
	char		*path;
	char		*tmppath;
	int		 fd;
	uint64_t	 size;		/* bytes of valid records in the file */
	uint64_t	 compact_at;	/* size that triggers a compaction check */
	int64_t		 ttl_us;	/* from tkstore_load(); INT64_MAX before */
	struct ent	*ents;
	size_t		 nents, cap;
	uint64_t	 live_bytes;	/* sum of ents[].len */
};

/* 1 if 0 < |s| <= FIELD_MAX, else 0; *n gets strlen(s). */
static int
field_ok(const char *s, size_t *n)
{
	if (s == NULL)
		return 0;
	*n = strnlen(s, FIELD_MAX + 1);
	return *n > 0 && *n <= FIELD_MAX;
}

/* Builds one record into a new buffer with its size in *len, or NULL. */
static unsigned char *
build(const char *host, const char *vm, const char *id,
    const unsigned char digest[32], int64_t rec, size_t *len)
{
	unsigned char	*b, *p;
	size_t		 hl, vl, il, body, n;

	if (!field_ok(host, &hl) || !field_ok(vm, &vl) || !field_ok(id, &il) ||
	    digest == NULL)
		return NULL;
	body = BODY_FIXED + hl + vl + il;
	n = HDR + body + 4;
	if ((b = malloc(n)) == NULL)
		return NULL;
	memcpy(b, MAGIC, 4);
	rec_put32(b + 4, (uint32_t)body);
	p = b + HDR;
	memcpy(p, &rec, 8);
	memcpy(p + 8, digest, 32);
	rec_put16(p + 40, (uint16_t)hl);
	rec_put16(p + 42, (uint16_t)vl);
	rec_put16(p + 44, (uint16_t)il);
	memcpy(p + BODY_FIXED, host, hl);
	memcpy(p + BODY_FIXED + hl, vm, vl);
	memcpy(p + BODY_FIXED + hl + vl, id, il);
	rec_put32(b + n - 4, rec_crc32(0, b, n - 4));
	*len = n;
	return b;
}

/*
 * Checks the record at b[0..avail).  Returns its length when it is
 * whole and valid, 0 when it is cut short by the end of the data (a torn
 * tail, if nothing valid follows), or -1 when it is corrupted.
 */
static long
check_rec(const unsigned char *b, size_t avail)
{
	uint32_t	body;
	size_t		n;

	if (avail < HDR)
		return memcmp(b, MAGIC, avail) == 0 ? 0 : -1;
	if (memcmp(b, MAGIC, 4) != 0)
		return -1;
	body = rec_get32(b + 4);
	if (body < BODY_FIXED || body > BODY_MAX)
		return -1;
	n = HDR + (size_t)body + 4;
	if (n > avail)
		return 0;
	if (rec_get32(b + n - 4) != rec_crc32(0, b, n - 4))
		return -1;
	if ((size_t)rec_get16(b + HDR + 40) + rec_get16(b + HDR + 42) +
	    rec_get16(b + HDR + 44) + BODY_FIXED != body ||
	    rec_get16(b + HDR + 40) == 0 || rec_get16(b + HDR + 42) == 0 ||
	    rec_get16(b + HDR + 44) == 0)
		return -1;
	return (long)n;
}

/* Appends a copy of the record raw[0..len) to st's list.  0, or -1. */
static int
ent_add(struct tkstore *st, const unsigned char *raw, size_t len)
{
	struct ent	*e;
	size_t		 cap;

	if (st->nents == st->cap) {
		cap = st->cap ? st->cap * 2 : 64;
		if ((e = reallocarray(st->ents, cap, sizeof(*e))) == NULL)
			return -1;
		st->ents = e;
		st->cap = cap;
	}
	e = &st->ents[st->nents];
	if ((e->raw = malloc(len)) == NULL)
		return -1;
	memcpy(e->raw, raw, len);
	e->len = len;
	memcpy(&e->recorded_us, raw + HDR, 8);
	st->nents++;
	st->live_bytes += len;
	return 0;
}

/* 1 while e is live at now_us for ttl_us (saturated). */
static int
ent_live(const struct ent *e, int64_t now_us, int64_t ttl_us)
{
	int64_t	exp;

	exp = e->recorded_us > INT64_MAX - ttl_us ? INT64_MAX :
	    e->recorded_us + ttl_us;
	return now_us < exp;
}

/* Forgets the records no longer live at now_us. */
static void
prune(struct tkstore *st, int64_t now_us)
{
	size_t	i, j;

	for (i = j = 0; i < st->nents; i++) {
		if (ent_live(&st->ents[i], now_us, st->ttl_us)) {
			st->ents[j++] = st->ents[i];
			continue;
		}
		st->live_bytes -= st->ents[i].len;
		free(st->ents[i].raw);
	}
	st->nents = j;
}

/* Frees every record held in memory. */
static void
ents_clear(struct tkstore *st)
{
	for (size_t i = 0; i < st->nents; i++)
		free(st->ents[i].raw);
	st->nents = 0;
	st->live_bytes = 0;
}

/* Sets when the next compaction check is due. */
static void
set_compact_at(struct tkstore *st)
{
	uint64_t	at = 4 * st->live_bytes;

	if (at < TKSTORE_COMPACT_MIN)
		at = TKSTORE_COMPACT_MIN;
	if (at <= st->size)
		at = st->size + TKSTORE_COMPACT_MIN;
	st->compact_at = at;
}

/* Returns "dir/name" in a new string, or NULL. */
static char *
join(const char *dir, const char *name)
{
	char	*p;

	if (asprintf(&p, "%s/%s", dir, name) == -1)
		return NULL;
	return p;
}

/* Opens dir/takeover.ids for appending (see tkstore.h).  NULL: err. */
struct tkstore *
tkstore_open(const char *dir, char *err, size_t errlen)
{
	struct tkstore	*st;
	struct stat	 sb;

	if (dir == NULL || *dir == '\0') {
		snprintf(err, errlen, "tkstore: no state directory");
		return NULL;
	}
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return NULL;
	}
	if ((st = calloc(1, sizeof(*st))) == NULL ||
	    (st->dir = strdup(dir)) == NULL ||
	    (st->path = join(dir, TKSTORE_FILE)) == NULL ||
	    (st->tmppath = join(dir, TKSTORE_FILE ".tmp")) == NULL) {
		snprintf(err, errlen, "%s: out of memory", dir);
		if (st != NULL) {
			free(st->dir);
			free(st->path);
		}
		free(st);
		return NULL;
	}
	st->ttl_us = INT64_MAX;
	if ((st->fd = open(st->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC |
	    O_NOFOLLOW, 0600)) == -1) {
		snprintf(err, errlen, "%s: %s", st->path, strerror(errno));
		st->fd = -1;
		tkstore_close(st);
		return NULL;
	}
	if (fstat(st->fd, &sb) == -1 || !S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", st->path);
		tkstore_close(st);
		return NULL;
	}
	st->size = (uint64_t)sb.st_size;
	set_compact_at(st);
	return st;
}

/* Reads the whole file into a new buffer.  0, or -1 (errno set). */
static int
read_file(int fd, unsigned char **bufp, size_t *lenp)
{
	struct stat	 sb;
	unsigned char	*buf;
	size_t		 len = 0, cap;
	ssize_t		 n;

	if (fstat(fd, &sb) == -1)
		return -1;
	if ((uint64_t)sb.st_size > FILE_MAX) {
		errno = EFBIG;
		return -1;
	}
	cap = (size_t)sb.st_size + 1;
	if ((buf = malloc(cap)) == NULL)
		return -1;
	while (len < cap) {
		n = pread(fd, buf + len, cap - len, (off_t)len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			free(buf);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*bufp = buf;
	*lenp = len;
	return 0;
}

/*
 * Restores the records live at now_us into cache (see tkstore.h).
 * Returns how many, or -1.
 */
int
tkstore_load(struct tkstore *st, struct tk_cache *cache, int64_t now_us,
    int64_t ttl_us)
{
	unsigned char	*buf, *next;
	size_t		 len, off = 0, valid_end = 0, skipped = 0;
	long		 r;
	int		 restored = 0;

	if (st == NULL || cache == NULL || ttl_us <= 0)
		return -1;
	st->ttl_us = ttl_us;
	ents_clear(st);
	if (read_file(st->fd, &buf, &len) == -1) {
		log_warn("tkstore %s: read", st->path);
		return -1;
	}
	while (off < len) {
		if ((r = check_rec(buf + off, len - off)) > 0) {
			const unsigned char *b = buf + off + HDR;
			size_t hl = rec_get16(b + 40), vl = rec_get16(b + 42);
			size_t il = rec_get16(b + 44);
			char *h, *v, *i;
			struct ent tmp;

			memcpy(&tmp.recorded_us, b, 8);
			if (ent_live(&tmp, now_us, ttl_us)) {
				h = strndup((const char *)b + BODY_FIXED, hl);
				v = strndup((const char *)b + BODY_FIXED + hl,
				    vl);
				i = strndup((const char *)b + BODY_FIXED + hl +
				    vl, il);
				if (h == NULL || v == NULL || i == NULL ||
				    tk_cache_restore(cache, h, v, i, b + 8,
				    tmp.recorded_us) == -1 ||
				    ent_add(st, buf + off, (size_t)r) == -1) {
					log_warnx("tkstore %s: cannot restore "
					    "id %s (replay cache full or no "
					    "memory)", st->path, i ? i : "?");
					free(h);
					free(v);
					free(i);
					free(buf);
					return -1;
				}
				free(h);
				free(v);
				free(i);
				restored++;
			}
			off += (size_t)r;
			valid_end = off;
			continue;
		}
		/* Corrupted or cut short: resynchronise on the magic. */
		next = memmem(buf + off + 1, len - off - 1, MAGIC, 4);
		if (next == NULL)
			break;		/* nothing valid can follow */
		skipped++;	/* something follows: not a torn tail */
		off = (size_t)(next - buf);
	}
	free(buf);
	if (skipped > 0)
		log_warnx("tkstore %s: skipped %zu corrupted record(s); the "
		    "ids in them are forgotten", st->path, skipped);
	if (valid_end < len) {
		log_warnx("tkstore %s: cutting %zu byte(s) of torn or "
		    "corrupted tail", st->path, len - valid_end);
		if (ftruncate(st->fd, (off_t)valid_end) == -1) {
			log_warn("tkstore %s: ftruncate", st->path);
			return -1;
		}
	}
	st->size = valid_end;
	set_compact_at(st);
	return restored;
}

/* Appends one record (see tkstore.h).  0, or -1. */
int
tkstore_record(struct tkstore *st, const char *host, const char *vm,
    const char *id, const unsigned char digest[32], int64_t now_us)
{
	unsigned char	*b;
	size_t		 len;

	if (st == NULL || st->fd == -1 ||
	    (b = build(host, vm, id, digest, now_us, &len)) == NULL)
		return -1;
	if (rec_write_all(st->fd, b, len) == -1) {
		log_warn("tkstore %s: write", st->path);
		/* A partial record would hide the ones after it. */
		if (ftruncate(st->fd, (off_t)st->size) == -1)
			log_warn("tkstore %s: cannot cut a partial record",
			    st->path);
		free(b);
		return -1;
	}
	st->size += len;
	/* Written: the id is safe even if memory runs out below. */
	if (ent_add(st, b, len) == -1)
		log_warnx("tkstore %s: out of memory: id %s will not "
		    "survive a compaction", st->path, id);
	free(b);
	if (st->size >= st->compact_at) {
		prune(st, now_us);
		if (st->size > 4 * st->live_bytes &&
		    tkstore_compact(st, now_us) == -1)
			log_warnx("tkstore %s: compaction failed; the file "
			    "keeps growing", st->path);
		set_compact_at(st);
	}
	return 0;
}

/* fsyncs the directory dir.  0, or -1. */
static int
sync_dir(const char *dir)
{
	int	fd, rv;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	rv = fsync(fd);
	close(fd);
	return rv;
}

/* Rewrites the file with the live records (see tkstore.h).  0, or -1. */
int
tkstore_compact(struct tkstore *st, int64_t now_us)
{
	uint64_t	size = 0;
	int		fd;

	if (st == NULL || st->fd == -1)
		return -1;
	prune(st, now_us);
	(void)unlink(st->tmppath);
	if ((fd = open(st->tmppath, O_RDWR | O_APPEND | O_CREAT | O_EXCL |
	    O_CLOEXEC | O_NOFOLLOW, 0600)) == -1) {
		log_warn("tkstore %s", st->tmppath);
		return -1;
	}
	for (size_t i = 0; i < st->nents; i++) {
		if (rec_write_all(fd, st->ents[i].raw, st->ents[i].len) == -1)
			goto fail;
		size += st->ents[i].len;
	}
	if (fsync(fd) == -1 || rename(st->tmppath, st->path) == -1)
		goto fail;
	if (sync_dir(st->dir) == -1)
		log_warn("tkstore %s: fsync", st->dir);
	close(st->fd);
	st->fd = fd;
	st->size = size;
	return 0;
fail:
	log_warn("tkstore %s: compaction", st->tmppath);
	close(fd);
	(void)unlink(st->tmppath);
	return -1;
}

uint64_t
tkstore_size(const struct tkstore *st)
{
	return st == NULL ? 0 : st->size;
}

size_t
tkstore_count(const struct tkstore *st)
{
	return st == NULL ? 0 : st->nents;
}

/* Closes the file and frees st; NULL is a no-op. */
void
tkstore_close(struct tkstore *st)
{
	if (st == NULL)
		return;
	if (st->fd != -1)
		close(st->fd);
	ents_clear(st);
	free(st->ents);
	free(st->dir);
	free(st->path);
	free(st->tmppath);
	free(st);
}
