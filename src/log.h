/*
 * log: the daemon's only logger.
 *
 * OpenBSD style: log_warn() appends strerror(errno), log_warnx() does not;
 * fatal()/fatalx() log and exit(1).  Messages go to stderr as one write(2)
 * each, prefixed by an RFC 3339 UTC timestamp and a level, so lines from
 * Paho's threads never interleave mid-line.
 *
 * log_select() (the daemon, not qmp2mqtt-ctl) picks the target once at
 * start: syslog(3) (LOG_DAEMON) when asked (-s) or when nobody reads
 * stderr (closed or /dev/null); stderr without the timestamp and with a
 * "<N>" priority prefix when stderr is journald's stream (JOURNAL_STREAM);
 * plain timestamped stderr otherwise.  Priorities: fatal LOG_CRIT, warnings
 * LOG_WARNING, info LOG_INFO, debug LOG_DEBUG.  The verbosity and the
 * target are the only mutable global state besides signal flags.
 */
#ifndef QMP2MQTT_LOG_H
#define QMP2MQTT_LOG_H

#include <stdarg.h>

enum log_target {
	LOG_TARGET_STDERR,	/* "TIME IDENT LEVEL: message" */
	LOG_TARGET_JOURNAL,	/* "<PRI>LEVEL: message" on stderr */
	LOG_TARGET_SYSLOG	/* syslog(PRI, "LEVEL: message") */
};

/*
 * -1: warnings only; 0: and info; 1 (-v): debug; 2 (-vv): QMP traffic.
 * The target stays plain stderr until log_select().
 */
void	log_init(int verbose, const char *ident);
/*
 * Chooses the target as described above (want_syslog: -s) and opens the
 * syslog connection when it is syslog.  Returns the target chosen.
 */
enum log_target	log_select(int want_syslog);
enum log_target	log_gettarget(void);
void	log_setverbose(int verbose);
int	log_getverbose(void);

void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
