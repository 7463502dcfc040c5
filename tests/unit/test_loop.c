/*
 * Unit tests for loop: timer order and re-arming, disarm/free from inside
 * callbacks, fd dispatch, stale events after an fd is removed, and the
 * hooks run before each wait.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"

struct rec {
	int	order[64];
	int	n;
};

struct tctx {
	struct rec		*rec;
	int			 id;
	int			 rearm;		/* times left to re-arm */
	struct loop_timer	*other;		/* disarm this when fired */
};

static void
tfire(struct loop *l, struct loop_timer *t, void *arg)
{
	struct tctx *c = arg;

	if (c->rec->n < 64)
		c->rec->order[c->rec->n++] = c->id;
	if (c->other != NULL)
		loop_timer_disarm(c->other);
	if (c->rearm > 0) {
		c->rearm--;
		loop_timer_arm(t, 0);
	}
}

static void
run_until(struct loop *l, struct rec *r, int n)
{
	uint64_t deadline = loop_now_ms() + 2000;

	while (r->n < n && loop_now_ms() < deadline)
		loop_run_once(l, 10);
}

static void
test_timer_order(void **state)
{
	struct loop		*l = loop_new();
	struct rec		 r = { { 0 }, 0 };
	struct tctx		 c[200];
	struct loop_timer	*t[200];

	/* 200 timers armed in scrambled order fire in deadline order. */
	for (int i = 0; i < 200; i++) {
		int d = (i * 37) % 200;
		c[i] = (struct tctx){ &r, d, 0, NULL };
		t[i] = loop_timer_new(l, tfire, &c[i]);
		/* Groups 10 ms apart: arming takes far less than that. */
		loop_timer_arm(t[i], (uint64_t)(d / 10) * 10);
	}
	run_until(l, &r, 64);	/* the record holds the first 64 */
	for (int i = 1; i < r.n; i++)
		assert_true(r.order[i - 1] / 10 <= r.order[i] / 10);
	for (int i = 0; i < 200; i++)
		loop_timer_free(t[i]);
	loop_free(l);
}

static void
test_rearm_and_disarm(void **state)
{
	struct loop		*l = loop_new();
	struct rec		 r = { { 0 }, 0 };
	struct tctx		 a = { &r, 1, 3, NULL }, b = { &r, 2, 0, NULL };
	struct loop_timer	*ta = loop_timer_new(l, tfire, &a);
	struct loop_timer	*tb = loop_timer_new(l, tfire, &b);

	/* a fires first, re-arms itself 3 times and disarms b each time. */
	a.other = tb;
	loop_timer_arm(tb, 20);
	loop_timer_arm(ta, 0);
	assert_true(loop_timer_armed(tb));
	run_until(l, &r, 4);
	assert_int_equal(r.n, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(r.order[i], 1);
	assert_false(loop_timer_armed(tb));
	loop_run_once(l, 30);
	assert_int_equal(r.n, 4);	/* b never fired */
	loop_timer_free(ta);
	loop_timer_free(tb);
	loop_timer_free(NULL);
	loop_free(NULL);
	loop_free(l);
}

struct fdctx {
	struct loop	*l;
	int		 calls;
	int		 other_fd;	/* removed by this callback */
};

static void
fdcb(struct loop *l, int fd, uint32_t ev, void *arg)
{
	struct fdctx	*c = arg;
	char		 buf[16];

	c->calls++;
	(void)!read(fd, buf, sizeof(buf));
	if (c->other_fd != -1)
		loop_fd_del(l, c->other_fd);
}

static void
test_fd_dispatch_and_stale(void **state)
{
	struct loop	*l = loop_new();
	int		 p1[2], p2[2];
	struct fdctx	 c1 = { l, 0, -1 }, c2 = { l, 0, -1 };

	assert_int_equal(pipe(p1), 0);
	assert_int_equal(pipe(p2), 0);
	assert_int_equal(loop_fd_add(l, p1[0], EPOLLIN, fdcb, &c1), 0);
	assert_int_equal(loop_fd_add(l, p2[0], EPOLLIN, fdcb, &c2), 0);
	/* Both readable in the same batch; whichever runs first removes
	 * the other, whose event must then be dropped. */
	c1.other_fd = p2[0];
	c2.other_fd = p1[0];
	assert_int_equal(write(p1[1], "x", 1), 1);
	assert_int_equal(write(p2[1], "y", 1), 1);
	loop_run_once(l, 100);
	assert_int_equal(c1.calls + c2.calls, 1);
	loop_fd_del(l, p1[0]);
	loop_fd_del(l, p2[0]);
	loop_fd_del(l, 12345);		/* unknown: ignored */
	assert_int_equal(loop_fd_mod(l, p1[0], EPOLLIN), -1);
	close(p1[0]); close(p1[1]); close(p2[0]); close(p2[1]);
	loop_free(l);
}

struct hookctx {
	struct loop_timer	*t;		/* armed 0 ms by the hook, once */
	int			 calls;
	int			 fired;
	int			 remove;	/* remove itself on this call */
};

static void
hookcb(struct loop *l, void *arg)
{
	struct hookctx *c = arg;

	if (++c->calls == 1 && c->t != NULL)
		loop_timer_arm(c->t, 0);
	if (c->calls == c->remove)
		loop_hook_del(l, hookcb, c);
}

static void
hookfire(struct loop *l, struct loop_timer *t, void *arg)
{
	((struct hookctx *)arg)->fired++;
}

/*
 * Hooks run before every wait, in order; a timer a hook arms counts in
 * that same wait (a 0 ms one makes it return at once, so no 1 s wait
 * here); a hook may remove itself, and the next one still runs.
 */
static void
test_hooks(void **state)
{
	struct loop	*l = loop_new();
	struct hookctx	 a = { NULL, 0, 0, 2 }, b = { NULL, 0, 0, 0 };
	uint64_t	 t0;

	assert_non_null(a.t = loop_timer_new(l, hookfire, &a));
	assert_int_equal(loop_hook_add(l, hookcb, &a), 0);
	assert_int_equal(loop_hook_add(l, hookcb, &b), 0);
	t0 = loop_now_ms();
	assert_int_equal(loop_run_once(l, 1000), 0);
	assert_true(loop_now_ms() - t0 < 500);
	assert_int_equal(a.fired, 1);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	loop_run_once(l, 0);		/* a removes itself, b still runs */
	assert_int_equal(a.calls, 2);
	assert_int_equal(b.calls, 2);
	loop_run_once(l, 0);
	assert_int_equal(a.calls, 2);
	assert_int_equal(b.calls, 3);
	assert_int_equal(loop_hook_add(l, hookcb, &a), 0);
	assert_int_equal(loop_hook_add(l, hookcb, &a), 0);
	assert_int_equal(loop_hook_add(l, hookcb, &a), 0);
	assert_int_equal(loop_hook_add(l, hookcb, &a), -1);	/* full */
	loop_timer_free(a.t);
	loop_free(l);
}

static void
test_clock(void **state)
{
	uint64_t a = loop_now_us(), b = loop_now_us();

	assert_true(b >= a);
	assert_true(loop_wall_us() > 1600000000LL * 1000000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timer_order),
		cmocka_unit_test(test_rearm_and_disarm),
		cmocka_unit_test(test_fd_dispatch_and_stale),
		cmocka_unit_test(test_hooks),
		cmocka_unit_test(test_clock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
