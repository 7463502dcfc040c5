/*
 * Unit tests for fifo: order, the in-flight window and its rewind, an ack
 * in the middle of the window, state coalescing, the bound, holds
 * (fifo_retry), the spool's records, memory trims and allocation failures.
 *
 * Allocations fail on demand: this test is linked with --wrap=malloc and
 * --wrap=calloc (Makefile), so that the library's calls go through the
 * wrappers below (libc's and cmocka's own do not).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fifo.h"
#include "spool.h"

#define EV	0		/* an event: no flag the queue acts on */
#define ST	FIFO_STATE
#define BIG	100000		/* a bound never reached */

static int	fail_allocs;	/* allocations fail while set */

void	*__real_malloc(size_t);
void	*__real_calloc(size_t, size_t);
void	*__wrap_malloc(size_t);
void	*__wrap_calloc(size_t, size_t);

void *
__wrap_malloc(size_t n)
{
	return fail_allocs ? NULL : __real_malloc(n);
}

void *
__wrap_calloc(size_t n, size_t size)
{
	return fail_allocs ? NULL : __real_calloc(n, size);
}

static char	dir[] = "/tmp/qmp2mqtt-test-fifo-XXXXXX";
static char	err[256];

/* What the drop callback was told, topics joined by spaces. */
struct drops {
	int	n;
	char	topics[256];
};

static void
dropped(void *arg, const char *topic)
{
	struct drops	*d = arg;
	size_t		 len = strlen(d->topics);

	snprintf(d->topics + len, sizeof(d->topics) - len, "%s%s",
	    d->n++ ? " " : "", topic);
}

/* Pushes payload p on topic (QoS 1). */
static int
push_on(struct fifo *f, const char *topic, const char *p, int flags)
{
	return fifo_push(f, topic, p, strlen(p), 1, flags, NULL, 0, 0);
}

/* Pushes payload p on a topic of its own, t/<p>. */
static int
push(struct fifo *f, const char *p, int flags)
{
	char topic[64];

	snprintf(topic, sizeof(topic), "t/%s", p);
	return push_on(f, topic, p, flags);
}

/* Pushes events, space-separated payloads, each on its own topic. */
static void
push_all(struct fifo *f, const char *list)
{
	char	 buf[256], *p, *w;

	snprintf(buf, sizeof(buf), "%s", list);
	for (p = buf; (w = strsep(&p, " ")) != NULL;)
		assert_int_equal(push(f, w, EV), 0);
}

/*
 * Sends up to n waiting entries, under tokens tok, tok + 1...; their
 * payloads, joined by spaces, in got.  Returns how many were sent.
 */
static size_t
send_n(struct fifo *f, size_t n, int tok, char *got, size_t size)
{
	const struct fifo_msg	*m;
	struct fifo_entry	*e;
	size_t			 i, len;

	got[0] = '\0';
	for (i = 0; i < n && (e = fifo_next(f)) != NULL; i++) {
		m = fifo_msg(e);
		len = strlen(got);
		snprintf(got + len, size - len, "%s%.*s", i ? " " : "",
		    (int)m->len, (const char *)m->payload);
		fifo_sent(f, tok + (int)i);
	}
	return i;
}

/* Sends every waiting entry (tokens from tok): want is their payloads. */
static void
send_all(struct fifo *f, int tok, const char *want)
{
	char got[256];

	send_n(f, (size_t)-1, tok, got, sizeof(got));
	assert_string_equal(got, want);
	assert_null(fifo_next(f));
}

/* The payload of e is want. */
static void
payload_is(const struct fifo_entry *e, const char *want)
{
	const struct fifo_msg *m;

	assert_non_null(e);
	m = fifo_msg(e);
	assert_int_equal(m->len, strlen(want));
	assert_memory_equal(m->payload, want, m->len);
}

/* The broker acknowledged token. */
static void
ack(struct fifo *f, int token)
{
	struct fifo_entry *e = fifo_find(f, token);

	assert_non_null(e);
	fifo_done(f, e);
	assert_null(fifo_find(f, token));
}

static void
test_order(void **state)
{
	struct fifo	*f = fifo_new(BIG, NULL, NULL);
	char		 got[64];

	assert_non_null(f);
	assert_null(fifo_next(f));
	assert_int_equal(fifo_waiting(f, 10), 0);
	push_all(f, "a b c d e");
	assert_int_equal(fifo_count(f), 5);
	assert_int_equal(fifo_waiting(f, 3), 3);
	assert_int_equal(fifo_waiting(f, 10), 5);
	assert_int_equal(send_n(f, 2, 1, got, sizeof(got)), 2);
	assert_string_equal(got, "a b");
	assert_int_equal(fifo_inflight(f), 2);
	assert_int_equal(fifo_waiting(f, 10), 3);
	send_all(f, 3, "c d e");
	assert_int_equal(fifo_inflight(f), 5);
	for (int t = 1; t <= 5; t++)
		ack(f, t);
	assert_int_equal(fifo_count(f), 0);
	assert_int_equal(fifo_inflight(f), 0);
	assert_null(fifo_find(f, 1));
	fifo_free(f);
	fifo_free(NULL);
}

/* The entry is a copy of all of the message. */
static void
test_copy(void **state)
{
	struct fifo		*f = fifo_new(BIG, NULL, NULL);
	const struct fifo_msg	*m;
	char			 payload[] = "p\0q", topic[] = "t/x";

	assert_int_equal(fifo_push(f, topic, payload, 3, 2, 0x11, "cd", 2,
	    0), 0);
	assert_int_equal(fifo_push(f, "t/y", "", 0, 0, EV, NULL, 5, 0), 0);
	memset(payload, 'z', sizeof(payload));
	topic[0] = 'z';
	m = fifo_msg(fifo_next(f));
	assert_string_equal(m->topic, "t/x");
	assert_int_equal(m->len, 3);
	assert_memory_equal(m->payload, "p\0q", 3);
	assert_int_equal(m->qos, 2);
	assert_int_equal(m->flags, 0x11);
	assert_int_equal(m->corr_len, 2);
	assert_memory_equal(m->corr, "cd", 2);
	fifo_sent(f, 1);
	m = fifo_msg(fifo_next(f));
	assert_int_equal(m->len, 0);
	assert_null(m->corr);
	assert_int_equal(m->corr_len, 0);
	fifo_free(f);
}

/* A queue of a, b, c in flight (tokens 1, 2, 3) and d waiting. */
static struct fifo *
abc_sent(void)
{
	struct fifo	*f = fifo_new(BIG, NULL, NULL);
	char		 got[64];

	assert_non_null(f);
	push_all(f, "a b c d");
	send_n(f, 3, 1, got, sizeof(got));
	assert_string_equal(got, "a b c");
	return f;
}

/* A loss: what was in flight goes again first, in the original order. */
static void
test_rewind(void **state)
{
	struct fifo *f = abc_sent();

	push(f, "e", EV);
	ack(f, 2);
	assert_int_equal(fifo_rewind(f), 2);
	assert_int_equal(fifo_inflight(f), 0);
	assert_int_equal(fifo_count(f), 4);
	/* The old tokens mean nothing any more. */
	assert_null(fifo_find(f, 1));
	assert_null(fifo_find(f, 3));
	send_all(f, 10, "a c d e");
	assert_int_equal(fifo_rewind(f), 4);
	assert_int_equal(fifo_rewind(f), 0);
	send_all(f, 20, "a c d e");
	fifo_free(f);
}

/* An ack in the middle of the window leaves the rest as it was. */
static void
test_ack_middle(void **state)
{
	struct fifo *f = abc_sent();

	ack(f, 2);
	assert_int_equal(fifo_count(f), 3);
	assert_int_equal(fifo_inflight(f), 2);
	payload_is(fifo_find(f, 1), "a");
	payload_is(fifo_find(f, 3), "c");
	payload_is(fifo_next(f), "d");
	/* The last one in flight, then the first. */
	ack(f, 3);
	ack(f, 1);
	assert_int_equal(fifo_inflight(f), 0);
	push(f, "e", EV);
	send_all(f, 4, "d e");
	/* The newest in flight acknowledged, then the waiting one. */
	push(f, "f", EV);
	ack(f, 5);
	send_all(f, 6, "f");
	ack(f, 4);
	ack(f, 6);
	assert_int_equal(fifo_count(f), 0);
	fifo_free(f);
}

/* A newer state replaces the waiting one, behind the events before it. */
static void
test_coalesce(void **state)
{
	struct fifo *f = fifo_new(BIG, NULL, NULL);

	assert_int_equal(push(f, "e1", EV), 0);
	assert_int_equal(push_on(f, "t/st", "s1", ST), 0);
	assert_int_equal(push(f, "e2", EV), 0);
	assert_int_equal(push_on(f, "t/other", "o1", ST), 0);
	assert_int_equal(push_on(f, "t/st", "s2", ST), 1);
	assert_int_equal(fifo_count(f), 4);
	assert_int_equal(push_on(f, "t/st", "s3", ST), 1);
	/* An event is never coalesced, even on a state's topic. */
	assert_int_equal(push_on(f, "t/st", "e3", EV), 0);
	assert_int_equal(push_on(f, "t/st", "e4", EV), 0);
	assert_int_equal(fifo_count(f), 6);
	send_all(f, 1, "e1 e2 o1 s3 e3 e4");
	fifo_free(f);
}

/* One in flight is never replaced: the newer one waits behind it. */
static void
test_coalesce_inflight(void **state)
{
	struct fifo	*f = fifo_new(BIG, NULL, NULL);
	char		 got[64];

	push_on(f, "t/st", "s1", ST);
	send_n(f, 1, 1, got, sizeof(got));
	assert_int_equal(push_on(f, "t/st", "s2", ST), 0);
	assert_int_equal(fifo_count(f), 2);
	assert_int_equal(push_on(f, "t/st", "s3", ST), 1);
	assert_int_equal(fifo_count(f), 2);
	payload_is(fifo_find(f, 1), "s1");
	send_all(f, 2, "s3");
	/* Both in flight: the next one waits alone. */
	assert_int_equal(push_on(f, "t/st", "s4", ST), 0);
	ack(f, 1);
	ack(f, 2);
	send_all(f, 3, "s4");
	fifo_free(f);
}

/* States go at a rewind (republished on reconnect), wherever they are. */
static void
test_rewind_states(void **state)
{
	struct fifo	*f = fifo_new(BIG, NULL, NULL);
	char		 got[64];

	push(f, "e1", EV);
	push_on(f, "t/st", "s1", ST);
	push(f, "e2", EV);
	push_on(f, "t/x", "x1", ST);
	send_n(f, 2, 1, got, sizeof(got));
	assert_int_equal(fifo_rewind(f), 2);
	assert_int_equal(fifo_count(f), 2);
	/* Nothing of them is left in the map: a new one is not coalesced. */
	assert_int_equal(push_on(f, "t/x", "x2", ST), 0);
	assert_int_equal(push_on(f, "t/st", "s2", ST), 0);
	send_all(f, 10, "e1 e2 x2 s2");
	fifo_free(f);
}

/*
 * The bound drops the oldest waiting message that is not a state, never
 * one in flight; states neither count nor are dropped.
 */
static void
test_bound(void **state)
{
	struct drops	 d = { 0 };
	struct fifo	*f = fifo_new(3, dropped, &d);
	char		 got[64];

	push_all(f, "a b c");
	push_on(f, "t/st", "s", ST);
	assert_int_equal(d.n, 0);
	assert_int_equal(fifo_count(f), 4);
	push(f, "d", EV);
	assert_string_equal(d.topics, "t/a");
	send_n(f, 1, 1, got, sizeof(got));
	assert_string_equal(got, "b");
	push(f, "e", EV);			/* c goes, not b (in flight) */
	push(f, "f", EV);			/* d goes, not s (a state) */
	assert_int_equal(d.n, 3);
	assert_string_equal(d.topics, "t/a t/c t/d");
	assert_int_equal(fifo_count(f), 4);
	/* States past the bound: kept, and they drop nothing. */
	push_on(f, "t/s2", "s2", ST);
	push_on(f, "t/s3", "s3", ST);
	assert_int_equal(d.n, 3);
	assert_int_equal(fifo_count(f), 6);
	/* Nothing left to drop but in flight: the bound is exceeded. */
	send_all(f, 2, "s e f s2 s3");
	push(f, "g", EV);
	assert_int_equal(d.n, 3);
	assert_int_equal(fifo_count(f), 7);
	send_all(f, 7, "g");
	ack(f, 1);
	ack(f, 7);
	fifo_free(f);
	/* Without a callback. */
	f = fifo_new(1, NULL, NULL);
	push_all(f, "a b");
	send_all(f, 1, "b");
	fifo_free(f);
}

/*
 * A hold: entries refused for now wait in their place until fifo_retry,
 * then go first; a refused state replaced meanwhile goes.
 */
static void
test_retry(void **state)
{
	struct fifo	*f = fifo_new(BIG, NULL, NULL);
	char		 got[64];

	push(f, "a", EV);
	push_on(f, "t/st", "s1", ST);
	push_all(f, "b c");
	send_n(f, 3, 1, got, sizeof(got));
	assert_string_equal(got, "a s1 b");
	fifo_unsend(f, fifo_find(f, 1));
	fifo_unsend(f, fifo_find(f, 2));
	assert_int_equal(fifo_inflight(f), 1);
	assert_null(fifo_find(f, 1));
	payload_is(fifo_next(f), "c");
	/* Refused, it is not waiting: a newer one is not coalesced with it. */
	assert_int_equal(push_on(f, "t/st", "s2", ST), 0);
	ack(f, 3);
	assert_int_equal(fifo_retry(f), 1);
	assert_int_equal(fifo_count(f), 3);
	send_all(f, 10, "a c s2");
	assert_int_equal(fifo_rewind(f), 3);
	/* A refused state with nothing newer waits, coalesced again. */
	push_on(f, "t/st", "s3", ST);
	send_all(f, 20, "a c s3");
	fifo_unsend(f, fifo_find(f, 22));
	ack(f, 20);
	ack(f, 21);
	assert_int_equal(fifo_retry(f), 0);
	assert_int_equal(push_on(f, "t/st", "s4", ST), 1);
	send_all(f, 30, "s4");
	fifo_free(f);

	/* Two states of one topic refused together: the newer is kept. */
	f = fifo_new(BIG, NULL, NULL);
	push_on(f, "t/st", "s1", ST);
	push(f, "a", EV);
	send_n(f, 2, 40, got, sizeof(got));
	assert_string_equal(got, "s1 a");
	push_on(f, "t/st", "s2", ST);
	send_n(f, 1, 42, got, sizeof(got));
	assert_string_equal(got, "s2");
	fifo_unsend(f, fifo_find(f, 40));
	fifo_unsend(f, fifo_find(f, 42));
	ack(f, 41);
	assert_int_equal(fifo_retry(f), 1);
	assert_int_equal(fifo_count(f), 1);
	send_all(f, 50, "s2");
	fifo_free(f);

	/* The older refused, the newer acknowledged: the older is stale. */
	f = fifo_new(BIG, NULL, NULL);
	push_on(f, "t/st", "s1", ST);
	send_n(f, 1, 60, got, sizeof(got));
	push_on(f, "t/st", "s2", ST);
	push(f, "a", EV);
	send_n(f, 2, 61, got, sizeof(got));
	assert_string_equal(got, "s2 a");
	fifo_unsend(f, fifo_find(f, 60));
	assert_int_equal(fifo_acked(f, fifo_find(f, 61)), 1);
	assert_int_equal(fifo_acked(f, fifo_find(f, 62)), 0);
	assert_int_equal(fifo_count(f), 0);
	assert_int_equal(fifo_retry(f), 0);
	assert_null(fifo_next(f));
	/* The newer refused, the older acknowledged: the newer stays. */
	push_on(f, "t/st", "s3", ST);
	send_n(f, 1, 70, got, sizeof(got));
	push_on(f, "t/st", "s4", ST);
	send_n(f, 1, 71, got, sizeof(got));
	fifo_unsend(f, fifo_find(f, 71));
	assert_int_equal(fifo_acked(f, fifo_find(f, 70)), 0);
	assert_int_equal(fifo_retry(f), 0);
	send_all(f, 80, "s4");
	fifo_free(f);
}

/* Joins the first bytes of recovered payloads (up to a NUL) in got. */
static void
collect(void *arg, uint64_t id, const char *topic, const void *payload,
    size_t len, int qos, int flags)
{
	char	*got = arg;
	size_t	 n = strlen(got);

	snprintf(got + n, 256 - n, "%s%.*s", n ? " " : "",
	    (int)strnlen(payload, len), (const char *)payload);
}

/* A spool with an empty log. */
static struct spool *
spool_fresh(void)
{
	char		 p[300];
	struct spool	*s;

	snprintf(p, sizeof(p), "%s/spool.log", dir);
	unlink(p);
	assert_non_null(s = spool_open(dir, err, sizeof(err)));
	return s;
}

static struct spool *
spool_reopen(struct spool *s)
{
	spool_close(s);
	assert_non_null(s = spool_open(dir, err, sizeof(err)));
	return s;
}

/*
 * Events are spooled when pushed and done there when they leave, acked
 * or dropped; states, volatile and correlated messages are not spooled.
 */
static void
test_spool(void **state)
{
	struct drops	 d = { 0 };
	struct fifo	*f = fifo_new(5, dropped, &d);
	struct spool	*s = spool_fresh();
	char		 got[256] = "";
	uint64_t	 id;

	fifo_set_spool(f, s);
	push(f, "a", EV);
	push_on(f, "t/st", "s", ST);
	push(f, "v", FIFO_VOLATILE);
	fifo_push(f, "t/c", "c", 1, 1, EV, "id", 2, 0);
	assert_int_equal(spool_live(s), 1);
	/* Recovered from the spool: not appended again. */
	id = spool_append(s, "t/r", "r", 1, 1, EV);
	assert_int_equal(fifo_push(f, "t/r", "r", 1, 1, EV, NULL, 0, id), 0);
	assert_int_equal(spool_live(s), 2);
	push_all(f, "b x");		/* the bound drops a */
	assert_string_equal(d.topics, "t/a");
	assert_int_equal(spool_live(s), 3);
	send_all(f, 1, "s v c r b x");
	ack(f, 4);			/* r */
	assert_int_equal(spool_live(s), 2);
	assert_int_equal(fifo_rewind(f), 5);
	fifo_free(f);			/* the spool keeps what is left */
	s = spool_reopen(s);
	assert_int_equal(spool_live(s), 2);
	spool_replay(s, collect, got);
	assert_string_equal(got, "b x");
	spool_close(s);
}

/* The spool, grown well past what is live, is rewritten with it. */
static void
test_compact(void **state)
{
	struct fifo	*f = fifo_new(BIG, NULL, NULL);
	struct spool	*s = spool_fresh();
	char		*big, got[256] = "";
	size_t		 len = 1u << 20;

	assert_non_null(big = malloc(len));
	fifo_set_spool(f, s);
	for (int i = 0; i < 10; i++) {
		memset(big, 'a' + i, len);
		snprintf(big, len, "m%d", i);
		fifo_push(f, "t/big", big, len, 1, EV, NULL, 0, 0);
	}
	free(big);
	assert_true(spool_size(s) > 10 * (uint64_t)len);
	fifo_compact(f);			/* all live: nothing to gain */
	assert_true(spool_size(s) > 10 * (uint64_t)len);
	for (int i = 1; i <= 10; i++)
		fifo_sent(f, i);
	for (int i = 1; i <= 8; i++)
		ack(f, i);
	fifo_compact(f);
	assert_true(spool_size(s) < 3 * (uint64_t)len);
	assert_int_equal(spool_live(s), 2);
	fifo_free(f);
	s = spool_reopen(s);
	spool_replay(s, collect, got);
	assert_string_equal(got, "m8 m9");
	spool_close(s);
}

/* Memory is given back once the queue drained after many bytes. */
static void
test_trim(void **state)
{
	struct fifo	*f = fifo_new(BIG, NULL, NULL);
	char		*big;
	size_t		 len = 512u << 10;

	assert_int_equal(fifo_trim(f), 0);
	push(f, "a", EV);
	send_all(f, 1, "a");
	ack(f, 1);
	assert_int_equal(fifo_trim(f), 0);	/* a few bytes */
	assert_non_null(big = calloc(1, len));
	fifo_push(f, "t/big", big, len, 1, EV, NULL, 0, 0);
	free(big);
	assert_int_equal(fifo_trim(f), 0);	/* not empty */
	send_all(f, 2, "");			/* zeros: printed as "" */
	ack(f, 2);
	assert_int_equal(fifo_trim(f), 1);
	assert_int_equal(fifo_trim(f), 0);	/* once */
	fifo_free(f);
}

/* Out of memory: NULL or -1, and nothing changed. */
static void
test_alloc_fail(void **state)
{
	struct fifo	*f;
	struct spool	*s = spool_fresh();

	fail_allocs = 1;
	assert_null(fifo_new(BIG, NULL, NULL));
	fail_allocs = 0;
	assert_non_null(f = fifo_new(BIG, NULL, NULL));
	fifo_set_spool(f, s);
	push(f, "a", EV);
	push_on(f, "t/st", "s1", ST);
	fail_allocs = 1;
	assert_int_equal(push(f, "b", EV), -1);
	assert_int_equal(push_on(f, "t/st", "s2", ST), -1);
	fail_allocs = 0;
	assert_int_equal(fifo_count(f), 2);
	assert_int_equal(spool_live(s), 1);
	/* The waiting state is still the one to replace. */
	assert_int_equal(push_on(f, "t/st", "s3", ST), 1);
	send_all(f, 1, "a s3");
	fifo_free(f);
	spool_close(s);
}

static int
setup(void **state)
{
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	const char	*files[] = { "spool.log", "spool.tmp", "lock" };
	char		 p[300];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	return rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_rewind),
		cmocka_unit_test(test_ack_middle),
		cmocka_unit_test(test_coalesce),
		cmocka_unit_test(test_coalesce_inflight),
		cmocka_unit_test(test_rewind_states),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_retry),
		cmocka_unit_test(test_spool),
		cmocka_unit_test(test_compact),
		cmocka_unit_test(test_trim),
		cmocka_unit_test(test_alloc_fail),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
