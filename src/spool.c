/*
 * spool: see spool.h.
 *
 * Record layout (little endian, as this daemon only reads its own logs):
 *   u8 kind ('M' or 'A'), u8 qos, u8 flags, u8 pad, u32 topic_len,
 *   u32 payload_len, u64 id, topic bytes, payload bytes, u32 crc32
 * where crc32 covers everything before it.  'A' records have empty topic
 * and payload.  A record that is truncated or fails its CRC ends the
 * recovery: everything after it is discarded (a torn write is always the
 * last thing a crashed process wrote).
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "spool.h"

#define SPOOL_HDR	20
#define SPOOL_TOPIC_MAX	65535
#define SPOOL_MSG_MAX	(16u * 1024 * 1024)
#define ACK_BATCH	4096		/* bytes of 'A' records kept before writing */
#define COMPACT_MIN	(8u * 1024 * 1024)
#define ERRLOG_MS	10000		/* failed writes: one line per 10 s */

struct rec {
	struct rec	*next;
	uint64_t	 id;
	int		 qos, flags;
	size_t		 tlen, plen;
	char		 data[];	/* topic NUL payload */
};

struct spool {
	char		*dir;
	char		*path;
	char		*tmppath;
	int		 fd;
	int		 cfd;		/* compaction file, -1 when none */
	int		 lockfd;	/* flock()ed <dir>/lock */
	uint64_t	 next_id;
	uint64_t	 size;
	uint64_t	 recovered;
	uint64_t	 live;		/* message records not acknowledged */
	struct rec	*rhead, *rtail;	/* recovered, not yet replayed */
	unsigned char	 abuf[ACK_BATCH];
	size_t		 alen;
	/* Failed writes: counted, reported (spool_problems), logged. */
	uint64_t	 errors;
	int		 write_failing;	/* the last write failed */
	int		 compact_failing; /* the last compaction failed */
	uint64_t	 err_log_ms;	/* last line about failures */
	uint64_t	 err_unlogged;	/* failures since that line */
	uint64_t	 compact_retry;	/* no compaction below this size */
};

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * A write to the log failed (what: "message", "acknowledgements",
 * "compaction").  Counted; logged on the first failure of a run of
 * failures and then at most once every ERRLOG_MS with the count, so a
 * full disk is loud but cannot flood the log.
 */
static void
write_failed(struct spool *s, const char *what, int err)
{
	uint64_t now = mono_ms();

	s->errors++;
	if (strcmp(what, "compaction") == 0) {
		s->compact_failing = 1;
		/* Not again at every wake-up: when the log grew once more. */
		s->compact_retry = s->size + COMPACT_MIN;
	} else
		s->write_failing = 1;
	if (s->err_log_ms != 0 && now - s->err_log_ms < ERRLOG_MS) {
		s->err_unlogged++;
		return;
	}
	log_warnx("spool %s: %s write failed: %s; %llu failed write(s) "
	    "(%llu since the last line); events not written are kept in "
	    "memory only and are lost if the bridge dies", s->path, what,
	    strerror(err), (unsigned long long)s->errors,
	    (unsigned long long)s->err_unlogged + 1);
	s->err_log_ms = now;
	s->err_unlogged = 0;
}

/* A write to the log worked again. */
static void
write_ok(struct spool *s)
{
	if (s->write_failing)
		log_info("spool %s: writes work again", s->path);
	s->write_failing = 0;
}

static uint32_t
crc32(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}

static void
put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t
get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

/* Builds one record into a new buffer; *len gets its size.  NULL: no memory. */
static unsigned char *
build(char kind, uint64_t id, const char *topic, const void *payload,
    size_t plen, int qos, int flags, size_t *len)
{
	size_t		 tlen = topic != NULL ? strlen(topic) : 0;
	size_t		 n = SPOOL_HDR + tlen + plen + 4;
	unsigned char	*b;

	if ((b = malloc(n)) == NULL)
		return NULL;
	b[0] = (unsigned char)kind;
	b[1] = (unsigned char)qos;
	b[2] = (unsigned char)flags;
	b[3] = 0;
	put32(b + 4, (uint32_t)tlen);
	put32(b + 8, (uint32_t)plen);
	memcpy(b + 12, &id, 8);
	if (tlen)
		memcpy(b + SPOOL_HDR, topic, tlen);
	if (plen)
		memcpy(b + SPOOL_HDR + tlen, payload, plen);
	put32(b + n - 4, crc32(0, b, n - 4));
	*len = n;
	return b;
}

/*
 * A failed append must not leave part of a record behind: recovery stops
 * at the first bad record, so later good records would be lost.  Cut the
 * log back to its last complete record.
 */
static void
cut_back(struct spool *s)
{
	if (ftruncate(s->fd, (off_t)s->size) == -1 ||
	    lseek(s->fd, (off_t)s->size, SEEK_SET) == -1)
		log_warn("spool %s: cannot cut a partial record", s->path);
}

/* write(2) all of buf.  0, or -1. */
static int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void
rec_drop(struct spool *s, uint64_t id)
{
	struct rec *r, *prev = NULL;

	for (r = s->rhead; r != NULL; prev = r, r = r->next)
		if (r->id == id)
			break;
	if (r == NULL)
		return;
	if (prev != NULL)
		prev->next = r->next;
	else
		s->rhead = r->next;
	if (s->rtail == r)
		s->rtail = prev;
	free(r);
}

/*
 * Reads the whole log: message records become recovered entries, ack
 * records remove them.  Returns the number of valid bytes.
 */
static uint64_t
recover(struct spool *s)
{
	unsigned char	 hdr[SPOOL_HDR];
	uint64_t	 off = 0;
	size_t		 got;
	int		 clean = 0;
	FILE		*f;

	if ((f = fopen(s->path, "rb")) == NULL)
		return 0;
	for (;;) {
		uint32_t	 tlen, plen, crc;
		uint64_t	 id;
		unsigned char	*b;
		size_t		 n;

		if ((got = fread(hdr, 1, SPOOL_HDR, f)) != SPOOL_HDR) {
			clean = got == 0 && feof(f);
			break;
		}
		tlen = get32(hdr + 4);
		plen = get32(hdr + 8);
		memcpy(&id, hdr + 12, 8);
		if ((hdr[0] != 'M' && hdr[0] != 'A') || tlen > SPOOL_TOPIC_MAX ||
		    plen > SPOOL_MSG_MAX || id == 0)
			break;
		n = SPOOL_HDR + tlen + plen + 4;
		if ((b = malloc(n)) == NULL)
			break;
		memcpy(b, hdr, SPOOL_HDR);
		if (fread(b + SPOOL_HDR, 1, n - SPOOL_HDR, f) != n - SPOOL_HDR) {
			free(b);
			break;
		}
		crc = get32(b + n - 4);
		if (crc != crc32(0, b, n - 4)) {
			free(b);
			break;
		}
		if (id >= s->next_id)
			s->next_id = id + 1;
		if (hdr[0] == 'A')
			rec_drop(s, id);	/* live is counted at the end */
		else {
			struct rec *r = malloc(sizeof(*r) + tlen + 1 + plen + 1);
			if (r == NULL) {
				free(b);
				break;
			}
			r->next = NULL;
			r->id = id;
			r->qos = hdr[1];
			r->flags = hdr[2];
			r->tlen = tlen;
			r->plen = plen;
			memcpy(r->data, b + SPOOL_HDR, tlen);
			r->data[tlen] = '\0';
			memcpy(r->data + tlen + 1, b + SPOOL_HDR + tlen, plen);
			r->data[tlen + 1 + plen] = '\0';
			if (s->rtail != NULL)
				s->rtail->next = r;
			else
				s->rhead = r;
			s->rtail = r;
		}
		free(b);
		off += n;
	}
	if (!clean)
		log_warnx("spool %s: torn or damaged record at offset %llu; "
		    "the rest of the log is discarded", s->path,
		    (unsigned long long)off);
	fclose(f);
	return off;
}

/*
 * One bridge per state_dir: an exclusive flock() on <dir>/lock, held for
 * the life of the process (the kernel releases it however the process
 * ends).  The holder's pid is written into the file for the error message
 * of the next one (best effort: the lock, not the pid, is the guard).
 * 0, or -1 with a message in err.
 */
static int
lock_dir(struct spool *s, const char *dir, char *err, size_t errlen)
{
	char	 path[4096], buf[32];
	ssize_t	 n;
	int	 len;

	snprintf(path, sizeof(path), "%s/lock", dir);
	if ((s->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640)) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(s->lockfd, LOCK_EX | LOCK_NB) == -1) {
		int e = errno;
		n = pread(s->lockfd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		if (e == EWOULDBLOCK)
			snprintf(err, errlen, "%s is in use by another qmp2mqtt "
			    "(pid %s); one state_dir per bridge", dir,
			    buf[0] ? buf : "unknown");
		else
			snprintf(err, errlen, "%s: flock: %s", path, strerror(e));
		close(s->lockfd);
		s->lockfd = -1;
		return -1;
	}
	len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(s->lockfd, 0) == -1 ||
	    pwrite(s->lockfd, buf, (size_t)len, 0) != len)
		log_warn("%s: cannot record the pid (locked nevertheless)", path);
	return 0;
}

/*
 * Without the space to write a compacted log (a full disk), the bridge
 * must still start: it goes on with the log as it is, cut back to its
 * last valid record (cutting never needs space).  0, or -1 (errno set).
 */
static int
reuse_log(struct spool *s, uint64_t valid)
{
	if ((s->fd = open(s->path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640)) == -1)
		return -1;
	if (ftruncate(s->fd, (off_t)valid) == -1 ||
	    lseek(s->fd, (off_t)valid, SEEK_SET) == -1) {
		close(s->fd);
		s->fd = -1;
		return -1;
	}
	s->size = valid;
	return 0;
}

struct spool *
spool_open(const char *dir, char *err, size_t errlen)
{
	struct spool	*s;
	uint64_t	 valid;
	size_t		 n;
	int		 e;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->fd = s->cfd = s->lockfd = -1;
	s->next_id = 1;
	n = strlen(dir) + 16;
	if ((s->dir = strdup(dir)) == NULL || (s->path = malloc(n)) == NULL ||
	    (s->tmppath = malloc(n)) == NULL) {
		snprintf(err, errlen, "out of memory");
		spool_close(s);
		return NULL;
	}
	snprintf(s->path, n, "%s/spool.log", dir);
	snprintf(s->tmppath, n, "%s/spool.tmp", dir);
	if (mkdir(dir, 0750) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		spool_close(s);
		return NULL;
	}
	if (lock_dir(s, dir, err, errlen) == -1) {
		spool_close(s);
		return NULL;
	}
	valid = recover(s);
	for (struct rec *r = s->rhead; r != NULL; r = r->next)
		s->recovered++;
	s->live = s->recovered;
	/* Start from a compact log holding only what is still unsent. */
	if (spool_compact_begin(s) == 0) {
		for (struct rec *r = s->rhead; r != NULL; r = r->next)
			if (spool_compact_add(s, r->id, r->data,
			    r->data + r->tlen + 1, r->plen, r->qos,
			    r->flags) == -1)
				break;
		(void)spool_compact_commit(s);	/* logged, counted */
	}
	if (s->fd == -1) {
		if (reuse_log(s, valid) == -1) {
			e = errno;
			snprintf(err, errlen, "%s: %s", s->path, strerror(e));
			spool_close(s);
			return NULL;
		}
		/*
		 * Not a lasting problem: the old log works; compaction is
		 * tried again when it is worth it (spool_should_compact).
		 */
		log_warnx("spool %s: not compacted at start (no space?); "
		    "going on with the log as it is", s->path);
		s->compact_failing = 0;
		s->compact_retry = 0;
	}
	if (s->recovered > 0)
		log_info("spool %s: %llu unsent message(s) recovered", s->path,
		    (unsigned long long)s->recovered);
	return s;
}

void
spool_close(struct spool *s)
{
	struct rec *r, *nx;

	if (s == NULL)
		return;
	if (s->fd != -1) {
		spool_flush(s);
		/* A clean stop leaves the log on disk, not only in the cache. */
		if (fdatasync(s->fd) == -1)
			log_warn("spool %s: fdatasync", s->path);
		close(s->fd);
	}
	if (s->cfd != -1) {
		close(s->cfd);
		unlink(s->tmppath);
	}
	if (s->lockfd != -1)
		close(s->lockfd);	/* releases the lock */
	for (r = s->rhead; r != NULL; r = nx) {
		nx = r->next;
		free(r);
	}
	free(s->dir);
	free(s->path);
	free(s->tmppath);
	free(s);
}

void
spool_replay(struct spool *s, spool_cb cb, void *arg)
{
	struct rec *r, *nx;

	for (r = s->rhead; r != NULL; r = nx) {
		nx = r->next;
		cb(arg, r->id, r->data, r->data + r->tlen + 1, r->plen, r->qos,
		    r->flags);
		free(r);
	}
	s->rhead = s->rtail = NULL;
}

uint64_t
spool_append(struct spool *s, const char *topic, const void *payload,
    size_t len, int qos, int flags)
{
	unsigned char	*b;
	size_t		 n;
	uint64_t	 id = s->next_id;

	if (s->fd == -1 || len > SPOOL_MSG_MAX ||
	    strlen(topic) > SPOOL_TOPIC_MAX) {
		s->errors++;
		return 0;
	}
	if ((b = build('M', id, topic, payload, len, qos, flags, &n)) == NULL)
		return 0;
	if (write_all(s->fd, b, n) == -1) {
		write_failed(s, "message", errno);
		cut_back(s);
		free(b);
		return 0;
	}
	free(b);
	write_ok(s);
	s->next_id++;
	s->size += n;
	s->live++;
	return id;
}

void
spool_flush(struct spool *s)
{
	if (s->alen == 0 || s->fd == -1)
		return;
	if (write_all(s->fd, s->abuf, s->alen) == 0) {
		s->size += s->alen;
		write_ok(s);
	} else {
		/* Lost acknowledgements only mean duplicates after a restart. */
		write_failed(s, "acknowledgements", errno);
		cut_back(s);
	}
	s->alen = 0;
}

void
spool_ack(struct spool *s, uint64_t id)
{
	unsigned char	*b;
	size_t		 n;

	if (id == 0 || s->fd == -1)
		return;
	if (s->live > 0)
		s->live--;
	if ((b = build('A', id, NULL, NULL, 0, 0, 0, &n)) == NULL)
		return;
	if (s->alen + n > sizeof(s->abuf))
		spool_flush(s);
	memcpy(s->abuf + s->alen, b, n);
	s->alen += n;
	free(b);
}

int
spool_should_compact(const struct spool *s, size_t live_bytes)
{
	return s->cfd == -1 && s->size > COMPACT_MIN &&
	    s->size > 4 * (uint64_t)live_bytes && s->size >= s->compact_retry;
}

int
spool_compact_begin(struct spool *s)
{
	if (s->cfd != -1)
		close(s->cfd);
	s->cfd = open(s->tmppath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (s->cfd == -1) {
		write_failed(s, "compaction", errno);
		return -1;
	}
	return 0;
}

int
spool_compact_add(struct spool *s, uint64_t id, const char *topic,
    const void *payload, size_t len, int qos, int flags)
{
	unsigned char	*b;
	size_t		 n;
	int		 r;

	if (s->cfd == -1)
		return -1;
	if ((b = build('M', id, topic, payload, len, qos, flags, &n)) == NULL)
		return -1;
	r = write_all(s->cfd, b, n);
	free(b);
	if (r == -1) {
		write_failed(s, "compaction", errno);
		close(s->cfd);
		s->cfd = -1;
		unlink(s->tmppath);
	}
	return r;
}

/* fsync()s the directory, so that a rename in it is durable.  0 or -1. */
static int
sync_dir(const char *dir)
{
	int fd, r;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

/*
 * The compacted file replaces the log only once its content is on disk
 * (fsync before rename: otherwise a power cut right after the rename
 * could leave an empty log in place of both), and the rename itself is
 * made durable with an fsync of the directory.  On any failure the old
 * log stays the log.
 */
int
spool_compact_commit(struct spool *s)
{
	struct stat	st;
	int		fd;

	if (s->cfd == -1)
		return -1;
	if (fstat(s->cfd, &st) == -1 || fsync(s->cfd) == -1 ||
	    rename(s->tmppath, s->path) == -1) {
		write_failed(s, "compaction", errno);
		close(s->cfd);
		s->cfd = -1;
		unlink(s->tmppath);
		return -1;
	}
	if (sync_dir(s->dir) == -1)
		log_warn("spool %s: fsync of the directory", s->dir);
	fd = s->cfd;
	s->cfd = -1;
	s->compact_failing = 0;
	/* The compacted file is the new log; later appends go to it. */
	if (s->fd != -1) {
		s->alen = 0;	/* acks of compacted-away ids are moot */
		close(s->fd);
	}
	s->fd = fd;
	if (lseek(s->fd, 0, SEEK_END) == -1)
		log_warn("spool lseek");
	s->size = (uint64_t)st.st_size;
	return 0;
}

uint64_t
spool_size(const struct spool *s)
{
	return s->size;
}

uint64_t
spool_recovered(const struct spool *s)
{
	return s->recovered;
}

uint64_t
spool_live(const struct spool *s)
{
	return s->live;
}

uint64_t
spool_errors(const struct spool *s)
{
	return s->errors;
}

int
spool_problems(const struct spool *s)
{
	return (s->write_failing ? SPOOL_WRITE_FAILING : 0) |
	    (s->compact_failing ? SPOOL_COMPACT_FAILING : 0);
}

void
spool_peek(const struct spool *s, spool_cb cb, void *arg)
{
	for (const struct rec *r = s->rhead; r != NULL; r = r->next)
		cb(arg, r->id, r->data, r->data + r->tlen + 1, r->plen, r->qos,
		    r->flags);
}
