/*
 * loop: see loop.h.
 *
 * fds index a table that grows to the highest registered fd; each slot
 * carries a generation that is packed with the fd into epoll's user data,
 * so an event for an fd that was removed (and possibly reused) earlier in
 * the same batch is recognised as stale and dropped.
 *
 * Timers are kept in a binary min-heap of pointers; each timer knows its
 * heap index, so disarming is O(log n) without a search.  Equal deadlines
 * fire in arming order (a sequence number breaks ties), which keeps
 * behaviour reproducible.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"

#define LOOP_BATCH	256

struct loop_fd {
	loop_fd_cb	 cb;
	void		*arg;
	uint32_t	 gen;
	int		 used;
};

struct loop_timer {
	struct loop	*loop;
	loop_timer_cb	 cb;
	void		*arg;
	uint64_t	 when;
	uint64_t	 seq;
	size_t		 idx;		/* position in the heap, or SIZE_MAX */
};

struct loop_hook {
	loop_hook_cb	 cb;
	void		*arg;
};

struct loop {
	int		 epfd;
	struct loop_hook hooks[LOOP_HOOKS_MAX];
	size_t		 nhooks;
	int		 stop;
	struct loop_fd	*fds;
	size_t		 nfds;
	uint32_t	 gen;
	struct loop_timer **heap;
	size_t		 nheap;
	size_t		 capheap;
	uint64_t	 seq;
	int		 has_mask;
	sigset_t	 mask;
};

uint64_t
loop_now_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t
loop_now_ms(void)
{
	return loop_now_us() / 1000u;
}

int64_t
loop_wall_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct loop *
loop_new(void)
{
	struct loop	*l;

	if ((l = calloc(1, sizeof(*l))) == NULL) {
		log_warn("loop_new");
		return NULL;
	}
	if ((l->epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		log_warn("epoll_create1");
		free(l);
		return NULL;
	}
	return l;
}

void
loop_free(struct loop *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->nheap; i++)
		l->heap[i]->idx = SIZE_MAX;
	close(l->epfd);
	free(l->fds);
	free(l->heap);
	free(l);
}

static int
fd_slot(struct loop *l, int fd)
{
	size_t		 n;
	struct loop_fd	*nf;

	if (fd < 0)
		return -1;
	if ((size_t)fd < l->nfds)
		return 0;
	n = l->nfds ? l->nfds : 64;
	while (n <= (size_t)fd)
		n *= 2;
	if ((nf = realloc(l->fds, n * sizeof(*nf))) == NULL)
		return -1;
	memset(nf + l->nfds, 0, (n - l->nfds) * sizeof(*nf));
	l->fds = nf;
	l->nfds = n;
	return 0;
}

int
loop_fd_add(struct loop *l, int fd, uint32_t events, loop_fd_cb cb, void *arg)
{
	struct epoll_event	 ev;
	struct loop_fd		*s;

	if (fd_slot(l, fd) == -1) {
		log_warn("loop_fd_add %d", fd);
		return -1;
	}
	s = &l->fds[fd];
	s->gen = ++l->gen;
	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = ((uint64_t)s->gen << 32) | (uint32_t)fd;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
		log_warn("epoll_ctl add %d", fd);
		return -1;
	}
	s->cb = cb;
	s->arg = arg;
	s->used = 1;
	return 0;
}

int
loop_fd_mod(struct loop *l, int fd, uint32_t events)
{
	struct epoll_event	 ev;

	if (fd < 0 || (size_t)fd >= l->nfds || !l->fds[fd].used)
		return -1;
	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = ((uint64_t)l->fds[fd].gen << 32) | (uint32_t)fd;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) == -1) {
		log_warn("epoll_ctl mod %d", fd);
		return -1;
	}
	return 0;
}

void
loop_fd_del(struct loop *l, int fd)
{
	if (fd < 0 || (size_t)fd >= l->nfds || !l->fds[fd].used)
		return;
	(void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	l->fds[fd].used = 0;
	l->fds[fd].cb = NULL;
	l->fds[fd].gen = 0;
}

/* Heap helpers. */

static int
t_less(const struct loop_timer *a, const struct loop_timer *b)
{
	return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void
heap_set(struct loop *l, size_t i, struct loop_timer *t)
{
	l->heap[i] = t;
	t->idx = i;
}

static void
heap_up(struct loop *l, size_t i)
{
	struct loop_timer	*t = l->heap[i];

	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!t_less(t, l->heap[p]))
			break;
		heap_set(l, i, l->heap[p]);
		i = p;
	}
	heap_set(l, i, t);
}

static void
heap_down(struct loop *l, size_t i)
{
	struct loop_timer	*t = l->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= l->nheap)
			break;
		if (c + 1 < l->nheap && t_less(l->heap[c + 1], l->heap[c]))
			c++;
		if (!t_less(l->heap[c], t))
			break;
		heap_set(l, i, l->heap[c]);
		i = c;
	}
	heap_set(l, i, t);
}

static void
heap_remove(struct loop *l, struct loop_timer *t)
{
	size_t			 i = t->idx;
	struct loop_timer	*last;

	t->idx = SIZE_MAX;
	last = l->heap[--l->nheap];
	if (i == l->nheap)
		return;
	heap_set(l, i, last);
	if (i > 0 && t_less(last, l->heap[(i - 1) / 2]))
		heap_up(l, i);
	else
		heap_down(l, i);
}

struct loop_timer *
loop_timer_new(struct loop *l, loop_timer_cb cb, void *arg)
{
	struct loop_timer	*t;

	if ((t = calloc(1, sizeof(*t))) == NULL) {
		log_warn("loop_timer_new");
		return NULL;
	}
	t->loop = l;
	t->cb = cb;
	t->arg = arg;
	t->idx = SIZE_MAX;
	return t;
}

void
loop_timer_arm(struct loop_timer *t, uint64_t ms)
{
	struct loop	*l = t->loop;

	if (t->idx != SIZE_MAX)
		heap_remove(l, t);
	if (l->nheap == l->capheap) {
		size_t n = l->capheap ? l->capheap * 2 : 64;
		struct loop_timer **nh = realloc(l->heap, n * sizeof(*nh));
		if (nh == NULL)
			fatal("loop_timer_arm");	/* a lost timer is a hang */
		l->heap = nh;
		l->capheap = n;
	}
	t->when = loop_now_ms() + ms;
	t->seq = ++l->seq;
	l->heap[l->nheap++] = t;
	heap_up(l, l->nheap - 1);
}

void
loop_timer_disarm(struct loop_timer *t)
{
	if (t != NULL && t->idx != SIZE_MAX)
		heap_remove(t->loop, t);
}

int
loop_timer_armed(const struct loop_timer *t)
{
	return t != NULL && t->idx != SIZE_MAX;
}

void
loop_timer_free(struct loop_timer *t)
{
	if (t == NULL)
		return;
	loop_timer_disarm(t);
	free(t);
}

static void
run_timers(struct loop *l)
{
	uint64_t	now = loop_now_ms();
	/* Bounded: timers re-armed with 0 delay run in the next iteration. */
	uint64_t	last = l->seq;

	while (l->nheap > 0 && l->heap[0]->when <= now &&
	    l->heap[0]->seq <= last) {
		struct loop_timer *t = l->heap[0];
		heap_remove(l, t);
		t->cb(l, t, t->arg);
	}
}

int
loop_hook_add(struct loop *l, loop_hook_cb cb, void *arg)
{
	if (l->nhooks == LOOP_HOOKS_MAX)
		return -1;
	l->hooks[l->nhooks].cb = cb;
	l->hooks[l->nhooks].arg = arg;
	l->nhooks++;
	return 0;
}

void
loop_hook_del(struct loop *l, loop_hook_cb cb, void *arg)
{
	for (size_t i = 0; i < l->nhooks; i++)
		if (l->hooks[i].cb == cb && l->hooks[i].arg == arg) {
			memmove(&l->hooks[i], &l->hooks[i + 1],
			    (l->nhooks - i - 1) * sizeof(l->hooks[0]));
			l->nhooks--;
			return;
		}
}

int
loop_run_once(struct loop *l, int max_wait_ms)
{
	struct epoll_event	 evs[LOOP_BATCH];
	int			 n, timeout = max_wait_ms;

	/* Hooks first: what they arm counts in this wait's timeout.  A
	 * hook may remove itself: walk by index. */
	for (size_t i = 0; i < l->nhooks; i++) {
		struct loop_hook h = l->hooks[i];

		h.cb(l, h.arg);
		if (i >= l->nhooks || l->hooks[i].cb != h.cb ||
		    l->hooks[i].arg != h.arg)
			i--;	/* it removed itself: the next one moved here
				   (unsigned wrap at 0 is undone by i++) */
	}
	if (l->nheap > 0) {
		uint64_t now = loop_now_ms(), when = l->heap[0]->when;
		int t = when <= now ? 0 :
		    (when - now > 60000 ? 60000 : (int)(when - now));
		if (timeout < 0 || t < timeout)
			timeout = t;
	}
	n = epoll_pwait(l->epfd, evs, LOOP_BATCH, timeout,
	    l->has_mask ? &l->mask : NULL);
	if (n == -1) {
		if (errno == EINTR)
			n = 0;
		else {
			log_warn("epoll_wait");
			return -1;
		}
	}
	for (int i = 0; i < n; i++) {
		int	 fd = (int)(uint32_t)evs[i].data.u64;
		uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
		struct loop_fd *s;

		if ((size_t)fd >= l->nfds)
			continue;
		s = &l->fds[fd];
		if (!s->used || s->gen != gen)
			continue;	/* removed earlier in this batch */
		s->cb(l, fd, evs[i].events, s->arg);
	}
	run_timers(l);
	return n;
}

int
loop_run(struct loop *l)
{
	l->stop = 0;
	while (!l->stop)
		if (loop_run_once(l, -1) == -1)
			return -1;
	return 0;
}

void
loop_set_sigmask(struct loop *l, const sigset_t *mask)
{
	if ((l->has_mask = mask != NULL))
		l->mask = *mask;
}

void
loop_stop(struct loop *l)
{
	l->stop = 1;
}
