/*
 * Unit tests for spool: recovery of unacknowledged messages in order, a
 * torn or corrupted tail, compaction, and id continuity across reopen.
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

#include "spool.h"

static char	dir[] = "/tmp/qmp2mqtt-test-spool-XXXXXX";
static char	err[256];

struct got {
	int		 n;
	uint64_t	 ids[64];
	char		 payload[64][32];
	int		 qos[64];
};

static void
collect(void *arg, uint64_t id, const char *topic, const void *payload,
    size_t len, int qos, int flags)
{
	struct got *g = arg;

	assert_true(g->n < 64);
	assert_string_equal(topic, "t/x");
	g->ids[g->n] = id;
	g->qos[g->n] = qos;
	snprintf(g->payload[g->n], 32, "%.*s", (int)len, (const char *)payload);
	g->n++;
}

static char *
logpath(void)
{
	static char p[300];

	snprintf(p, sizeof(p), "%s/spool.log", dir);
	return p;
}

static void
test_recover_in_order(void **state)
{
	struct spool	*s = spool_open(dir, err, sizeof(err));
	struct got	 g = { 0 };
	uint64_t	 ids[10];
	char		 buf[16];

	assert_non_null(s);
	for (int i = 0; i < 10; i++) {
		snprintf(buf, sizeof(buf), "m%d", i);
		ids[i] = spool_append(s, "t/x", buf, strlen(buf), 1, 0);
		assert_true(ids[i] > 0);
		if (i > 0)
			assert_true(ids[i] > ids[i - 1]);
	}
	spool_ack(s, ids[0]);
	spool_ack(s, ids[3]);
	spool_ack(s, ids[9]);
	spool_close(s);		/* flushes the acks */

	s = spool_open(dir, err, sizeof(err));
	assert_non_null(s);
	assert_int_equal(spool_recovered(s), 7);
	spool_replay(s, collect, &g);
	assert_int_equal(g.n, 7);
	assert_string_equal(g.payload[0], "m1");
	assert_string_equal(g.payload[2], "m4");
	assert_string_equal(g.payload[6], "m8");
	assert_int_equal(g.qos[0], 1);
	/* New ids continue above the recovered ones. */
	assert_true(spool_append(s, "t/x", "n", 1, 1, 0) > ids[9]);
	for (int i = 0; i < g.n; i++)
		spool_ack(s, g.ids[i]);
	spool_close(s);
}

static void
test_torn_tail(void **state)
{
	struct spool	*s;
	struct got	 g = { 0 };
	struct stat	 st;
	int		 fd;

	unlink(logpath());
	s = spool_open(dir, err, sizeof(err));
	assert_non_null(s);
	spool_append(s, "t/x", "a", 1, 1, 0);
	spool_append(s, "t/x", "b", 1, 1, 0);
	spool_append(s, "t/x", "c", 1, 1, 0);
	spool_close(s);
	/* Cut the last record in half, as a crash mid-write would. */
	assert_int_equal(stat(logpath(), &st), 0);
	assert_int_equal(truncate(logpath(), st.st_size - 5), 0);
	s = spool_open(dir, err, sizeof(err));
	assert_non_null(s);
	spool_replay(s, collect, &g);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.payload[1], "b");
	spool_close(s);

	/* A flipped byte in the first record: nothing after it is trusted. */
	fd = open(logpath(), O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "X", 1, 21), 1);
	close(fd);
	memset(&g, 0, sizeof(g));
	s = spool_open(dir, err, sizeof(err));
	assert_non_null(s);
	spool_replay(s, collect, &g);
	assert_int_equal(g.n, 0);
	spool_close(s);
}

static void
test_compaction(void **state)
{
	struct spool	*s;
	struct got	 g = { 0 };
	uint64_t	 keep;

	unlink(logpath());
	s = spool_open(dir, err, sizeof(err));
	assert_non_null(s);
	keep = spool_append(s, "t/x", "keep", 4, 1, 0);
	assert_int_equal(spool_compact_begin(s), 0);
	assert_int_equal(spool_compact_add(s, keep, "t/x", "keep", 4, 1, 0), 0);
	assert_int_equal(spool_compact_commit(s), 0);
	spool_append(s, "t/x", "after", 5, 0, 0);
	assert_false(spool_should_compact(s, 1000));
	spool_close(s);
	s = spool_open(dir, err, sizeof(err));
	spool_replay(s, collect, &g);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.payload[0], "keep");
	assert_string_equal(g.payload[1], "after");
	assert_int_equal(g.ids[0], keep);
	spool_close(s);
	spool_close(NULL);
}

/* One bridge per directory: a second open is refused, naming the pid. */
static void
test_lock(void **state)
{
	struct spool	*s = spool_open(dir, err, sizeof(err));
	char		 pid[32];

	assert_non_null(s);
	assert_null(spool_open(dir, err, sizeof(err)));
	snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
	assert_non_null(strstr(err, "in use by another qmp2mqtt"));
	assert_non_null(strstr(err, pid));
	spool_close(s);
	s = spool_open(dir, err, sizeof(err));
	assert_non_null(s);
	spool_close(s);
}

/* live counts what is appended (or recovered) and not acknowledged. */
static void
test_live(void **state)
{
	struct spool	*s;
	uint64_t	 a, b;

	unlink(logpath());
	s = spool_open(dir, err, sizeof(err));
	a = spool_append(s, "t/x", "a", 1, 1, 0);
	b = spool_append(s, "t/x", "b", 1, 1, 0);
	assert_int_equal(spool_live(s), 2);
	spool_ack(s, a);
	assert_int_equal(spool_live(s), 1);
	assert_int_equal(spool_errors(s), 0);
	assert_int_equal(spool_problems(s), 0);
	spool_close(s);
	s = spool_open(dir, err, sizeof(err));
	assert_int_equal(spool_live(s), 1);
	spool_ack(s, b);
	spool_close(s);
}

static void
test_bad_dir(void **state)
{
	assert_null(spool_open("/proc/nonexistent/x", err, sizeof(err)));
	assert_true(strlen(err) > 0);
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

	unlink(logpath());
	snprintf(p, sizeof(p), "%s/spool.tmp", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/lock", dir);
	unlink(p);
	return rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_recover_in_order),
		cmocka_unit_test(test_torn_tail),
		cmocka_unit_test(test_compaction),
		cmocka_unit_test(test_lock),
		cmocka_unit_test(test_live),
		cmocka_unit_test(test_bad_dir),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
