/*
 * command: see command.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "config.h"
#include "failover.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "peer.h"
#include "tkcache.h"
#include "tkresult.h"
#include "tkstore.h"
#include "topic.h"
#include "vm.h"

/* The takeover running on one VM (vm->run). */
struct cmd_run {
	struct cmd_ctx		*cx;
	struct vm		*v;
	struct failover		*fo;
	char			 id[TK_ID_MAX + 1];
	int			 force;
	char			*resp_topic;	/* NULL if none */
	void			*corr;
	size_t			 corr_len;
	int64_t			 accepted_us;
};

static void
run_free(struct cmd_run *run)
{
	if (run == NULL)
		return;
	failover_free(run->fo);
	free(run->corr);
	free(run->resp_topic);
	free(run);
}

/* --- results ------------------------------------------------------- */

/* The answer's status from its reason (see README "Request and result"). */
static const char *
status_of(enum tk_reason r, const struct failover_result *fr)
{
	if (r == TK_OK)
		return "ok";
	if (r == TK_QEMU_ERROR || r == TK_TIMEOUT ||
	    (r == TK_NOT_CONNECTED && fr != NULL && fr->sent))
		return "error";
	return "rejected";
}

/*
 * Publishes a result on the VM's result topic and, for requests that
 * passed authentication, on their Response Topic too (never spooled: a
 * result is worth nothing after a restart).  Returns the serialised
 * result (owned by the caller) for the duplicate cache, or NULL.
 */
static char *
publish_result(struct cmd_ctx *cx, struct vm *v, const char *id,
    enum tk_reason r, const char *cls, const char *desc,
    const struct failover_result *fr, int authenticated,
    const char *resp_topic, const void *corr, size_t corr_len)
{
	const struct config_takeover *tc = &cx->cf->takeover;
	json_object	*o = json_object_new_object(), *e, *c;
	const char	*status = status_of(r, fr), *s;
	char		*out = NULL;
	size_t		 len;
	int64_t		 now = loop_wall_us();
	char		 t[TOPIC_MAX];

	cx->count[r]++;
	if (o == NULL)
		return NULL;
	json_object_object_add(o, "schema", json_object_new_int(1));
	json_object_object_add(o, "id", id != NULL && *id ?
	    json_object_new_string(id) : NULL);
	json_object_object_add(o, "host", json_object_new_string(v->cv->host));
	json_object_object_add(o, "vm", json_object_new_string(v->cv->name));
	json_object_object_add(o, "status", json_object_new_string(status));
	json_object_object_add(o, "reason",
	    json_object_new_string(tk_reason_name(r)));
	if (cls != NULL || r != TK_OK) {
		e = json_object_new_object();
		json_object_object_add(e, "class", json_object_new_string(
		    cls != NULL ? cls : tk_reason_name(r)));
		json_object_object_add(e, "desc",
		    json_object_new_string(desc != NULL ? desc : ""));
		json_object_object_add(o, "error", e);
	} else
		json_object_object_add(o, "error", NULL);
	if (fr != NULL && fr->have_colo) {
		c = json_object_new_object();
		json_object_object_add(c, "mode",
		    json_object_new_string(fr->mode));
		json_object_object_add(c, "last_mode", fr->last_mode[0] ?
		    json_object_new_string(fr->last_mode) : NULL);
		json_object_object_add(c, "reason", fr->reason_str[0] ?
		    json_object_new_string(fr->reason_str) : NULL);
		json_object_object_add(o, "colo", c);
	} else
		json_object_object_add(o, "colo", NULL);
	json_object_object_add(o, "sent", json_object_new_boolean(
	    fr != NULL && fr->sent));
	json_object_object_add(o, "authenticated",
	    json_object_new_boolean(authenticated));
	json_object_object_add(o, "time_us", json_object_new_int64(now));
	/*
	 * The signature covers every member above (result canonical string
	 * v2, see tkresult.h), so that what qmp2mqtt-ctl reads and prints,
	 * "authenticated" first, cannot be changed on the way.  The values
	 * signed are the very ones put into the JSON.  A member added above
	 * must join the canonical string (a new sig_version): qmp2mqtt-ctl
	 * refuses a result with a member it does not know.
	 */
	if (tc->auth == CONFIG_AUTH_HMAC) {
		struct tk_result_fields	 rf;
		char			 sig[TK_SIG_HEX + 1];

		memset(&rf, 0, sizeof(rf));
		rf.schema = 1;
		rf.host = v->cv->host;
		rf.vm = v->cv->name;
		rf.id = id != NULL && *id ? id : NULL;
		rf.status = status;
		rf.reason = tk_reason_name(r);
		if (cls != NULL || r != TK_OK) {
			rf.error_class = cls != NULL ? cls : tk_reason_name(r);
			rf.error_desc = desc != NULL ? desc : "";
		}
		if (fr != NULL && fr->have_colo) {
			rf.colo_mode = fr->mode;
			rf.colo_last_mode = fr->last_mode[0] ? fr->last_mode :
			    NULL;
			rf.colo_reason = fr->reason_str[0] ? fr->reason_str :
			    NULL;
		}
		rf.sent = fr != NULL && fr->sent;
		rf.authenticated = authenticated != 0;
		rf.time_us = now;
		if (tk_sign_result(tc->key, tc->key_len, &rf, sig) == 0) {
			json_object_object_add(o, "sig",
			    json_object_new_string(sig));
			json_object_object_add(o, "sig_version",
			    json_object_new_int(TK_RESULT_VERSION));
		} else {
			/*
			 * Out of memory or an HMAC failure: counted, and
			 * qmp2mqtt-ctl will say the result is unsigned.
			 */
			cx->sign_errors++;
			log_warnx("takeover %s/%s id=%.64s: result cannot be "
			    "signed; published unsigned", v->cv->host,
			    v->cv->name, id != NULL && *id ? id : "-");
		}
	}
	s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (s != NULL) {
		mqtt_publish(cx->mqtt, vm_topic(t, v, "result/takeover"), s,
		    len, 1, MQTT_PUB_VOLATILE);
		if (resp_topic != NULL && *resp_topic)
			mqtt_publish_corr(cx->mqtt, resp_topic, s, len, 1,
			    MQTT_PUB_VOLATILE, corr, corr_len);
		out = strdup(s);
	}
	json_object_put(o);
	return out;
}

/*
 * One budget for everything an outsider can make the bridge say: answers
 * to requests that are not executed.  Returns 1 when this one may be
 * answered and logged now.
 */
static int
answer_budget(struct cmd_ctx *cx)
{
	if (cx->flow_full) {
		cx->unanswered++;
		return 0;
	}
	if (!ratelim_allow(&cx->answers, loop_now_ms())) {
		cx->unanswered++;
		return 0;
	}
	return 1;
}

/*
 * Refuses a request: counted always; logged and answered within the
 * budget.  authed: the request passed authentication (its Response Topic
 * may be used).  recorded: its id is in the replay cache, which keeps the
 * answer for duplicates.
 */
static void
refuse(struct cmd_ctx *cx, struct vm *v, const char *id, enum tk_reason r,
    const char *desc, const struct failover_result *fr,
    const struct mqtt_msg *authed, int recorded)
{
	char *out;

	if (!answer_budget(cx)) {
		cx->count[r]++;
		return;
	}
	log_warnx("takeover %s/%s id=%.64s: refused: %s%s%s", v->cv->host,
	    v->cv->name, id != NULL && *id ? id : "-", tk_reason_name(r),
	    desc ? ": " : "", desc ? desc : "");
	out = publish_result(cx, v, id, r, NULL, desc, fr, authed != NULL,
	    authed ? authed->response_topic : NULL,
	    authed ? authed->correlation : NULL,
	    authed ? authed->correlation_len : 0);
	if (recorded && id != NULL && *id && out != NULL)
		tk_cache_set_result(cx->cache, v->cv->host, v->cv->name, id,
		    out);
	free(out);
}

/* --- the last check, and the outcome ------------------------------- */

/*
 * failover.c calls this with the mode it has just read, right before it
 * sends x-colo-lost-heartbeat: the pair rules, unless forced.
 */
static enum tk_reason
pair_check(const char *mode, const char **why, void *arg)
{
	struct cmd_run	*run = arg;
	struct vm	*v = run->v, *lp = v->local_peer;
	enum tk_reason	 r;

	if (v->clash) {
		*why = "another bridge serves this VM's topics too";
		return TK_CLASH;
	}
	if (lp != NULL && v->peer != NULL)	/* served here: read it now */
		(void)peer_set_local(v->peer, lp->mode, lp->last_mode,
		    vm_liveness(lp), qmp_ready(lp->q),
		    lp->tk_committed || lp->tk_unconfirmed);
	r = peer_check(v->peer, mode, why);
	if (!run->force) {
		v->tk_committed = r == TK_OK;
		return r;
	}
	v->tk_committed = 1;
	if (r != TK_OK)
		log_warnx("takeover %s/%s id=%s: FORCED: the pair rules would "
		    "have refused it (%s: %s)", v->cv->host, v->cv->name,
		    run->id, tk_reason_name(r), *why);
	else
		log_warnx("takeover %s/%s id=%s: FORCED (the pair rules allow "
		    "it anyway)", v->cv->host, v->cv->name, run->id);
	run->cx->forced++;
	return TK_OK;
}

static void
failover_done(struct failover *fo, const struct failover_result *fr,
    void *arg)
{
	struct cmd_run	*run = arg;
	struct cmd_ctx	*cx = run->cx;
	struct vm	*v = run->v;
	char		*out;

	if (fr->reason == TK_OK)
		log_info("takeover %s/%s id=%s: done: COLO mode now %s "
		    "(last_mode %s)%s", v->cv->host, v->cv->name, run->id,
		    fr->have_colo ? fr->mode : "unknown",
		    fr->have_colo && fr->last_mode[0] ? fr->last_mode : "?",
		    run->force ? " (forced)" : "");
	else
		log_warnx("takeover %s/%s id=%s: %s: %s%s%s", v->cv->host,
		    v->cv->name, run->id, tk_reason_name(fr->reason),
		    fr->err_class ? fr->err_class : "",
		    fr->err_desc ? ": " : "", fr->err_desc ? fr->err_desc : "");
	out = publish_result(cx, v, run->id, fr->reason, fr->err_class,
	    fr->err_desc, fr, 1, run->resp_topic, run->corr, run->corr_len);
	if (out != NULL)
		tk_cache_set_result(cx->cache, v->cv->host, v->cv->name,
		    run->id, out);
	free(out);
	if (fr->sent)	/* refusals before the command do not count */
		v->tk_last_ms = loop_now_ms();
	/*
	 * Sent and not rejected by QEMU: it took effect or may have, until
	 * a status read shows mode none (vm.c).  Saved: it holds across a
	 * lost connection, a dead QEMU and a restart.
	 */
	if (fr->sent && !fr->rejected && !v->tk_unconfirmed) {
		v->tk_unconfirmed = 1;
		(void)vm_save(v);
		vm_publish_state(v);
	}
	v->run = NULL;
	v->tk_committed = 0;
	run->fo = NULL;
	failover_free(fo);	/* fr points into fo: not used after this */
	run_free(run);
	vm_refresh(v);	/* the failover changed the COLO state */
}

/* --- requests ------------------------------------------------------ */

/*
 * A Response Topic may only point under takeover.reply_prefix, and must
 * be a valid topic to publish on (an invalid one would stall the queue).
 */
static int
reply_allowed(const struct config *cf, const char *t)
{
	char		 lv[TOPIC_MAX];
	const char	*prefix = cf->takeover.reply_prefix;
	size_t		 n = strlen(t);

	if (n == 0 || n >= TOPIC_MAX || t[0] == '$' ||
	    strncmp(t, prefix, strlen(prefix)) != 0 || n == strlen(prefix))
		return 0;
	while (*t != '\0') {
		size_t l = strcspn(t, "/");
		memcpy(lv, t, l);
		lv[l] = '\0';
		if (l > 0 && topic_level_check(lv) != NULL)
			return 0;
		t += l;
		if (*t == '/')
			t++;
	}
	return 1;
}

/* Age: see README "Safety rules" (stale). */
static int
fresh(struct cmd_ctx *cx, const struct tk_request *req, int64_t now,
    const char **why)
{
	unsigned window = cx->cf->takeover.window_s;

	if (tk_check_time(req->issued_us, now, window) != TK_OK) {
		*why = "issued_us outside the accepted window";
		return 0;
	}
	if (cx->store != NULL)
		return 1;	/* the replay cache survives restarts */
	if (req->issued_us < cx->started_us) {
		*why = "issued before this bridge started (no state_dir: "
		    "its replay cache died with the previous process)";
		return 0;
	}
	if (req->issued_us > now + (int64_t)CMD_FUTURE_SKEW_S * 1000000) {
		*why = "issued in the future (no state_dir: only a small "
		    "clock skew is accepted)";
		return 0;
	}
	return 1;
}

void
cmd_request(struct cmd_ctx *cx, struct vm *v, const struct mqtt_msg *msg)
{
	const struct config_takeover *tc = &cx->cf->takeover;
	struct tk_request	 req;
	struct tk_binding	 bind;
	struct cmd_run		*run;
	const char		*why = NULL, *prev = NULL;
	unsigned char		 digest[32];
	int64_t			 now = loop_wall_us();
	uint64_t		 nowms = loop_now_ms();
	enum tk_reason		 r;
	int			 hmac = tc->auth == CONFIG_AUTH_HMAC;
	char			 t[TOPIC_MAX];

	memset(&req, 0, sizeof(req));
	/* Parse first so that refusals can name the id (not trusted). */
	r = tk_parse(msg->payload, msg->len, hmac, &req, &why);
	if (msg->retained) {
		refuse(cx, v, req.id, TK_RETAINED, "retained requests are "
		    "never executed", NULL, NULL, 0);
		return;
	}
	if (!config_vm_takeover(cx->cf, v->cv)) {
		refuse(cx, v, req.id, TK_DISABLED, "takeover is disabled for "
		    "this VM", NULL, NULL, 0);
		return;
	}
	if (r != TK_OK) {
		refuse(cx, v, req.id, r, why, NULL, NULL, 0);
		return;
	}
	memset(&bind, 0, sizeof(bind));
	bind.host = v->cv->host;
	bind.vm = v->cv->name;
	bind.resp_topic = msg->response_topic;
	bind.corr = msg->correlation;
	bind.corr_len = msg->correlation_len;
	if (hmac && tk_verify_bound(tc->key, tc->key_len, &bind, &req) != TK_OK) {
		refuse(cx, v, req.id, TK_BAD_SIGNATURE, "signature does not "
		    "match", NULL, NULL, 0);
		return;
	}
	if (msg->response_topic != NULL &&
	    !reply_allowed(cx->cf, msg->response_topic)) {
		refuse(cx, v, req.id, TK_BAD_REQUEST, "response topic not "
		    "under takeover.reply_prefix", NULL, NULL, 0);
		return;
	}
	/* Authenticated from here on: answers may go to the response topic. */
	if (!fresh(cx, &req, now, &why)) {
		refuse(cx, v, req.id, TK_STALE, why, NULL, msg, 0);
		return;
	}
	tk_digest(msg->payload, msg->len, digest);
	switch (tk_cache_check(cx->cache, v->cv->host, v->cv->name, req.id,
	    digest, now, ((int64_t)tc->window_s * 2 + 1) * 1000000, &prev)) {
	case TK_SEEN_NEW:
		break;
	case TK_SEEN_DUPLICATE:
		if (prev == NULL) {
			/* Running, or restored from the store: never twice. */
			if (v->run != NULL && strcmp(v->run->id, req.id) == 0)
				return;	/* its result answers both */
			refuse(cx, v, req.id, TK_REPLAY, "id already seen "
			    "(run before a restart, or refused without an "
			    "answer); not executed again", NULL, msg, 0);
			return;
		}
		if (!answer_budget(cx)) {
			cx->count[TK_REPLAY]++;
			return;
		}
		log_info("takeover %s/%s id=%.64s: duplicate; answered with "
		    "the first result, not executed again", v->cv->host,
		    v->cv->name, req.id);
		mqtt_publish(cx->mqtt, vm_topic(t, v, "result/takeover"), prev,
		    strlen(prev), 1, MQTT_PUB_VOLATILE);
		if (msg->response_topic != NULL)
			mqtt_publish_corr(cx->mqtt, msg->response_topic, prev,
			    strlen(prev), 1, MQTT_PUB_VOLATILE,
			    msg->correlation, msg->correlation_len);
		return;
	case TK_SEEN_REPLAY:
		refuse(cx, v, req.id, TK_REPLAY, "id already used", NULL,
		    NULL, 0);
		return;
	case TK_SEEN_FULL:
		refuse(cx, v, req.id, TK_RATE_LIMITED, "too many recent "
		    "requests", NULL, msg, 0);
		return;
	}
	/* Recorded: from here on the id can never run again. */
	if (cx->store_failed) {
		refuse(cx, v, req.id, TK_STORE_ERROR, "the replay store in "
		    "state_dir could not be read at start", NULL, msg, 1);
		return;
	}
	if (cx->store != NULL && tkstore_record(cx->store, v->cv->host,
	    v->cv->name, req.id, digest, now) == -1) {
		refuse(cx, v, req.id, TK_STORE_ERROR, "the replay store in "
		    "state_dir could not record the id", NULL, msg, 1);
		return;
	}
	if (!qmp_ready(v->q)) {
		refuse(cx, v, req.id, TK_NOT_CONNECTED, "the VM's QMP "
		    "connection is down", NULL, msg, 1);
		return;
	}
	if (v->run != NULL) {
		refuse(cx, v, req.id, TK_RATE_LIMITED, "another takeover of "
		    "this VM is running", NULL, msg, 1);
		return;
	}
	if (v->tk_last_ms != 0 &&
	    nowms - v->tk_last_ms < (uint64_t)tc->min_interval_s * 1000) {
		refuse(cx, v, req.id, TK_RATE_LIMITED, "minimum interval "
		    "between takeovers not reached", NULL, msg, 1);
		return;
	}
	if (v->clash) {
		refuse(cx, v, req.id, TK_CLASH, "another bridge serves this "
		    "VM's topics too: fix the configuration", NULL, msg, 1);
		return;
	}
	if ((run = calloc(1, sizeof(*run))) == NULL) {
		refuse(cx, v, req.id, TK_RATE_LIMITED, "out of memory", NULL,
		    msg, 1);
		return;
	}
	run->cx = cx;
	run->v = v;
	run->force = req.force;
	snprintf(run->id, sizeof(run->id), "%s", req.id);
	run->accepted_us = now;
	if (msg->response_topic != NULL)
		run->resp_topic = strdup(msg->response_topic);
	if (msg->correlation != NULL && msg->correlation_len > 0 &&
	    (run->corr = malloc(msg->correlation_len)) != NULL) {
		memcpy(run->corr, msg->correlation, msg->correlation_len);
		run->corr_len = msg->correlation_len;
	}
	run->fo = failover_start(cx->loop, v->q, req.expect_mode,
	    tc->timeout_s, pair_check, failover_done, run);
	if (run->fo == NULL) {
		run_free(run);
		refuse(cx, v, req.id, TK_NOT_CONNECTED, "cannot send to QMP",
		    NULL, msg, 1);
		return;
	}
	v->run = run;
	cx->accepted++;
	log_info("takeover %s/%s id=%s: accepted (expect_mode %s%s)",
	    v->cv->host, v->cv->name, req.id,
	    req.expect_mode[0] ? req.expect_mode : "any",
	    req.force ? ", force" : "");
}

void
cmd_ignored(struct cmd_ctx *cx, const char *topic)
{
	cx->ignored++;
	if (ratelim_allow(&cx->ignored_log, loop_now_ms()))
		log_warnx("takeover: request on %.200s ignored: no such VM on "
		    "this bridge", topic);
}

void
cmd_abandon(struct cmd_ctx *cx, struct vm *v)
{
	struct cmd_run		*run = v->run;
	struct failover_result	 fr;
	char			*out;

	if (run == NULL)
		return;
	memset(&fr, 0, sizeof(fr));
	fr.sent = run->fo != NULL && failover_sent(run->fo);
	if (fr.sent && !v->tk_unconfirmed) {
		v->tk_unconfirmed = 1;	/* see failover_done() */
		(void)vm_save(v);
	}
	log_warnx("takeover %s/%s id=%s: abandoned: the bridge is shutting "
	    "down", v->cv->host, v->cv->name, run->id);
	v->tk_committed = 0;
	out = publish_result(cx, v, run->id, TK_NOT_CONNECTED, "Shutdown",
	    "the bridge shut down before the outcome was known; read the "
	    "VM's state", &fr, 1, run->resp_topic, run->corr, run->corr_len);
	free(out);
	v->run = NULL;
	run_free(run);
}

void
cmd_free_run(struct vm *v)
{
	run_free(v->run);
	v->run = NULL;
	v->tk_committed = 0;
}

int
cmd_init(struct cmd_ctx *cx, struct loop *loop, const struct config *cf,
    struct mqtt *mqtt, int64_t started_us)
{
	static const struct ratelim answers = RATELIM_INIT(
	    "takeover refusals neither answered nor logged", CMD_ANSWERS_PER_S);
	static const struct ratelim ignored = RATELIM_INIT(
	    "requests for unknown VMs not logged", 5);

	memset(cx, 0, sizeof(*cx));
	cx->loop = loop;
	cx->cf = cf;
	cx->mqtt = mqtt;
	cx->started_us = started_us;
	cx->answers = answers;
	cx->ignored_log = ignored;
	if ((cx->cache = tk_cache_new(CMD_CACHE_MAX)) == NULL) {
		log_warnx("takeover: out of memory");
		return -1;
	}
	if (cf->state_dir != NULL) {
		char	err[512];
		int	n;

		if ((cx->store = tkstore_open(cf->state_dir, err,
		    sizeof(err))) == NULL) {
			log_warnx("state_dir: %s", err);
			return -1;
		}
		n = tkstore_load(cx->store, cx->cache, loop_wall_us(),
		    ((int64_t)cf->takeover.window_s * 2 + 1) * 1000000);
		if (n == -1) {
			/* Fail closed: an id could run a second time. */
			cx->store_failed = 1;
			log_warnx("takeover: the replay store in %s could not "
			    "be read back: every takeover is refused "
			    "(store_error) until the bridge restarts with a "
			    "readable store", cf->state_dir);
		} else if (n > 0)
			log_info("takeover: %d request id(s) of the last %u s "
			    "restored: they will not run again", n,
			    cf->takeover.window_s * 2 + 1);
	}
	return 0;
}

void
cmd_cleanup(struct cmd_ctx *cx)
{
	tk_cache_free(cx->cache);
	tkstore_close(cx->store);
	cx->cache = NULL;
	cx->store = NULL;
}
