/*
 * Unit tests for the pure parts of src/mqtt.c: which broker refusals of a
 * publish are final, and connect failures in words.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "mqtt.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

static const struct refusal_case {
	int	reason;
	int	permanent;
} refusal_cases[] = {
	{ 0x80, 0 },	/* unspecified error */
	{ 0x83, 0 },	/* implementation specific error */
	{ 0x87, 1 },	/* not authorized */
	{ 0x89, 0 },	/* server busy */
	{ 0x90, 1 },	/* topic name invalid */
	{ 0x91, 0 },	/* packet identifier in use */
	{ 0x95, 1 },	/* packet too large */
	{ 0x96, 0 },	/* message rate too high */
	{ 0x97, 0 },	/* quota exceeded */
	{ 0x99, 1 },	/* payload format invalid */
	{ 0x9A, 1 },	/* retain not supported */
	{ 0x9B, 1 },	/* QoS not supported */
	{ 0xFF, 0 },	/* unknown: retried, never lost */
};

static void
test_refusals(void **state)
{
	for (size_t i = 0; i < NELEM(refusal_cases); i++) {
		const struct refusal_case *c = &refusal_cases[i];
		if (mqtt_refusal_permanent(c->reason) != c->permanent)
			fail_msg("reason 0x%02x: permanent %d, want %d",
			    c->reason, !c->permanent, c->permanent);
	}
}

static const struct cause_case {
	int		 version;
	int		 code;
	const char	*text;
	const char	*want[3];	/* substrings that must appear */
	const char	*not;		/* one that must not, or NULL */
} cause_cases[] = {
	{ 3, 1, "CONNACK return code",
	  { "unacceptable protocol version", "(return code 1)" }, "MQTT 5" },
	{ 5, 1, "CONNACK return code",
	  { "unacceptable protocol version", "set mqtt.version = 3" }, NULL },
	{ 3, 2, NULL, { "identifier rejected" }, NULL },
	{ 3, 3, NULL, { "server unavailable" }, NULL },
	{ 3, 4, NULL, { "bad user name or password",
	  "check mqtt.username / password" }, NULL },
	{ 3, 5, NULL, { "not authorized", "the broker's ACL" }, NULL },
	{ 5, 0x84, NULL, { "unsupported protocol version",
	  "this broker does not speak MQTT 5: set mqtt.version = 3" }, NULL },
	{ 5, 0x85, NULL, { "client identifier not valid" }, NULL },
	{ 5, 0x86, NULL, { "bad user name or password", "(reason 0x86)",
	  "check mqtt.username" }, NULL },
	{ 5, 0x87, NULL, { "not authorized", "the broker's ACL" }, NULL },
	{ 5, 0x88, NULL, { "server unavailable" }, NULL },
	{ 5, 0x89, NULL, { "server busy" }, NULL },
	{ 5, 0x8A, NULL, { "banned" }, NULL },
	{ 5, 0x8C, NULL, { "bad authentication method" }, NULL },
	{ 5, 0x9F, NULL, { "connection rate exceeded" }, NULL },
	{ 5, 0xA5, NULL, { "unknown reason", "(reason 0xa5)" }, NULL },
	{ 5, -1, "TCP connect completion failure",
	  { "the broker closed the connection during CONNECT",
	  "set mqtt.version = 3" }, NULL },
	{ 3, -1, "TCP connect completion failure",
	  { "the broker closed the connection during CONNECT" },
	  "mqtt.version" },
	{ 5, -1, "TCP/TLS connect failure",
	  { "TCP/TLS connect failure", "connection refused" }, "CONNECT;" },
	{ 5, -1, NULL, { "" }, NULL },		/* Paho's strerror */
	{ 5, 0, "", { "" }, NULL },
};

static void
test_causes(void **state)
{
	char buf[256];

	for (size_t i = 0; i < NELEM(cause_cases); i++) {
		const struct cause_case *c = &cause_cases[i];
		const char *s = mqtt_connect_cause(c->version, c->code, c->text,
		    buf, sizeof(buf));

		assert_ptr_equal(s, buf);
		assert_true(strlen(s) > 0);
		for (size_t j = 0; j < NELEM(c->want) && c->want[j]; j++)
			if (strstr(s, c->want[j]) == NULL)
				fail_msg("v%d code %d: %s: lacks %s", c->version,
				    c->code, s, c->want[j]);
		if (c->not != NULL && strstr(s, c->not) != NULL)
			fail_msg("v%d code %d: %s: has %s", c->version,
			    c->code, s, c->not);
	}
	/* Truncation always leaves a string. */
	mqtt_connect_cause(5, 0x87, NULL, buf, 8);
	assert_int_equal(strlen(buf), 7);
	buf[0] = 'x';
	mqtt_connect_cause(5, 0x87, NULL, buf, 0);
	assert_int_equal(buf[0], 'x');
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_causes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
