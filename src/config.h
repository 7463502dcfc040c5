/*
 * config: the daemon's configuration, parsed and validated whole.
 *
 * config_load() reads a libconfig file (config.c is the only file that
 * includes libconfig), checks every value and cross-reference, and returns
 * a plain struct that the rest of the daemon treats as const.  Any error
 * is reported as "FILE:LINE: key: what is wrong" and nothing is returned,
 * so the daemon never starts half-configured.  Names (host, vm) are
 * checked as MQTT topic levels here, once, so no later code can publish on
 * a topic a hostile name would bend.  Settings that are valid but unsafe
 * (an ACL nobody can be named in, MQTT 3.1.1 with takeover, '.' in a
 * topic level) are kept as warnings in the config for the caller to
 * show.
 */
#ifndef QMP2MQTT_CONFIG_H
#define QMP2MQTT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

enum config_addr { CONFIG_ADDR_UNIX, CONFIG_ADDR_TCP };
enum config_auth { CONFIG_AUTH_HMAC, CONFIG_AUTH_ACL };

struct config_vm {
	char		*name;
	char		*host;		/* default: the config's host itself
					   (not a copy: compare pointers) */
	char		*qmp;		/* as written: unix:/path or tcp:HOST:PORT */
	enum config_addr addr;
	char		*path;		/* unix: points into qmp, not owned */
	char		*tcp_host;	/* tcp */
	char		*tcp_port;	/* tcp */
	int		 takeover;	/* -1: inherit, 0: off, 1: on */
	char		*peer_host;	/* peer = "HOST/VM": the other COLO side */
	char		*peer_vm;	/* both NULL when no peer is set */
	int		 line;		/* line in the file, for messages */
};

/*
 * discover = ( { glob = "/run/qemu/NAME.qmp" (NAME: a pattern); host; name = "%s";
 *   peer = "hv2/%s"; takeover = true; } ): every unix socket matching
 * glob (wildcards in the file name only) is a VM; "%s" in name and peer
 * is the file name without its extension.
 */
struct config_discover {
	char		*glob;		/* as written */
	char		*dir;		/* its directory */
	char		*pattern;	/* its file name pattern (fnmatch) */
	char		*host;		/* default bridge.host */
	char		*name;		/* template; default "%s" */
	char		*peer;		/* template "HOST/VM", or NULL */
	int		 takeover;	/* -1: inherit, 0: off, 1: on */
	int		 line;
};

struct config_takeover {
	int		 enabled;	/* global default */
	enum config_auth auth;
	char		*key_file;	/* hmac */
	unsigned char	*key;		/* loaded key bytes (hmac) */
	size_t		 key_len;
	unsigned	 window_s;	/* stale/replay window */
	unsigned	 min_interval_s;
	unsigned	 timeout_s;	/* how long to wait for mode none */
	char		*reply_prefix;	/* where a Response Topic may point;
					   default "<base_topic>/reply/" */
};

/* homeassistant = { ... }: MQTT discovery (hass.c). */
struct config_hass {
	int		 enabled;	/* default off */
	char		*prefix;	/* discovery prefix, "homeassistant" */
};

struct config {
	char		*file;

	/* bridge = { ... } */
	char		*host;		/* default: gethostname() */
	char		*bridge_id;	/* default: client_id */
	char		*state_dir;	/* NULL: none */
	size_t		 max_msg_bytes;	/* QMP input message limit */
	size_t		 max_input_total; /* all VMs' partial input, bytes */
	unsigned	 backoff_min_ms;
	unsigned	 backoff_max_ms;
	unsigned	 greeting_timeout_ms;
	unsigned	 command_timeout_ms;
	unsigned	 stats_interval_s;	/* 0: off */
	unsigned	 status_interval_s;	/* query-colo-status poll; 0: off */

	/* mqtt = { ... } */
	char		**uris;
	size_t		 nuris;
	char		*client_id;
	char		*username;
	char		*password;	/* inline, or read from password_file */
	char		*password_file;
	int		 password_inline;	/* mqtt.password was set */
	int		 keepalive_s;
	int		 qos;
	int		 mqtt_version;	/* 3 (3.1.1) or 5 */
	char		*base_topic;
	size_t		 buffer_max;	/* queued messages while the broker is away */
	unsigned	 inflight_max;	/* unacknowledged QoS>0 publishes */
	int		 tcp_nodelay;
	char		*cafile;
	char		*capath;
	char		*certfile;
	char		*keyfile;
	int		 tls_verify;

	struct config_takeover takeover;
	struct config_hass hass;

	struct config_vm *vms;
	size_t		 nvms;
	struct config_discover *discover;
	size_t		 ndiscover;
	int		 removed_clear;	/* bridge.removed_vm_state = "clear" */

	/*
	 * Valid but unsafe or fragile settings, one sentence each (without
	 * "warning: "): the daemon logs them at start, -n prints them.
	 */
	char		**warnings;
	size_t		 nwarnings;
};

/*
 * Loads and validates path.  Returns a config, or NULL with a message of
 * the form "FILE:LINE: key: problem" in err.
 */
struct config	*config_load(const char *path, char *err, size_t errlen);
/*
 * What the operator's client (qmp2mqtt-ctl) may change when it reads the
 * daemon's file: the daemon's key may be a credential only it can read.
 */
struct config_load_opts {
	const char	*key_file;	/* read instead of takeover.key_file
					   (whether or not takeover is
					   enabled), or NULL */
	int		 no_key;	/* no takeover key is read at all */
};
/* config_load() with opts (NULL: none). */
struct config	*config_load_opts(const char *path,
		    const struct config_load_opts *, char *err, size_t errlen);
void		 config_free(struct config *);	/* NULL is a no-op */

/* Whether takeover is enabled for vm (per-VM override, else global). */
int		 config_vm_takeover(const struct config *, const struct config_vm *);

#endif
