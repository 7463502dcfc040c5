/*
 * peer: what a bridge knows about the other half of a VM's COLO pair, and
 * the pair rules that decide whether a takeover of this half is safe.
 *
 * A VM entry may name its peer as peer = "HOST/VM".  The peer is served
 * by another bridge (possibly on another host) or by this one.  A remote
 * peer is followed through the broker: its retained state (mode, QMP
 * connection, liveness), its availability, and its bridge's bridge/state
 * (online, offline by Last Will or shutdown).  A local peer is fed from
 * the bridge's own VM.  The view is pure data; nothing here does I/O.
 *
 * The rules (README "Pair rules"; QEMU's behaviour in docs/FAILOVER.md):
 * a heartbeat to the secondary while its primary runs leaves both halves
 * running (split brain), and a half whose peer already took over must
 * never take over too.  Only the peer's bridge, while it is online, can
 * prove that the peer's QEMU is gone (its QMP socket refuses
 * connections); an error exit or a dropped connection proves nothing.
 */
#ifndef QMP2MQTT_PEER_H
#define QMP2MQTT_PEER_H

#include <stddef.h>
#include <json-c/json.h>

#include "colo.h"
#include "takeover.h"

enum peer_bridge { PEER_BRIDGE_UNKNOWN, PEER_BRIDGE_ONLINE,
    PEER_BRIDGE_OFFLINE };

struct peer_view {
	int		 configured;	/* the VM names a peer */
	int		 local;		/* served by this bridge */
	enum peer_bridge bridge;	/* the peer's bridge */
	int		 have_state;	/* a state payload was read */
	int		 qmp;		/* -1 unknown, 0 disconnected, 1 connected */
	int		 availability;	/* -1 unknown, 0 offline, 1 online */
	int		 running;	/* the peer's takeover sent its heartbeat
					   and has not finished, or its outcome
					   was never read (local) */
	int		 unconfirmed;	/* its state says heartbeat_unconfirmed
					   (remote) */
	char		 mode[COLO_ENUM_MAX + 1];	/* "" unknown */
	char		 last_mode[COLO_ENUM_MAX + 1];
	char		 liveness[16];	/* "alive", "gone", "unreachable", "" */
};

/* A view of nothing yet; configured/local as given. */
void		 peer_init(struct peer_view *, int configured, int local);

/*
 * Applies a message from the peer's topics; each returns 1 when the view
 * changed, 0 when not, -1 when the payload was not understood (the view
 * is unchanged).  An empty payload (a cleared retained topic) forgets
 * what that topic said.
 *   state:        <base>/<host>/<vm>/state (JSON)
 *   availability: <base>/<host>/<vm>/availability ("online"/"offline")
 *   bridge:       <base>/<host>/bridge/state (JSON, "state")
 */
int		 peer_on_state(struct peer_view *, const void *, size_t);
int		 peer_on_availability(struct peer_view *, const void *, size_t);
int		 peer_on_bridge(struct peer_view *, const void *, size_t);

/* Sets a local peer's view from its VM.  Returns 1 if it changed. */
int		 peer_set_local(struct peer_view *, const char *mode,
		    const char *last_mode, const char *liveness, int connected,
		    int running);

/*
 * The "peer" object of the VM's state payload (new reference), NULL when
 * no peer is configured or memory ran out.
 */
json_object	*peer_json(const struct peer_view *, const char *host,
		    const char *vm);

/*
 * The pair rules.  own_mode is this half's COLO mode as just read
 * (NULL when unknown); a NULL view is a VM without a peer.  Returns
 * TK_OK, or TK_PEER_ALIVE, TK_PEER_UNKNOWN or TK_PEER_TOOK_OVER with
 * *why set to a static description.
 */
enum tk_reason	 peer_check(const struct peer_view *, const char *own_mode,
		    const char **why);

#endif
