/*
 * secret: see secret.h.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "secret.h"

static int
fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int
secret_read(const char *path, const char *name, const char *what,
    unsigned char *buf, size_t max, size_t *lenp, char *err, size_t errlen)
{
	struct stat	 st;
	size_t		 len = 0;
	ssize_t		 n;
	int		 fd;

	*lenp = 0;
	if (lstat(path, &st) == -1)
		return fail(err, errlen, "%s: %s", path, strerror(errno));
	if (S_ISLNK(st.st_mode))
		return fail(err, errlen, "%s is a symbolic link; %s must name "
		    "the %s itself", path, name, what);
	if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW |
	    O_CLOEXEC)) == -1)
		return fail(err, errlen, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) == -1) {
		close(fd);
		return fail(err, errlen, "%s: %s", path, strerror(errno));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return fail(err, errlen, "%s: not a regular file", path);
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		close(fd);
		return fail(err, errlen, "%s: owned by uid %lu, neither the "
		    "daemon's user (uid %lu) nor root; chown it", path,
		    (unsigned long)st.st_uid, (unsigned long)geteuid());
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		close(fd);
		return fail(err, errlen, "%s: mode %04o lets group or others "
		    "use it; chmod 600 it", path,
		    (unsigned)(st.st_mode & 07777));
	}
	if ((size_t)st.st_size > max) {
		close(fd);
		return fail(err, errlen, "%s: larger than %zu bytes: not a %s?",
		    path, max, what);
	}
	/* Read it whole: it may have grown since fstat. */
	while (len < max + 1) {
		n = read(fd, buf + len, max + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			int e = errno;
			close(fd);
			explicit_bzero(buf, max + 1);
			return fail(err, errlen, "%s: %s", path, strerror(e));
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > max) {
		explicit_bzero(buf, max + 1);
		return fail(err, errlen, "%s: larger than %zu bytes: not a %s?",
		    path, max, what);
	}
	*lenp = len;
	return 0;
}
