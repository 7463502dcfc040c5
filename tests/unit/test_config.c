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
#define VM1	"vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"

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
	/* No copies per VM: the bridge's host, the path within qmp. */
	assert_ptr_equal(cf->vms[0].host, cf->host);
	assert_int_equal(cf->vms[0].addr, CONFIG_ADDR_UNIX);
	assert_string_equal(cf->vms[0].path, "/run/vm1.qmp");
	assert_ptr_equal(cf->vms[0].path, cf->vms[0].qmp + 5);
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

/*
 * The operator's client's options: a key file of its own instead of the
 * configured one (also without a takeover group), or no key at all.
 */
static void
test_load_opts(void **state)
{
	struct config_load_opts	 own = { NULL, 0 }, none = { NULL, 1 };
	char			 kp[300], text[1024];
	struct config		*cf;
	FILE			*f;

	snprintf(kp, sizeof(kp), "%s/own.key", dir);
	assert_non_null(f = fopen(kp, "w"));
	fputs("00112233445566778899aabbccddeeff\n", f);
	fclose(f);
	assert_int_equal(chmod(kp, 0600), 0);
	own.key_file = kp;
	snprintf(text, sizeof(text), MQTT VM1 "takeover = { enabled = true;\n"
	    " key_file = \"/nonexistent/credential.key\"; };\n");
	expect_error(text, 4, "takeover.key_file");
	cf = config_load_opts(path, &none, err, sizeof(err));
	assert_non_null(cf);
	assert_null(cf->takeover.key);
	config_free(cf);
	cf = config_load_opts(path, &own, err, sizeof(err));
	assert_non_null(cf);
	assert_int_equal(cf->takeover.key_len, 32);
	assert_memory_equal(cf->takeover.key, "0011223344556677", 16);
	assert_string_equal(cf->takeover.key_file, kp);
	config_free(cf);
	/* No takeover group: the key named is read all the same. */
	config_free(load(MQTT VM1));
	cf = config_load_opts(path, &own, err, sizeof(err));
	assert_non_null(cf);
	assert_int_equal(cf->takeover.key_len, 32);
	config_free(cf);
	/* It gets the same checks as the configured one. */
	assert_int_equal(chmod(kp, 0644), 0);
	assert_null(config_load_opts(path, &own, err, sizeof(err)));
	assert_non_null(strstr(err, "chmod 600"));
	/* auth "acl": no key is read, whatever the options say. */
	config_free(load(MQTT VM1
	    "takeover = { enabled = true; auth = \"acl\"; };\n"));
	cf = config_load_opts(path, &own, err, sizeof(err));
	assert_non_null(cf);
	assert_null(cf->takeover.key);
	config_free(cf);
	unlink(kp);
}

/* Writes len bytes of c (then a newline if nl) to kp, mode 0600. */
static void
write_key(const char *kp, size_t len, int nl)
{
	FILE	*f;
	size_t	 i;

	unlink(kp);
	assert_non_null(f = fopen(kp, "w"));
	for (i = 0; i < len; i++)
		fputc('k', f);
	if (nl)
		fputc('\n', f);
	fclose(f);
	assert_int_equal(chmod(kp, 0600), 0);
}

static void
test_key_file_rules(void **state)
{
	char		 kp[300], lp[300], text[1024];
	struct config	*cf;

	snprintf(kp, sizeof(kp), "%s/key2", dir);
	snprintf(lp, sizeof(lp), "%s/key2.link", dir);
	snprintf(text, sizeof(text), MQTT
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { enabled = true;\n key_file = \"%s\"; };\n", lp);

	/* A symbolic link, even to a good key, is refused. */
	write_key(kp, 32, 1);
	assert_int_equal(symlink(kp, lp), 0);
	expect_error(text, 4, "takeover.key_file");
	assert_non_null(strstr(err, "is a symbolic link; key_file must name "
	    "the key file itself"));
	unlink(lp);

	/* A FIFO is refused at once (no writer: a blocking open hangs). */
	assert_int_equal(mkfifo(lp, 0600), 0);
	expect_error(text, 4, "takeover.key_file");
	assert_non_null(strstr(err, "not a regular file"));
	unlink(lp);

	snprintf(text, sizeof(text), MQTT
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { enabled = true;\n key_file = \"%s\"; };\n", kp);
	/* Group-readable. */
	chmod(kp, 0640);
	expect_error(text, 4, "takeover.key_file");
	assert_non_null(strstr(err, "chmod 600"));
	chmod(kp, 0600);

	/* 16 bytes refused, 31 refused, 32 accepted (whitespace stripped). */
	write_key(kp, 16, 1);
	expect_error(text, 4, "takeover.key_file");
	assert_non_null(strstr(err, "at least 32 bytes; make one with "
	    "qmp2mqtt-ctl genkey FILE"));
	write_key(kp, 31, 1);
	expect_error(text, 4, "takeover.key_file");
	write_key(kp, 32, 1);
	assert_non_null(cf = load(text));
	assert_int_equal(cf->takeover.key_len, 32);
	config_free(cf);
	/* 4096 bytes accepted, 4097 and 5000 refused. */
	write_key(kp, 4095, 1);
	assert_non_null(cf = load(text));
	assert_int_equal(cf->takeover.key_len, 4095);
	config_free(cf);
	write_key(kp, 4097, 0);
	expect_error(text, 4, "takeover.key_file");
	assert_non_null(strstr(err, "larger than 4096 bytes: not a key file?"));
	write_key(kp, 5000, 0);
	expect_error(text, 4, "takeover.key_file");
	assert_non_null(strstr(err, "larger than 4096 bytes"));

	/* Owned by another user (not root): refused.  Needs root to chown. */
	write_key(kp, 32, 1);
	if (geteuid() == 0) {
		assert_int_equal(chown(kp, 65534, 65534), 0);
		expect_error(text, 4, "takeover.key_file");
		assert_non_null(strstr(err, "owned by uid 65534"));
		/* Owned by root while the daemon is root: fine. */
		assert_int_equal(chown(kp, 0, 0), 0);
		assert_non_null(cf = load(text));
		config_free(cf);
	} else {
		/* As non-root, a root-owned key is accepted (see above). */
		print_message("not root: the other-owner case is skipped\n");
	}
	unlink(kp);
}

static void
test_peer(void **state)
{
	struct config	*cf;

	cf = load(MQTT "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; peer = \"h2/a\"; },\n"
	    " { name = \"b\"; qmp = \"unix:/b\"; } );\n");
	assert_non_null(cf);
	assert_string_equal(cf->vms[0].peer_host, "h2");
	assert_string_equal(cf->vms[0].peer_vm, "a");
	assert_null(cf->vms[1].peer_host);
	assert_null(cf->vms[1].peer_vm);
	config_free(cf);
	/* Same host, other VM: fine. */
	cf = load(MQTT "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; peer = \"h1/b\"; } );\n");
	assert_non_null(cf);
	config_free(cf);

	expect_error(MQTT "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; },\n"
	    " { name = \"b\"; qmp = \"unix:/b\"; peer = \"h2\"; } );\n", 4,
	    "vms[1].peer");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\";\n"
	    " peer = \"h2/a/b\"; } );\n", 3, "vms[0].peer");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\";\n"
	    " peer = \"/a\"; } );\n", 3, "vms[0].peer");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\";\n"
	    " peer = \"h2/\"; } );\n", 3, "vms[0].peer");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\";\n"
	    " peer = \"h+/a\"; } );\n", 3, "vms[0].peer");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\";\n"
	    " peer = \"h2/#\"; } );\n", 3, "vms[0].peer");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\";\n"
	    " peer = 5; } );\n", 3, "vms[0].peer");
	/* The VM itself. */
	expect_error(MQTT "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\";\n"
	    " peer = \"h1/a\"; } );\n", 4, "vms[0].peer");
	assert_non_null(strstr(err, "this VM itself"));
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\";"
	    " host = \"hx\";\n peer = \"hx/a\"; } );\n", 3, "vms[0].peer");
}

static void
test_reply_prefix(void **state)
{
	struct config	*cf;

	cf = load(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n");
	assert_non_null(cf);
	assert_string_equal(cf->takeover.reply_prefix, "qmp2mqtt/reply/");
	config_free(cf);
	cf = load("mqtt = { uri = \"tcp://h:1\"; base_topic = \"x/y\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { auth = \"acl\"; };\n");
	assert_non_null(cf);
	assert_string_equal(cf->takeover.reply_prefix, "x/y/reply/");
	config_free(cf);
	cf = load(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { auth = \"acl\"; reply_prefix = \"ops/answers/\"; };\n");
	assert_non_null(cf);
	assert_string_equal(cf->takeover.reply_prefix, "ops/answers/");
	config_free(cf);
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { auth = \"acl\";\n reply_prefix = \"\"; };\n", 4,
	    "takeover.reply_prefix");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { auth = \"acl\";\n reply_prefix = \"a/+/\"; };\n", 4,
	    "takeover.reply_prefix");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { auth = \"acl\";\n reply_prefix = \"a/#\"; };\n", 4,
	    "takeover.reply_prefix");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { auth = \"acl\";\n reply_prefix = \"$SYS/r/\"; };\n",
	    4, "takeover.reply_prefix");
	expect_error(MQTT "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { auth = \"acl\";\n reply_prefix = 1; };\n", 4,
	    "takeover.reply_prefix");
}

/* 1 if some warning of cf contains s. */
static int
has_warning(const struct config *cf, const char *s)
{
	for (size_t i = 0; i < cf->nwarnings; i++)
		if (strstr(cf->warnings[i], s) != NULL)
			return 1;
	return 0;
}

static void
test_warnings(void **state)
{
	struct config	*cf;

	/* Nothing to say. */
	cf = load(MQTT "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n");
	assert_non_null(cf);
	assert_int_equal(cf->nwarnings, 0);
	assert_null(cf->warnings);
	config_free(cf);

	/* acl without any identity. */
	cf = load(MQTT "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { enabled = true; auth = \"acl\"; };\n");
	assert_non_null(cf);
	assert_int_equal(cf->nwarnings, 1);
	assert_true(has_warning(cf, "takeover.auth = acl but the bridge "
	    "connects without a username or TLS client certificate"));
	config_free(cf);
	/* Per VM only: still. */
	cf = load(MQTT "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; takeover = true; } );\n"
	    "takeover = { auth = \"acl\"; };\n");
	assert_non_null(cf);
	assert_true(has_warning(cf, "cannot apply an ACL"));
	config_free(cf);
	/* Takeover off: no warning. */
	cf = load(MQTT "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { auth = \"acl\"; };\n");
	assert_non_null(cf);
	assert_int_equal(cf->nwarnings, 0);
	config_free(cf);
	/* A username, or a TLS client certificate on ssl://: no warning. */
	cf = load("mqtt = { uri = \"tcp://h:1\"; username = \"u\"; };\n"
	    "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { enabled = true; auth = \"acl\"; };\n");
	assert_non_null(cf);
	assert_int_equal(cf->nwarnings, 0);
	config_free(cf);
	cf = load("mqtt = { uri = \"ssl://h:1\"; tls = { certfile = \"/c\";"
	    " keyfile = \"/k\"; }; };\n"
	    "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { enabled = true; auth = \"acl\"; };\n");
	assert_non_null(cf);
	assert_int_equal(cf->nwarnings, 0);
	config_free(cf);
	/* A client certificate on a plain tcp:// URI is never sent. */
	cf = load("mqtt = { uri = \"tcp://h:1\"; tls = { certfile = \"/c\";"
	    " keyfile = \"/k\"; }; };\n"
	    "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { enabled = true; auth = \"acl\"; };\n");
	assert_non_null(cf);
	assert_true(has_warning(cf, "cannot apply an ACL"));
	config_free(cf);

	/* MQTT 3.1.1 with takeover. */
	cf = load("mqtt = { uri = \"tcp://h:1\"; version = 3;"
	    " username = \"u\"; };\n"
	    "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n"
	    "takeover = { enabled = true; auth = \"acl\"; };\n");
	assert_non_null(cf);
	assert_int_equal(cf->nwarnings, 1);
	assert_true(has_warning(cf, "MQTT 3.1.1 cannot mark retained "
	    "takeover requests reliably; use mqtt.version = 5"));
	config_free(cf);
	cf = load("mqtt = { uri = \"tcp://h:1\"; version = 3; };\n"
	    "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n");
	assert_non_null(cf);
	assert_int_equal(cf->nwarnings, 0);
	config_free(cf);

	/* '.' in a topic level: bridge.host, a VM's name or host, a peer. */
	cf = load(MQTT "bridge = { host = \"h1.example\"; };\n"
	    "vms = ( { name = \"a\"; qmp = \"unix:/a\"; } );\n");
	assert_non_null(cf);
	assert_int_equal(cf->nwarnings, 1);
	assert_true(has_warning(cf, "RabbitMQ maps '.' to '/'"));
	assert_true(has_warning(cf, "bridge.host \"h1.example\""));
	config_free(cf);
	cf = load(MQTT "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"vm.1\"; qmp = \"unix:/a\"; },\n"
	    " { name = \"b\"; qmp = \"unix:/b\"; host = \"h.2\"; },\n"
	    " { name = \"c\"; qmp = \"unix:/c\"; peer = \"p.x/c\"; } );\n");
	assert_non_null(cf);
	assert_int_equal(cf->nwarnings, 1);
	assert_true(has_warning(cf, "vms.name \"vm.1\" and 2 more"));
	config_free(cf);
	cf = load(MQTT "bridge = { host = \"h1\"; };\n"
	    "vms = ( { name = \"c\"; qmp = \"unix:/c\"; peer = \"p/c.1\"; } );\n");
	assert_non_null(cf);
	assert_true(has_warning(cf, "vms.peer \"c.1\""));
	config_free(cf);
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
		cmocka_unit_test(test_load_opts),
		cmocka_unit_test(test_key_file_rules),
		cmocka_unit_test(test_peer),
		cmocka_unit_test(test_reply_prefix),
		cmocka_unit_test(test_warnings),
		cmocka_unit_test(test_missing_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
