/*
 * rawpub: the library-free anchor of the benchmark (the broker's limit).
 * MQTT 3.1.1 or 5 spoken directly over a TCP socket, no library: CONNECT,
 * QoS 1 PUBLISH pipelined with up to WINDOW packets in flight (as many as
 * fit are built into one buffer and written with one write(2)), PUBACKs
 * read in bulk, TCP_NODELAY.  Same command line, topics, payloads and
 * output as pahopub, so the driver and the subscriber treat both alike:
 *
 *   rawpub -p PORT -n N [-V VMS] [-w WINDOW] [-r RATE] [-q QOS] [-3]
 *          [-H HOST] [-B BRIDGE_ID] [-b BASE] [-T TIMEOUT_S]
 *
 * -r RATE paces the sends (one packet per write, as a lone event would
 * go); -3 speaks MQTT 3.1.1 instead of 5.  Prints "connected", then
 * "done sent=N acked=A failed=F elapsed_us=E cpu_us=C bytes=L csw=S"
 * (S: context switches, all threads).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t
wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
payload(char *buf, size_t len, const char *host, int vm, const char *bridge,
    int64_t seq, int64_t t)
{
	time_t		s = (time_t)(t / 1000000);
	struct tm	tm;
	char		ts[32];

	gmtime_r(&s, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	return snprintf(buf, len, "{\"schema\":1,\"event\":\"colo_exit\","
	    "\"host\":\"%s\",\"vm\":\"vm%d\",\"mode\":\"primary\","
	    "\"reason\":\"error\",\"time\":\"%s.%06dZ\",\"time_us\":%" PRId64
	    ",\"seq\":%" PRId64 ",\"bridge\":\"%s\",\"qemu\":\"7.2.0\"}",
	    host, vm, ts, (int)(t % 1000000), t, seq, bridge);
}

/* MQTT's variable byte integer; returns its length. */
static size_t
varint(uint8_t *p, size_t v)
{
	size_t n = 0;

	do {
		uint8_t b = v % 128;
		v /= 128;
		p[n++] = b | (v > 0 ? 0x80 : 0);
	} while (v > 0);
	return n;
}

static int
write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1 && errno == EAGAIN) {
			struct pollfd pf = { fd, POLLOUT, 0 };
			poll(&pf, 1, 1000);
			continue;
		}
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int	v5 = 1;

/* One PUBLISH (QoS q, packet id pid) appended at out; returns its size. */
static size_t
publish(uint8_t *out, const char *topic, const char *pl, size_t plen,
    int q, uint16_t pid)
{
	size_t	tl = strlen(topic), rl, n = 0;

	rl = 2 + tl + (q > 0 ? 2 : 0) + (v5 ? 1 : 0) + plen;
	out[n++] = 0x30 | (q << 1);
	n += varint(out + n, rl);
	out[n++] = tl >> 8;
	out[n++] = tl & 0xff;
	memcpy(out + n, topic, tl);
	n += tl;
	if (q > 0) {
		out[n++] = pid >> 8;
		out[n++] = pid & 0xff;
	}
	if (v5)
		out[n++] = 0;		/* no properties */
	memcpy(out + n, pl, plen);
	return n + plen;
}

int
main(int argc, char **argv)
{
	const char	*host = "hv1", *bridge = "bench-bridge", *base = "qmp2mqtt";
	long		 n = 0, window = 1000, vms = 100, qos = 1;
	double		 rate = 0, timeout_s = 120;
	int		 port = 0, c, fd, one = 1;
	long		 sent = 0, acked = 0, failed = 0, bytes = 0, inflight = 0;
	struct sockaddr_in sa;
	uint8_t		 pkt[512], *out, rbuf[65536];
	size_t		 rlen = 0, olen;
	char		 cid[64], topic[256], pl[1024];
	int64_t		 t0, deadline;
	struct rusage	 ru;

	while ((c = getopt(argc, argv, "p:n:V:w:r:q:H:B:b:T:3")) != -1) {
		switch (c) {
		case 'p': port = atoi(optarg); break;
		case 'n': n = atol(optarg); break;
		case 'V': vms = atol(optarg); break;
		case 'w': window = atol(optarg); break;
		case 'r': rate = atof(optarg); break;
		case 'q': qos = atol(optarg); break;
		case 'H': host = optarg; break;
		case 'B': bridge = optarg; break;
		case 'b': base = optarg; break;
		case 'T': timeout_s = atof(optarg); break;
		case '3': v5 = 0; break;
		default:
			fprintf(stderr, "usage: rawpub -p PORT -n N [-V VMS] "
			    "[-w WINDOW] [-r RATE] [-q QOS] [-3] [-H HOST] "
			    "[-B BRIDGE] [-b BASE] [-T S]\n");
			return 2;
		}
	}
	if (!port || n <= 0 || vms <= 0 || window <= 0 || window > 65000 ||
	    qos < 0 || qos > 1)
		return 2;
	if ((out = malloc((size_t)window * 400 + 4096)) == NULL)
		return 1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		perror("rawpub: connect");
		return 1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	/* CONNECT: clean session/start, keepalive 60 s. */
	{
		size_t cl, rl, k = 0;
		snprintf(cid, sizeof(cid), "bench-rawpub-%d", (int)getpid());
		cl = strlen(cid);
		rl = 10 + (v5 ? 1 : 0) + 2 + cl;
		pkt[k++] = 0x10;
		k += varint(pkt + k, rl);
		memcpy(pkt + k, "\0\4MQTT", 6);
		k += 6;
		pkt[k++] = v5 ? 5 : 4;
		pkt[k++] = 0x02;
		pkt[k++] = 0;
		pkt[k++] = 60;
		if (v5)
			pkt[k++] = 0;
		pkt[k++] = cl >> 8;
		pkt[k++] = cl & 0xff;
		memcpy(pkt + k, cid, cl);
		k += cl;
		if (write_all(fd, pkt, k) == -1)
			return 1;
	}
	/* CONNACK */
	{
		ssize_t r = read(fd, rbuf, sizeof(rbuf));
		if (r < 4 || rbuf[0] != 0x20 || rbuf[3] != 0) {
			fprintf(stderr, "rawpub: connection refused\n");
			return 1;
		}
	}
	printf("connected\n");
	fflush(stdout);

	t0 = mono_ns();
	deadline = t0 + (int64_t)(timeout_s * 1e9);
	while ((sent < n || inflight > 0) && mono_ns() < deadline) {
		struct pollfd	pf = { fd, POLLIN, 0 };
		struct timespec	tmo = { 0, 100000000 };	/* 100 ms */

		/* Build every packet the window allows, write them at once;
		 * paced: one packet per write, when it is due. */
		olen = 0;
		while (sent < n && inflight < window) {
			int	vm = (int)(sent % vms) + 1, len;
			if (rate > 0) {
				int64_t due = t0 + (int64_t)((double)sent * 1e9
				    / rate), now = mono_ns();
				if (due > now) {
					tmo.tv_sec = (due - now) / 1000000000;
					tmo.tv_nsec = (due - now) % 1000000000;
					break;
				}
			}
			snprintf(topic, sizeof(topic),
			    "%s/%s/vm%d/event/colo_exit", base, host, vm);
			len = payload(pl, sizeof(pl), host, vm, bridge,
			    sent / vms + 1, wall_us());
			olen += publish(out + olen, topic, pl, (size_t)len,
			    (int)qos, (uint16_t)(sent % 65000 + 1));
			bytes += len;
			sent++;
			if (qos > 0)
				inflight++;
			else
				acked++;
			if (rate > 0) {
				tmo.tv_nsec = 0;	/* look again at once */
				break;
			}
		}
		if (olen > 0 && write_all(fd, out, olen) == -1) {
			fprintf(stderr, "rawpub: write failed\n");
			break;
		}
		if (inflight == 0 && sent >= n)
			break;
		if (ppoll(&pf, 1, &tmo, NULL) <= 0)
			continue;
		{
			ssize_t r = read(fd, rbuf + rlen, sizeof(rbuf) - rlen);
			size_t	p = 0;
			if (r <= 0) {
				fprintf(stderr, "rawpub: connection closed\n");
				break;
			}
			rlen += (size_t)r;
			/* Packets: PUBACK (0x40) counted, others skipped. */
			while (rlen - p >= 2) {
				size_t	 len = 0, mul = 1, k = 1;
				int	 ok = 1;
				while (k < rlen - p) {
					len += (rbuf[p + k] & 0x7f) * mul;
					mul *= 128;
					if (!(rbuf[p + k++] & 0x80))
						break;
					if (k > 4) {
						ok = 0;
						break;
					}
				}
				if (!ok || (k == rlen - p && (rbuf[p + k - 1]
				    & 0x80)) || rlen - p < k + len)
					break;
				if ((rbuf[p] & 0xf0) == 0x40) {
					inflight--;
					/* MQTT 5: a reason code >= 0x80 refuses */
					if (len >= 3 && rbuf[p + k + 2] >= 0x80)
						failed++;
					else
						acked++;
				}
				p += k + len;
			}
			memmove(rbuf, rbuf + p, rlen - p);
			rlen -= p;
		}
	}
	int64_t elapsed = mono_ns() - t0;
	getrusage(RUSAGE_SELF, &ru);
	printf("done sent=%ld acked=%ld failed=%ld elapsed_us=%" PRId64
	    " cpu_us=%ld bytes=%ld csw=%ld\n", sent, acked, failed,
	    elapsed / 1000,
	    (long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	    ru.ru_utime.tv_usec + ru.ru_stime.tv_usec, sent ? bytes / sent : 0,
	    ru.ru_nvcsw + ru.ru_nivcsw);
	fflush(stdout);
	pkt[0] = 0xe0;
	pkt[1] = 0;
	(void)write_all(fd, pkt, 2);
	close(fd);
	free(out);
	return acked == n ? 0 : 1;
}
