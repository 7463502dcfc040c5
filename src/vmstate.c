/*
 * vmstate: see vmstate.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "vmstate.h"

/* Appends s percent-encoded (all but [A-Za-z0-9-]) to p; returns the end. */
static char *
encode(char *p, char *end, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s != '\0' && p + 4 < end; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-')
			*p++ = (char)c;
		else {
			*p++ = '%';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		}
	}
	*p = '\0';
	return p;
}

static void
make_path(char *buf, size_t len, const char *dir, const char *host,
    const char *vm, const char *suffix)
{
	char	*p, *end = buf + len;
	int	 n = snprintf(buf, len, "%s/vm_", dir);

	if (n < 0 || (size_t)n >= len) {
		buf[0] = '\0';
		return;
	}
	p = encode(buf + n, end, host);
	if (p + 2 < end)
		*p++ = '_';
	p = encode(p, end, vm);
	snprintf(p, (size_t)(end - p), "%s", suffix);
}

static void
copy_str(char *dst, json_object *o, const char *key)
{
	json_object *v;

	dst[0] = '\0';
	if (json_object_object_get_ex(o, key, &v) &&
	    json_object_is_type(v, json_type_string))
		snprintf(dst, COLO_ENUM_MAX + 1, "%s", json_object_get_string(v));
}

int
vmstate_load(const char *dir, const char *host, const char *vm,
    struct vmstate *st)
{
	char		 path[4096];
	json_object	*o, *v;

	memset(st, 0, sizeof(*st));
	make_path(path, sizeof(path), dir, host, vm, ".json.stale");
	st->stale = access(path, F_OK) == 0;
	make_path(path, sizeof(path), dir, host, vm, ".json");
	if (access(path, F_OK) == -1) {
		if (st->stale) {
			log_warnx("%s: missing, and marked stale", path);
			return -1;
		}
		return 1;
	}
	if ((o = json_object_from_file(path)) == NULL ||
	    !json_object_is_type(o, json_type_object)) {
		log_warnx("%s: damaged state file ignored", path);
		json_object_put(o);
		return -1;
	}
	copy_str(st->mode, o, "mode");
	copy_str(st->last_mode, o, "last_mode");
	copy_str(st->reason, o, "reason");
	if (json_object_object_get_ex(o, "exited", &v))
		st->exited = json_object_get_boolean(v);
	if (json_object_object_get_ex(o, "heartbeat_unconfirmed", &v))
		st->hb_unconfirmed = json_object_get_boolean(v);
	if (json_object_object_get_ex(o, "seq_reserved", &v) &&
	    json_object_is_type(v, json_type_int))
		st->seq_reserved = json_object_get_uint64(v);
	if (json_object_object_get_ex(o, "last_exit", &v) &&
	    json_object_is_type(v, json_type_object))
		st->last_exit = json_object_get(v);
	json_object_put(o);
	return 0;
}

/* fsync()s a directory (a rename in it becomes durable).  0 or -1. */
static int
sync_dir(const char *dir)
{
	int fd, r;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

int
vmstate_mark_stale(const char *dir, const char *host, const char *vm)
{
	char	path[4200];
	int	fd;

	make_path(path, sizeof(path), dir, host, vm, ".json.stale");
	if ((fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640)) != -1) {
		close(fd);
		return 0;
	}
	log_warn("%s: cannot mark the VM state stale", path);
	/* Then an empty state file: it reads as damaged, same effect. */
	make_path(path, sizeof(path), dir, host, vm, ".json");
	if ((fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)) != -1) {
		close(fd);
		return 0;
	}
	log_warn("%s: cannot truncate it either: a restart may reuse seq "
	    "values", path);
	return -1;
}

int
vmstate_save(const char *dir, const char *host, const char *vm,
    const struct vmstate *st, int sync)
{
	char		 path[4096], tmp[4200];
	json_object	*o = json_object_new_object();
	const char	*s;
	size_t		 len;
	int		 fd, ok;

	if (o == NULL)
		return -1;
	make_path(path, sizeof(path), dir, host, vm, ".json");
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	json_object_object_add(o, "schema", json_object_new_int(1));
	json_object_object_add(o, "host", json_object_new_string(host));
	json_object_object_add(o, "vm", json_object_new_string(vm));
	json_object_object_add(o, "mode", json_object_new_string(st->mode));
	json_object_object_add(o, "last_mode",
	    json_object_new_string(st->last_mode));
	json_object_object_add(o, "reason", json_object_new_string(st->reason));
	json_object_object_add(o, "exited", json_object_new_boolean(st->exited));
	json_object_object_add(o, "heartbeat_unconfirmed",
	    json_object_new_boolean(st->hb_unconfirmed));
	json_object_object_add(o, "seq_reserved",
	    json_object_new_uint64(st->seq_reserved));
	json_object_object_add(o, "last_exit", st->last_exit ?
	    json_object_get(st->last_exit) : NULL);
	s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	ok = fd != -1 && write(fd, s, len) == (ssize_t)len;
	if (ok && sync && fsync(fd) == -1)
		ok = 0;
	if (fd != -1 && close(fd) == -1)
		ok = 0;
	if (ok && rename(tmp, path) == -1)
		ok = 0;
	if (!ok) {
		log_warn("%s: cannot save VM state", path);
		unlink(tmp);
	} else {
		if (sync && sync_dir(dir) == -1)
			log_warn("%s: fsync", dir);
		/* The ceiling just saved is above every seq used: not stale. */
		snprintf(tmp, sizeof(tmp), "%s.stale", path);
		if (unlink(tmp) == -1 && errno != ENOENT)
			log_warn("%s", tmp);
	}
	json_object_put(o);
	return ok ? 0 : -1;
}

void
vmstate_clear(struct vmstate *st)
{
	json_object_put(st->last_exit);
	st->last_exit = NULL;
}
