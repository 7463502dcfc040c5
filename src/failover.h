/*
 * failover: runs one accepted takeover on one VM's QMP connection.
 *
 *   1. query-colo-status: refuse with not_in_colo when the VM is not in
 *      COLO, with precondition_failed when expect_mode does not match,
 *      and with whatever the check callback says (the pair rules);
 *   2. x-colo-lost-heartbeat: its {} reply only means "scheduled";
 *      QEMU's refusals map to not_in_colo or qemu_error (by class, then
 *      by desc: "The feature 'colo' is not enabled" before 8.0, "VM is
 *      not in COLO mode" from 8.0);
 *   3. query-colo-status every FAILOVER_POLL_MS until mode is "none"
 *      (done) or the timeout passes: after a COLO_EXIT with reason error
 *      the command emits no further event, so the outcome is read, never
 *      waited for as an event.
 * The done callback is called exactly once, unless failover_free() comes
 * first.  Requests are checked (auth, replay, rate) before they get here.
 */
#ifndef QMP2MQTT_FAILOVER_H
#define QMP2MQTT_FAILOVER_H

#include "colo.h"
#include "takeover.h"

#define FAILOVER_POLL_MS	100

struct loop;
struct qmp;
struct failover;

struct failover_result {
	enum tk_reason	 reason;	/* TK_OK, TK_NOT_IN_COLO, ... */
	const char	*err_class;	/* NULL when no error */
	const char	*err_desc;
	int		 have_colo;	/* colo below was read */
	char		 mode[COLO_ENUM_MAX + 1];
	char		 last_mode[COLO_ENUM_MAX + 1];
	char		 reason_str[COLO_ENUM_MAX + 1];
	int		 sent;		/* x-colo-lost-heartbeat was sent */
	int		 rejected;	/* QEMU answered it with an error: it
					   did not take effect */
};

typedef void (*failover_done_cb)(struct failover *,
    const struct failover_result *, void *arg);

/*
 * The last word before x-colo-lost-heartbeat, called with the mode just
 * read by query-colo-status (NULL when this QEMU cannot tell): returns
 * TK_OK to go on, or the refusal with *why set to a static description.
 * Nothing runs between this call and the command being sent, so the
 * decision and the act see the same state.
 */
typedef enum tk_reason (*failover_check_cb)(const char *mode,
    const char **why, void *arg);

/*
 * Starts a failover; expect_mode "" for none; check may be NULL.  Returns
 * the running failover, or NULL when the first command could not be sent
 * (the VM is not connected).
 */
struct failover	*failover_start(struct loop *, struct qmp *,
		    const char *expect_mode, unsigned timeout_s,
		    failover_check_cb check, failover_done_cb, void *arg);
/* Cancels (no callback afterwards) and frees.  NULL is a no-op. */
void		 failover_free(struct failover *);
/* 1 once x-colo-lost-heartbeat was sent (it may have taken effect). */
int		 failover_sent(const struct failover *);

#endif
