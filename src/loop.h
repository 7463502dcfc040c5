/*
 * loop: a tiny single-threaded event loop over epoll, in the manner of
 * Redis' ae.c.
 *
 * File descriptors are registered with one callback each (level-triggered).
 * Timers live in a binary min-heap keyed on CLOCK_MONOTONIC milliseconds:
 * arming and disarming cost O(log n), finding the next deadline O(1), so ten
 * thousand connections with a reconnect timer each cost nothing per
 * iteration.  A timer is an object the caller owns (loop_timer_new); it is
 * one-shot and may be re-armed from its own callback.
 *
 * Removing an fd or freeing a timer from inside any callback is safe: stale
 * epoll events for an fd removed in the same iteration are dropped by a
 * per-registration generation number.
 */
#ifndef QMP2MQTT_LOOP_H
#define QMP2MQTT_LOOP_H

#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>

struct loop;
struct loop_timer;

typedef void (*loop_fd_cb)(struct loop *, int fd, uint32_t events, void *arg);
typedef void (*loop_timer_cb)(struct loop *, struct loop_timer *, void *arg);
typedef void (*loop_hook_cb)(struct loop *, void *arg);

/* Returns a new loop, or NULL (logged) when epoll_create1 fails. */
struct loop	*loop_new(void);
/* Frees the loop; registered fds are not closed.  NULL is a no-op. */
void		 loop_free(struct loop *);

/* Registers fd for events (EPOLLIN|EPOLLOUT...).  0, or -1 (logged). */
int		 loop_fd_add(struct loop *, int fd, uint32_t events,
		    loop_fd_cb, void *arg);
/* Changes the event mask of a registered fd.  0, or -1 (logged). */
int		 loop_fd_mod(struct loop *, int fd, uint32_t events);
/* Unregisters fd (does not close it).  Unknown fds are ignored. */
void		 loop_fd_del(struct loop *, int fd);

/* A disarmed timer, or NULL on allocation failure. */
struct loop_timer *loop_timer_new(struct loop *, loop_timer_cb, void *arg);
/* (Re)arms the timer to fire once, ms milliseconds from now. */
void		 loop_timer_arm(struct loop_timer *, uint64_t ms);
void		 loop_timer_disarm(struct loop_timer *);
int		 loop_timer_armed(const struct loop_timer *);
/* Disarms and frees.  NULL is a no-op. */
void		 loop_timer_free(struct loop_timer *);

/*
 * A hook runs at the start of every iteration, before the wait is
 * computed: work that is due before the loop may sleep but signalled by
 * nobody (the mqtt module collects acknowledgements Paho queued without
 * waking it).  It may arm timers (a 0 ms one makes the wait not block)
 * and call anything a callback may, remove itself but no other hook.
 * At most LOOP_HOOKS_MAX; it costs one indirect call per iteration, so a
 * hook must return at once when it has nothing to do.  0, or -1 when the
 * table is full.
 */
#define LOOP_HOOKS_MAX	4
int		 loop_hook_add(struct loop *, loop_hook_cb, void *arg);
/* Removes the hook registered with this cb and arg, if any. */
void		 loop_hook_del(struct loop *, loop_hook_cb, void *arg);

/*
 * Runs one iteration: runs the hooks, waits at most max_wait_ms (-1:
 * until the next timer or forever), dispatches fd events, then due
 * timers.  Returns the number
 * of fd events dispatched, or -1 on an epoll error other than EINTR.
 */
int		 loop_run_once(struct loop *, int max_wait_ms);
/*
 * Signals are delivered only while the loop waits: the caller blocks them
 * and passes here the mask to wait with (epoll_pwait), so a signal flag set
 * by a handler is always seen right after the wait returns.  NULL: none.
 */
void		 loop_set_sigmask(struct loop *, const sigset_t *);
/* Runs until loop_stop() is called.  0, or -1 on error. */
int		 loop_run(struct loop *);
void		 loop_stop(struct loop *);

/* CLOCK_MONOTONIC in milliseconds / microseconds. */
uint64_t	 loop_now_ms(void);
uint64_t	 loop_now_us(void);
/* CLOCK_REALTIME in microseconds since the epoch. */
int64_t		 loop_wall_us(void);

#endif
