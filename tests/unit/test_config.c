/*
 * Unit tests for config: defaults, every validation rule, and the shape of
 * error messages ("FILE:LINE: key: problem").
 */
#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static char	dir[] = "/tmp/qmp2mqtt-test-config-XXXXXX";
static char	path[256];
static char	err[1024];

static struct config *
load(const char *text)
{
	FILE *f;

	snprintf(path, sizeof(path), "%s/t.conf", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return config_load(path, err, sizeof(err));
}

/* Expects failure with an error naming FILE:LINE and the key. */
static void
expect_error(const char *text, int line, const char *key)
{
	struct config	*cf = load(text);
	char		 want[300];

	if (cf != NULL) {
		config_free(cf);
		fail_msg("config accepted:\n%s", text);
	}
	if (line > 0)
		snprintf(want, sizeof(want), "%s:%d: %s", path, line, key);
	else
		snprintf(want, sizeof(want), "%s: %s", path, key);
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("error \"%s\" does not start with \"%s\"", err, want);
}

#define MQTT	"mqtt = { uri = \"tcp://127.0.0.1:1883\"; };\n"

static void
test_minimal_defaults(void **state)
{
	struct config *cf = load(MQTT
	    "vms = ( { name = \"vm1\"; qmp = \"unix:/run/vm1.qmp\"; } );\n");
	char hn[256];

	assert_non_null(cf);
	gethostname(hn, sizeof(hn));
	assert_string_equal(cf->host, hn);
	assert_string_equal(cf->base_topic, "qmp2mqtt");
	assert_int_equal(cf->qos, 1);
	assert_int_equal(cf->mqtt_version, 5);
	assert_int_equal(cf->max_msg_bytes, 1024 * 1024);
	assert_int_equal(cf->backoff_min_ms, 100);
	assert_int_equal(cf->backoff_max_ms, 30000);
	assert_int_equal(cf->keepalive_s, 30);
	assert_true(cf->tcp_nodelay);
	assert_int_equal(cf->nuris, 1);
	assert_int_equal(cf->nvms, 1);
	assert_string_equal(cf->vms[0].host, hn);
	assert_int_equal(cf->vms[0].addr, CONFIG_ADDR_UNIX);
	assert_string_equal(cf->vms[0].path, "/run/vm1.qmp");
	assert_int_equal(cf->takeover.enabled, 0);
	assert_int_equal(config_vm_takeover(cf, &cf->vms[0]), 0);
	assert_non_null(strstr(cf->client_id, hn));
	assert_string_equal(cf->bridge_id, cf->client_id);
	config_free(cf);
}

static void
test_full(void **state)
{
	struct config *cf = load(
	    "bridge = { host = \"hv1\"; id = \"b1\"; max_message = 4096;\n"
	    "  backoff_min_ms = 50; backoff_max_ms = 500; };\n"
	    "mqtt = { uri = ( \"tcp://a:1883\", \"tcp://b:1883\" );\n"
	    "  client_id = \"c1\"; qos = 0; version = 3; base_topic = \"x/y\";\n"
	    "  username = \"u\"; password = \"p\"; };\n"
	    "vms = ( { name = \"vm1\"; qmp = \"unix:/a\"; },\n"
	    "  { name = \"vm2\"; qmp = \"tcp:127.0.0.1:4444\"; host = \"hv2\"; },\n"
	    "  { name = \"vm3\"; qmp = \"tcp:[::1]:5555\"; takeover = true; } );\n"
	    "takeover = { enabled = false; auth = \"acl\"; };\n");

	assert_non_null(cf);
	assert_string_equal(cf->host, "hv1");
	assert_string_equal(cf->bridge_id, "b1");
	assert_string_equal(cf->client_id, "c1");
	assert_int_equal(cf->nuris, 2);
	assert_string_equal(cf->uris[1], "tcp://b:1883");
	assert_int_equal(cf->mqtt_version, 3);
	assert_int_equal(cf->qos, 0);
	assert_string_equal(cf->base_topic, "x/y");
	assert_int_equal(cf->max_msg_bytes, 4096);
	assert_string_equal(cf->vms[1].host, "hv2");
	assert_string_equal(cf->vms[1].tcp_host, "127.0.0.1");
	assert_string_equal(cf->vms[1].tcp_port, "4444");
	assert_string_equal(cf->vms[2].tcp_host, "::1");
	assert_string_equal(cf->vms[0].host, "hv1");
	assert_int_equal(config_vm_takeover(cf, &cf->vms[0]), 0);
	assert_int_equal(config_vm_takeover(cf, &cf->vms[2]), 1);
	assert_int_equal(cf->takeover.auth, CONFIG_AUTH_ACL);
	config_free(cf);
}

static void
test_errors(void **state)
{
	expect_error("mqtt = { uri = \"tcp://x:1\" }\nvms = (", 2,
	    "syntax error");
	expect_error(MQTT, 0, "vms");
	expect_error(MQTT "vms = ();\n", 2, "vms");
	expect_error(MQTT "vms = ( { name = \"a\"; } );\n", 2, "vms[0].qmp");
	expect_error(MQTT "vms = ( { qmp = \"unix:/a\"; } );\n", 2,
	    "vms[0].name");
	expect_error(MQTT "vms = ( { name = \"a\";\n qmp = \"foo:bar\"; } );\n",
	    3, "vms.qmp");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"tcp:host\"; } );\n",
	    2, "vms.qmp");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"tcp:h:0\"; } );\n",
	    2, "vms.qmp");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"tcp:h:99999\"; } );\n",
	    2, "vms.qmp");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:\"; } );\n",
	    2, "vms.qmp");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\"; },\n"
	    "{ name = \"a\"; qmp = \"unix:/b\"; } );\n", 3, "vms.name");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\"; },\n"
	    "{ name = \"b\"; qmp = \"unix:/a\"; } );\n", 3, "vms.qmp");
	expect_error(MQTT "vms = ( { name = \"bridge\"; qmp = \"unix:/a\"; } );\n",
	    2, "vms.name");
	expect_error(MQTT "vms = ( { name = \"a/b\"; qmp = \"unix:/a\"; } );\n",
	    2, "vms.name");
	expect_error(MQTT "vms = ( { name = \"a+\"; qmp = \"unix:/a\"; } );\n",
	    2, "vms.name");
	expect_error(MQTT "vms = ( { name = \"#\"; qmp = \"unix:/a\"; } );\n",
	    2, "vms.name");
	expect_error(MQTT "vms = ( { name = \"\"; qmp = \"unix:/a\"; } );\n",
	    2, "vms.name");
	expect_error(MQTT "vms = ( { name = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"; qmp = \"unix:/a\"; } );\n",
	    2, "vms.name");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\";"
	    " host = \"h/1\"; } );\n", 2, "vms.host");
	expect_error("bridge = { host = \"h#\"; };\n" MQTT
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n", 1, "bridge.host");
	expect_error("mqtt = { uri = \"tcp://x:1\";\n qos = 3; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n", 2, "mqtt.qos");
	expect_error("mqtt = { uri = \"tcp://x:1\";\n version = 6; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n", 2,
	    "mqtt.version");
	expect_error("mqtt = { uri = \"http://x:1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n", 1, "mqtt.uri");
	expect_error("mqtt = { uri = \"tcp://x:1\"; base_topic = \"a/+\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n", 1,
	    "mqtt.base_topic");
	expect_error("bridge = {\n max_message = -1; };\n" MQTT
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n", 2,
	    "bridge.max_message");
	expect_error("bridge = {\n max_message = \"big\"; };\n" MQTT
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n", 2,
	    "bridge.max_message");
	expect_error("bridge = { backoff_min_ms = 500;\n backoff_max_ms = 100; };\n"
	    MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n", 2,
	    "bridge.backoff_max_ms");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takover = { enabled = true; };\n", 3, "takover: unknown setting");
	expect_error("mqtt = { uri = \"tcp://x:1\";\n colour = 1; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n", 2,
	    "mqtt.colour: unknown setting");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\";\n"
	    "takeover = \"yes\"; } );\n", 3, "vms.takeover");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { enabled = true; };\n", 3, "takeover.key_file");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { enabled = true;\n auth = \"none\"; };\n", 4,
	    "takeover.auth");
}

static void
test_key_file(void **state)
{
	char	 kp[300], text[1024];
	FILE	*f;
	struct config *cf;

	snprintf(kp, sizeof(kp), "%s/key", dir);
	f = fopen(kp, "w");
	fputs("0123456789abcdef0123456789abcdef\n", f);
	fclose(f);
	snprintf(text, sizeof(text), MQTT
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { enabled = true;\n key_file = \"%s\"; };\n", kp);
	chmod(kp, 0644);
	expect_error(text, 4, "takeover.key_file");
	assert_non_null(strstr(err, "chmod 600"));
	chmod(kp, 0600);
	cf = load(text);
	assert_non_null(cf);
	assert_int_equal(cf->takeover.key_len, 32);	/* newline stripped */
	assert_memory_equal(cf->takeover.key, "0123456789abcdef", 16);
	assert_int_equal(cf->takeover.window_s, 30);
	assert_int_equal(cf->takeover.min_interval_s, 10);
	assert_int_equal(config_vm_takeover(cf, &cf->vms[0]), 1);
	config_free(cf);
	f = fopen(kp, "w");
	fputs("short\n", f);
	fclose(f);
	expect_error(text, 4, "takeover.key_file");
	unlink(kp);
	expect_error(text, 4, "takeover.key_file");
	/* Enabled per VM only: the key is still required. */
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\";"
	    " takeover = true; } );\n", 0, "takeover.key_file");
}

static void
test_missing_file(void **state)
{
	assert_null(config_load("/nonexistent/qmp2mqtt.conf", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/qmp2mqtt.conf"));
	config_free(NULL);
}

static int
setup(void **state)
{
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	unlink(path);
	return rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_key_file),
		cmocka_unit_test(test_missing_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
