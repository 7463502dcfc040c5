/*
 * log: see log.h.  Each message is formatted into one buffer and written
 * with a single write(2) (or one syslog(3) call, which glibc serialises),
 * so concurrent callers (Paho's threads) never interleave within a line.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX	2048

static int		 log_verbose;
static const char	*log_ident = "qmp2mqtt";
static enum log_target	 log_to = LOG_TARGET_STDERR;

void
log_init(int verbose, const char *ident)
{
	log_verbose = verbose;
	if (ident != NULL)
		log_ident = ident;
}

void
log_setverbose(int verbose)
{
	log_verbose = verbose;
}

int
log_getverbose(void)
{
	return log_verbose;
}

/*
 * 1 when stderr is the stream journald handed to this process: systemd
 * sets JOURNAL_STREAM to "DEVICE:INODE" of it, and a child whose stderr was
 * redirected elsewhere inherits the variable, hence the comparison.
 */
static int
stderr_is_journal(void)
{
	const char		*js = getenv("JOURNAL_STREAM");
	unsigned long long	 dev, ino;
	struct stat		 st;
	int			 end = 0;

	if (js == NULL || sscanf(js, "%llu:%llu%n", &dev, &ino, &end) != 2 ||
	    js[end] != '\0' || fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

/* 1 when nobody reads stderr: closed, or a character device not a tty. */
static int
stderr_is_lost(void)
{
	struct stat	 st;

	if (fstat(STDERR_FILENO, &st) == -1)
		return 1;
	return S_ISCHR(st.st_mode) && !isatty(STDERR_FILENO);
}

enum log_target
log_select(int want_syslog)
{
	if (want_syslog || (!stderr_is_journal() && stderr_is_lost()))
		log_to = LOG_TARGET_SYSLOG;
	else if (stderr_is_journal())
		log_to = LOG_TARGET_JOURNAL;
	else
		log_to = LOG_TARGET_STDERR;
	if (log_to == LOG_TARGET_SYSLOG)
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	return log_to;
}

enum log_target
log_gettarget(void)
{
	return log_to;
}

/*
 * One line: "TIME IDENT LEVEL: message" on a plain stderr; "<PRI>LEVEL:
 * message" for journald (which stamps and tags lines itself and reads the
 * sd-daemon(3) priority prefix); "LEVEL: message" through syslog(3).
 */
static void
vlog(int pri, const char *level, const char *fmt, va_list ap,
    const char *errstr)
{
	char		 buf[LOG_LINE_MAX];
	struct timespec	 ts;
	struct tm	 tm;
	size_t		 n = 0;
	int		 r;

	if (log_to == LOG_TARGET_STDERR) {
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
		r = snprintf(buf + n, sizeof(buf) - n, ".%03ldZ %s %s: ",
		    ts.tv_nsec / 1000000, log_ident, level);
	} else if (log_to == LOG_TARGET_JOURNAL)
		r = snprintf(buf, sizeof(buf), "<%d>%s: ", pri, level);
	else
		r = snprintf(buf, sizeof(buf), "%s: ", level);
	if (r > 0)
		n += (size_t)r < sizeof(buf) - n ? (size_t)r : sizeof(buf) - n - 1;
	r = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	if (r > 0)
		n += (size_t)r < sizeof(buf) - n ? (size_t)r : sizeof(buf) - n - 1;
	if (errstr != NULL && n < sizeof(buf) - 1) {
		r = snprintf(buf + n, sizeof(buf) - n, ": %s", errstr);
		if (r > 0)
			n += (size_t)r < sizeof(buf) - n ? (size_t)r :
			    sizeof(buf) - n - 1;
	}
	/* Never let a name from the outside forge a second log line. */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x20 && buf[i] != '\t')
			buf[i] = '?';
	if (n >= sizeof(buf) - 1)
		n = sizeof(buf) - 2;
	if (log_to == LOG_TARGET_SYSLOG) {
		buf[n] = '\0';
		syslog(pri, "%s", buf);
		return;
	}
	buf[n++] = '\n';
	(void)!write(STDERR_FILENO, buf, n);
}

void
log_warn(const char *fmt, ...)
{
	int	 saved = errno;
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_WARNING, "warning", fmt, ap, strerror(saved));
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_WARNING, "warning", fmt, ap, NULL);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	if (log_verbose < 0)
		return;
	va_start(ap, fmt);
	vlog(LOG_INFO, "info", fmt, ap, NULL);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	if (log_verbose < 1)
		return;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, "debug", fmt, ap, NULL);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	int	 saved = errno;
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, "fatal", fmt, ap, strerror(saved));
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, "fatal", fmt, ap, NULL);
	va_end(ap);
	exit(1);
}
