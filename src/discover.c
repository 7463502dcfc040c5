/*
 * discover: see discover.h.
 */
#include <sys/inotify.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "discover.h"
#include "log.h"
#include "loop.h"
#include "ratelim.h"
#include "topic.h"

struct watch {
	int		 wd;		/* -1: not watched (yet) */
	char		*dir;
};

struct discover {
	struct loop		*loop;
	const struct config	*cf;
	discover_cb		 changed;
	void			*arg;
	int			 fd;		/* inotify */
	struct watch		*w;
	size_t			 nw;
	struct loop_timer	*settle;
	struct loop_timer	*rescan;
	struct config_vm	**vm;		/* the current set */
	size_t			 n;
	struct ratelim		 log;
	int			 stopped;	/* discover_stop() */
};

static void
entry_free(struct config_vm *v)
{
	if (v == NULL)
		return;
	free(v->name);
	free(v->host);
	free(v->qmp);
	free(v->peer_host);
	free(v->peer_vm);
	free(v);
}

/* t with "%s" replaced by stem; NULL when out of memory. */
static char *
expand(const char *t, const char *stem)
{
	const char	*p = strstr(t, "%s");
	char		*out;
	size_t		 len;

	if (p == NULL)
		return strdup(t);
	len = strlen(t) - 2 + strlen(stem) + 1;
	if ((out = malloc(len)) == NULL)
		return NULL;
	snprintf(out, len, "%.*s%s%s", (int)(p - t), t, stem, p + 2);
	return out;
}

/*
 * The VM for socket path found by d, or NULL (out of memory, or a name
 * that cannot be a topic level: logged, within the budget).
 */
static struct config_vm *
entry_new(struct discover *ds, const struct config_discover *d,
    const char *dir, const char *file)
{
	struct config_vm	*v;
	char			*stem, *dot, *peer = NULL, *slash;
	const char		*why = NULL;
	size_t			 plen = strlen(dir) + 1 + strlen(file) + 1;

	if ((v = calloc(1, sizeof(*v))) == NULL || (stem = strdup(file)) ==
	    NULL) {
		free(v);
		return NULL;
	}
	if ((dot = strrchr(stem, '.')) != NULL && dot != stem)
		*dot = '\0';
	v->takeover = d->takeover;
	v->line = d->line;
	v->addr = CONFIG_ADDR_UNIX;
	v->host = strdup(d->host);
	v->name = expand(d->name, stem);
	v->qmp = malloc(plen + 5);
	if (d->peer != NULL)
		peer = expand(d->peer, stem);
	free(stem);
	if (v->host == NULL || v->name == NULL || v->qmp == NULL ||
	    (d->peer != NULL && peer == NULL))
		goto fail;
	snprintf(v->qmp, plen + 5, "unix:%s/%s", strcmp(dir, "/") ? dir : "",
	    file);
	v->path = v->qmp + 5;
	if (strlen(v->path) >= 108) {
		why = "socket path too long";
		goto fail;
	}
	if ((why = topic_level_check(v->name)) != NULL ||
	    (strcmp(v->name, "bridge") == 0 && (why = "reserved name")))
		goto fail;
	if (peer != NULL) {
		slash = strchr(peer, '/');
		v->peer_host = strndup(peer, (size_t)(slash - peer));
		v->peer_vm = strdup(slash + 1);
		if (v->peer_host == NULL || v->peer_vm == NULL)
			goto fail;
		if ((why = topic_level_check(v->peer_host)) != NULL ||
		    (why = topic_level_check(v->peer_vm)) != NULL)
			goto fail;
		free(peer);
	}
	return v;
fail:
	if (why != NULL && ratelim_allow(&ds->log, loop_now_ms()))
		log_warnx("discover: %s/%s skipped: VM name \"%s\" (peer "
		    "\"%s\"): %s", dir, file, v->name ? v->name : "?",
		    peer ? peer : "-", why);
	free(peer);
	entry_free(v);
	return NULL;
}

static int
same_entry(const struct config_vm *a, const struct config_vm *b)
{
#define SAME(x) ((a->x == NULL && b->x == NULL) || (a->x != NULL && \
	b->x != NULL && strcmp(a->x, b->x) == 0))
	return SAME(host) && SAME(name) && SAME(qmp) && SAME(peer_host) &&
	    SAME(peer_vm) && a->takeover == b->takeover;
#undef SAME
}

static int
add(struct config_vm ***v, size_t *n, size_t *cap, struct config_vm *e)
{
	if (*n == *cap) {
		size_t			 nc = *cap ? *cap * 2 : 16;
		struct config_vm	**nv = realloc(*v, nc * sizeof(**v));
		if (nv == NULL)
			return -1;
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = e;
	return 0;
}

/* Lists one configured glob's matching unix sockets into the new set. */
static void
scan_one(struct discover *ds, const struct config_discover *d,
    struct config_vm ***nv, size_t *nn, size_t *cap)
{
	DIR		*dir;
	struct dirent	*de;
	struct stat	 st;
	char		 path[4096];

	if ((dir = opendir(d->dir)) == NULL) {
		if (errno != ENOENT && ratelim_allow(&ds->log, loop_now_ms()))
			log_warn("discover: %s", d->dir);
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		struct config_vm *e;
		int		  dup = 0;

		if (fnmatch(d->pattern, de->d_name, FNM_PERIOD) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", d->dir, de->d_name);
		if (lstat(path, &st) == -1 || !S_ISSOCK(st.st_mode))
			continue;
		if ((e = entry_new(ds, d, d->dir, de->d_name)) == NULL)
			continue;
		for (size_t i = 0; i < *nn && !dup; i++)
			dup = strcmp((*nv)[i]->host, e->host) == 0 &&
			    strcmp((*nv)[i]->name, e->name) == 0;
		if (dup || add(nv, nn, cap, e) == -1) {
			if (dup && ratelim_allow(&ds->log, loop_now_ms()))
				log_warnx("discover: %s: %s/%s found twice; "
				    "the first one is kept", path, e->host,
				    e->name);
			entry_free(e);
		}
	}
	closedir(dir);
}

void
discover_rescan(struct discover *ds)
{
	struct config_vm	**nv = NULL, **old = ds->vm;
	size_t			  nn = 0, cap = 0, nold = ds->n;
	int			  changed = 0;

	if (ds->stopped)
		return;

	for (size_t i = 0; i < ds->cf->ndiscover; i++)
		scan_one(ds, &ds->cf->discover[i], &nv, &nn, &cap);
	/* Keep the address of every entry that did not change. */
	for (size_t i = 0; i < nn; i++) {
		size_t j;

		for (j = 0; j < nold; j++)
			if (old[j] != NULL && same_entry(old[j], nv[i]))
				break;
		if (j < nold) {
			entry_free(nv[i]);
			nv[i] = old[j];
			old[j] = NULL;
		} else
			changed = 1;
	}
	for (size_t j = 0; j < nold; j++)
		if (old[j] != NULL)
			changed = 1;
	ds->vm = nv;
	ds->n = nn;
	if (changed && ds->changed != NULL)
		ds->changed(ds, ds->arg);
	for (size_t j = 0; j < nold; j++)
		entry_free(old[j]);
	free(old);
}

static void
settle_tick(struct loop *l, struct loop_timer *t, void *arg)
{
	discover_rescan(arg);
}

static void
rescan_tick(struct loop *l, struct loop_timer *t, void *arg)
{
	struct discover *ds = arg;

	/* Watch directories that appeared since. */
	for (size_t i = 0; i < ds->nw; i++)
		if (ds->w[i].wd == -1 && ds->fd != -1)
			ds->w[i].wd = inotify_add_watch(ds->fd, ds->w[i].dir,
			    IN_CREATE | IN_DELETE | IN_MOVED_FROM |
			    IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF |
			    IN_MOVE_SELF | IN_ONLYDIR);
	discover_rescan(ds);
	loop_timer_arm(t, DISCOVER_RESCAN_MS);
}

/* inotify: something changed in a watched directory; rescan soon. */
static void
on_inotify(struct loop *l, int fd, uint32_t events, void *arg)
{
	struct discover	*ds = arg;
	char		 buf[8192]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t		 n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n; ) {
			struct inotify_event *ev = (struct inotify_event *)p;

			if (ev->mask & (IN_IGNORED | IN_DELETE_SELF |
			    IN_MOVE_SELF))
				for (size_t i = 0; i < ds->nw; i++)
					if (ds->w[i].wd == ev->wd)
						ds->w[i].wd = -1;
			p += sizeof(*ev) + ev->len;
		}
	}
	if (!loop_timer_armed(ds->settle))
		loop_timer_arm(ds->settle, DISCOVER_SETTLE_MS);
}

static void
unwatch(struct discover *ds)
{
	for (size_t i = 0; i < ds->nw; i++) {
		if (ds->w[i].wd != -1 && ds->fd != -1)
			(void)inotify_rm_watch(ds->fd, ds->w[i].wd);
		free(ds->w[i].dir);
	}
	free(ds->w);
	ds->w = NULL;
	ds->nw = 0;
}

/* One watch per distinct directory of the configured globs. */
static void
watch(struct discover *ds)
{
	const struct config *cf = ds->cf;

	if (cf->ndiscover == 0 ||
	    (ds->w = calloc(cf->ndiscover, sizeof(*ds->w))) == NULL)
		return;
	for (size_t i = 0; i < cf->ndiscover; i++) {
		size_t j;

		for (j = 0; j < ds->nw; j++)
			if (strcmp(ds->w[j].dir, cf->discover[i].dir) == 0)
				break;
		if (j < ds->nw || (ds->w[ds->nw].dir =
		    strdup(cf->discover[i].dir)) == NULL)
			continue;
		ds->w[ds->nw].wd = ds->fd == -1 ? -1 :
		    inotify_add_watch(ds->fd, cf->discover[i].dir, IN_CREATE |
		    IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB |
		    IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
		if (ds->w[ds->nw].wd == -1)
			log_info("discover: %s not watched yet (%s); rescanned "
			    "every %d s", cf->discover[i].dir, strerror(errno),
			    DISCOVER_RESCAN_MS / 1000);
		ds->nw++;
	}
}

struct discover *
discover_new(struct loop *loop, const struct config *cf, discover_cb changed,
    void *arg)
{
	struct discover		*ds;
	static const struct ratelim rl = RATELIM_INIT(
	    "discovery line(s) not logged", 5);

	if ((ds = calloc(1, sizeof(*ds))) == NULL) {
		log_warn("discover_new");
		return NULL;
	}
	ds->loop = loop;
	ds->cf = cf;
	ds->log = rl;
	if ((ds->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1)
		log_warn("discover: inotify (rescanning every %d s only)",
		    DISCOVER_RESCAN_MS / 1000);
	if ((ds->settle = loop_timer_new(loop, settle_tick, ds)) == NULL ||
	    (ds->rescan = loop_timer_new(loop, rescan_tick, ds)) == NULL ||
	    (ds->fd != -1 && loop_fd_add(loop, ds->fd, EPOLLIN, on_inotify,
	    ds) == -1)) {
		discover_free(ds);
		return NULL;
	}
	watch(ds);
	discover_rescan(ds);	/* no callback yet: set before use */
	ds->changed = changed;
	ds->arg = arg;
	loop_timer_arm(ds->rescan, DISCOVER_RESCAN_MS);
	return ds;
}

void
discover_reconfigure(struct discover *ds, const struct config *cf)
{
	unwatch(ds);
	ds->cf = cf;
	watch(ds);
	discover_rescan(ds);
}

void
discover_stop(struct discover *ds)
{
	if (ds == NULL)
		return;
	loop_timer_disarm(ds->settle);
	loop_timer_disarm(ds->rescan);
	unwatch(ds);
	if (ds->fd != -1) {
		loop_fd_del(ds->loop, ds->fd);
		close(ds->fd);
		ds->fd = -1;
	}
	ds->stopped = 1;
}

size_t
discover_count(const struct discover *ds)
{
	return ds->n;
}

const struct config_vm *
discover_get(const struct discover *ds, size_t i)
{
	return ds->vm[i];
}

void
discover_free(struct discover *ds)
{
	if (ds == NULL)
		return;
	unwatch(ds);
	if (ds->fd != -1) {
		loop_fd_del(ds->loop, ds->fd);
		close(ds->fd);
	}
	loop_timer_free(ds->settle);
	loop_timer_free(ds->rescan);
	for (size_t i = 0; i < ds->n; i++)
		entry_free(ds->vm[i]);
	free(ds->vm);
	free(ds);
}
