/*
 * config: see config.h.  The only file that includes libconfig.
 *
 * Every setting is read through one of the get_* helpers below, which check
 * the type and range and report "FILE:LINE: key: problem" on the first
 * error.  Unknown settings are errors too: a misspelt "takover" must not
 * silently leave a safety feature at its default.
 */
#include <sys/stat.h>
#include <sys/un.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "secret.h"
#include "topic.h"

#define KEY_MIN_BYTES	32
#define KEY_FILE_MAX	4096		/* a key file is never larger */

struct cctx {
	const char	*file;
	char		*err;
	size_t		 errlen;
	int		 failed;
	const struct config_load_opts *o;	/* never NULL */
};

static int
cerr(struct cctx *c, const config_setting_t *s, const char *key,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Records the first error; always returns -1. */
static int
cerr(struct cctx *c, const config_setting_t *s, const char *key,
    const char *fmt, ...)
{
	va_list	 ap;
	int	 n, line = s != NULL ? (int)config_setting_source_line(s) : 0;

	if (c->failed++)
		return -1;
	if (line > 0)
		n = snprintf(c->err, c->errlen, "%s:%d: %s: ", c->file, line, key);
	else
		n = snprintf(c->err, c->errlen, "%s: %s: ", c->file, key);
	if (n < 0 || (size_t)n >= c->errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static char *
xstrdup(const char *s)
{
	char	*p = strdup(s);

	if (p == NULL) {
		perror("strdup");
		exit(1);
	}
	return p;
}

/*
 * Checks that every member of group is one of the names in allowed (a
 * NULL-terminated list).  0, or -1 with an error.
 */
static int
check_members(struct cctx *c, const config_setting_t *group,
    const char *where, const char *const *allowed)
{
	int	 n = config_setting_length(group);

	for (int i = 0; i < n; i++) {
		config_setting_t *m = config_setting_get_elem(group, (unsigned)i);
		const char	 *name = config_setting_name(m);
		int		  ok = 0;

		for (const char *const *a = allowed; *a != NULL; a++)
			if (name != NULL && strcmp(name, *a) == 0)
				ok = 1;
		if (!ok) {
			char key[128];
			snprintf(key, sizeof(key), "%s%s%s", where,
			    *where ? "." : "", name ? name : "?");
			return cerr(c, m, key, "unknown setting");
		}
	}
	return 0;
}

/* Reads an optional string; *out is left alone when absent.  0 or -1. */
static int
get_str(struct cctx *c, const config_setting_t *g, const char *where,
    const char *name, char **out, int required)
{
	config_setting_t *s = g ? config_setting_get_member(g, name) : NULL;
	char		  key[128];

	snprintf(key, sizeof(key), "%s%s%s", where, *where ? "." : "", name);
	if (s == NULL) {
		if (required)
			return cerr(c, g, key, "required setting is missing");
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return cerr(c, s, key, "must be a string");
	free(*out);
	*out = xstrdup(config_setting_get_string(s));
	return 0;
}

/* Reads an optional integer in [min, max].  0 or -1. */
static int
get_int(struct cctx *c, const config_setting_t *g, const char *where,
    const char *name, long long *out, long long min, long long max)
{
	config_setting_t *s = g ? config_setting_get_member(g, name) : NULL;
	char		  key[128];
	long long	  v;

	snprintf(key, sizeof(key), "%s%s%s", where, *where ? "." : "", name);
	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64)
		return cerr(c, s, key, "must be an integer");
	v = config_setting_get_int64(s);
	if (v < min || v > max)
		return cerr(c, s, key, "%lld is out of range [%lld, %lld]",
		    v, min, max);
	*out = v;
	return 0;
}

static int
get_uint(struct cctx *c, const config_setting_t *g, const char *where,
    const char *name, unsigned *out, long long min, long long max)
{
	long long v = *out;

	if (get_int(c, g, where, name, &v, min, max) == -1)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* Reads an optional boolean.  0 or -1. */
static int
get_bool(struct cctx *c, const config_setting_t *g, const char *where,
    const char *name, int *out)
{
	config_setting_t *s = g ? config_setting_get_member(g, name) : NULL;
	char		  key[128];

	snprintf(key, sizeof(key), "%s%s%s", where, *where ? "." : "", name);
	if (s == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return cerr(c, s, key, "must be true or false");
	*out = config_setting_get_bool(s);
	return 0;
}

static const config_setting_t *
get_group(struct cctx *c, const config_setting_t *root, const char *name)
{
	config_setting_t *s = config_setting_get_member(root, name);

	if (s == NULL)
		return NULL;
	if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
		cerr(c, s, name, "must be a group { ... }");
		return NULL;
	}
	return s;
}

/* Parses "unix:/path" or "tcp:HOST:PORT" into vm.  0 or -1. */
static int
parse_qmp(struct cctx *c, const config_setting_t *s, const char *key,
    struct config_vm *vm)
{
	const char	*a = vm->qmp, *colon;
	char		*end;
	long		 port;

	if (strncmp(a, "unix:", 5) == 0) {
		struct sockaddr_un sun;
		a += 5;
		if (*a == '\0')
			return cerr(c, s, key, "\"%s\": empty socket path",
			    vm->qmp);
		if (strlen(a) >= sizeof(sun.sun_path))
			return cerr(c, s, key, "\"%s\": socket path longer "
			    "than %zu bytes", vm->qmp, sizeof(sun.sun_path) - 1);
		vm->addr = CONFIG_ADDR_UNIX;
		vm->path = vm->qmp + 5;
		return 0;
	}
	if (strncmp(a, "tcp:", 4) == 0) {
		a += 4;
		if ((colon = strrchr(a, ':')) == NULL || colon == a)
			return cerr(c, s, key, "\"%s\": expected tcp:HOST:PORT",
			    vm->qmp);
		errno = 0;
		port = strtol(colon + 1, &end, 10);
		if (colon[1] == '\0' || *end != '\0' || errno != 0 ||
		    port < 1 || port > 65535)
			return cerr(c, s, key, "\"%s\": bad port", vm->qmp);
		vm->addr = CONFIG_ADDR_TCP;
		if (a[0] == '[' && colon[-1] == ']')	/* [v6]:port */
			vm->tcp_host = strndup(a + 1, (size_t)(colon - a - 2));
		else
			vm->tcp_host = strndup(a, (size_t)(colon - a));
		if (vm->tcp_host == NULL || vm->tcp_host[0] == '\0')
			return cerr(c, s, key, "\"%s\": empty host", vm->qmp);
		vm->tcp_port = xstrdup(colon + 1);
		return 0;
	}
	return cerr(c, s, key, "\"%s\": expected unix:/path or tcp:HOST:PORT",
	    vm->qmp);
}

static int
check_name(struct cctx *c, const config_setting_t *s, const char *key,
    const char *name)
{
	const char *why = topic_level_check(name);

	if (why != NULL)
		return cerr(c, s, key, "\"%s\" cannot be used as an MQTT topic "
		    "level: %s", name, why);
	return 0;
}

static int
cmp_name(const void *a, const void *b)
{
	const struct config_vm *x = *(const struct config_vm *const *)a;
	const struct config_vm *y = *(const struct config_vm *const *)b;
	int r = strcmp(x->host, y->host);

	if (r == 0)
		r = strcmp(x->name, y->name);
	return r != 0 ? r : x->line - y->line;
}

static int
cmp_qmp(const void *a, const void *b)
{
	const struct config_vm *x = *(const struct config_vm *const *)a;
	const struct config_vm *y = *(const struct config_vm *const *)b;
	int r = strcmp(x->qmp, y->qmp);

	return r != 0 ? r : x->line - y->line;
}

/*
 * Refuses two VMs with the same host and name, or the same QMP address.
 * Sorting makes this O(n log n): 10 000 VMs are a real configuration.
 */
static int
check_duplicates(struct cctx *c, struct config *cf, config_setting_t *list)
{
	const struct config_vm	**v;
	int			  rc = 0;

	if ((v = calloc(cf->nvms, sizeof(*v))) == NULL)
		return cerr(c, list, "vms", "out of memory");
	for (size_t i = 0; i < cf->nvms; i++)
		v[i] = &cf->vms[i];
	qsort(v, cf->nvms, sizeof(*v), cmp_name);
	for (size_t i = 1; i < cf->nvms && rc == 0; i++)
		if (strcmp(v[i]->host, v[i - 1]->host) == 0 &&
		    strcmp(v[i]->name, v[i - 1]->name) == 0)
			rc = cerr(c, config_setting_get_elem(list,
			    (unsigned)(v[i] - cf->vms)), "vms.name", "VM \"%s\" "
			    "on host \"%s\" is already defined at line %d",
			    v[i]->name, v[i]->host, v[i - 1]->line);
	qsort(v, cf->nvms, sizeof(*v), cmp_qmp);
	for (size_t i = 1; i < cf->nvms && rc == 0; i++)
		if (strcmp(v[i]->qmp, v[i - 1]->qmp) == 0)
			rc = cerr(c, config_setting_get_elem(list,
			    (unsigned)(v[i] - cf->vms)), "vms.qmp", "\"%s\" is "
			    "already used by VM \"%s\" (line %d)", v[i]->qmp,
			    v[i - 1]->name, v[i - 1]->line);
	free(v);
	return rc;
}

static const char *const vm_keys[] = { "name", "qmp", "host", "takeover",
    "peer", NULL };

/*
 * Parses peer = "HOST/VM" of vm (setting s, key "vms[N].peer"): exactly
 * one '/', both halves valid topic levels, not the VM itself.  0 or -1.
 */
static int
parse_peer(struct cctx *c, const config_setting_t *s, const char *key,
    struct config_vm *vm, const char *text)
{
	const char	*slash = strchr(text, '/'), *why;

	if (slash == NULL || strchr(slash + 1, '/') != NULL)
		return cerr(c, s, key, "\"%s\": expected \"HOST/VM\" with "
		    "exactly one '/'", text);
	vm->peer_host = strndup(text, (size_t)(slash - text));
	vm->peer_vm = xstrdup(slash + 1);
	if (vm->peer_host == NULL)
		return cerr(c, s, key, "out of memory");
	if ((why = topic_level_check(vm->peer_host)) != NULL)
		return cerr(c, s, key, "\"%s\": host \"%s\" cannot be used as "
		    "an MQTT topic level: %s", text, vm->peer_host, why);
	if ((why = topic_level_check(vm->peer_vm)) != NULL)
		return cerr(c, s, key, "\"%s\": VM \"%s\" cannot be used as "
		    "an MQTT topic level: %s", text, vm->peer_vm, why);
	if (strcmp(vm->peer_host, vm->host) == 0 &&
	    strcmp(vm->peer_vm, vm->name) == 0)
		return cerr(c, s, key, "\"%s\" is this VM itself; name the "
		    "other side of the COLO pair", text);
	return 0;
}

static const char *const discover_keys[] = { "glob", "host", "name", "peer",
    "takeover", NULL };

/* A name template: at most one "%s" and no other '%'.  NULL or why not. */
static const char *
template_check(const char *t)
{
	const char *p = strchr(t, '%');

	if (p == NULL)
		return NULL;
	if (p[1] != 's' || strchr(p + 2, '%') != NULL)
		return "only one \"%s\" (the file name without its "
		    "extension) and no other '%' may appear";
	return NULL;
}

/*
 * discover = ( { glob; host; name; peer; takeover; }, ... ): see
 * config.h.  The glob must be absolute with wildcards in its file name
 * only (its directory is watched).  0 or -1.
 */
static int
parse_discover(struct cctx *c, struct config *cf, const config_setting_t *root)
{
	config_setting_t *list = config_setting_get_member(root, "discover");
	int		  n;

	if (list == NULL)
		return 0;
	if (config_setting_type(list) != CONFIG_TYPE_LIST)
		return cerr(c, list, "discover", "must be a list ( {...}, ... )");
	n = config_setting_length(list);
	if (n > 0 && (cf->discover = calloc((size_t)n,
	    sizeof(*cf->discover))) == NULL)
		return cerr(c, list, "discover", "out of memory");
	for (int i = 0; i < n; i++) {
		config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
		struct config_discover *d = &cf->discover[cf->ndiscover++];
		char		  where[32], key[48];
		const char	 *slash, *why;
		config_setting_t *t;

		snprintf(where, sizeof(where), "discover[%d]", i);
		d->takeover = -1;
		d->line = (int)config_setting_source_line(g);
		if (config_setting_type(g) != CONFIG_TYPE_GROUP)
			return cerr(c, g, where, "must be a group { ... }");
		if (check_members(c, g, where, discover_keys) == -1 ||
		    get_str(c, g, where, "glob", &d->glob, 1) == -1 ||
		    get_str(c, g, where, "host", &d->host, 0) == -1 ||
		    get_str(c, g, where, "name", &d->name, 0) == -1 ||
		    get_str(c, g, where, "peer", &d->peer, 0) == -1)
			return -1;
		snprintf(key, sizeof(key), "%s.glob", where);
		t = config_setting_get_member(g, "glob");
		slash = strrchr(d->glob, '/');
		if (d->glob[0] != '/' || slash == NULL || slash[1] == '\0')
			return cerr(c, t, key, "\"%s\": an absolute path "
			    "with a file name pattern, e.g. "
			    "\"/run/qemu/*.qmp\"", d->glob);
		d->dir = strndup(d->glob, slash == d->glob ? 1 :
		    (size_t)(slash - d->glob));
		d->pattern = xstrdup(slash + 1);
		if (d->dir == NULL || d->pattern == NULL)
			return cerr(c, t, key, "out of memory");
		if (strpbrk(d->dir, "*?[") != NULL)
			return cerr(c, t, key, "\"%s\": wildcards only in the "
			    "file name (the directory is watched)", d->glob);
		if (d->host == NULL)
			d->host = xstrdup(cf->host);
		else if (check_name(c, config_setting_get_member(g, "host"),
		    "discover.host", d->host) == -1)
			return -1;
		if (d->name == NULL)
			d->name = xstrdup("%s");
		snprintf(key, sizeof(key), "%s.name", where);
		if ((why = template_check(d->name)) != NULL)
			return cerr(c, config_setting_get_member(g, "name"),
			    key, "\"%s\": %s", d->name, why);
		snprintf(key, sizeof(key), "%s.peer", where);
		if (d->peer != NULL && ((why = template_check(d->peer)) !=
		    NULL || (why = strchr(d->peer, '/') == NULL ||
		    strchr(strchr(d->peer, '/') + 1, '/') != NULL ?
		    "expected \"HOST/VM\" with exactly one '/'" : NULL) !=
		    NULL))
			return cerr(c, config_setting_get_member(g, "peer"),
			    key, "\"%s\": %s", d->peer, why);
		if ((t = config_setting_get_member(g, "takeover")) != NULL) {
			if (config_setting_type(t) != CONFIG_TYPE_BOOL)
				return cerr(c, t, "discover.takeover",
				    "must be true or false");
			d->takeover = config_setting_get_bool(t);
		}
	}
	return 0;
}

static int
parse_vms(struct cctx *c, struct config *cf, const config_setting_t *root)
{
	config_setting_t *list = config_setting_get_member(root, "vms");
	int		  n;

	if (list == NULL && cf->ndiscover > 0)
		return 0;	/* every VM discovered */
	if (list == NULL)
		return cerr(c, NULL, "vms", "required setting is missing "
		    "(or a discover list)");
	if (config_setting_type(list) != CONFIG_TYPE_LIST)
		return cerr(c, list, "vms", "must be a list ( {...}, ... )");
	n = config_setting_length(list);
	if (n == 0 && cf->ndiscover > 0)
		return 0;
	if (n == 0)
		return cerr(c, list, "vms", "no VM configured");
	if ((cf->vms = calloc((size_t)n, sizeof(*cf->vms))) == NULL)
		return cerr(c, list, "vms", "out of memory");
	for (int i = 0; i < n; i++) {
		config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
		struct config_vm *vm = &cf->vms[cf->nvms++];
		char		  where[32];
		config_setting_t *t;

		snprintf(where, sizeof(where), "vms[%d]", i);
		vm->takeover = -1;
		vm->line = (int)config_setting_source_line(g);
		if (config_setting_type(g) != CONFIG_TYPE_GROUP)
			return cerr(c, g, where, "must be a group { ... }");
		if (check_members(c, g, where, vm_keys) == -1 ||
		    get_str(c, g, where, "name", &vm->name, 1) == -1 ||
		    get_str(c, g, where, "qmp", &vm->qmp, 1) == -1 ||
		    get_str(c, g, where, "host", &vm->host, 0) == -1)
			return -1;
		if (check_name(c, config_setting_get_member(g, "name"),
		    "vms.name", vm->name) == -1)
			return -1;
		if (strcmp(vm->name, "bridge") == 0)
			return cerr(c, config_setting_get_member(g, "name"),
			    "vms.name", "\"bridge\" is reserved for the "
			    "bridge's own topics");
		if (vm->host == NULL)
			vm->host = cf->host;	/* 10 000 copies otherwise */
		else if (check_name(c, config_setting_get_member(g, "host"),
		    "vms.host", vm->host) == -1)
			return -1;
		if (parse_qmp(c, config_setting_get_member(g, "qmp"),
		    "vms.qmp", vm) == -1)
			return -1;
		if ((t = config_setting_get_member(g, "takeover")) != NULL) {
			if (config_setting_type(t) != CONFIG_TYPE_BOOL)
				return cerr(c, t, "vms.takeover",
				    "must be true or false");
			vm->takeover = config_setting_get_bool(t);
		}
		if ((t = config_setting_get_member(g, "peer")) != NULL) {
			char key[48];

			snprintf(key, sizeof(key), "%s.peer", where);
			if (config_setting_type(t) != CONFIG_TYPE_STRING)
				return cerr(c, t, key, "must be a string "
				    "\"HOST/VM\"");
			if (parse_peer(c, t, key, vm,
			    config_setting_get_string(t)) == -1)
				return -1;
		}
	}
	return check_duplicates(c, cf, list);
}

/*
 * Reads a private file (see secret.h) for setting key; the error names
 * key and path.  0 or -1.
 */
static int
read_private_file(struct cctx *c, const config_setting_t *s, const char *key,
    const char *what, const char *path, unsigned char *buf, size_t *lenp)
{
	char	err[512];

	if (secret_read(path, strrchr(key, '.') ? strrchr(key, '.') + 1 : key,
	    what, buf, KEY_FILE_MAX, lenp, err, sizeof(err)) == -1)
		return cerr(c, s, key, "%s", err);
	return 0;
}

/*
 * Reads the takeover key file (see read_private_file).  The key is its
 * bytes without trailing whitespace, at least KEY_MIN_BYTES.  0 or -1.
 */
static int
load_key(struct cctx *c, const config_setting_t *s, struct config_takeover *t)
{
	static const char	*key = "takeover.key_file";
	unsigned char		 buf[KEY_FILE_MAX + 1];
	size_t			 len;

	if (read_private_file(c, s, key, "key file", t->key_file, buf, &len) == -1)
		return -1;
	while (len > 0 && isspace(buf[len - 1]))
		len--;
	if (len < KEY_MIN_BYTES) {
		explicit_bzero(buf, sizeof(buf));
		return cerr(c, s, key, "%s: the key must be at least %d bytes; "
		    "make one with qmp2mqtt-ctl genkey FILE", t->key_file,
		    KEY_MIN_BYTES);
	}
	if ((t->key = malloc(len)) == NULL) {
		explicit_bzero(buf, sizeof(buf));
		return cerr(c, s, key, "out of memory");
	}
	memcpy(t->key, buf, len);
	t->key_len = len;
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

/*
 * Reads mqtt.password_file (see read_private_file) into cf->password: its
 * content without the trailing newline (LF or CRLF); not empty, no NUL
 * byte.  0 or -1.
 */
static int
load_password(struct cctx *c, const config_setting_t *s, struct config *cf)
{
	static const char	*key = "mqtt.password_file";
	unsigned char		 buf[KEY_FILE_MAX + 1];
	size_t			 len;

	if (read_private_file(c, s, key, "password file", cf->password_file,
	    buf, &len) == -1)
		return -1;
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len == 0 || memchr(buf, '\0', len) != NULL) {
		explicit_bzero(buf, sizeof(buf));
		return cerr(c, s, key, "%s: %s", cf->password_file, len == 0 ?
		    "empty: the file holds the password (one line)" :
		    "contains a NUL byte");
	}
	if ((cf->password = malloc(len + 1)) == NULL) {
		explicit_bzero(buf, sizeof(buf));
		return cerr(c, s, key, "out of memory");
	}
	memcpy(cf->password, buf, len);
	cf->password[len] = '\0';
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

/*
 * Checks takeover.reply_prefix: not empty, no wildcard, not a $ topic.
 * Returns NULL, or why not.
 */
static const char *
reply_prefix_check(const char *p)
{
	if (*p == '\0')
		return "must not be empty";
	if (strpbrk(p, "+#") != NULL)
		return "must not contain the wildcards + or #";
	if (*p == '$')
		return "must not start with $";
	return NULL;
}

static const char *const takeover_keys[] = { "enabled", "auth", "key_file",
    "window_s", "min_interval_s", "timeout_s", "reply_prefix", NULL };

/* Sets the default reply prefix "<base_topic>/reply/".  0 or -1. */
static int
default_reply_prefix(struct cctx *c, struct config *cf)
{
	size_t	n = strlen(cf->base_topic) + sizeof("/reply/");

	if ((cf->takeover.reply_prefix = malloc(n)) == NULL)
		return cerr(c, NULL, "takeover.reply_prefix", "out of memory");
	snprintf(cf->takeover.reply_prefix, n, "%s/reply/", cf->base_topic);
	return 0;
}

/*
 * Reads the takeover key when it is needed: takeover enabled somewhere
 * (any) with auth "hmac", or a key file named by the caller's options
 * (which replaces takeover.key_file); never with the option no_key.
 * g: the takeover group, or NULL.  0 or -1.
 */
static int
takeover_key(struct cctx *c, const config_setting_t *g,
    struct config_takeover *t, int any)
{
	const config_setting_t	*s = g != NULL ?
	    config_setting_get_member(g, "key_file") : NULL;

	if (c->o->no_key || t->auth != CONFIG_AUTH_HMAC)
		return 0;
	if (c->o->key_file != NULL) {
		free(t->key_file);
		if ((t->key_file = strdup(c->o->key_file)) == NULL)
			return cerr(c, NULL, "takeover.key_file",
			    "out of memory");
		s = NULL;
		any = 1;
	}
	if (!any)
		return 0;
	if (t->key_file == NULL)
		return cerr(c, g, "takeover.key_file", "required when "
		    "takeover is enabled with auth \"hmac\"");
	return load_key(c, s, t);
}

static int
parse_takeover(struct cctx *c, struct config *cf, const config_setting_t *root)
{
	struct config_takeover	*t = &cf->takeover;
	const config_setting_t	*g;
	char			*auth = NULL;
	const char		*why;
	int			 any = 0;

	t->enabled = 0;
	t->auth = CONFIG_AUTH_HMAC;
	t->window_s = 30;
	t->min_interval_s = 10;
	t->timeout_s = 10;
	if ((g = get_group(c, root, "takeover")) == NULL) {
		if (c->failed || default_reply_prefix(c, cf) == -1)
			return -1;
		for (size_t i = 0; i < cf->nvms; i++)
			if (cf->vms[i].takeover == 1)
				return cerr(c, NULL, "takeover.key_file",
				    "VM \"%s\" (line %d) enables takeover: a "
				    "takeover { key_file = ...; } (or auth = "
				    "\"acl\") is required", cf->vms[i].name,
				    cf->vms[i].line);
		return takeover_key(c, NULL, t, 0);
	}
	if (check_members(c, g, "takeover", takeover_keys) == -1 ||
	    get_bool(c, g, "takeover", "enabled", &t->enabled) == -1 ||
	    get_str(c, g, "takeover", "auth", &auth, 0) == -1 ||
	    get_str(c, g, "takeover", "key_file", &t->key_file, 0) == -1 ||
	    get_uint(c, g, "takeover", "window_s", &t->window_s, 1, 3600) == -1 ||
	    get_uint(c, g, "takeover", "min_interval_s", &t->min_interval_s,
	    0, 86400) == -1 ||
	    get_uint(c, g, "takeover", "timeout_s", &t->timeout_s, 1, 600) == -1 ||
	    get_str(c, g, "takeover", "reply_prefix", &t->reply_prefix,
	    0) == -1) {
		free(auth);
		return -1;
	}
	if (t->reply_prefix == NULL) {
		if (default_reply_prefix(c, cf) == -1) {
			free(auth);
			return -1;
		}
	} else if ((why = reply_prefix_check(t->reply_prefix)) != NULL) {
		free(auth);
		return cerr(c, config_setting_get_member(g, "reply_prefix"),
		    "takeover.reply_prefix", "\"%s\": %s", t->reply_prefix,
		    why);
	}
	if (auth != NULL) {
		if (strcmp(auth, "hmac") == 0)
			t->auth = CONFIG_AUTH_HMAC;
		else if (strcmp(auth, "acl") == 0)
			t->auth = CONFIG_AUTH_ACL;
		else {
			free(auth);
			return cerr(c, config_setting_get_member(g, "auth"),
			    "takeover.auth", "must be \"hmac\" or \"acl\"");
		}
		free(auth);
	}
	any = t->enabled;
	for (size_t i = 0; i < cf->nvms; i++)
		if (cf->vms[i].takeover == 1)
			any = 1;
	return takeover_key(c, g, t, any);
}

/* --- homeassistant = { ... } (hass.c) ---------------------------- */

static const char *const hass_keys[] = { "enabled", "prefix", NULL };

/* Off by default; the prefix is checked like a base topic.  0 or -1. */
static int
parse_hass(struct cctx *c, struct config *cf, const config_setting_t *root)
{
	const config_setting_t	*g = get_group(c, root, "homeassistant");
	const char		*why;

	if (c->failed)
		return -1;
	cf->hass.enabled = 0;
	if (g != NULL && (check_members(c, g, "homeassistant",
	    hass_keys) == -1 ||
	    get_bool(c, g, "homeassistant", "enabled", &cf->hass.enabled) == -1 ||
	    get_str(c, g, "homeassistant", "prefix", &cf->hass.prefix, 0) == -1))
		return -1;
	if (cf->hass.prefix == NULL)
		cf->hass.prefix = xstrdup("homeassistant");
	if ((why = topic_base_check(cf->hass.prefix)) != NULL)
		return cerr(c, config_setting_get_member(g, "prefix"),
		    "homeassistant.prefix", "\"%s\": %s", cf->hass.prefix, why);
	return 0;
}

/* --- end of homeassistant ------------------------------------------ */

static const char *const bridge_keys[] = { "host", "id", "state_dir",
    "max_message", "max_input_total", "backoff_min_ms", "backoff_max_ms", "greeting_timeout_ms",
    "command_timeout_ms", "stats_interval_s", "status_interval_s",
    "removed_vm_state", NULL };

static int
parse_bridge(struct cctx *c, struct config *cf, const config_setting_t *root)
{
	const config_setting_t	*g = get_group(c, root, "bridge");
	long long		 maxmsg = 1024 * 1024;
	long long		 maxtot = 64LL * 1024 * 1024;
	char			 hn[256];

	if (c->failed)
		return -1;
	cf->backoff_min_ms = 100;
	cf->backoff_max_ms = 30000;
	cf->greeting_timeout_ms = 5000;
	cf->command_timeout_ms = 10000;
	cf->stats_interval_s = 10;
	cf->status_interval_s = 10;
	if (g != NULL && (check_members(c, g, "bridge", bridge_keys) == -1 ||
	    get_str(c, g, "bridge", "host", &cf->host, 0) == -1 ||
	    get_str(c, g, "bridge", "id", &cf->bridge_id, 0) == -1 ||
	    get_str(c, g, "bridge", "state_dir", &cf->state_dir, 0) == -1 ||
	    get_int(c, g, "bridge", "max_message", &maxmsg, 1024,
	    64LL * 1024 * 1024) == -1 ||
	    get_int(c, g, "bridge", "max_input_total", &maxtot, 1024,
	    16LL * 1024 * 1024 * 1024) == -1 ||
	    get_uint(c, g, "bridge", "backoff_min_ms", &cf->backoff_min_ms,
	    1, 3600000) == -1 ||
	    get_uint(c, g, "bridge", "backoff_max_ms", &cf->backoff_max_ms,
	    1, 3600000) == -1 ||
	    get_uint(c, g, "bridge", "greeting_timeout_ms",
	    &cf->greeting_timeout_ms, 10, 3600000) == -1 ||
	    get_uint(c, g, "bridge", "command_timeout_ms",
	    &cf->command_timeout_ms, 10, 3600000) == -1 ||
	    get_uint(c, g, "bridge", "stats_interval_s", &cf->stats_interval_s,
	    0, 86400) == -1 ||
	    get_uint(c, g, "bridge", "status_interval_s",
	    &cf->status_interval_s, 0, 86400) == -1))
		return -1;
	if (g != NULL && config_setting_get_member(g, "removed_vm_state")) {
		char *rs = NULL;

		if (get_str(c, g, "bridge", "removed_vm_state", &rs, 0) == -1)
			return -1;
		cf->removed_clear = strcmp(rs, "clear") == 0;
		if (!cf->removed_clear && strcmp(rs, "keep") != 0) {
			free(rs);
			return cerr(c, config_setting_get_member(g,
			    "removed_vm_state"), "bridge.removed_vm_state",
			    "must be \"keep\" or \"clear\"");
		}
		free(rs);
	}
	cf->max_msg_bytes = (size_t)maxmsg;
	cf->max_input_total = (size_t)maxtot;
	if (cf->max_input_total < cf->max_msg_bytes)
		return cerr(c, config_setting_get_member(g, "max_input_total"),
		    "bridge.max_input_total", "smaller than max_message");
	if (cf->backoff_max_ms < cf->backoff_min_ms)
		return cerr(c, config_setting_get_member(g, "backoff_max_ms"),
		    "bridge.backoff_max_ms", "smaller than backoff_min_ms");
	if (cf->host == NULL) {
		if (gethostname(hn, sizeof(hn)) == -1)
			return cerr(c, g, "bridge.host", "gethostname: %s",
			    strerror(errno));
		hn[sizeof(hn) - 1] = '\0';
		cf->host = xstrdup(hn);
	}
	if (check_name(c, g ? config_setting_get_member(g, "host") : NULL,
	    "bridge.host", cf->host) == -1)
		return -1;
	if (cf->bridge_id != NULL && strlen(cf->bridge_id) > 256)
		return cerr(c, config_setting_get_member(g, "id"), "bridge.id",
		    "longer than 256 bytes");
	return 0;
}

static const char *const mqtt_keys[] = { "uri", "client_id", "username",
    "password", "password_file", "keepalive", "qos", "version", "base_topic", "buffer_max",
    "inflight_max", "tcp_nodelay", "tls", NULL };
static const char *const tls_keys[] = { "cafile", "capath", "certfile",
    "keyfile", "verify", NULL };

static int
parse_uri(struct cctx *c, const config_setting_t *s, const char *u)
{
	static const char *const schemes[] = { "tcp://", "ssl://", "mqtt://",
	    "mqtts://", "ws://", "wss://", NULL };

	for (const char *const *p = schemes; *p != NULL; p++)
		if (strncmp(u, *p, strlen(*p)) == 0 && u[strlen(*p)] != '\0')
			return 0;
	return cerr(c, s, "mqtt.uri", "\"%s\": expected tcp://HOST:PORT "
	    "(or ssl://, mqtt://, mqtts://, ws://, wss://)", u);
}

static int
parse_mqtt(struct cctx *c, struct config *cf, const config_setting_t *root)
{
	const config_setting_t	*g = get_group(c, root, "mqtt"), *tls;
	config_setting_t	*u;
	long long		 v;
	const char		*why;

	if (c->failed)
		return -1;
	cf->keepalive_s = 30;
	cf->qos = 1;
	cf->mqtt_version = 5;
	cf->buffer_max = 100000;
	cf->inflight_max = 256;
	cf->tcp_nodelay = 1;
	cf->tls_verify = 1;
	if (g == NULL)
		return cerr(c, NULL, "mqtt", "required setting is missing");
	if (check_members(c, g, "mqtt", mqtt_keys) == -1 ||
	    get_str(c, g, "mqtt", "client_id", &cf->client_id, 0) == -1 ||
	    get_str(c, g, "mqtt", "username", &cf->username, 0) == -1 ||
	    get_str(c, g, "mqtt", "password", &cf->password, 0) == -1 ||
	    get_str(c, g, "mqtt", "base_topic", &cf->base_topic, 0) == -1 ||
	    get_bool(c, g, "mqtt", "tcp_nodelay", &cf->tcp_nodelay) == -1)
		return -1;
	v = cf->keepalive_s;
	if (get_int(c, g, "mqtt", "keepalive", &v, 1, 65535) == -1)
		return -1;
	cf->keepalive_s = (int)v;
	v = cf->qos;
	if (get_int(c, g, "mqtt", "qos", &v, 0, 2) == -1)
		return -1;
	cf->qos = (int)v;
	v = cf->mqtt_version;
	if (get_int(c, g, "mqtt", "version", &v, 3, 5) == -1)
		return -1;
	if (v == 4)
		v = 3;	/* 3.1.1 is protocol level 4 */
	cf->mqtt_version = (int)v;
	v = (long long)cf->buffer_max;
	if (get_int(c, g, "mqtt", "buffer_max", &v, 1, 10000000) == -1)
		return -1;
	cf->buffer_max = (size_t)v;
	if (get_uint(c, g, "mqtt", "inflight_max", &cf->inflight_max, 1,
	    65000) == -1)
		return -1;

	if ((u = config_setting_get_member(g, "uri")) == NULL)
		return cerr(c, g, "mqtt.uri", "required setting is missing");
	if (config_setting_type(u) == CONFIG_TYPE_STRING) {
		if (parse_uri(c, u, config_setting_get_string(u)) == -1)
			return -1;
		cf->uris = calloc(1, sizeof(char *));
		cf->uris[cf->nuris++] = xstrdup(config_setting_get_string(u));
	} else if (config_setting_type(u) == CONFIG_TYPE_LIST ||
	    config_setting_type(u) == CONFIG_TYPE_ARRAY) {
		int n = config_setting_length(u);
		if (n == 0)
			return cerr(c, u, "mqtt.uri", "empty list");
		cf->uris = calloc((size_t)n, sizeof(char *));
		for (int i = 0; i < n; i++) {
			config_setting_t *e = config_setting_get_elem(u,
			    (unsigned)i);
			if (config_setting_type(e) != CONFIG_TYPE_STRING)
				return cerr(c, e, "mqtt.uri", "must be strings");
			if (parse_uri(c, e, config_setting_get_string(e)) == -1)
				return -1;
			cf->uris[cf->nuris++] =
			    xstrdup(config_setting_get_string(e));
		}
	} else
		return cerr(c, u, "mqtt.uri", "must be a string or a list of "
		    "strings");

	if (cf->base_topic == NULL)
		cf->base_topic = xstrdup("qmp2mqtt");
	if ((why = topic_base_check(cf->base_topic)) != NULL)
		return cerr(c, config_setting_get_member(g, "base_topic"),
		    "mqtt.base_topic", "\"%s\": %s", cf->base_topic, why);
	if (cf->client_id == NULL) {
		size_t n = strlen(cf->host) + 10;
		cf->client_id = malloc(n);
		snprintf(cf->client_id, n, "qmp2mqtt-%s", cf->host);
	}
	if (cf->client_id[0] == '\0' || strlen(cf->client_id) > 256)
		return cerr(c, config_setting_get_member(g, "client_id"),
		    "mqtt.client_id", "must be 1 to 256 bytes");
	if (cf->bridge_id == NULL)
		cf->bridge_id = xstrdup(cf->client_id);
	if (get_str(c, g, "mqtt", "password_file", &cf->password_file, 0) == -1)
		return -1;
	if (cf->password_file != NULL && cf->password != NULL)
		return cerr(c, config_setting_get_member(g, "password_file"),
		    "mqtt.password_file", "set together with mqtt.password; "
		    "keep only password_file");
	if (cf->password != NULL && cf->username == NULL)
		return cerr(c, config_setting_get_member(g, "password"),
		    "mqtt.password", "set without mqtt.username");
	if (cf->password_file != NULL && cf->username == NULL)
		return cerr(c, config_setting_get_member(g, "password_file"),
		    "mqtt.password_file", "set without mqtt.username");
	if (cf->password != NULL)
		cf->password_inline = 1;
	else if (cf->password_file != NULL &&
	    load_password(c, config_setting_get_member(g, "password_file"),
	    cf) == -1)
		return -1;

	if ((tls = get_group(c, g, "tls")) != NULL) {
		if (check_members(c, tls, "mqtt.tls", tls_keys) == -1 ||
		    get_str(c, tls, "mqtt.tls", "cafile", &cf->cafile, 0) == -1 ||
		    get_str(c, tls, "mqtt.tls", "capath", &cf->capath, 0) == -1 ||
		    get_str(c, tls, "mqtt.tls", "certfile", &cf->certfile, 0) == -1 ||
		    get_str(c, tls, "mqtt.tls", "keyfile", &cf->keyfile, 0) == -1 ||
		    get_bool(c, tls, "mqtt.tls", "verify", &cf->tls_verify) == -1)
			return -1;
	} else if (c->failed)
		return -1;
	return 0;
}

static void
add_warning(struct config *cf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends a formatted warning to cf; out of memory drops it. */
static void
add_warning(struct config *cf, const char *fmt, ...)
{
	va_list	  ap;
	char	**w, *msg;
	int	  n;

	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((w = reallocarray(cf->warnings, cf->nwarnings + 1,
	    sizeof(*w))) == NULL) {
		free(msg);
		return;
	}
	w[cf->nwarnings++] = msg;
	cf->warnings = w;
}

/* 1 when topic level s contains '.', which RabbitMQ turns into '/'. */
static int
has_dot(const char *s)
{
	return s != NULL && strchr(s, '.') != NULL;
}

/*
 * Notes '.' in name (setting where) for the dot warning: the first one
 * is named, the rest counted.
 */
static void
note_dot(const char *where, const char *name, const char **first_where,
    const char **first, size_t *count)
{
	if (!has_dot(name))
		return;
	if ((*count)++ == 0) {
		*first_where = where;
		*first = name;
	}
}

/* Adds the warnings for valid but unsafe settings (see config.h). */
static void
check_warnings(struct config *cf)
{
	const char	*fw = NULL, *fname = NULL;
	size_t		 ndots = 0, i;
	int		 any = cf->takeover.enabled, tls_client = 0;

	for (i = 0; i < cf->nvms; i++)
		if (cf->vms[i].takeover == 1)
			any = 1;
	if (cf->certfile != NULL && cf->keyfile != NULL)
		for (i = 0; i < cf->nuris; i++)
			if (strncmp(cf->uris[i], "ssl://", 6) == 0 ||
			    strncmp(cf->uris[i], "mqtts://", 8) == 0 ||
			    strncmp(cf->uris[i], "wss://", 6) == 0)
				tls_client = 1;
	if (any && cf->takeover.auth == CONFIG_AUTH_ACL &&
	    cf->username == NULL && !tls_client)
		add_warning(cf, "takeover.auth = acl but the bridge connects "
		    "without a username or TLS client certificate: the broker "
		    "cannot apply an ACL to anyone; see README 'Safe fleet "
		    "set-up'");
	if (cf->password_inline)
		add_warning(cf, "mqtt.password is written in the configuration "
		    "file: prefer mqtt.password_file (a file of mode 0600 "
		    "holding the password)");
	if (!cf->tls_verify)
		add_warning(cf, "mqtt.tls.verify = false: the broker's "
		    "certificate and host name are not checked, so anyone on "
		    "the path can pose as the broker (and receive the "
		    "password); use mqtt.tls.cafile / capath instead");
	if (any && cf->mqtt_version == 3)
		add_warning(cf, "takeover is enabled with mqtt.version = 3: "
		    "MQTT 3.1.1 cannot mark retained takeover requests "
		    "reliably; use mqtt.version = 5");

	note_dot("bridge.host", cf->host, &fw, &fname, &ndots);
	for (i = 0; i < cf->nvms; i++) {
		if (strcmp(cf->vms[i].host, cf->host) != 0)	/* not twice */
			note_dot("vms.host", cf->vms[i].host, &fw, &fname,
			    &ndots);
		note_dot("vms.name", cf->vms[i].name, &fw, &fname, &ndots);
		note_dot("vms.peer", cf->vms[i].peer_host, &fw, &fname, &ndots);
		note_dot("vms.peer", cf->vms[i].peer_vm, &fw, &fname, &ndots);
	}
	if (ndots == 1)
		add_warning(cf, "%s \"%s\" contains '.': RabbitMQ maps '.' "
		    "to '/' in MQTT topics, so it becomes two topic levels "
		    "there", fw, fname);
	else if (ndots > 1)
		add_warning(cf, "%s \"%s\" and %zu more topic levels contain "
		    "'.': RabbitMQ maps '.' to '/' in MQTT topics, so they "
		    "become two topic levels there", fw, fname, ndots - 1);
}

static const char *const root_keys[] = { "bridge", "mqtt", "vms", "takeover",
    "discover", "homeassistant", NULL };

struct config *
config_load(const char *path, char *err, size_t errlen)
{
	return config_load_opts(path, NULL, err, errlen);
}

struct config *
config_load_opts(const char *path, const struct config_load_opts *o,
    char *err, size_t errlen)
{
	static const struct config_load_opts none;
	config_t	 lc;
	struct config	*cf;
	struct cctx	 c = { path, err, errlen, 0, o != NULL ? o : &none };
	config_setting_t *root;

	err[0] = '\0';
	if ((cf = calloc(1, sizeof(*cf))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	cf->file = xstrdup(path);
	config_init(&lc);
	if (!config_read_file(&lc, path)) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s: cannot read: %s", path,
			    strerror(errno));
		else
			snprintf(err, errlen, "%s:%d: syntax error: %s",
			    config_error_file(&lc) ? config_error_file(&lc) :
			    path, config_error_line(&lc),
			    config_error_text(&lc));
		config_destroy(&lc);
		config_free(cf);
		return NULL;
	}
	root = config_root_setting(&lc);
	if (check_members(&c, root, "", root_keys) == -1 ||
	    parse_bridge(&c, cf, root) == -1 ||
	    parse_mqtt(&c, cf, root) == -1 ||
	    parse_discover(&c, cf, root) == -1 ||
	    parse_vms(&c, cf, root) == -1 ||
	    parse_takeover(&c, cf, root) == -1 ||
	    parse_hass(&c, cf, root) == -1) {
		config_destroy(&lc);
		config_free(cf);
		return NULL;
	}
	config_destroy(&lc);
	check_warnings(cf);
	return cf;
}

void
config_free(struct config *cf)
{
	if (cf == NULL)
		return;
	for (size_t i = 0; i < cf->nvms; i++) {
		struct config_vm *vm = &cf->vms[i];
		free(vm->name);
		if (vm->host != cf->host)
			free(vm->host);
		free(vm->qmp);
		free(vm->tcp_host);
		free(vm->tcp_port);
		free(vm->peer_host);
		free(vm->peer_vm);
	}
	free(cf->vms);
	for (size_t i = 0; i < cf->ndiscover; i++) {
		struct config_discover *d = &cf->discover[i];
		free(d->glob);
		free(d->dir);
		free(d->pattern);
		free(d->host);
		free(d->name);
		free(d->peer);
	}
	free(cf->discover);
	for (size_t i = 0; i < cf->nuris; i++)
		free(cf->uris[i]);
	free(cf->uris);
	if (cf->takeover.key != NULL)
		explicit_bzero(cf->takeover.key, cf->takeover.key_len);
	free(cf->takeover.key);
	free(cf->takeover.key_file);
	free(cf->takeover.reply_prefix);
	free(cf->hass.prefix);
	for (size_t i = 0; i < cf->nwarnings; i++)
		free(cf->warnings[i]);
	free(cf->warnings);
	free(cf->file);
	free(cf->host);
	free(cf->bridge_id);
	free(cf->state_dir);
	free(cf->client_id);
	free(cf->username);
	if (cf->password != NULL)
		explicit_bzero(cf->password, strlen(cf->password));
	free(cf->password);
	free(cf->password_file);
	free(cf->base_topic);
	free(cf->cafile);
	free(cf->capath);
	free(cf->certfile);
	free(cf->keyfile);
	free(cf);
}

int
config_vm_takeover(const struct config *cf, const struct config_vm *vm)
{
	return vm->takeover == -1 ? cf->takeover.enabled : vm->takeover;
}
