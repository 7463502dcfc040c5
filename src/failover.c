/*
 * failover: see failover.h.
 *
 * Lifetime: a failover may be freed while a QMP command of its own is
 * still pending (bridge shutdown).  It then only marks itself cancelled;
 * the command's callback, which qmp guarantees to call exactly once (with
 * NULL when the connection goes), frees it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failover.h"
#include "log.h"
#include "loop.h"
#include "qmp.h"

enum fstep { F_PRECHECK, F_HEARTBEAT, F_POLL, F_DONE };

struct failover {
	struct loop		*loop;
	struct qmp		*q;
	failover_done_cb	 cb;
	failover_check_cb	 check;
	void			*arg;
	enum fstep		 step;
	char			 expect[16];
	uint64_t		 deadline;
	struct loop_timer	*timer;
	int			 pending;	/* our QMP commands in flight */
	int			 cancelled;
	struct failover_result	 res;
	char			 cls[64];
	char			 desc[256];
};

static void	reply_cb(struct qmp *, json_object *, void *);

static void
destroy(struct failover *f)
{
	loop_timer_free(f->timer);
	free(f);
}

static void
finish(struct failover *f, enum tk_reason r, const char *cls,
    const char *desc)
{
	f->step = F_DONE;
	loop_timer_disarm(f->timer);
	f->res.reason = r;
	if (cls != NULL) {
		snprintf(f->cls, sizeof(f->cls), "%s", cls);
		snprintf(f->desc, sizeof(f->desc), "%s", desc ? desc : "");
		f->res.err_class = f->cls;
		f->res.err_desc = f->desc;
	}
	if (!f->cancelled)
		f->cb(f, &f->res, f->arg);
}

static int
fo_send(struct failover *f, const char *cmd)
{
	if (qmp_command(f->q, cmd, NULL, reply_cb, f) == -1)
		return -1;
	f->pending++;
	return 0;
}

/* Stores a query-colo-status reply; returns 0, or -1 if it has no mode. */
static int
read_status(struct failover *f, json_object *reply)
{
	json_object		*ret;
	struct colo_status	 cs;

	if (!json_object_object_get_ex(reply, "return", &ret) ||
	    colo_parse_status(ret, &cs) == -1)
		return -1;
	f->res.have_colo = 1;
	snprintf(f->res.mode, sizeof(f->res.mode), "%s", cs.mode);
	snprintf(f->res.last_mode, sizeof(f->res.last_mode), "%s",
	    cs.last_mode ? cs.last_mode : "");
	snprintf(f->res.reason_str, sizeof(f->res.reason_str), "%s",
	    cs.reason ? cs.reason : "");
	return 0;
}

/* Maps QEMU's refusal of x-colo-lost-heartbeat. */
static enum tk_reason
map_refusal(const char *cls, const char *desc)
{
	if (strcmp(cls, "GenericError") == 0 &&
	    (strstr(desc, "feature 'colo' is not enabled") != NULL ||
	    strstr(desc, "not in COLO mode") != NULL))
		return TK_NOT_IN_COLO;
	return TK_QEMU_ERROR;	/* incl. "failover is already activ(at)ed" */
}

static void
poll_timer(struct loop *l, struct loop_timer *t, void *arg)
{
	struct failover	*f = arg;

	if (f->step != F_POLL)
		return;
	if (fo_send(f, "query-colo-status") == -1)
		finish(f, TK_NOT_CONNECTED, "ConnectionLost",
		    "no reply from QMP (connection lost)");
}

static void
reply_cb(struct qmp *q, json_object *reply, void *arg)
{
	struct failover	*f = arg;
	const char	*cls, *desc;
	uint64_t	 now;

	f->pending--;
	if (f->cancelled || f->step == F_DONE) {
		if (f->cancelled && f->pending == 0)
			destroy(f);
		return;
	}
	if (reply == NULL) {
		finish(f, TK_NOT_CONNECTED, "ConnectionLost", f->res.sent ?
		    "no QMP reply (connection lost or command timed out) after "
		    "x-colo-lost-heartbeat was sent" :
		    "no QMP reply (connection lost or command timed out) before "
		    "x-colo-lost-heartbeat was sent");
		return;
	}
	cls = qmp_error_class(reply, &desc);
	switch (f->step) {
	case F_PRECHECK:
		if (cls != NULL && strcmp(cls, "CommandNotFound") != 0) {
			finish(f, TK_QEMU_ERROR, cls, desc);
			return;
		}
		if (cls == NULL && read_status(f, reply) == -1) {
			finish(f, TK_QEMU_ERROR, "BadReply",
			    "unexpected query-colo-status reply");
			return;
		}
		if (cls != NULL && f->expect[0] != '\0') {
			/* No query-colo-status: a precondition cannot hold. */
			finish(f, TK_PRECONDITION_FAILED, cls, desc);
			return;
		}
		if (f->res.have_colo && strcmp(f->res.mode, "none") == 0) {
			finish(f, TK_NOT_IN_COLO, NULL, NULL);
			return;
		}
		if (f->expect[0] != '\0' && strcmp(f->res.mode, f->expect) != 0) {
			finish(f, TK_PRECONDITION_FAILED, NULL, NULL);
			return;
		}
		if (f->check != NULL) {
			const char	*why = NULL;
			enum tk_reason	 r = f->check(f->res.have_colo ?
			    f->res.mode : NULL, &why, f->arg);
			if (r != TK_OK) {
				finish(f, r, tk_reason_name(r), why);
				return;
			}
		}
		f->step = F_HEARTBEAT;
		if (fo_send(f, "x-colo-lost-heartbeat") == -1) {
			finish(f, TK_NOT_CONNECTED, "ConnectionLost",
			    "QMP connection lost before x-colo-lost-heartbeat "
			    "was sent");
			return;
		}
		f->res.sent = 1;
		return;
	case F_HEARTBEAT:
		if (cls != NULL) {
			f->res.rejected = 1;
			finish(f, map_refusal(cls, desc), cls, desc);
			return;
		}
		f->step = F_POLL;
		if (!f->res.have_colo) {
			/* Old QEMU: nothing to read back. */
			finish(f, TK_OK, NULL, NULL);
			return;
		}
		if (fo_send(f, "query-colo-status") == -1)
			finish(f, TK_NOT_CONNECTED, "ConnectionLost",
			    "QMP connection lost after x-colo-lost-heartbeat "
			    "was sent");
		return;
	case F_POLL:
		if (cls == NULL && read_status(f, reply) == 0 &&
		    strcmp(f->res.mode, "none") == 0) {
			finish(f, TK_OK, NULL, NULL);
			return;
		}
		now = loop_now_ms();
		if (now >= f->deadline) {
			finish(f, TK_TIMEOUT, "Timeout", "COLO mode did not "
			    "become none in time");
			return;
		}
		loop_timer_arm(f->timer, FAILOVER_POLL_MS);
		return;
	case F_DONE:
		return;
	}
}

struct failover *
failover_start(struct loop *loop, struct qmp *q, const char *expect_mode,
    unsigned timeout_s, failover_check_cb check, failover_done_cb cb,
    void *arg)
{
	struct failover	*f;

	if ((f = calloc(1, sizeof(*f))) == NULL) {
		log_warn("failover_start");
		return NULL;
	}
	f->loop = loop;
	f->q = q;
	f->cb = cb;
	f->check = check;
	f->arg = arg;
	f->step = F_PRECHECK;
	snprintf(f->expect, sizeof(f->expect), "%s", expect_mode);
	f->deadline = loop_now_ms() + (uint64_t)timeout_s * 1000;
	if ((f->timer = loop_timer_new(loop, poll_timer, f)) == NULL ||
	    fo_send(f, "query-colo-status") == -1) {
		destroy(f);
		return NULL;
	}
	return f;
}

int
failover_sent(const struct failover *f)
{
	return f->res.sent;
}

void
failover_free(struct failover *f)
{
	if (f == NULL)
		return;
	f->cancelled = 1;
	loop_timer_disarm(f->timer);
	if (f->pending == 0)
		destroy(f);
}
