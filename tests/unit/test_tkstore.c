/*
 * Unit tests for src/tkstore.c: record and load, expiry, a torn tail, a
 * corrupted record in the middle, compaction, an unusable directory.
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "takeover.h"
#include "tkcache.h"
#include "tkstore.h"

#define US	INT64_C(1000000)
#define T0	INT64_C(1700000000000000)
#define TTL	(61 * US)

static char	dir[] = "/tmp/qmp2mqtt-test-tkstore-XXXXXX";
static char	err[512];

static const char *
path(void)
{
	static char p[300];

	snprintf(p, sizeof(p), "%s/" TKSTORE_FILE, dir);
	return p;
}

static off_t
fsize(void)
{
	struct stat sb;

	assert_int_equal(stat(path(), &sb), 0);
	return sb.st_size;
}

static void
dig(unsigned char d[32], unsigned n)
{
	memset(d, 0, 32);
	memcpy(d, &n, sizeof(n));
}

/* Starts every test from an empty file. */
static int
fresh(void **state)
{
	unlink(path());
	return 0;
}

/* Records id with digest n at t.  Asserts success. */
static void
rec(struct tkstore *st, const char *id, unsigned n, int64_t t)
{
	unsigned char	d[32];

	dig(d, n);
	assert_int_equal(tkstore_record(st, "hv1", "vm1", id, d, t), 0);
}

/* What a restored id answers: it must never be new. */
static enum tk_seen
seen(struct tk_cache *c, const char *id, unsigned n, int64_t now)
{
	unsigned char	d[32];
	const char	*res;

	dig(d, n);
	return tk_cache_check(c, "hv1", "vm1", id, d, now, TTL, &res);
}

/* Opens the store again and loads it at now into a new cache. */
static int
reload(int64_t now, struct tk_cache **cp)
{
	struct tkstore	*st;
	int		 n;

	assert_non_null(*cp = tk_cache_new(100));
	assert_non_null(st = tkstore_open(dir, err, sizeof(err)));
	n = tkstore_load(st, *cp, now, TTL);
	tkstore_close(st);
	return n;
}

static void
test_roundtrip(void **state)
{
	struct tkstore	*st;
	struct tk_cache	*c;

	assert_non_null(st = tkstore_open(dir, err, sizeof(err)));
	assert_non_null(c = tk_cache_new(10));
	assert_int_equal(tkstore_load(st, c, T0, TTL), 0);
	tk_cache_free(c);
	rec(st, "a", 1, T0);
	rec(st, "b", 2, T0 + 1);
	rec(st, "c", 3, T0 + 2);
	assert_int_equal(tkstore_count(st), 3);
	assert_int_equal(tkstore_size(st), (uint64_t)fsize());
	tkstore_close(st);

	assert_int_equal(reload(T0 + 10, &c), 3);
	assert_int_equal(tk_cache_size(c), 3);
	/* Same payload or not, a restored id does not execute again. */
	assert_int_equal(seen(c, "a", 1, T0 + 10), TK_SEEN_REPLAY);
	assert_int_equal(seen(c, "b", 9, T0 + 10), TK_SEEN_REPLAY);
	assert_int_equal(seen(c, "c", 3, T0 + 10), TK_SEEN_REPLAY);
	assert_int_equal(seen(c, "d", 3, T0 + 10), TK_SEEN_NEW);
	tk_cache_free(c);
	/* The file is mode 0600. */
	{
		struct stat sb;
		assert_int_equal(stat(path(), &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
	}
}

static void
test_expiry(void **state)
{
	struct tkstore	*st;
	struct tk_cache	*c;

	assert_non_null(st = tkstore_open(dir, err, sizeof(err)));
	rec(st, "old", 1, T0);
	rec(st, "new", 2, T0 + 10 * US);
	tkstore_close(st);
	/* Live while now < recorded + ttl. */
	assert_int_equal(reload(T0 + TTL - 1, &c), 2);
	tk_cache_free(c);
	assert_int_equal(reload(T0 + TTL, &c), 1);
	assert_int_equal(seen(c, "new", 2, T0 + TTL), TK_SEEN_REPLAY);
	assert_int_equal(seen(c, "old", 1, T0 + TTL), TK_SEEN_NEW);
	tk_cache_free(c);
	assert_int_equal(reload(T0 + 10 * US + TTL, &c), 0);
	tk_cache_free(c);
}

static void
test_torn_tail(void **state)
{
	struct tkstore	*st;
	struct tk_cache	*c;
	unsigned char	 buf[4096];
	off_t		 good, one;
	int		 fd;
	ssize_t		 n;

	assert_non_null(st = tkstore_open(dir, err, sizeof(err)));
	rec(st, "a", 1, T0);
	one = fsize();
	rec(st, "b", 2, T0);
	good = fsize();
	tkstore_close(st);
	/* Append the first half of a copy of record "a": a torn write. */
	assert_true((fd = open(path(), O_RDWR)) != -1);
	assert_int_equal(pread(fd, buf, (size_t)one, 0), one);
	assert_int_equal(pwrite(fd, buf, (size_t)one / 2, good), one / 2);
	close(fd);

	assert_int_equal(reload(T0 + 1, &c), 2);
	tk_cache_free(c);
	/* The tail was cut: appends go after the last good record. */
	assert_int_equal(fsize(), good);
	assert_non_null(st = tkstore_open(dir, err, sizeof(err)));
	assert_non_null(c = tk_cache_new(10));
	assert_int_equal(tkstore_load(st, c, T0 + 1, TTL), 2);
	rec(st, "c", 3, T0 + 2);
	tkstore_close(st);
	tk_cache_free(c);
	assert_int_equal(reload(T0 + 3, &c), 3);
	tk_cache_free(c);

	/* Just a few bytes of garbage at the end: cut. */
	n = (ssize_t)fsize();
	assert_true((fd = open(path(), O_WRONLY | O_APPEND)) != -1);
	assert_int_equal(write(fd, "QT", 2), 2);
	close(fd);
	assert_int_equal(reload(T0 + 3, &c), 3);
	tk_cache_free(c);
	assert_int_equal(fsize(), n);
}

static void
test_corrupted_middle(void **state)
{
	struct tkstore	*st;
	struct tk_cache	*c;
	off_t		 one, two;
	unsigned char	 b;
	int		 fd;

	assert_non_null(st = tkstore_open(dir, err, sizeof(err)));
	rec(st, "first", 1, T0);
	one = fsize();
	rec(st, "second", 2, T0);
	two = fsize();
	rec(st, "third", 3, T0);
	tkstore_close(st);
	/* Flip a bit inside the second record's id: its CRC fails. */
	assert_true((fd = open(path(), O_RDWR)) != -1);
	assert_int_equal(pread(fd, &b, 1, two - 6), 1);
	b ^= 0x10;
	assert_int_equal(pwrite(fd, &b, 1, two - 6), 1);
	close(fd);

	assert_int_equal(reload(T0 + 1, &c), 2);
	assert_int_equal(seen(c, "first", 1, T0 + 1), TK_SEEN_REPLAY);
	assert_int_equal(seen(c, "third", 3, T0 + 1), TK_SEEN_REPLAY);
	assert_int_equal(seen(c, "second", 2, T0 + 1), TK_SEEN_NEW);
	tk_cache_free(c);

	/* A corrupted length field: the next record is found all the same. */
	assert_true((fd = open(path(), O_RDWR)) != -1);
	b = 0xff;
	assert_int_equal(pwrite(fd, &b, 1, one + 5), 1);
	close(fd);
	assert_int_equal(reload(T0 + 1, &c), 2);
	assert_int_equal(seen(c, "third", 3, T0 + 1), TK_SEEN_REPLAY);
	tk_cache_free(c);
	/* Nothing was cut: the third record is still there. */
	assert_true(fsize() > two);
}

static void
test_compaction(void **state)
{
	struct tkstore	*st;
	struct tk_cache	*c;
	char		 id[32];
	off_t		 before;
	unsigned	 i;
	int64_t		 t;

	assert_non_null(st = tkstore_open(dir, err, sizeof(err)));
	assert_non_null(c = tk_cache_new(10));
	assert_int_equal(tkstore_load(st, c, T0, TTL), 0);
	tk_cache_free(c);
	for (i = 0; i < 20; i++) {
		snprintf(id, sizeof(id), "old-%u", i);
		rec(st, id, i, T0);
	}
	for (i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "live-%u", i);
		rec(st, id, i, T0 + TTL);
	}
	before = fsize();
	assert_int_equal(tkstore_compact(st, T0 + TTL), 0);
	assert_int_equal(tkstore_count(st), 5);
	assert_true(fsize() < before);
	assert_int_equal(tkstore_size(st), (uint64_t)fsize());
	/* Appends go to the new file. */
	rec(st, "after", 1, T0 + TTL);
	assert_int_equal(tkstore_size(st), (uint64_t)fsize());
	tkstore_close(st);
	assert_int_equal(reload(T0 + TTL, &c), 6);
	for (i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "live-%u", i);
		assert_int_equal(seen(c, id, i, T0 + TTL), TK_SEEN_REPLAY);
	}
	assert_int_equal(seen(c, "after", 1, T0 + TTL), TK_SEEN_REPLAY);
	assert_int_equal(seen(c, "old-0", 0, T0 + TTL), TK_SEEN_NEW);
	tk_cache_free(c);

	/*
	 * Automatic: a steady stream of requests, most of them expired,
	 * keeps the file near TKSTORE_COMPACT_MIN.
	 */
	unlink(path());
	assert_non_null(st = tkstore_open(dir, err, sizeof(err)));
	assert_non_null(c = tk_cache_new(10));
	assert_int_equal(tkstore_load(st, c, T0, TTL), 0);
	tk_cache_free(c);
	for (i = 0, t = T0; i < 30000; i++, t += US) {
		snprintf(id, sizeof(id), "stream-%u", i);
		rec(st, id, i, t);
	}
	assert_true(fsize() < 2 * TKSTORE_COMPACT_MIN);
	assert_true(tkstore_count(st) < 30000 / 2);
	tkstore_close(st);
	/* The last ttl's worth of ids are all there. */
	assert_non_null(c = tk_cache_new(100));
	assert_non_null(st = tkstore_open(dir, err, sizeof(err)));
	assert_int_equal(tkstore_load(st, c, t, TTL), 60);
	tkstore_close(st);
	assert_int_equal(seen(c, "stream-29999", 29999, t), TK_SEEN_REPLAY);
	assert_int_equal(seen(c, "stream-29940", 29940, t), TK_SEEN_REPLAY);
	assert_int_equal(seen(c, "stream-29939", 29939, t), TK_SEEN_NEW);
	tk_cache_free(c);
}

static void
test_failures(void **state)
{
	struct tkstore	*st;
	struct tk_cache	*c;
	char		 fpath[400], sub[300];
	unsigned char	 d[32];
	FILE		*f;
	unsigned	 i;

	/* The state directory is a regular file. */
	snprintf(fpath, sizeof(fpath), "%s/plain", dir);
	assert_non_null(f = fopen(fpath, "w"));
	fclose(f);
	assert_null(tkstore_open(fpath, err, sizeof(err)));
	assert_non_null(strstr(err, "plain"));
	unlink(fpath);
	assert_null(tkstore_open("", err, sizeof(err)));
	/* Unwritable (only enforced when not root). */
	snprintf(sub, sizeof(sub), "%s/ro", dir);
	assert_int_equal(mkdir(sub, 0500), 0);
	st = tkstore_open(sub, err, sizeof(err));
	if (geteuid() != 0)
		assert_null(st);
	tkstore_close(st);
	snprintf(fpath, sizeof(fpath), "%s/" TKSTORE_FILE, sub);
	unlink(fpath);
	assert_int_equal(rmdir(sub), 0);
	/* The directory is created when missing. */
	snprintf(sub, sizeof(sub), "%s/new", dir);
	assert_non_null(st = tkstore_open(sub, err, sizeof(err)));
	tkstore_close(st);
	snprintf(fpath, sizeof(fpath), "%s/" TKSTORE_FILE, sub);
	unlink(fpath);
	assert_int_equal(rmdir(sub), 0);

	/* Bad records are refused and leave nothing behind. */
	assert_non_null(st = tkstore_open(dir, err, sizeof(err)));
	dig(d, 1);
	assert_int_equal(tkstore_record(st, "hv1", "vm1", "", d, T0), -1);
	assert_int_equal(tkstore_record(st, "hv1", NULL, "a", d, T0), -1);
	assert_int_equal(tkstore_record(st, "hv1", "vm1", "a", NULL, T0), -1);
	assert_int_equal(tkstore_record(NULL, "hv1", "vm1", "a", d, T0), -1);
	assert_int_equal(fsize(), 0);
	/* A cache too small for the live ids: load fails closed. */
	for (i = 0; i < 3; i++) {
		char id[8];
		snprintf(id, sizeof(id), "x%u", i);
		rec(st, id, i, T0);
	}
	tkstore_close(st);
	assert_non_null(c = tk_cache_new(2));
	assert_non_null(st = tkstore_open(dir, err, sizeof(err)));
	assert_int_equal(tkstore_load(st, c, T0, TTL), -1);
	assert_int_equal(tkstore_load(st, NULL, T0, TTL), -1);
	assert_int_equal(tkstore_load(st, c, T0, 0), -1);
	tkstore_close(st);
	tk_cache_free(c);
	tkstore_close(NULL);
}

static int
setup(void **state)
{
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	char p[300];

	unlink(path());
	snprintf(p, sizeof(p), "%s/" TKSTORE_FILE ".tmp", dir);
	unlink(p);
	return rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_roundtrip, fresh),
		cmocka_unit_test_setup(test_expiry, fresh),
		cmocka_unit_test_setup(test_torn_tail, fresh),
		cmocka_unit_test_setup(test_corrupted_middle, fresh),
		cmocka_unit_test_setup(test_compaction, fresh),
		cmocka_unit_test_setup(test_failures, fresh),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
