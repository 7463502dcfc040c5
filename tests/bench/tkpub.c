/*
 * tkpub: the takeover round trip, measured from the operator's side.
 *
 * Subscribes (QoS 1) to <base>/<host>/+/event/colo_exit and
 * <base>/<host>/+/result/takeover, prints "subscribed", then for each VM
 * named on the command line, one at a time: signs a takeover request
 * (HMAC-SHA256 with the key file's content, trailing whitespace stripped,
 * over src/takeover.h's v2 canonical string: no expect_mode, force 1 as
 * the benchmark's VMs have no peer, no response topic or correlation
 * data), publishes it at QoS 1 on
 * <base>/<host>/<vm>/cmd/takeover, and waits for both the resulting
 * colo_exit event of that VM and the takeover result (or TIMEOUT_MS).
 *
 *   tkpub -p PORT -k KEYFILE [-H HOST] [-b BASE] [-t TIMEOUT_MS] -o OUT VM...
 *
 * OUT (TSV, one line per request): vm, id, t_pub_us (wall clock just
 * before MQTTAsync_sendMessage), t_event_us (wall clock at the event's
 * arrival, 0 if none), event time_us (QEMU's timestamp in the payload),
 * t_result_us, result status, result reason.  Prints "done n=N ok=K".
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <MQTTAsync.h>

#include "nodelay.h"

static pthread_mutex_t	mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	cv = PTHREAD_COND_INITIALIZER;
static int		subscribed, failed;
static const char	*cur_vm;	/* the VM of the request in flight */
static char		 cur_id[80];
static int64_t		 t_event, ev_time_us, t_result;
static char		 r_status[32], r_reason[32];

static int64_t
wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
str_after(const char *s, const char *key, char *out, size_t len)
{
	const char *p = strstr(s, key), *e;

	out[0] = '\0';
	if (p == NULL)
		return;
	p += strlen(key);
	if ((e = strchr(p, '"')) == NULL)
		return;
	snprintf(out, len, "%.*s", (int)(e - p), p);
}

static int
arrived(void *ctx, char *topic, int tlen, MQTTAsync_message *m)
{
	int64_t	t = wall_us();
	char	tb[256], pb[2048], vm[80], id[80];
	const char *lv, *rest;
	size_t	tl = tlen > 0 ? (size_t)tlen : strlen(topic);
	size_t	pl = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;

	snprintf(tb, sizeof(tb), "%.*s", (int)tl, topic);
	if (pl > sizeof(pb) - 1)
		pl = sizeof(pb) - 1;
	memcpy(pb, m->payload, pl);
	pb[pl] = '\0';
	lv = tb;
	for (int n = 0; n < 2 && lv != NULL; n++)
		if ((lv = strchr(lv, '/')) != NULL)
			lv++;
	rest = lv ? strchr(lv, '/') : NULL;
	if (rest != NULL) {
		snprintf(vm, sizeof(vm), "%.*s", (int)(rest - lv), lv);
		pthread_mutex_lock(&mu);
		if (cur_vm != NULL && strcmp(vm, cur_vm) == 0) {
			if (strcmp(rest, "/event/colo_exit") == 0 && !t_event) {
				const char *p = strstr(pb, "\"time_us\":");
				t_event = t;
				ev_time_us = p ? strtoll(p + 10, NULL, 10) : -1;
			} else if (strcmp(rest, "/result/takeover") == 0) {
				str_after(pb, "\"id\":\"", id, sizeof(id));
				if (strcmp(id, cur_id) == 0 && !t_result) {
					t_result = t;
					str_after(pb, "\"status\":\"", r_status,
					    sizeof(r_status));
					str_after(pb, "\"reason\":\"", r_reason,
					    sizeof(r_reason));
				}
			}
			pthread_cond_signal(&cv);
		}
		pthread_mutex_unlock(&mu);
	}
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

static void
set_flag(int *f)
{
	pthread_mutex_lock(&mu);
	*f = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

static void
conn_lost(void *ctx, char *cause)
{
	fprintf(stderr, "tkpub: connection lost: %s\n", cause ? cause : "?");
	set_flag(&failed);
}

static void sub_ok(void *c, MQTTAsync_successData *r) { set_flag(&subscribed); }
static void any_fail(void *c, MQTTAsync_failureData *r) { set_flag(&failed); }

static MQTTAsync	 cli;
static char		 f_ev[256], f_res[256];

static void
conn_ok(void *ctx, MQTTAsync_successData *r)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	char	*fl[2] = { f_ev, f_res };
	int	 q[2] = { 1, 1 };

	bench_nodelay_all();
	ro.onSuccess = sub_ok;
	ro.onFailure = any_fail;
	if (MQTTAsync_subscribeMany(cli, 2, fl, q, &ro) != MQTTASYNC_SUCCESS)
		set_flag(&failed);
}

static void
abstime_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_nsec += (ms % 1000) * 1000000;
	ts->tv_sec += ms / 1000 + ts->tv_nsec / 1000000000;
	ts->tv_nsec %= 1000000000;
}

int
main(int argc, char **argv)
{
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
	const char	*host = "hv1", *base = "qmp2mqtt", *keyf = NULL, *out = NULL;
	unsigned char	 key[1024], md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen;
	size_t		 keylen;
	long		 timeout_ms = 5000;
	int		 port = 0, c, ok = 0, n = 0;
	char		 uri[64], cid[64];
	struct timespec	 ts;
	FILE		*f, *o;

	while ((c = getopt(argc, argv, "p:k:H:b:t:o:")) != -1) {
		switch (c) {
		case 'p': port = atoi(optarg); break;
		case 'k': keyf = optarg; break;
		case 'H': host = optarg; break;
		case 'b': base = optarg; break;
		case 't': timeout_ms = atol(optarg); break;
		case 'o': out = optarg; break;
		default:
			fprintf(stderr, "usage: tkpub -p PORT -k KEYFILE [-H HOST] "
			    "[-b BASE] [-t MS] -o OUT VM...\n");
			return 2;
		}
	}
	if (!port || !keyf || !out || optind >= argc)
		return 2;
	if ((f = fopen(keyf, "r")) == NULL) {
		perror(keyf);
		return 1;
	}
	keylen = fread(key, 1, sizeof(key), f);
	fclose(f);
	while (keylen > 0 && (key[keylen - 1] == '\n' || key[keylen - 1] == ' ' ||
	    key[keylen - 1] == '\t' || key[keylen - 1] == '\r'))
		keylen--;
	snprintf(f_ev, sizeof(f_ev), "%s/%s/+/event/colo_exit", base, host);
	snprintf(f_res, sizeof(f_res), "%s/%s/+/result/takeover", base, host);
	snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", port);
	snprintf(cid, sizeof(cid), "bench-tkpub-%d", (int)getpid());
	if (MQTTAsync_create(&cli, uri, cid, MQTTCLIENT_PERSISTENCE_NONE,
	    NULL) != MQTTASYNC_SUCCESS ||
	    MQTTAsync_setCallbacks(cli, NULL, conn_lost, arrived, NULL) !=
	    MQTTASYNC_SUCCESS)
		return 1;
	co.keepAliveInterval = 30;
	co.cleansession = 1;
	co.onSuccess = conn_ok;
	co.onFailure = any_fail;
	if (MQTTAsync_connect(cli, &co) != MQTTASYNC_SUCCESS)
		return 1;
	abstime_in(&ts, 10000);
	pthread_mutex_lock(&mu);
	while (!subscribed && !failed)
		if (pthread_cond_timedwait(&cv, &mu, &ts) != 0)
			break;
	pthread_mutex_unlock(&mu);
	if (!subscribed) {
		fprintf(stderr, "tkpub: not subscribed\n");
		return 1;
	}
	printf("subscribed\n");
	fflush(stdout);
	if ((o = fopen(out, "w")) == NULL) {
		perror(out);
		return 1;
	}
	for (int i = optind; i < argc && !failed; i++, n++) {
		MQTTAsync_message		m = MQTTAsync_message_initializer;
		MQTTAsync_responseOptions	ro = MQTTAsync_responseOptions_initializer;
		const char	*vm = argv[i];
		char		 canon[512], sig[2 * EVP_MAX_MD_SIZE + 1];
		char		 topic[256], pay[512];
		int64_t		 issued = wall_us(), t_pub;
		int		 len;

		pthread_mutex_lock(&mu);
		snprintf(cur_id, sizeof(cur_id), "bench-%d-%d", (int)getpid(), n);
		cur_vm = vm;
		t_event = ev_time_us = t_result = 0;
		r_status[0] = r_reason[0] = '\0';
		pthread_mutex_unlock(&mu);
		len = snprintf(canon, sizeof(canon),
		    "qmp2mqtt-takeover-v2\n%s\n%s\n%s\n%" PRId64 "\n\n1\n\n",
		    host, vm, cur_id, issued);
		HMAC(EVP_sha256(), key, (int)keylen, (unsigned char *)canon,
		    (size_t)len, md, &mdlen);
		for (unsigned k = 0; k < mdlen; k++)
			sprintf(sig + 2 * k, "%02x", md[k]);
		len = snprintf(pay, sizeof(pay), "{\"id\":\"%s\",\"issued_us\":%"
		    PRId64 ",\"force\":true,\"sig\":\"%s\"}", cur_id, issued, sig);
		snprintf(topic, sizeof(topic), "%s/%s/%s/cmd/takeover", base,
		    host, vm);
		m.payload = pay;
		m.payloadlen = len;
		m.qos = 1;
		t_pub = wall_us();
		if (MQTTAsync_sendMessage(cli, topic, &m, &ro) !=
		    MQTTASYNC_SUCCESS) {
			fprintf(stderr, "tkpub: send failed\n");
			break;
		}
		abstime_in(&ts, timeout_ms);
		pthread_mutex_lock(&mu);
		while (!(t_event && t_result) && !failed)
			if (pthread_cond_timedwait(&cv, &mu, &ts) != 0)
				break;
		fprintf(o, "%s\t%s\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%"
		    PRId64 "\t%s\t%s\n", vm, cur_id, t_pub, t_event, ev_time_us,
		    t_result, r_status[0] ? r_status : "-",
		    r_reason[0] ? r_reason : "-");
		if (t_event && strcmp(r_status, "ok") == 0)
			ok++;
		cur_vm = NULL;
		pthread_mutex_unlock(&mu);
	}
	fclose(o);
	printf("done n=%d ok=%d\n", n, ok);
	fflush(stdout);
	MQTTAsync_disconnectOptions dopt = MQTTAsync_disconnectOptions_initializer;
	dopt.timeout = 500;
	MQTTAsync_disconnect(cli, &dopt);
	usleep(50000);
	MQTTAsync_destroy(&cli);
	return ok == n ? 0 : 1;
}
