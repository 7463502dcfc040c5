/*
 * fleet: the set of VMs one bridge serves, and what follows from it: the
 * (host, vm) index, the pair links (a peer served here, or a remote peer
 * followed through the broker) and the broker subscriptions they need.
 *
 * fleet_apply() turns the set into a wanted one (the configuration's VMs
 * plus the discovered ones) and touches only what changed: a VM whose
 * QMP address is the same keeps its connection and state (its settings,
 * peer and topics are updated in place); a VM that left is retired
 * (availability offline, state kept as "gone" or cleared); a new one is
 * created and started.  Each VM is allocated on its own, so pointers to
 * it stay valid until it is removed.  Loop thread only.
 */
#ifndef QMP2MQTT_FLEET_H
#define QMP2MQTT_FLEET_H

#include <stddef.h>

struct cmd_ctx;
struct config_vm;
struct fleet;
struct vm;
struct vm_env;

/* An empty fleet.  NULL: out of memory (logged). */
struct fleet	*fleet_new(struct vm_env *, struct cmd_ctx *);
/* Frees every VM (no retirement: the bridge is going away).  NULL: no-op. */
void		 fleet_free(struct fleet *);

/*
 * Makes the fleet the n VMs of want (each (host, name) once; pointers kept
 * by the VMs until the next apply).  started: the bridge runs, so new VMs
 * start connecting at once.  Returns 0, or -1 when something could not
 * be set up (logged; the VMs that could, are).
 */
int		 fleet_apply(struct fleet *, const struct config_vm *const *want,
		    size_t n, int started);

size_t		 fleet_count(const struct fleet *);
struct vm	*fleet_vm(const struct fleet *, size_t i);	/* 0 <= i < count */
struct vm *const *fleet_vms(const struct fleet *);
size_t		 fleet_remote_count(const struct fleet *);
/* The VM served here as (host, vm) (lengths: not NUL-terminated), or NULL. */
struct vm	*fleet_find(const struct fleet *, const char *host, size_t hl,
		    const char *vm, size_t vl);
/* Calls fn for every VM whose remote peer is (host, vm). */
void		 fleet_each_follower(const struct fleet *, const char *host,
		    size_t hl, const char *vm, size_t vl,
		    void (*fn)(struct vm *, void *), void *arg);
/* Calls fn for every VM whose remote peer is on host. */
void		 fleet_each_follower_host(const struct fleet *,
		    const char *host, size_t hl,
		    void (*fn)(struct vm *, void *), void *arg);

#endif
