/*
 * notify: see notify.h.  The protocol is sd_notify(3)'s: one datagram per
 * notification to the unix socket in NOTIFY_SOCKET, a fresh socket each
 * time (notifications are rare: start, reload, stop, a watchdog ping every
 * few seconds), so there is no state to keep across a fork or a reload.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "notify.h"

static struct loop_timer	*wd_timer;
static uint64_t			 wd_every_ms;

int
notify_send(const char *state)
{
	struct sockaddr_un	 sun;
	const char		*path = getenv("NOTIFY_SOCKET");
	socklen_t		 len;
	size_t			 plen;
	ssize_t			 n;
	int			 fd, saved;

	if (path == NULL || (path[0] != '/' && path[0] != '@'))
		return 0;
	plen = strlen(path);
	if (plen < 2 || plen >= sizeof(sun.sun_path))
		return 0;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, plen);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';		/* abstract namespace */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen +
	    (path[0] == '/'));
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1) {
		log_debug("notify: socket: %s", strerror(errno));
		return -1;
	}
	n = sendto(fd, state, strlen(state), MSG_DONTWAIT | MSG_NOSIGNAL,
	    (struct sockaddr *)&sun, len);
	saved = errno;
	close(fd);
	if (n == -1) {
		log_debug("notify: %s: %s", path, strerror(saved));
		return -1;
	}
	return 1;
}

int
notify_ready(void)
{
	return notify_send("READY=1\nSTATUS=running");
}

int
notify_reloading(void)
{
	char	buf[128];

	snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64
	    "\nSTATUS=reloading the configuration", loop_now_us());
	return notify_send(buf);
}

int
notify_stopping(void)
{
	return notify_send("STOPPING=1\nSTATUS=stopping");
}

/* A positive decimal number without sign, spaces or overflow, or 0. */
static uint64_t
env_u64(const char *name)
{
	const char	*s = getenv(name);
	char		*end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return 0;
	return (uint64_t)v;
}

uint64_t
notify_watchdog_usec(void)
{
	uint64_t	 pid;

	if (getenv("WATCHDOG_PID") != NULL &&
	    ((pid = env_u64("WATCHDOG_PID")) == 0 || pid != (uint64_t)getpid()))
		return 0;
	return env_u64("WATCHDOG_USEC");
}

static void
wd_fire(struct loop *l, struct loop_timer *t, void *arg)
{
	(void)notify_send("WATCHDOG=1");
	loop_timer_arm(t, wd_every_ms);
}

int
notify_watchdog_start(struct loop *l)
{
	uint64_t	 usec = notify_watchdog_usec();

	if (usec == 0 || getenv("NOTIFY_SOCKET") == NULL)
		return 0;
	notify_watchdog_stop();
	if ((wd_timer = loop_timer_new(l, wd_fire, NULL)) == NULL) {
		log_warnx("notify: cannot allocate the watchdog timer");
		return -1;
	}
	wd_every_ms = usec / 3000;
	if (wd_every_ms == 0)
		wd_every_ms = 1;
	log_info("systemd watchdog: %" PRIu64 " ms, pinging every %" PRIu64
	    " ms", usec / 1000, wd_every_ms);
	wd_fire(l, wd_timer, NULL);
	return 1;
}

void
notify_watchdog_stop(void)
{
	loop_timer_free(wd_timer);
	wd_timer = NULL;
}
