/*
 * pahopub: the reference row of the benchmark.  A bare Paho MQTTAsync
 * publisher (MQTT 5, like the bridge) that sends N normalized-looking
 * COLO_EXIT payloads at QoS 1 with a bounded window of messages in flight,
 * round-robin over V VMs on the bridge's topics, with the bridge's payload
 * format (so the same subscriber counts loss, duplicates and latency):
 *
 *   {"schema":1,"event":"colo_exit","host":H,"vm":"vmI","mode":"primary",
 *    "reason":"error","time":"...Z","time_us":T,"seq":S,"bridge":B,
 *    "qemu":"7.2.0"}
 *
 * time_us is the wall clock when the message is handed to Paho; seq counts
 * per VM from 1.
 *
 *   pahopub -p PORT -n N [-V VMS] [-w WINDOW] [-r RATE] [-q QOS]
 *           [-H HOST] [-B BRIDGE_ID] [-b BASE] [-T TIMEOUT_S]
 *
 * -r RATE paces the sends at RATE msg/s in total (latency runs); without it
 * they go as fast as the window allows.  Prints "connected", then at the
 * end "done sent=N acked=A failed=F elapsed_us=E cpu_us=C bytes=L csw=S"
 * (S: context switches, all threads).
 * Exit 0 when every message was acknowledged.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "nodelay.h"

static pthread_mutex_t	mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	cv = PTHREAD_COND_INITIALIZER;
static long		inflight, acked, failed;
static int		connected, conn_failed;

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

static void
done_one(int ok)
{
	pthread_mutex_lock(&mu);
	inflight--;
	if (ok)
		acked++;
	else
		failed++;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

static void
pub_ok5(void *ctx, MQTTAsync_successData5 *r)
{
	done_one(r == NULL || r->reasonCode < 0x80);
}

static void
pub_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
	done_one(0);
}

static void
conn_ok5(void *ctx, MQTTAsync_successData5 *r)
{
	bench_nodelay_all();
	pthread_mutex_lock(&mu);
	connected = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

static void
conn_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
	pthread_mutex_lock(&mu);
	conn_failed = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

static void
conn_lost(void *ctx, char *cause)
{
	fprintf(stderr, "pahopub: connection lost: %s\n", cause ? cause : "?");
	conn_fail5(ctx, NULL);
}

static int
arrived(void *ctx, char *topic, int tlen, MQTTAsync_message *m)
{
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

static void
abstime_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_nsec += (ms % 1000) * 1000000;
	ts->tv_sec += ms / 1000 + ts->tv_nsec / 1000000000;
	ts->tv_nsec %= 1000000000;
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

int
main(int argc, char **argv)
{
	MQTTAsync			cli;
	MQTTAsync_createOptions		cro = MQTTAsync_createOptions_initializer;
	MQTTAsync_connectOptions	co = MQTTAsync_connectOptions_initializer5;
	const char	*host = "hv1", *bridge = "bench-bridge", *base = "qmp2mqtt";
	long		 n = 0, window = 200, vms = 100, qos = 1;
	double		 rate = 0, timeout_s = 120;
	char		 uri[64], cid[64], topic[256], buf[1024];
	int		 port = 0, c;
	long		 sent = 0, bytes = 0;
	int64_t		 t0, t_start, deadline;
	struct timespec	 ts;
	struct rusage	 ru;

	while ((c = getopt(argc, argv, "p:n:V:w:r:q:H:B:b:T:")) != -1) {
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
		default:
			fprintf(stderr, "usage: pahopub -p PORT -n N [-V VMS] "
			    "[-w WINDOW] [-r RATE] [-q QOS] [-H HOST] "
			    "[-B BRIDGE] [-b BASE] [-T S]\n");
			return 2;
		}
	}
	if (!port || n <= 0 || vms <= 0 || window <= 0)
		return 2;
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
	snprintf(cid, sizeof(cid), "bench-pahopub-%d", (int)getpid());
	cro.MQTTVersion = MQTTVERSION_5;
	cro.sendWhileDisconnected = 0;
	cro.maxBufferedMessages = (int)window + 16;
	if (MQTTAsync_createWithOptions(&cli, uri, cid,
	    MQTTCLIENT_PERSISTENCE_NONE, NULL, &cro) != MQTTASYNC_SUCCESS ||
	    MQTTAsync_setCallbacks(cli, NULL, conn_lost, arrived, NULL) !=
	    MQTTASYNC_SUCCESS) {
		fprintf(stderr, "pahopub: create failed\n");
		return 1;
	}
	co.keepAliveInterval = 30;
	co.cleanstart = 1;
	co.maxInflight = (int)window + 16;
	co.onSuccess5 = conn_ok5;
	co.onFailure5 = conn_fail5;
	if (MQTTAsync_connect(cli, &co) != MQTTASYNC_SUCCESS)
		return 1;
	abstime_in(&ts, 10000);
	pthread_mutex_lock(&mu);
	while (!connected && !conn_failed)
		if (pthread_cond_timedwait(&cv, &mu, &ts) != 0)
			break;
	pthread_mutex_unlock(&mu);
	if (!connected) {
		fprintf(stderr, "pahopub: cannot connect to %s\n", uri);
		return 1;
	}
	printf("connected\n");
	fflush(stdout);

	t0 = mono_ns();
	t_start = t0;
	deadline = t0 + (int64_t)(timeout_s * 1e9);
	for (long i = 0; i < n; i++) {
		MQTTAsync_message		m = MQTTAsync_message_initializer;
		MQTTAsync_responseOptions	ro = MQTTAsync_responseOptions_initializer;
		int				vm = (int)(i % vms) + 1, rc, len;

		if (rate > 0) {
			int64_t due = t_start + (int64_t)((double)i * 1e9 / rate);
			struct timespec d = { due / 1000000000, due % 1000000000 };
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &d,
			    NULL) != 0)
				;
		}
		pthread_mutex_lock(&mu);
		while (inflight >= window && !conn_failed) {
			abstime_in(&ts, 100);
			pthread_cond_timedwait(&cv, &mu, &ts);
			if (mono_ns() > deadline)
				break;
		}
		inflight++;
		pthread_mutex_unlock(&mu);
		if (conn_failed || mono_ns() > deadline)
			break;
		snprintf(topic, sizeof(topic), "%s/%s/vm%d/event/colo_exit",
		    base, host, vm);
		len = payload(buf, sizeof(buf), host, vm, bridge, i / vms + 1,
		    wall_us());
		m.payload = buf;
		m.payloadlen = len;
		m.qos = (int)qos;
		ro.onSuccess5 = pub_ok5;
		ro.onFailure5 = pub_fail5;
		while ((rc = MQTTAsync_sendMessage(cli, topic, &m, &ro)) ==
		    MQTTASYNC_MAX_BUFFERED_MESSAGES && mono_ns() < deadline)
			usleep(100);
		if (rc != MQTTASYNC_SUCCESS) {
			fprintf(stderr, "pahopub: send: %s\n",
			    MQTTAsync_strerror(rc));
			done_one(0);
			continue;
		}
		if (qos == 0)
			done_one(1);
		sent++;
		bytes += len;
	}
	pthread_mutex_lock(&mu);
	while (inflight > 0 && !conn_failed && mono_ns() < deadline) {
		abstime_in(&ts, 100);
		pthread_cond_timedwait(&cv, &mu, &ts);
	}
	pthread_mutex_unlock(&mu);
	int64_t elapsed = mono_ns() - t0;
	getrusage(RUSAGE_SELF, &ru);
	printf("done sent=%ld acked=%ld failed=%ld elapsed_us=%" PRId64
	    " cpu_us=%ld bytes=%ld csw=%ld\n", sent, acked, failed,
	    elapsed / 1000,
	    (long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	    ru.ru_utime.tv_usec + ru.ru_stime.tv_usec, sent ? bytes / sent : 0,
	    ru.ru_nvcsw + ru.ru_nivcsw);
	fflush(stdout);
	MQTTAsync_disconnectOptions dopt = MQTTAsync_disconnectOptions_initializer;
	dopt.timeout = 1000;
	MQTTAsync_disconnect(cli, &dopt);
	usleep(50000);
	MQTTAsync_destroy(&cli);
	return acked == n ? 0 : 1;
}
