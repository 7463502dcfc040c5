/*
 * fleet: see fleet.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "config.h"
#include "fleet.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "topic.h"
#include "vm.h"

/*
 * (host, vm) -> VM, open addressing.  One table for the VMs served here
 * (commands, clashes, local peers), one for the remote peers they follow
 * (several VMs may follow one peer: lookups walk every match).
 */
struct vmindex {
	struct vm	**slot;
	size_t		  mask;
};

struct sub {
	char		*filter;
	int		 flags;
};

struct fleet {
	struct vm_env	*env;
	struct cmd_ctx	*cmd;
	struct vm	**vms;
	size_t		  n, cap;
	struct vmindex	  own;		/* by cv->host, cv->name */
	struct vmindex	  peers;	/* by cv->peer_host, peer_vm */
	struct vm	**remote;	/* VMs with a remote peer */
	size_t		  nremote;
	struct sub	 *subs;		/* subscribed now, sorted by filter */
	size_t		  nsubs;
	uint64_t	  seed;
};

static uint64_t
key_hash(const char *host, size_t hl, const char *vm, size_t vl)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < hl; i++)
		h = (h ^ (unsigned char)host[i]) * 0x100000001b3ULL;
	h = (h ^ '/') * 0x100000001b3ULL;
	for (size_t i = 0; i < vl; i++)
		h = (h ^ (unsigned char)vm[i]) * 0x100000001b3ULL;
	return h;
}

static int
same(const char *s, const char *p, size_t len)
{
	return s != NULL && strlen(s) == len && memcmp(s, p, len) == 0;
}

static int
streq(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Empties ix and sizes it for n entries.  0, or -1 (out of memory). */
static int
index_reset(struct vmindex *ix, size_t n)
{
	size_t cap = 16;

	while (cap < n * 2)
		cap <<= 1;
	free(ix->slot);
	if ((ix->slot = calloc(cap, sizeof(*ix->slot))) == NULL) {
		ix->mask = 0;
		return -1;
	}
	ix->mask = cap - 1;
	return 0;
}

static void
index_add(struct vmindex *ix, struct vm *v, const char *host,
    const char *name)
{
	size_t i = key_hash(host, strlen(host), name, strlen(name)) & ix->mask;

	while (ix->slot[i] != NULL)
		i = (i + 1) & ix->mask;
	ix->slot[i] = v;
}

/* fn for every VM stored under (host, vm); peer: keyed by its peer. */
static void
index_each(const struct vmindex *ix, int peer, const char *host, size_t hl,
    const char *vm, size_t vl, void (*fn)(struct vm *, void *), void *arg)
{
	if (ix->slot == NULL)
		return;
	for (size_t i = key_hash(host, hl, vm, vl) & ix->mask;
	    ix->slot[i] != NULL; i = (i + 1) & ix->mask) {
		struct vm	*v = ix->slot[i];
		const char	*h = peer ? v->cv->peer_host : v->cv->host;
		const char	*m = peer ? v->cv->peer_vm : v->cv->name;

		if (same(h, host, hl) && same(m, vm, vl))
			fn(v, arg);
	}
}

static void
first_vm(struct vm *v, void *arg)
{
	struct vm **out = arg;

	if (*out == NULL)
		*out = v;
}

struct vm *
fleet_find(const struct fleet *f, const char *host, size_t hl,
    const char *vm, size_t vl)
{
	struct vm *v = NULL;

	index_each(&f->own, 0, host, hl, vm, vl, first_vm, &v);
	return v;
}

void
fleet_each_follower(const struct fleet *f, const char *host, size_t hl,
    const char *vm, size_t vl, void (*fn)(struct vm *, void *), void *arg)
{
	index_each(&f->peers, 1, host, hl, vm, vl, fn, arg);
}

void
fleet_each_follower_host(const struct fleet *f, const char *host, size_t hl,
    void (*fn)(struct vm *, void *), void *arg)
{
	for (size_t i = 0; i < f->nremote; i++)
		if (same(f->remote[i]->cv->peer_host, host, hl))
			fn(f->remote[i], arg);
}

size_t
fleet_count(const struct fleet *f)
{
	return f->n;
}

struct vm *
fleet_vm(const struct fleet *f, size_t i)
{
	return f->vms[i];
}

struct vm *const *
fleet_vms(const struct fleet *f)
{
	return f->vms;
}

size_t
fleet_remote_count(const struct fleet *f)
{
	return f->nremote;
}

struct fleet *
fleet_new(struct vm_env *env, struct cmd_ctx *cmd)
{
	struct fleet	*f;

	if ((f = calloc(1, sizeof(*f))) == NULL) {
		log_warn("fleet_new");
		return NULL;
	}
	f->env = env;
	f->cmd = cmd;
	f->seed = (uint64_t)loop_wall_us() * 0x9e3779b97f4a7c15ULL;
	return f;
}

static void
vm_destroy(struct vm *v)
{
	cmd_free_run(v);
	vm_cleanup(v);
	free(v);
}

void
fleet_free(struct fleet *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->n; i++)
		vm_destroy(f->vms[i]);
	for (size_t i = 0; i < f->nsubs; i++)
		free(f->subs[i].filter);
	free(f->subs);
	free(f->vms);
	free(f->own.slot);
	free(f->peers.slot);
	free(f->remote);
	free(f);
}

/* Same QMP endpoint: the connection can stay. */
static int
same_endpoint(const struct config_vm *a, const struct config_vm *b)
{
	return a->addr == b->addr && streq(a->qmp, b->qmp);
}

/* --- subscriptions ----------------------------------------------- */

static int
cmp_sub(const void *a, const void *b)
{
	return strcmp(((const struct sub *)a)->filter,
	    ((const struct sub *)b)->filter);
}

static int
sub_add(struct sub **v, size_t *n, size_t *cap, const char *base,
    const char *host, const char *vm, const char *suffix, int flags)
{
	char	t[TOPIC_MAX];

	if (topic_build(t, sizeof(t), base, host, vm, suffix) == -1)
		return -1;
	if (*n == *cap) {
		size_t		 nc = *cap ? *cap * 2 : 16;
		struct sub	*nv = realloc(*v, nc * sizeof(**v));
		if (nv == NULL)
			return -1;
		*v = nv;
		*cap = nc;
	}
	if (((*v)[*n].filter = strdup(t)) == NULL)
		return -1;
	(*v)[(*n)++].flags = flags;
	return 0;
}

/*
 * Per host served here: its command topics, and its VMs' state topics
 * (live messages only, not our own: another bridge publishing there is a
 * clash).  Per remote peer: its state and availability, and its host's
 * bridge/state (retained messages wanted: they are the view).  Subscribes
 * what is new, unsubscribes what is no longer needed.  0 or -1.
 */
static int
resubscribe(struct fleet *f)
{
	const char	*base = f->env->cf->base_topic;
	struct sub	*want = NULL;
	size_t		 n = 0, cap = 0, k = 0, i, j;
	int		 rc = 0;

	for (i = 0; i < f->n && rc == 0; i++) {
		const struct config_vm *cv = f->vms[i]->cv;

		rc |= sub_add(&want, &n, &cap, base, cv->host, "+",
		    "cmd/takeover", MQTT_SUB_NO_RETAINED);
		rc |= sub_add(&want, &n, &cap, base, cv->host, "+", "state",
		    MQTT_SUB_NO_RETAINED | MQTT_SUB_NO_LOCAL);
	}
	for (i = 0; i < f->nremote && rc == 0; i++) {
		const struct config_vm *cv = f->remote[i]->cv;

		rc |= sub_add(&want, &n, &cap, base, cv->peer_host,
		    cv->peer_vm, "state", MQTT_SUB_RETAINED);
		rc |= sub_add(&want, &n, &cap, base, cv->peer_host,
		    cv->peer_vm, "availability", MQTT_SUB_RETAINED);
		rc |= sub_add(&want, &n, &cap, base, cv->peer_host, "bridge",
		    "state", MQTT_SUB_RETAINED);
	}
	if (rc != 0) {
		for (i = 0; i < n; i++)
			free(want[i].filter);
		free(want);
		log_warnx("fleet: out of memory (subscriptions)");
		return -1;
	}
	if (n > 0)
		qsort(want, n, sizeof(*want), cmp_sub);
	for (i = 0; i < n; i++) {	/* unique filters (first flags win) */
		if (k > 0 && strcmp(want[k - 1].filter, want[i].filter) == 0) {
			free(want[i].filter);
			continue;
		}
		want[k++] = want[i];
	}
	n = k;
	/* Both lists are sorted: one merge pass. */
	for (i = j = 0; i < f->nsubs || j < n; ) {
		int c = i == f->nsubs ? 1 : j == n ? -1 :
		    strcmp(f->subs[i].filter, want[j].filter);
		if (c < 0)
			mqtt_unsubscribe(f->env->mqtt, f->subs[i++].filter);
		else if (c > 0) {
			if (mqtt_subscribe(f->env->mqtt, want[j].filter, 1,
			    want[j].flags) == -1)
				rc = -1;
			j++;
		} else
			i++, j++;
	}
	for (i = 0; i < f->nsubs; i++)
		free(f->subs[i].filter);
	free(f->subs);
	f->subs = want;
	f->nsubs = n;
	return rc;
}

/* --- pairs --------------------------------------------------------- */

/*
 * Links each VM to its peer: a VM served here, or a remote one followed
 * through the broker.  A view is started afresh when the kind of link or
 * the peer changed.  0 or -1.
 */
static int
relink(struct fleet *f)
{
	size_t	nfollow = 0;
	int	rc = 0;

	for (size_t i = 0; i < f->n; i++) {
		f->vms[i]->watchers = f->vms[i]->watch_next = NULL;
		if (f->vms[i]->cv->peer_host != NULL)
			nfollow++;
	}
	free(f->remote);
	f->remote = NULL;
	f->nremote = 0;
	if (index_reset(&f->peers, nfollow) == -1 || (nfollow > 0 &&
	    (f->remote = calloc(nfollow, sizeof(*f->remote))) == NULL))
		return -1;
	for (size_t i = 0; i < f->n; i++) {
		struct vm		*v = f->vms[i], *u;
		const struct config_vm	*cv = v->cv;

		if (cv->peer_host == NULL) {
			(void)vm_set_peer(v, 0, 0);
			v->local_peer = NULL;
			continue;
		}
		u = fleet_find(f, cv->peer_host, strlen(cv->peer_host),
		    cv->peer_vm, strlen(cv->peer_vm));
		if (u == v)
			u = NULL;
		if (u != NULL) {
			if ((v->local_peer != u || v->peer == NULL) &&
			    vm_set_peer(v, 1, 1) == -1)
				rc = -1;	/* no view: takeovers refused */
			v->local_peer = u;
			v->watch_next = u->watchers;
			u->watchers = v;
			continue;
		}
		if ((v->local_peer != NULL || v->peer == NULL) &&
		    vm_set_peer(v, 1, 0) == -1)
			rc = -1;
		v->local_peer = NULL;
		f->remote[f->nremote++] = v;
		index_add(&f->peers, v, cv->peer_host, cv->peer_vm);
	}
	return rc;
}

/* --- apply --------------------------------------------------------- */

static int
grow(struct fleet *f, size_t n)
{
	struct vm **nv;

	if (n <= f->cap)
		return 0;
	if ((nv = realloc(f->vms, n * sizeof(*nv))) == NULL)
		return -1;
	f->vms = nv;
	f->cap = n;
	return 0;
}

/*
 * Before v is destroyed in the middle of fleet_apply(): no VM left may
 * reach it through the peer links (its peer's watchers list, the
 * local_peer of those watching it), which relink() only rebuilds at the
 * end.  Otherwise retiring the other half of a pair in the same pass
 * walks into the freed VM.
 */
static void
unlink_peers(struct vm *v)
{
	struct vm	**pp, *w;

	if (v->local_peer != NULL)
		for (pp = &v->local_peer->watchers; *pp != NULL;
		    pp = &(*pp)->watch_next)
			if (*pp == v) {
				*pp = v->watch_next;
				break;
			}
	for (w = v->watchers; w != NULL; w = w->watch_next)
		w->local_peer = NULL;
	v->local_peer = v->watchers = v->watch_next = NULL;
}

/* A new VM for cv, started when the bridge runs.  NULL: logged. */
static struct vm *
vm_create(struct fleet *f, const struct config_vm *cv, int started)
{
	struct vm	*v;

	if ((v = calloc(1, sizeof(*v))) == NULL) {
		log_warn("%s/%s", cv->host, cv->name);
		return NULL;
	}
	f->seed += 0x9e3779b97f4a7c15ULL;
	if (vm_init(v, f->env, cv, f->seed) == -1) {
		vm_cleanup(v);
		free(v);
		return NULL;
	}
	if (started) {
		vm_start(v, (uint64_t)f->env->cf->status_interval_s * 1000);
		if (mqtt_connected(f->env->mqtt))
			vm_publish_retained(v);
	}
	return v;
}

int
fleet_apply(struct fleet *f, const struct config_vm *const *want, size_t n,
    int started)
{
	struct vmindex	 wix = { NULL, 0 };
	struct vm	**keep;
	unsigned char	*used;
	size_t		 nkeep = 0, added = 0, removed = 0, changed = 0;
	int		 rc = 0;

	if ((used = calloc(n + 1, 1)) == NULL ||
	    (keep = calloc(f->n + n + 1, sizeof(*keep))) == NULL ||
	    index_reset(&wix, n) == -1) {
		free(used);
		log_warnx("fleet: out of memory");
		return -1;
	}
	/* The wanted set, by (host, name): the slots hold want indexes + 1. */
	for (size_t i = 0; i < n; i++) {
		size_t s = key_hash(want[i]->host, strlen(want[i]->host),
		    want[i]->name, strlen(want[i]->name)) & wix.mask;
		int dup = 0;

		for (; wix.slot[s] != NULL; s = (s + 1) & wix.mask) {
			const struct config_vm *o =
			    want[(size_t)(uintptr_t)wix.slot[s] - 1];
			if (strcmp(o->host, want[i]->host) == 0 &&
			    strcmp(o->name, want[i]->name) == 0)
				dup = 1;
		}
		if (dup) {
			used[i] = 1;	/* the first of the two wins */
			continue;
		}
		wix.slot[s] = (struct vm *)(uintptr_t)(i + 1);
	}
	/* The VMs there are: kept (maybe updated), replaced or retired. */
	for (size_t i = 0; i < f->n; i++) {
		struct vm		*v = f->vms[i];
		const struct config_vm	*cv = NULL;
		size_t			 wi = 0;

		for (size_t s = key_hash(v->cv->host, strlen(v->cv->host),
		    v->cv->name, strlen(v->cv->name)) & wix.mask;
		    wix.slot[s] != NULL; s = (s + 1) & wix.mask) {
			wi = (size_t)(uintptr_t)wix.slot[s] - 1;
			if (strcmp(want[wi]->host, v->cv->host) == 0 &&
			    strcmp(want[wi]->name, v->cv->name) == 0) {
				cv = want[wi];
				break;
			}
		}
		if (cv == NULL) {
			log_info("%s/%s: no longer served: retired (%s)",
			    v->cv->host, v->cv->name, f->env->cf->removed_clear ?
			    "retained topics cleared" : "state kept as gone");
			cmd_abandon(f->cmd, v);
			vm_retire(v, f->env->cf->removed_clear);
			unlink_peers(v);
			vm_destroy(v);
			removed++;
			continue;
		}
		used[wi] = 1;
		if (!same_endpoint(v->cv, cv)) {
			struct vm	*nv;
			uint64_t	 last_ms;

			log_info("%s/%s: QMP address now %s: reconnecting",
			    cv->host, cv->name, cv->qmp);
			cmd_abandon(f->cmd, v);
			(void)vm_save(v);
			last_ms = v->tk_last_ms;
			unlink_peers(v);
			vm_destroy(v);
			changed++;
			if ((nv = vm_create(f, cv, started)) == NULL) {
				rc = -1;
				continue;
			}
			/* Same VM, new address: takeover's min_interval_s
			 * still counts from its last heartbeat. */
			nv->tk_last_ms = last_ms;
			keep[nkeep++] = nv;
			continue;
		}
		if (vm_reconfigure(v, cv) == -1)
			rc = -1;
		keep[nkeep++] = v;
	}
	/* The new ones. */
	for (size_t i = 0; i < n; i++) {
		struct vm *v;

		if (used[i])
			continue;
		if ((v = vm_create(f, want[i], started)) == NULL) {
			rc = -1;
			continue;
		}
		keep[nkeep++] = v;
		added++;
		if (started)
			log_info("%s/%s: added (%s)", want[i]->host,
			    want[i]->name, want[i]->qmp);
	}
	free(used);
	free(wix.slot);
	if (grow(f, nkeep + 1) == -1) {
		/* Cannot happen for long: keep is as large; use it. */
		free(f->vms);
		f->vms = keep;
		f->cap = f->n + n + 1;
	} else {
		memcpy(f->vms, keep, nkeep * sizeof(*keep));
		free(keep);
	}
	f->n = nkeep;
	if (index_reset(&f->own, f->n) == -1) {
		log_warnx("fleet: out of memory (indexes)");
		return -1;
	}
	for (size_t i = 0; i < f->n; i++)
		index_add(&f->own, f->vms[i], f->vms[i]->cv->host,
		    f->vms[i]->cv->name);
	if (relink(f) == -1 || resubscribe(f) == -1)
		rc = -1;
	/* A new peer or topic shows in the state (published if changed). */
	if (started && mqtt_connected(f->env->mqtt))
		for (size_t i = 0; i < f->n; i++)
			vm_publish_state(f->vms[i]);
	if (started && (added || removed || changed))
		log_info("fleet: %zu VM(s): %zu added, %zu removed, %zu "
		    "reconnected", f->n, added, removed, changed);
	return rc;
}
