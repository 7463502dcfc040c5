/*
 * mqttconn: the broker connection, on the loop thread's side (see mqtt.h
 * for the module, mqtt.c for the publishing side): the Paho client of
 * each connection, its options (MQTT version, Last Will, TLS), connecting
 * with jittered backoff, what a CONNACK sets up (keepalive, Receive
 * Maximum, subscriptions, TCP_NODELAY), and a lost connection (the FIFO
 * rewound, a fresh client).  Shares struct mqtt with mqtt.c through
 * mqtt_int.h.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "backoff.h"
#include "config.h"
#include "fifo.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "mqtt_int.h"

/*
 * Paho exposes no socket, and does not set TCP_NODELAY: set it on every TCP
 * socket of the process (the QMP ones already have it).  O(open fds), once
 * per broker connection.
 */
/* The port of a broker URI ("tcp://h:p", "mqtt://h", "ssl://[::1]:p"). */
static int
uri_port(const char *u)
{
	const char *p = strrchr(u, ':'), *sch = strstr(u, "://");

	if (p != NULL && sch != NULL && p > sch + 2 && p[-1] != ']' &&
	    strchr(p, ']') == NULL && p[1] >= '0' && p[1] <= '9')
		return atoi(p + 1);
	if (sch != NULL && (strncmp(u, "ssl", 3) == 0 ||
	    strncmp(u, "mqtts", 5) == 0))
		return 8883;
	return 1883;
}

static int
set_nodelay_all(struct mqtt *m)
{
	DIR		*d;
	struct dirent	*de;
	int		 one = 1, n = 0, found = -1, nfound = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		int fd, proto, domain;
		socklen_t len = sizeof(int);
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		fd = atoi(de->d_name);
		if (fd == dirfd(d))
			continue;
		if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == -1 ||
		    proto != IPPROTO_TCP)
			continue;
		len = sizeof(int);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == -1 ||
		    (domain != AF_INET && domain != AF_INET6))
			continue;
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one)) == 0)
			n++;
		/* The broker's: its peer port is one of the URIs'. */
		{
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			int port = -1;
			if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
				port = ntohs(ss.ss_family == AF_INET ?
				    ((struct sockaddr_in *)&ss)->sin_port :
				    ((struct sockaddr_in6 *)&ss)->sin6_port);
			for (size_t i = 0; i < m->cf->nuris; i++)
				if (port == uri_port(m->cf->uris[i])) {
					found = fd;
					nfound++;
					break;
				}
		}
	}
	closedir(d);
	log_debug("mqtt: TCP_NODELAY set on %d socket(s)", n);
	return nfound == 1 ? found : -1;	/* ambiguous: no corking */
}

/*
 * Replaces the Paho client by a fresh one (next generation), then destroys
 * the old one with whatever it still held; a connected old client sends a
 * normal DISCONNECT (no Last Will).  0, or -1 (logged) when the new one
 * could not be created: m->cli is then NULL and mq_start_connect() tries
 * again.
 */
int
mq_client_renew(struct mqtt *m)
{
	MQTTAsync_createOptions	 co = MQTTAsync_createOptions_initializer;
	const struct config	*cf = m->cf;
	MQTTAsync		 cli = NULL, old = m->cli;
	struct conn		*c, *oldc = m->conn;
	int			 rc, ret = -1;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("mqtt: client");
		goto done;
	}
	c->m = m;
	c->gen = m->gen + 1;
	co.MQTTVersion = cf->mqtt_version == 5 ? MQTTVERSION_5 :
	    MQTTVERSION_3_1_1;
	co.sendWhileDisconnected = 0;
	co.maxBufferedMessages = (int)cf->inflight_max + 16;
	rc = MQTTAsync_createWithOptions(&cli, cf->uris[0], cf->client_id,
	    MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
	if (rc != MQTTASYNC_SUCCESS) {
		log_warnx("mqtt: create client: %s", MQTTAsync_strerror(rc));
		free(c);
		goto done;
	}
	rc = MQTTAsync_setCallbacks(cli, c, cb_lost, cb_arrived, NULL);
	if (rc != MQTTASYNC_SUCCESS) {
		log_warnx("mqtt: set callbacks: %s", MQTTAsync_strerror(rc));
		MQTTAsync_destroy(&cli);
		free(c);
		goto done;
	}
	ret = 0;
done:
	/* Even when no new one exists: the old one must not keep anything. */
	m->sock = -1;		/* its socket goes with it */
	m->corked = 0;
	m->gen++;
	m->cli = cli;
	m->conn = ret == 0 ? c : NULL;
	if (old != NULL)
		MQTTAsync_destroy(&old);
	free(oldc);
	return ret;
}

void
mq_reconnect_timer(struct loop *l, struct loop_timer *t, void *arg)
{
	mq_start_connect(arg);
}

static void
schedule_connect(struct mqtt *m)
{
	uint32_t delay;

	if (m->stopping)
		return;
	delay = backoff_next(&m->bo);
	log_debug("mqtt: reconnecting in %u ms", delay);
	loop_timer_arm(m->timer, delay);
}

/*
 * Fills the options that differ between MQTT 3.1.1 (props NULL) and 5:
 * clean start, the callbacks and, for 5, the Maximum Packet Size we
 * accept (added to props, which the caller frees).  Returns o.
 */
static MQTTAsync_connectOptions *
version_options(MQTTAsync_connectOptions *o, MQTTProperties *props)
{
	MQTTProperty	prop;

	if (props == NULL) {
		o->cleansession = 1;
		o->onSuccess = cb_conn_ok;
		o->onFailure = cb_conn_fail;
		return o;
	}
	o->cleanstart = 1;
	o->onSuccess5 = cb_conn_ok5;
	o->onFailure5 = cb_conn_fail5;
	/* A compliant broker never sends us more than this. */
	memset(&prop, 0, sizeof(prop));
	prop.identifier = MQTTPROPERTY_CODE_MAXIMUM_PACKET_SIZE;
	prop.value.integer4 = MQTT_MAX_PACKET_IN;
	MQTTProperties_add(props, &prop);
	o->connectProperties = props;
	return o;
}

/* 1 when any broker URI is TLS (ssl://, mqtts://, wss://), else 0. */
static int
uses_tls(const struct config *cf)
{
	for (size_t i = 0; i < cf->nuris; i++) {
		const char *u = cf->uris[i];
		if (strncmp(u, "ssl://", 6) == 0 ||
		    strncmp(u, "mqtts://", 8) == 0 ||
		    strncmp(u, "wss://", 6) == 0)
			return 1;
	}
	return 0;
}

/* The TLS settings of the configuration, for every TLS URI. */
static void
tls_options(struct mqtt *m, MQTTAsync_SSLOptions *so)
{
	const struct config *cf = m->cf;

	so->trustStore = cf->cafile;
	so->CApath = cf->capath;
	so->keyStore = cf->certfile;
	so->privateKey = cf->keyfile;
	so->enableServerCertAuth = cf->tls_verify;
	so->verify = cf->tls_verify;
	so->ssl_error_cb = cb_tls_error;
	so->ssl_error_context = m->conn;
}

void
mq_start_connect(struct mqtt *m)
{
	MQTTAsync_connectOptions	 co = MQTTAsync_connectOptions_initializer;
	MQTTAsync_connectOptions	 co5 = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_willOptions		 wo = MQTTAsync_willOptions_initializer;
	MQTTAsync_SSLOptions		 so = MQTTAsync_SSLOptions_initializer;
	MQTTProperties			 props = MQTTProperties_initializer;
	const struct config		*cf = m->cf;
	MQTTAsync_connectOptions	*o;
	int				 rc;

	if (m->stopping || m->connecting || m->connected)
		return;
	if (m->cli == NULL && mq_client_renew(m) == -1) {
		schedule_connect(m);
		return;
	}
	o = cf->mqtt_version == 5 ? version_options(&co5, &props) :
	    version_options(&co, NULL);
	o->context = m->conn;
	o->keepAliveInterval = m->keepalive;
	o->connectTimeout = 10;
	o->automaticReconnect = 0;
	o->maxInflight = (int)cf->inflight_max + 16;
	o->username = cf->username;
	o->password = cf->password;
	if (cf->nuris > 1) {
		o->serverURIs = cf->uris;
		o->serverURIcount = (int)cf->nuris;
	}
	if (m->will_topic != NULL) {
		wo.topicName = m->will_topic;
		wo.message = m->will_payload;
		wo.retained = 1;
		wo.qos = 1;
		o->will = &wo;
	}
	if (uses_tls(cf)) {
		tls_options(m, &so);
		o->ssl = &so;
	}
	m->connecting = 1;
	m->tls_err[0] = '\0';
	rc = MQTTAsync_connect(m->cli, o);
	MQTTProperties_free(&props);	/* Paho keeps a copy */
	if (rc != MQTTASYNC_SUCCESS) {
		m->connecting = 0;
		log_warnx("mqtt: connect: %s", MQTTAsync_strerror(rc));
		mq_client_renew(m);
		schedule_connect(m);
	}
}

void
mq_subscribe_one(struct mqtt *m, struct sub *s)
{
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	int rc;

	ro.context = m->conn;
	if (m->cf->mqtt_version == 5) {
		if (s->flags & MQTT_SUB_NO_RETAINED) {
			/* Never send retained ones, and keep the retain flag
			 * of live ones so that they can be refused. */
			ro.subscribeOptions.retainHandling = 2;
			ro.subscribeOptions.retainAsPublished = 1;
		}
		if (s->flags & MQTT_SUB_NO_LOCAL)
			ro.subscribeOptions.noLocal = 1;
		ro.onSuccess5 = cb_sub_ok5;
		ro.onFailure5 = cb_sub_fail5;
	} else {
		ro.onSuccess = cb_sub_ok;
		ro.onFailure = cb_sub_fail;
	}
	s->token = 0;
	rc = MQTTAsync_subscribe(m->cli, s->filter, s->qos, &ro);
	if (rc != MQTTASYNC_SUCCESS)
		log_warnx("mqtt: subscribe %s: %s", s->filter,
		    MQTTAsync_strerror(rc));
	else
		s->token = ro.token;
}

void
mq_on_suback(struct mqtt *m, int token, int ok)
{
	struct sub *s;

	for (s = m->subs; s != NULL; s = s->next)
		if (s->token != 0 && s->token == token)
			break;
	if (s == NULL)
		return;
	s->token = 0;
	if (!ok)
		log_warnx("mqtt: subscription to %s refused", s->filter);
	else
		log_debug("mqtt: subscribed to %s", s->filter);
	if (m->cb.subscribed != NULL && !m->stopping)
		m->cb.subscribed(m, s->filter, ok, m->arg);
}

void
mq_on_connected(struct mqtt *m, int server_keepalive, int recvmax,
    const char *uri)
{
	struct sub	*s;

	m->connecting = 0;
	if (server_keepalive > 0 && (m->keepalive == 0 ||
	    server_keepalive < m->keepalive)) {
		/*
		 * Paho keeps the keepalive it connected with, and the broker
		 * cuts a client silent for 1.5 times its own: this connection
		 * cannot comply.  Not counted as a connection: drop it (a
		 * normal DISCONNECT, no Last Will) and connect again at once.
		 */
		log_info("mqtt: broker requires keepalive %d s (configured "
		    "%d s); reconnecting with it", server_keepalive,
		    m->keepalive);
		m->keepalive = server_keepalive;
		mq_client_renew(m);
		loop_timer_arm(m->timer, 0);
		return;
	}
	/*
	 * Past the broker's Receive Maximum Paho would queue our publishes
	 * itself: keep the window within it, so that what is handed to Paho
	 * is on the wire.
	 */
	m->window = m->cf->inflight_max;
	if (recvmax > 0 && (size_t)recvmax < m->window) {
		m->window = (size_t)recvmax;
		log_debug("mqtt: broker's Receive Maximum %d: window %zu",
		    recvmax, m->window);
	}
	m->connected = 1;
	m->stats.connects++;
	backoff_reset(&m->bo);
	m->cause[0] = '\0';
	m->cause_repeats = 0;
	for (size_t i = 0; uri != NULL && i < m->cf->nuris; i++) {
		const char *u = strstr(m->cf->uris[i], "://");
		if (u != NULL && strcmp(u + 3, uri) == 0) {
			uri = m->cf->uris[i];	/* Paho drops the scheme */
			break;
		}
	}
	log_info("mqtt: connected to %s", uri != NULL ? uri : m->cf->uris[0]);
	m->corked = 0;
	m->sock = -1;
	if (m->cf->tcp_nodelay) {
		m->sock = set_nodelay_all(m);
		log_debug("mqtt: broker socket %d (batches corked)", m->sock);
	}
	for (s = m->subs; s != NULL; s = s->next)
		mq_subscribe_one(m, s);
	if (m->cb.connected != NULL)
		m->cb.connected(m, m->arg);
	mq_pump(m);
	mq_flow_check(m);
}

/*
 * A TLS connect failure in words, or text.  OpenSSL's first error line
 * ("...:error:0A000086:SSL routines:FUNC:certificate verify failed:FILE:
 * LINE:") gives the reason.  Paho 1.3.12 checks the host name itself after
 * a successful handshake and says nothing but "TCP/TLS connect failure",
 * like for a refused TCP connection: both are named then.
 */
const char *
mq_tls_cause(struct mqtt *m, int code, const char *text)
{
	static char	 buf[400];
	const char	*r = m->tls_err, *p;
	size_t		 rlen, i;
	int		 tls = 0;

	for (i = 0; i < m->cf->nuris; i++)
		if (strncmp(m->cf->uris[i], "ssl://", 6) == 0 ||
		    strncmp(m->cf->uris[i], "mqtts://", 8) == 0 ||
		    strncmp(m->cf->uris[i], "wss://", 6) == 0)
			tls = 1;
	if (!tls || code > 0)
		return text;
	if (m->tls_err[0] != '\0') {
		/* the 6th ':'-separated field is the reason */
		for (i = 0, p = r; i < 5 && (p = strchr(p, ':')) != NULL; i++)
			p++;
		if (p != NULL && strstr(r, ":error:") != NULL) {
			r = p;
			rlen = (p = strchr(r, ':')) != NULL ? (size_t)(p - r) :
			    strlen(r);
		} else
			rlen = strlen(r);
		snprintf(buf, sizeof(buf), "TLS handshake failed: %.*s%s",
		    (int)rlen, r, strncmp(r, "certificate verify failed",
		    rlen) == 0 && rlen > 0 ? ": the broker's certificate is "
		    "not signed by a CA of mqtt.tls.cafile / capath, or it "
		    "has expired" : "");
		return buf;
	}
	if (m->cf->tls_verify && text != NULL &&
	    strstr(text, "TCP/TLS connect failure") != NULL) {
		snprintf(buf, sizeof(buf), "TCP connect or TLS host name check "
		    "failed: the broker is unreachable (refused, no route), or "
		    "its certificate does not name the host of mqtt.uri "
		    "(checked because mqtt.tls.verify is true)");
		return buf;
	}
	return text;
}

/*
 * A connect attempt failed: its cause, in words, at info level; the same
 * cause again is logged at most once a minute, with a count.
 */
void
mq_log_connect_failure(struct mqtt *m, int code, const char *text)
{
	char		 cause[sizeof(m->cause)], where[300];
	uint64_t	 now = loop_now_ms();

	mqtt_connect_cause(m->cf->mqtt_version, code, text, cause,
	    sizeof(cause));
	/* With a list, Paho tried each in turn; the cause is the last one's. */
	if (m->cf->nuris > 1)
		snprintf(where, sizeof(where), "any of %s .. %s (%zu URIs; "
		    "the last one's cause)", m->cf->uris[0],
		    m->cf->uris[m->cf->nuris - 1], m->cf->nuris);
	else
		snprintf(where, sizeof(where), "%s", m->cf->uris[0]);
	if (strcmp(cause, m->cause) == 0 && now - m->cause_ms < 60000) {
		m->cause_repeats++;
		return;
	}
	if (strcmp(cause, m->cause) == 0 && m->cause_repeats > 0)
		log_info("mqtt: cannot connect to %s: %s (%llu more time(s) "
		    "since the last report)", where, cause,
		    (unsigned long long)m->cause_repeats);
	else
		log_info("mqtt: cannot connect to %s: %s", where, cause);
	snprintf(m->cause, sizeof(m->cause), "%s", cause);
	m->cause_ms = now;
	m->cause_repeats = 0;
}

/*
 * The connection is gone (why), or an attempt failed (attempt; code as
 * reported by Paho): a fresh client, the FIFO rewound, a reconnect
 * scheduled.
 */
void
mq_on_lost(struct mqtt *m, const char *why, int attempt)
{
	int	was = m->connected;

	m->connecting = 0;
	m->connected = 0;
	if (was)
		log_warnx("mqtt: connection lost: %s; %zu message(s) buffered",
		    why ? why : "?", fifo_count(m->fifo));
	m->holding = 0;
	m->hold_due = 0;
	loop_timer_disarm(m->hold_timer);
	mq_client_renew(m);
	m->stats.resent += fifo_rewind(m->fifo);
	mq_flow_check(m);
	if (m->cb.lost != NULL && (was || attempt))
		m->cb.lost(m, m->arg);
	schedule_connect(m);
}
