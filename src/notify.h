/*
 * notify: the service manager's readiness protocol (sd_notify(3)) without
 * libsystemd.
 *
 * When systemd starts the daemon with Type=notify it names a unix datagram
 * socket in NOTIFY_SOCKET (a path, or an abstract name written with a
 * leading '@'); each notification is one datagram of "KEY=VALUE" lines.
 * Without NOTIFY_SOCKET every function here is a no-op returning 0, so the
 * daemon behaves the same outside systemd.  Datagrams are sent with
 * MSG_DONTWAIT: a stuck service manager never blocks the event loop.
 *
 * With WatchdogSec= systemd sets WATCHDOG_USEC (and WATCHDOG_PID); the
 * watchdog timer armed by notify_watchdog_start() sends WATCHDOG=1 from the
 * event loop every third of that period, so a loop that stops turning
 * stops the pings and systemd restarts the daemon.
 *
 * All functions are for the main (event-loop) thread.
 */
#ifndef QMP2MQTT_NOTIFY_H
#define QMP2MQTT_NOTIFY_H

#include <stdint.h>

struct loop;

/*
 * Sends one notification, e.g. "READY=1\nSTATUS=running".  Returns 1 when
 * sent, 0 when there is no (usable) NOTIFY_SOCKET, -1 when sending failed
 * (logged at debug level: the daemon goes on either way).
 */
int		 notify_send(const char *state);

/* READY=1 with STATUS=running: the configuration is loaded, the loop runs. */
int		 notify_ready(void);
/*
 * RELOADING=1 with MONOTONIC_USEC=<CLOCK_MONOTONIC now> (systemd 253+
 * wants it for Type=notify-reload) and STATUS=reloading; follow it with
 * notify_ready() once the new configuration is in place (or was refused).
 */
int		 notify_reloading(void);
/* STOPPING=1 with STATUS=stopping. */
int		 notify_stopping(void);

/*
 * The watchdog period in microseconds from WATCHDOG_USEC, or 0 when the
 * watchdog is off: unset, not a positive decimal number, or WATCHDOG_PID
 * set and not this process.
 */
uint64_t	 notify_watchdog_usec(void);
/*
 * Arms a timer on the loop that sends WATCHDOG=1 now and then every third
 * of the watchdog period.  Returns 1 when armed, 0 when the watchdog is off,
 * -1 on allocation failure (logged).
 */
int		 notify_watchdog_start(struct loop *);
/* Disarms and frees the watchdog timer (before loop_free).  Idempotent. */
void		 notify_watchdog_stop(void);

#endif
