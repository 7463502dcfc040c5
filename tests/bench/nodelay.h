/*
 * nodelay.h: TCP_NODELAY for the benchmark's Paho clients.
 *
 * Paho MQTT C exposes no socket and does not set TCP_NODELAY, so a small
 * publish (or PUBACK) written while an earlier small segment is unacked
 * waits for the broker's delayed ACK (~40 ms).  The bridge sets it on every
 * TCP socket of its process after connecting (mqtt.tcp_nodelay); the
 * benchmark's clients do the same so that they measure the bridge, not
 * Nagle.  Called from the connect success callback.
 */
#ifndef BENCH_NODELAY_H
#define BENCH_NODELAY_H

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <dirent.h>
#include <stdlib.h>

static inline int
bench_nodelay_all(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 one = 1, n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		int		fd, proto;
		socklen_t	len = sizeof(proto);

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		fd = atoi(de->d_name);
		if (fd == dirfd(d) ||
		    getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == -1 ||
		    proto != IPPROTO_TCP)
			continue;
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one)) == 0)
			n++;
	}
	closedir(d);
	return n;
}

#endif
