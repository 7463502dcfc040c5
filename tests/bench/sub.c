/*
 * sub: the benchmark's subscriber (Paho MQTTAsync, MQTT 3.1.1).
 *
 * Subscribes to one or more filters and records, for every message, the
 * wall-clock receive time (CLOCK_REALTIME, µs) and what the driver needs to
 * count losses, duplicates and latency: the VM (third topic level), the
 * rest of the topic, and from a JSON payload its "seq" and "time_us"
 * (found with strstr: no JSON parser on the hot path).  Recording is a
 * store into a preallocated array, so the callback keeps up with well over
 * 25 k msg/s.
 *
 *   sub -p PORT -t FILTER [-t FILTER ...] [-q QOS] -n N [-c SUFFIX[=PAYLOAD]]
 *       [-T TOTAL_S] [-i IDLE_S] [-l LINGER_MS] -o OUT.tsv
 *
 * Prints "subscribed" once the broker acknowledged the subscriptions, then
 * stops by itself when N messages whose topic ends in SUFFIX (and whose
 * payload is PAYLOAD, if given) have arrived (+ LINGER_MS to catch
 * duplicates), when no counted message arrived for IDLE_S after the first
 * one, after TOTAL_S, on SIGTERM/SIGINT or on EOF of stdin.  Then it writes
 * OUT.tsv (t_us, seq, time_us, vm, kind, payload-if-not-JSON, dup, length) and
 * prints "done counted=C total=M overflow=O reason=R cpu_us=U".  Exit 0 if N were counted.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "nodelay.h"

#define MAXF	8

struct rec {
	int64_t	t_us, seq, time_us;
	int	dup, len;
	char	vm[32];
	char	kind[32];
	char	p[16];
};

static struct rec	*recs;
static size_t		 cap;
static atomic_size_t	 nrec, counted, overflow;
static atomic_int	 subscribed, lost;
static atomic_int_least64_t last_counted_us;
static const char	*csuffix = "";
static const char	*cpayload;
static size_t		 cslen;
static pthread_mutex_t	 mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 cv = PTHREAD_COND_INITIALIZER;
static volatile sig_atomic_t stop;

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
wake(void)
{
	pthread_mutex_lock(&mu);
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

static int64_t
num_after(const char *s, const char *key)
{
	const char *p = strstr(s, key);

	return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

static int
arrived(void *ctx, char *topic, int tlen, MQTTAsync_message *m)
{
	int64_t		 t = now_us();
	size_t		 i = atomic_fetch_add(&nrec, 1);
	size_t		 tl = tlen > 0 ? (size_t)tlen : strlen(topic);
	size_t		 pl = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
	char		 buf[1024];
	const char	*lv, *rest;
	int		 count = 0;

	if (pl > sizeof(buf) - 1)
		pl = sizeof(buf) - 1;
	memcpy(buf, m->payload, pl);
	buf[pl] = '\0';
	if (tl >= cslen && memcmp(topic + tl - cslen, csuffix, cslen) == 0 &&
	    (cpayload == NULL || strcmp(buf, cpayload) == 0))
		count = 1;
	if (i < cap) {
		struct rec *r = &recs[i];
		char tb[256];
		size_t k = tl < sizeof(tb) - 1 ? tl : sizeof(tb) - 1;

		memcpy(tb, topic, k);
		tb[k] = '\0';
		r->t_us = t;
		r->dup = m->dup;
		r->len = m->payloadlen;
		/* base/host/vm/rest: the vm is the third level */
		lv = tb;
		for (int n = 0; n < 2 && lv != NULL; n++)
			if ((lv = strchr(lv, '/')) != NULL)
				lv++;
		rest = lv ? strchr(lv, '/') : NULL;
		if (lv != NULL)
			snprintf(r->vm, sizeof(r->vm), "%.*s",
			    (int)(rest ? (size_t)(rest - lv) : strlen(lv)), lv);
		snprintf(r->kind, sizeof(r->kind), "%s", rest ? rest + 1 : "");
		if (buf[0] == '{') {
			r->seq = num_after(buf, "\"seq\":");
			r->time_us = num_after(buf, "\"time_us\":");
		} else {
			r->seq = r->time_us = -1;
			snprintf(r->p, sizeof(r->p), "%.15s", buf);
		}
	} else
		atomic_fetch_add(&overflow, 1);
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	if (count) {
		atomic_store(&last_counted_us, t);
		atomic_fetch_add(&counted, 1);
		wake();
	}
	return 1;
}

static void
conn_lost(void *ctx, char *cause)
{
	fprintf(stderr, "sub: connection lost: %s\n", cause ? cause : "?");
	atomic_store(&lost, 1);
	wake();
}

static void
sub_ok(void *ctx, MQTTAsync_successData *r)
{
	atomic_store(&subscribed, 1);
	wake();
}

static void
sub_fail(void *ctx, MQTTAsync_failureData *r)
{
	fprintf(stderr, "sub: subscribe failed: %d\n", r ? r->code : 0);
	atomic_store(&lost, 1);
	wake();
}

static char	*filters[MAXF];
static int	 nfilters, qos = 1;
static MQTTAsync cli;

static void
conn_ok(void *ctx, MQTTAsync_successData *r)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	int qoss[MAXF];

	bench_nodelay_all();
	for (int i = 0; i < nfilters; i++)
		qoss[i] = qos;
	ro.onSuccess = sub_ok;
	ro.onFailure = sub_fail;
	if (MQTTAsync_subscribeMany(cli, nfilters, filters, qoss, &ro) !=
	    MQTTASYNC_SUCCESS) {
		fprintf(stderr, "sub: subscribeMany failed\n");
		atomic_store(&lost, 1);
		wake();
	}
}

static void
conn_fail(void *ctx, MQTTAsync_failureData *r)
{
	fprintf(stderr, "sub: connect failed: %d %s\n", r ? r->code : 0,
	    r && r->message ? r->message : "");
	atomic_store(&lost, 1);
	wake();
}

static void
on_sig(int s)
{
	stop = 1;
}

static void *
stdin_watch(void *arg)
{
	char b[256];

	while (read(0, b, sizeof(b)) > 0)
		;
	stop = 1;
	wake();
	return NULL;
}

static void
usage(void)
{
	fprintf(stderr, "usage: sub -p PORT -t FILTER [-t ...] [-q QOS] -n N "
	    "[-c SUFFIX[=PAYLOAD]] [-T S] [-i S] [-l MS] -o OUT\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
	const char	*out = NULL, *reason = "complete";
	char		 uri[64], cid[64], *cs = NULL;
	int		 port = 0, c;
	size_t		 n = 0;
	double		 total_s = 60, idle_s = 5;
	long		 linger_ms = 300;
	pthread_t	 th;
	int64_t		 t_end, t_done = 0;
	FILE		*f;

	while ((c = getopt(argc, argv, "p:t:q:n:c:T:i:l:o:m:")) != -1) {
		switch (c) {
		case 'p': port = atoi(optarg); break;
		case 't':
			if (nfilters == MAXF)
				usage();
			filters[nfilters++] = optarg;
			break;
		case 'q': qos = atoi(optarg); break;
		case 'n': n = strtoul(optarg, NULL, 10); break;
		case 'c': cs = optarg; break;
		case 'T': total_s = atof(optarg); break;
		case 'i': idle_s = atof(optarg); break;
		case 'l': linger_ms = atol(optarg); break;
		case 'o': out = optarg; break;
		case 'm': cap = strtoul(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (!port || !nfilters || !out)
		usage();
	if (cs != NULL) {
		char *eq = strchr(cs, '=');
		if (eq != NULL) {
			*eq = '\0';
			cpayload = eq + 1;
		}
		csuffix = cs;
	}
	cslen = strlen(csuffix);
	if (cap == 0)
		cap = 2 * n + 100000;
	if ((recs = calloc(cap, sizeof(*recs))) == NULL) {
		perror("calloc");
		return 1;
	}
	signal(SIGTERM, on_sig);
	signal(SIGINT, on_sig);
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
	snprintf(cid, sizeof(cid), "bench-sub-%d", (int)getpid());
	if (MQTTAsync_create(&cli, uri, cid, MQTTCLIENT_PERSISTENCE_NONE,
	    NULL) != MQTTASYNC_SUCCESS ||
	    MQTTAsync_setCallbacks(cli, NULL, conn_lost, arrived, NULL) !=
	    MQTTASYNC_SUCCESS) {
		fprintf(stderr, "sub: create failed\n");
		return 1;
	}
	co.keepAliveInterval = 30;
	co.cleansession = 1;
	co.onSuccess = conn_ok;
	co.onFailure = conn_fail;
	if (MQTTAsync_connect(cli, &co) != MQTTASYNC_SUCCESS) {
		fprintf(stderr, "sub: connect failed\n");
		return 1;
	}
	pthread_create(&th, NULL, stdin_watch, NULL);
	pthread_detach(th);
	t_end = now_us() + (int64_t)(total_s * 1e6);
	pthread_mutex_lock(&mu);
	while (!stop) {
		struct timespec ts;
		int64_t now = now_us(), lc;

		if (atomic_load(&lost)) {
			reason = "lost";
			break;
		}
		if (atomic_exchange(&subscribed, 0)) {
			printf("subscribed\n");
			fflush(stdout);
		}
		if (n && atomic_load(&counted) >= n && t_done == 0)
			t_done = now;
		if (t_done && now - t_done >= linger_ms * 1000)
			break;
		if (now >= t_end) {
			reason = "timeout";
			break;
		}
		lc = atomic_load(&last_counted_us);
		if (!t_done && lc && now - lc > (int64_t)(idle_s * 1e6)) {
			reason = "idle";
			break;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&cv, &mu, &ts);
	}
	pthread_mutex_unlock(&mu);
	if (stop)
		reason = "stopped";
	if (t_done)
		reason = "complete";
	MQTTAsync_disconnectOptions dopt = MQTTAsync_disconnectOptions_initializer;
	dopt.timeout = 500;
	MQTTAsync_disconnect(cli, &dopt);
	usleep(100000);
	size_t k = atomic_load(&nrec);
	if (k > cap)
		k = cap;
	if ((f = fopen(out, "w")) == NULL) {
		perror(out);
		return 1;
	}
	for (size_t i = 0; i < k; i++) {
		const struct rec *r = &recs[i];
		fprintf(f, "%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%s\t%s\t%s\t%d\t%d\n",
		    r->t_us, r->seq, r->time_us, r->vm, r->kind,
		    r->p[0] ? r->p : "-", r->dup, r->len);
	}
	fclose(f);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("done counted=%zu total=%zu overflow=%zu reason=%s cpu_us=%ld\n",
	    atomic_load(&counted), atomic_load(&nrec),
	    atomic_load(&overflow), reason,
	    (long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	    ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
	fflush(stdout);
	MQTTAsync_destroy(&cli);
	return n && atomic_load(&counted) >= n ? 0 : 1;
}
