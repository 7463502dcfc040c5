/*
 * topic: MQTT topic names, built and checked in one place.
 *
 * Every topic is <base>/<host>/<vm>/<suffix>, where base may have several
 * levels and host and vm are exactly one level each.  Names that would
 * change a topic's meaning are refused before anything is published: a
 * level may not be empty, contain '/', '+', '#', NUL or other control
 * characters, be invalid UTF-8, or exceed TOPIC_LEVEL_MAX bytes.
 *
 * Invalid UTF-8 includes overlong encodings, UTF-16 surrogates and code
 * points past U+10FFFF.  Control characters are C0 (U+0000-U+001F), DEL
 * and C1 (U+007F-U+009F); Unicode non-characters (U+FDD0-U+FDEF, U+xFFFE,
 * U+xFFFF) are refused as well.  MQTT 5 (1.5.4) says senders should not
 * use these, and mosquitto drops the connection of a client that does.
 */
#ifndef QMP2MQTT_TOPIC_H
#define QMP2MQTT_TOPIC_H

#include <stddef.h>

#define TOPIC_LEVEL_MAX	64	/* bytes in one host or vm name */
#define TOPIC_BASE_MAX	128	/* bytes in the base topic */
#define TOPIC_MAX	512	/* bytes in any topic the bridge builds */

/* Returns NULL if s is a valid single level, else a short reason. */
const char	*topic_level_check(const char *s);
/*
 * Returns NULL if s is a valid base topic (one or more valid levels
 * separated by '/', not starting with '$', at most TOPIC_BASE_MAX bytes),
 * else a short reason.
 */
const char	*topic_base_check(const char *s);

/*
 * Writes "<base>/<host>/<vm>/<suffix>" (suffix may hold '/') into buf.
 * Checks nothing: validate names first.  Returns the length, or -1 when
 * it and its NUL do not fit in len bytes (buf is then "" if len > 0).
 */
int		 topic_build(char *buf, size_t len, const char *base,
		    const char *host, const char *vm, const char *suffix);

/* A received topic, split by topic_parse(); pointers into the topic. */
struct topic_parts {
	const char	*host;
	size_t		 host_len;
	const char	*vm;
	size_t		 vm_len;
	const char	*suffix;	/* rest after "<vm>/", NUL-terminated */
};

/*
 * Splits topic when it is "<base>/<host>/<vm>/<suffix>" with non-empty
 * host, vm and suffix; base matches whole levels only ("q" does not match
 * "qX/h/v/s") and must not be empty.  Returns 0, or -1 when it does not
 * match; the parts are written only on success.
 */
int		 topic_parse(const char *topic, const char *base,
		    struct topic_parts *);

#endif
