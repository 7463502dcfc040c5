/*
 * topic: MQTT topic names, built and checked in one place (see topic.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "topic.h"

/*
 * Decodes one UTF-8 character of the n > 0 bytes at p into *cp.  Returns
 * its length in bytes, or 0 when it is not well-formed UTF-8: a stray
 * continuation byte, a truncated sequence, an overlong encoding, a UTF-16
 * surrogate or a code point above U+10FFFF.
 */
static size_t
utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
	uint32_t	c, min;
	size_t		len, i;

	c = p[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if (c >= 0xc2 && c <= 0xdf) {	/* 0xc0, 0xc1: overlong */
		len = 2;
		c &= 0x1f;
		min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3;
		c &= 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {	/* 0xf5..: > U+10FFFF */
		len = 4;
		c &= 0x07;
		min = 0x10000;
	} else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/*
 * Checks the n bytes at s as one topic level.  Besides the MQTT wildcards
 * and separator, it refuses what MQTT 5 (1.5.4) says a string should not
 * hold and what mosquitto refuses outright: C0 and C1 control characters,
 * DEL and Unicode non-characters.  Returns NULL, or a short reason.
 */
static const char *
level_check(const char *s, size_t n)
{
	const unsigned char	*p = (const unsigned char *)s;
	uint32_t		 cp;
	size_t			 i, l;

	if (n == 0)
		return "empty level";
	if (n > TOPIC_LEVEL_MAX)
		return "level longer than 64 bytes";
	for (i = 0; i < n; i += l) {
		if ((l = utf8_decode(p + i, n - i, &cp)) == 0)
			return "invalid UTF-8";
		if (cp == '/')
			return "contains '/'";
		if (cp == '+' || cp == '#')
			return "contains an MQTT wildcard ('+' or '#')";
		if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
			return "contains a control character";
		if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe)
			return "contains a Unicode non-character";
	}
	return NULL;
}

const char *
topic_level_check(const char *s)
{
	size_t	n;

	if (s == NULL)
		return "missing";
	/* Bound the scan: anything past the limit is too long anyway. */
	n = strnlen(s, TOPIC_LEVEL_MAX + 1);
	return level_check(s, n);
}

const char *
topic_base_check(const char *s)
{
	const char	*p, *slash, *why;
	size_t		 n;

	if (s == NULL)
		return "missing";
	if ((n = strnlen(s, TOPIC_BASE_MAX + 1)) > TOPIC_BASE_MAX)
		return "base topic longer than 128 bytes";
	if (n == 0)
		return "empty";
	if (s[0] == '$')
		return "starts with '$' (reserved by the broker)";
	for (p = s;; p = slash + 1) {
		slash = strchr(p, '/');
		n = slash != NULL ? (size_t)(slash - p) : strlen(p);
		if ((why = level_check(p, n)) != NULL)
			return why;
		if (slash == NULL)
			return NULL;
	}
}

int
topic_build(char *buf, size_t len, const char *base, const char *host,
    const char *vm, const char *suffix)
{
	int	n;

	if (buf == NULL || len == 0 || base == NULL || host == NULL ||
	    vm == NULL || suffix == NULL)
		return -1;
	n = snprintf(buf, len, "%s/%s/%s/%s", base, host, vm, suffix);
	if (n < 0 || (size_t)n >= len) {
		buf[0] = '\0';
		return -1;
	}
	return n;
}

int
topic_parse(const char *topic, const char *base, struct topic_parts *tp)
{
	const char	*host, *vm, *slash;
	size_t		 n;

	if (topic == NULL || base == NULL || (n = strlen(base)) == 0)
		return -1;
	/* The base must match whole levels: "qmp2mqtt" is no "qmp2mqttX". */
	if (strncmp(topic, base, n) != 0 || topic[n] != '/')
		return -1;
	host = topic + n + 1;
	if ((vm = strchr(host, '/')) == NULL || vm == host)
		return -1;
	vm++;
	if ((slash = strchr(vm, '/')) == NULL || slash == vm ||
	    slash[1] == '\0')
		return -1;
	tp->host = host;
	tp->host_len = (size_t)(vm - 1 - host);
	tp->vm = vm;
	tp->vm_len = (size_t)(slash - vm);
	tp->suffix = slash + 1;
	return 0;
}
