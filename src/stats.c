/*
 * stats: see stats.h.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "spool.h"
#include "stats.h"
#include "vm.h"

/* A growing string for the per-VM part. */
struct sbuf {
	char	*p;
	size_t	 len, cap;
	int	 oom;
};

static void
sb_add(struct sbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
sb_add(struct sbuf *sb, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	if (sb->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(sb->p + sb->len, sb->cap - sb->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			sb->oom = 1;
			return;
		}
		if ((size_t)n < sb->cap - sb->len) {
			sb->len += (size_t)n;
			return;
		}
		size_t	 ncap = sb->cap * 2 + (size_t)n;
		char	*np = realloc(sb->p, ncap);
		if (np == NULL) {
			sb->oom = 1;
			return;
		}
		sb->p = np;
		sb->cap = ncap;
	}
}

/* Appends s as a JSON string (names are valid UTF-8 without controls). */
static void
sb_str(struct sbuf *sb, const char *s)
{
	sb_add(sb, "\"");
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			sb_add(sb, "\\%c", *s);
		else
			sb_add(sb, "%c", *s);
	}
	sb_add(sb, "\"");
}

static void
add_u64(json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

void
stats_publish(const struct stats_src *src)
{
	const struct mqtt_stats	*ms = mqtt_stats(src->mqtt);
	const struct vm_env	*env = src->env;
	const struct cmd_ctx	*cx = src->cmd;
	const struct config	*cf = env->cf;
	json_object		*o, *tot, *cmd, *by, *warn;
	uint64_t		 ev = 0, inv = 0, ovs = 0, unx = 0, rec = 0;
	uint64_t		 tmo = 0, ready = 0, refused = 0;
	struct sbuf		 sb = { NULL, 0, 0, 0 };
	const char		*head;
	size_t			 hlen;

	if ((sb.p = malloc(sb.cap = 4096)) == NULL)
		return;
	sb_add(&sb, ",\"vms\":{");
	for (size_t i = 0; i < src->nvms; i++) {
		const struct vm		*v = src->vms[i];
		const struct qmp_stats	*qs = qmp_stats(v->q);

		ev += v->events_in;
		inv += qs->invalid;
		ovs += qs->oversized;
		unx += qs->unexpected;
		rec += qs->reconnects;
		tmo += qs->timeouts;
		ready += qmp_ready(v->q) ? 1 : 0;
		if (i > 0)
			sb_add(&sb, ",");
		sb_str(&sb, v->cv->name);
		sb_add(&sb, ":{\"events_in\":%" PRIu64 ",\"colo_exits\":%" PRIu64
		    ",\"malformed\":%" PRIu64 ",\"invalid\":%" PRIu64
		    ",\"oversized\":%" PRIu64 ",\"unexpected\":%" PRIu64
		    ",\"reconnects\":%" PRIu64 ",\"timeouts\":%" PRIu64
		    ",\"ready\":%s%s}", v->events_in, v->exits, v->malformed,
		    qs->invalid, qs->oversized, qs->unexpected, qs->reconnects,
		    qs->timeouts, qmp_ready(v->q) ? "true" : "false",
		    v->clash ? ",\"clash\":true" : "");
	}
	sb_add(&sb, "}}");
	if (sb.oom || (o = json_object_new_object()) == NULL) {
		log_warnx("stats: out of memory");
		free(sb.p);
		return;
	}
	tot = json_object_new_object();
	add_u64(tot, "events_in", ev);
	add_u64(tot, "events_out", env->events_out);
	add_u64(tot, "malformed", env->malformed);
	add_u64(tot, "invalid", inv);
	add_u64(tot, "oversized", ovs);
	add_u64(tot, "unexpected", unx);
	add_u64(tot, "reconnects", rec);
	add_u64(tot, "timeouts", tmo);
	add_u64(tot, "dropped", ms->dropped);
	add_u64(tot, "buffered", ms->buffered);
	add_u64(tot, "inflight", ms->inflight);
	add_u64(tot, "published", ms->published);
	add_u64(tot, "resent", ms->resent);
	add_u64(tot, "mqtt_connects", ms->connects);
	add_u64(tot, "vms_ready", ready);
	add_u64(tot, "input_buffered", env->in_buffered);
	add_u64(tot, "mqtt_in_dropped", ms->received_dropped);
	add_u64(tot, "mqtt_refused", ms->refused);
	add_u64(tot, "mqtt_coalesced", ms->coalesced);
	add_u64(tot, "clashes", env->clashes);
	add_u64(tot, "spool_errors", src->spool ? spool_errors(src->spool) : 0);
	add_u64(tot, "spooled", src->spool ? spool_live(src->spool) : 0);
	add_u64(tot, "state_errors", env->state_errors);
	cmd = json_object_new_object();
	by = json_object_new_object();
	for (int r = 1; r < TK_NREASONS; r++) {
		add_u64(by, tk_reason_name((enum tk_reason)r), cx->count[r]);
		refused += cx->count[r];
	}
	add_u64(cmd, "accepted", cx->accepted);
	add_u64(cmd, "ok", cx->count[TK_OK]);
	add_u64(cmd, "refused", refused);
	add_u64(cmd, "ignored", cx->ignored);
	add_u64(cmd, "forced", cx->forced);
	add_u64(cmd, "unanswered", cx->unanswered);
	add_u64(cmd, "sign_errors", cx->sign_errors);
	json_object_object_add(cmd, "by_reason", by);
	warn = json_object_new_array();
	for (size_t i = 0; i < cf->nwarnings; i++)
		json_object_array_add(warn,
		    json_object_new_string(cf->warnings[i]));
	json_object_object_add(o, "schema", json_object_new_int(1));
	json_object_object_add(o, "host", json_object_new_string(cf->host));
	json_object_object_add(o, "bridge",
	    json_object_new_string(cf->bridge_id));
	add_u64(o, "uptime_s", (loop_now_ms() - src->started_ms) / 1000);
	json_object_object_add(o, "warnings", warn);
	json_object_object_add(o, "totals", tot);
	json_object_object_add(o, "commands", cmd);
	log_debug("stats: events_in=%" PRIu64 " events_out=%" PRIu64
	    " invalid=%" PRIu64 " oversized=%" PRIu64 " dropped=%" PRIu64
	    " buffered=%zu", ev, env->events_out, inv, ovs, ms->dropped,
	    ms->buffered);
	/* Splice: the object's text without its closing brace, then vms. */
	head = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &hlen);
	if (head != NULL && hlen > 1) {
		char *all = malloc(hlen - 1 + sb.len + 1);
		if (all != NULL) {
			memcpy(all, head, hlen - 1);
			memcpy(all + hlen - 1, sb.p, sb.len);
			mqtt_publish(src->mqtt, src->topic, all,
			    hlen - 1 + sb.len, 1,
			    MQTT_PUB_RETAIN | MQTT_PUB_STATE);
			free(all);
		}
	}
	json_object_put(o);
	free(sb.p);
}
