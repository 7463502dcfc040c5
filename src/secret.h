/*
 * secret: a file holding a secret (the takeover key, the broker password),
 * read under rules that keep it secret and keep the daemon from hanging:
 * it must be the file itself (not a symbolic link), a regular file (a
 * FIFO would block: it is opened non-blocking and refused), owned by the
 * daemon's user or root, unreadable and unwritable to group and others,
 * and at most max bytes, read whole (it may grow between fstat and read).
 */
#ifndef QMP2MQTT_SECRET_H
#define QMP2MQTT_SECRET_H

#include <stddef.h>

/*
 * Reads path into buf (max + 1 bytes) and its length into *lenp.
 * setting names the configuration setting and what the kind of file, for
 * messages.  Returns 0, or -1 with a message in err ("PATH: why"); buf is
 * then wiped.
 */
int	secret_read(const char *path, const char *setting, const char *what,
	    unsigned char *buf, size_t max, size_t *lenp, char *err,
	    size_t errlen);

#endif
