/*
 * bridge: the daemon's core, wiring QMP connections to MQTT topics.
 *
 * One struct vm per configured endpoint owns a qmp connection and the VM's
 * published state (mode, last exit, availability, sequence counter).  The
 * bridge turns QMP readiness, COLO_EXIT events and query-colo-status
 * replies into the topics documented in README.md, republishes every
 * retained topic on each broker (re)connect, and publishes its own
 * bridge/state (with a Last Will) and bridge/stats.
 */
#ifndef QMP2MQTT_BRIDGE_H
#define QMP2MQTT_BRIDGE_H

#include <stddef.h>

struct loop;
struct config;
struct bridge;

#define QMP2MQTT_VERSION	"0.1.0"

/*
 * Creates the bridge and all its connections (none started).  vm_limit:
 * how many VMs the file descriptor limit leaves room for (SIZE_MAX: no
 * limit); the listed VMs must fit (the caller checked), discovered ones
 * beyond it are left out, logged and reported as the problem "vm_limit",
 * and a reload listing more is refused.  NULL: logged.
 */
struct bridge	*bridge_new(struct loop *, const struct config *,
		    size_t vm_limit);
/* Starts connecting to the broker and every QMP endpoint.  0 or -1. */
int		 bridge_start(struct bridge *);
/*
 * Applies a reloaded configuration (already parsed and valid; the caller
 * frees the old one after a success, the new one after a failure).  VMs
 * are added, removed or changed without touching the unchanged ones;
 * changed broker settings mean one clean reconnect.  Settings that cannot
 * change while running (state_dir, buffer sizes) refuse the whole reload.
 * Returns 0, or -1 (logged and published as bridge/state's config_error;
 * the running configuration stays).
 */
int		 bridge_reload(struct bridge *, const struct config *);
/* A reload that failed before bridge_reload (NULL: clears it). */
void		 bridge_config_error(struct bridge *, const char *err);
/* Publishes the stats topic now. */
void		 bridge_publish_stats(struct bridge *);
/*
 * Clean stop: VMs offline, bridge/state offline, queued events flushed
 * (waits at most timeout_ms), broker disconnected.
 */
void		 bridge_shutdown(struct bridge *, unsigned timeout_ms);
void		 bridge_free(struct bridge *);	/* NULL is a no-op */

#endif
