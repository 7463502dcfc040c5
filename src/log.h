/*
 * log: the daemon's only logger.
 *
 * OpenBSD style: log_warn() appends strerror(errno), log_warnx() does not;
 * fatal()/fatalx() log and exit(1).  Messages go to stderr as one write(2)
 * each, prefixed by an RFC 3339 UTC timestamp and a level, so lines from
 * Paho's threads never interleave mid-line.  The verbosity is the only
 * mutable global state besides signal flags.
 */
#ifndef QMP2MQTT_LOG_H
#define QMP2MQTT_LOG_H

#include <stdarg.h>

/* -1: warnings only; 0: and info; 1 (-v): debug; 2 (-vv): QMP traffic. */
void	log_init(int verbose, const char *ident);
void	log_setverbose(int verbose);
int	log_getverbose(void);

void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
