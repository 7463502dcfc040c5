/*
 * discover: VMs found as QMP unix sockets matching the configured globs
 * (discover = ( { glob = ...; host; name; peer; takeover; } )).
 *
 * Each glob's directory is watched with inotify; a change there triggers
 * a rescan DISCOVER_SETTLE_MS later (QEMU binds, listens, then sets the
 * monitor up: QEMU before 11.0 can lose a client that connects before the
 * monitor's I/O thread took the socket over, so the pause outlasts QEMU's
 * start on a machine that is not overloaded), and every DISCOVER_RESCAN_MS a rescan runs anyway, as
 * a safety net (an inotify queue overflow, a directory created after the
 * start).  A rescan lists the directory, keeps the unix sockets whose
 * file name matches the pattern (fnmatch), and names each VM from the
 * file name without its extension ("%s" in the name and peer templates);
 * a name that is not a valid topic level is skipped with a log line.
 * When the set changed, the changed callback runs; the set's entries are
 * config_vm structs owned here, each allocated on its own: an entry that
 * stays the same keeps its address across rescans, one that left is
 * freed only after the callback returned.  Loop thread only.
 */
#ifndef QMP2MQTT_DISCOVER_H
#define QMP2MQTT_DISCOVER_H

#include <stddef.h>

struct config;
struct config_vm;
struct discover;
struct loop;

#define DISCOVER_SETTLE_MS	1000
#define DISCOVER_RESCAN_MS	10000

typedef void (*discover_cb)(struct discover *, void *arg);

/* NULL: out of memory or no inotify (logged).  Scans once, no callback. */
struct discover	*discover_new(struct loop *, const struct config *,
		    discover_cb changed, void *arg);
void		 discover_free(struct discover *);	/* NULL: no-op */
/* New globs (a reloaded configuration): watches redone, rescan now. */
void		 discover_reconfigure(struct discover *, const struct config *);
/* The VMs found at the last scan. */
size_t		 discover_count(const struct discover *);
const struct config_vm *discover_get(const struct discover *, size_t i);
/* Rescans now (the callback runs if the set changed). */
void		 discover_rescan(struct discover *);
/*
 * Stops watching and rescanning (shutdown): the set, and every entry a VM
 * may point to, stays as it is until discover_free().
 */
void		 discover_stop(struct discover *);

#endif
