/*
 * Unit tests for src/notify.c: the test is the service manager.  It binds
 * a unix datagram socket (a path, or an abstract name), names it in
 * NOTIFY_SOCKET and reads what the module sends.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <unistd.h>
#include <cmocka.h>

#include "loop.h"
#include "notify.h"

struct mgr {
	char	 dir[64];
	char	 path[96];
	int	 fd;
};

/* Binds the manager's socket; abstract: an abstract name instead. */
static void
mgr_open(struct mgr *m, int abstract)
{
	struct sockaddr_un	 sun;
	socklen_t		 len;

	memset(m, 0, sizeof(*m));
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (abstract) {
		snprintf(m->path, sizeof(m->path), "@q2m-notify-test-%ld",
		    (long)getpid());
		memcpy(sun.sun_path + 1, m->path + 1, strlen(m->path) - 1);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
		    strlen(m->path));
	} else {
		snprintf(m->dir, sizeof(m->dir), "/tmp/q2m-notify-XXXXXX");
		assert_non_null(mkdtemp(m->dir));
		snprintf(m->path, sizeof(m->path), "%s/notify", m->dir);
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", m->path);
		len = sizeof(sun);
	}
	m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(m->fd >= 0);
	assert_int_equal(bind(m->fd, (struct sockaddr *)&sun, len), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", m->path, 1), 0);
}

static void
mgr_close(struct mgr *m)
{
	close(m->fd);
	if (m->dir[0] != '\0') {
		unlink(m->path);
		rmdir(m->dir);
	}
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

/* The next datagram, NUL-terminated, or "" after timeout_ms. */
static const char *
mgr_recv(struct mgr *m, int timeout_ms)
{
	static char	 buf[4096];
	struct pollfd	 pfd = { m->fd, POLLIN, 0 };
	ssize_t		 n;

	buf[0] = '\0';
	if (poll(&pfd, 1, timeout_ms) != 1)
		return buf;
	n = recv(m->fd, buf, sizeof(buf) - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
	return buf;
}

static void
test_no_socket(void **state)
{
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(notify_ready(), 0);
	assert_int_equal(notify_stopping(), 0);
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	assert_int_equal(notify_ready(), 0);
	setenv("NOTIFY_SOCKET", "@", 1);
	assert_int_equal(notify_ready(), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	assert_int_equal(notify_ready(), 0);
	/* A path nobody listens on: sending fails, the caller goes on. */
	setenv("NOTIFY_SOCKET", "/nonexistent/q2m-notify", 1);
	assert_int_equal(notify_ready(), -1);
	unsetenv("NOTIFY_SOCKET");
}

static void
check_messages(int abstract)
{
	struct mgr	 m;
	const char	*s;
	uint64_t	 before, after, mono;

	mgr_open(&m, abstract);
	assert_int_equal(notify_ready(), 1);
	assert_string_equal(mgr_recv(&m, 1000), "READY=1\nSTATUS=running");

	before = loop_now_us();
	assert_int_equal(notify_reloading(), 1);
	after = loop_now_us();
	s = mgr_recv(&m, 1000);
	assert_true(strncmp(s, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0);
	mono = strtoull(s + 27, NULL, 10);
	assert_true(mono >= before && mono <= after);
	assert_non_null(strstr(s, "\nSTATUS="));

	assert_int_equal(notify_stopping(), 1);
	assert_string_equal(mgr_recv(&m, 1000), "STOPPING=1\nSTATUS=stopping");
	assert_int_equal(notify_send("STATUS=x"), 1);
	assert_string_equal(mgr_recv(&m, 1000), "STATUS=x");
	mgr_close(&m);
}

static void
test_path_socket(void **state)
{
	check_messages(0);
}

static void
test_abstract_socket(void **state)
{
	check_messages(1);
}

static void
test_watchdog_usec(void **state)
{
	char	 pid[32];

	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
	assert_int_equal(notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "3000000", 1);
	assert_int_equal(notify_watchdog_usec(), 3000000);
	setenv("WATCHDOG_USEC", "0", 1);
	assert_int_equal(notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "-5", 1);
	assert_int_equal(notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "12x", 1);
	assert_int_equal(notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "99999999999999999999999", 1);
	assert_int_equal(notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "3000000", 1);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(notify_watchdog_usec(), 3000000);
	setenv("WATCHDOG_PID", "1", 1);	/* meant for another process */
	assert_int_equal(notify_watchdog_usec(), 0);
	setenv("WATCHDOG_PID", "abc", 1);
	assert_int_equal(notify_watchdog_usec(), 0);
	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
}

/*
 * With a 300 ms watchdog period the loop pings at once, then every 100 ms:
 * never more than half a period (150 ms) apart.
 */
static void
test_watchdog_pings(void **state)
{
	struct mgr	 m;
	struct loop	*l;
	uint64_t	 start, last, now, gap, maxgap = 0;
	int		 pings = 0;

	mgr_open(&m, 0);
	setenv("WATCHDOG_USEC", "300000", 1);
	assert_non_null(l = loop_new());
	assert_int_equal(notify_watchdog_start(l), 1);
	assert_string_equal(mgr_recv(&m, 0), "WATCHDOG=1");
	start = last = loop_now_ms();
	while ((now = loop_now_ms()) - start < 1200) {
		loop_run_once(l, 10);
		while (strcmp(mgr_recv(&m, 0), "WATCHDOG=1") == 0) {
			now = loop_now_ms();
			gap = now - last;
			if (gap > maxgap)
				maxgap = gap;
			last = now;
			pings++;
		}
	}
	notify_watchdog_stop();
	notify_watchdog_stop();		/* idempotent */
	loop_run_once(l, 50);
	assert_string_equal(mgr_recv(&m, 0), "");	/* stopped */
	loop_free(l);
	mgr_close(&m);
	/*
	 * What systemd enforces: no gap of WATCHDOG_USEC (300 ms) between two
	 * pings.  The module pings every third of it (100 ms), so that a
	 * loaded machine may delay a ping by up to 200 ms without harm; the
	 * test asserts that contract, not the 100 ms itself, which a
	 * scheduler on two busy cores does not keep (a gap of 150+ ms was
	 * seen once under a load average of 3.5).  Twelve pings are due in
	 * 1.2 s; fewer than seven would mean pings at half the period or
	 * slower, too close to the edge.
	 */
	assert_true(pings >= 7);
	assert_true(maxgap < 300);
}

static void
test_watchdog_off(void **state)
{
	struct loop	*l;

	unsetenv("WATCHDOG_USEC");
	setenv("NOTIFY_SOCKET", "/nonexistent/q2m-notify", 1);
	assert_non_null(l = loop_new());
	assert_int_equal(notify_watchdog_start(l), 0);
	setenv("WATCHDOG_USEC", "1000000", 1);
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(notify_watchdog_start(l), 0);
	unsetenv("WATCHDOG_USEC");
	loop_free(l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_socket),
		cmocka_unit_test(test_path_socket),
		cmocka_unit_test(test_abstract_socket),
		cmocka_unit_test(test_watchdog_usec),
		cmocka_unit_test(test_watchdog_pings),
		cmocka_unit_test(test_watchdog_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
