/*
 * qmp2mqtt-ctl: the operator's client for a qmp2mqtt fleet.
 *
 *   qmp2mqtt-ctl [-c FILE] [-v] takeover HOST VM [--expect MODE] [--force]
 *                [--wait SECONDS] [--id ID]
 *   qmp2mqtt-ctl [-c FILE] [-v] status HOST VM [--wait SECONDS]
 *   qmp2mqtt-ctl genkey FILE
 *
 * It reads the broker settings and the takeover key from the daemon's
 * configuration file, so nobody computes an HMAC by hand.  takeover signs
 * and publishes a request, waits for the bridge's result and prints it;
 * status prints the VM's retained state.  It reuses the daemon's own
 * event loop and MQTT module: subscriptions are acknowledged before the
 * request goes out, so the result cannot be missed.  With HMAC auth the
 * request is signed (v2 canonical string, see takeover.h) and only a
 * result signed by the bridge with the same key over every one of its
 * members (result signature v2) is believed: a result signed by an older
 * bridge (v1, "authenticated" not covered) is refused with a line saying
 * so; with acl auth the broker's ACL is all there is, and nothing is
 * verified.
 * genkey writes a new random key file (mode 0600, never overwriting).
 *
 * Exit status: 0 takeover ok / state printed; 1 refused, failed or no
 * answer in time; 2 usage or configuration error.
 */
#include <sys/random.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "mqtt.h"
#include "takeover.h"
#include "tkresult.h"
#include "topic.h"

#define GENKEY_BYTES	32
#define CTL_NOTES_MAX	10	/* ignored results noted one by one */

enum ctl_cmd { CMD_TAKEOVER, CMD_STATUS, CMD_GENKEY };

struct ctl {
	/* From the command line. */
	enum ctl_cmd	 cmd;
	const char	*file;		/* configuration */
	const char	*keyout;	/* genkey FILE */
	const char	*key;		/* --key FILE, or NULL */
	int		 verbose;
	long		 wait_s;	/* -1: the command's default */
	int		 force;

	struct config	*cf;
	struct loop	*loop;
	struct mqtt	*mqtt;
	int		 takeover;	/* 1: takeover, 0: status */
	const char	*host;
	const char	*vm;
	const char	*expect;
	char		 id[TK_ID_MAX + 1];
	char		 t_cmd[TOPIC_MAX];
	char		 t_listen[TOPIC_MAX];
	int		 sent;
	int		 done;
	int		 status;	/* exit status once done */
	char		 unauth[64];	/* last unattributable refusal seen */
	unsigned	 forged;	/* results with our id not believed */
	unsigned	 version;	/* of which signed by another version */
	const char	*version_why;	/* why (static), for the summary */
	unsigned	 ignored;	/* other results not believed or
					   not JSON objects */
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: qmp2mqtt-ctl [-c file] [-v] takeover HOST VM "
	    "[--expect primary|secondary]\n"
	    "                    [--force] [--wait SECONDS] [--id ID] "
	    "[--key FILE]\n"
	    "       qmp2mqtt-ctl [-c file] [-v] status HOST VM [--wait SECONDS]\n"
	    "       qmp2mqtt-ctl genkey FILE\n"
	    "\n"
	    "  takeover  ask the bridge serving HOST to fail VM over "
	    "(x-colo-lost-heartbeat),\n"
	    "            wait for the result and print it; exit 0 only when "
	    "it is \"ok\"\n"
	    "  status    print the VM's retained state\n"
	    "  genkey    write a new random takeover key (64 hex digits) to "
	    "FILE, mode 0600;\n"
	    "            an existing FILE is never overwritten\n"
	    "  -c file   the daemon's configuration (default "
	    "/etc/qmp2mqtt/qmp2mqtt.conf):\n"
	    "            broker, base topic and takeover key are read from it\n"
	    "  --key     the takeover key file to use instead of the one "
	    "the configuration\n"
	    "            names (which, given to the daemon as a systemd "
	    "credential, only\n"
	    "            the daemon can read); status needs no key\n"
	    "  --expect  refuse unless the VM is in this COLO mode\n"
	    "  --force   ask the bridge to take over even when its safety "
	    "checks\n"
	    "            would refuse (signed into the request)\n"
	    "  --wait    seconds to wait for the answer (default 30 for "
	    "takeover, 5 for status)\n"
	    "  --id      request id (default: random)\n"
	    "With takeover.auth = \"hmac\" the request is signed and only a "
	    "result signed\nby the bridge is believed; with \"acl\" nothing "
	    "is verified: the broker's ACL\nis the only protection.\n"
	    "Exit status: 0 ok, 1 refused/failed/timed out, 2 usage or "
	    "configuration error.\n");
}

/*
 * Returns the request JSON (owned by the caller, json_object_put) for
 * issued_us now, signed with HMAC auth, or NULL when it cannot be signed.
 */
static json_object *
build_request(const struct ctl *c, int64_t now)
{
	const struct config_takeover *tc = &c->cf->takeover;
	struct tk_binding	 b = { c->host, c->vm, NULL, NULL, 0 };
	struct tk_request	 r;
	json_object		*o;
	char			 sig[TK_SIG_HEX + 1];

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	json_object_object_add(o, "id", json_object_new_string(c->id));
	json_object_object_add(o, "issued_us", json_object_new_int64(now));
	if (c->expect != NULL)
		json_object_object_add(o, "expect_mode",
		    json_object_new_string(c->expect));
	if (c->force)
		json_object_object_add(o, "force",
		    json_object_new_boolean(1));
	if (tc->auth != CONFIG_AUTH_HMAC)
		return o;
	memset(&r, 0, sizeof(r));
	snprintf(r.id, sizeof(r.id), "%s", c->id);
	r.issued_us = now;
	snprintf(r.expect_mode, sizeof(r.expect_mode), "%s",
	    c->expect ? c->expect : "");
	r.force = c->force;
	if (tk_sign(tc->key, tc->key_len, &b, &r, sig) == -1) {
		json_object_put(o);
		return NULL;
	}
	json_object_object_add(o, "sig", json_object_new_string(sig));
	return o;
}

static void
send_request(struct ctl *c)
{
	json_object	*o;
	const char	*s;
	size_t		 len;

	if ((o = build_request(c, loop_wall_us())) == NULL) {
		fprintf(stderr, "qmp2mqtt-ctl: cannot sign the request\n");
		c->done = 1;
		c->status = 2;
		return;
	}
	s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	mqtt_publish(c->mqtt, c->t_cmd, s, len, 1, 0);
	log_debug("sent %s on %s", s, c->t_cmd);
	json_object_put(o);
	c->sent = 1;
}

static void
on_subscribed(struct mqtt *m, const char *filter, int ok, void *arg)
{
	struct ctl *c = arg;

	if (!ok) {
		fprintf(stderr, "qmp2mqtt-ctl: the broker refused the "
		    "subscription to %s\n", filter);
		c->done = 1;
		c->status = 1;
		return;
	}
	if (c->takeover && !c->sent)
		send_request(c);
}

/*
 * With HMAC auth, a result counts only when the bridge signed every member
 * of it (see tk_verify_result): anyone who may publish on the result
 * topic could otherwise print "ok" for a takeover that never happened, or
 * turn "authenticated" around so that a refusal of somebody else's
 * request with our id passes for the answer to ours.  Returns the
 * verified result (json_object_put() it), or NULL when msg is ignored:
 * counted, and noted on stderr (the first CTL_NOTES_MAX) when it names
 * our request, else logged at debug level.
 */
static json_object *
verified(struct ctl *c, const struct mqtt_msg *msg)
{
	const struct config_takeover *tc = &c->cf->takeover;
	enum tk_result_auth	 r;
	json_object		*o;
	const char		*why;
	char			 id[TK_ID_MAX + 1];

	r = tk_verify_result(tc->key, tc->key_len, c->host, c->vm,
	    msg->payload, msg->len, id, &why, &o);
	if (r == TK_RESULT_OK)
		return o;
	if (strcmp(id, c->id) != 0) {
		c->ignored++;
		log_debug("ignoring a result (%s: %s) for id %s",
		    tk_result_auth_name(r), why ? why : "-", id[0] ? id : "-");
		return NULL;
	}
	c->forged++;
	if (r == TK_RESULT_OLD_VERSION || r == TK_RESULT_NEW_VERSION) {
		c->version++;
		c->version_why = why;
	}
	/* A flood of forgeries costs a few lines, then only the count. */
	if (c->forged > CTL_NOTES_MAX)
		return NULL;
	switch (r) {
	case TK_RESULT_UNSIGNED:
		fprintf(stderr, "qmp2mqtt-ctl: ignoring an unsigned result "
		    "for id %s (not from the bridge?)\n", c->id);
		break;
	case TK_RESULT_BAD_SIG:
		fprintf(stderr, "qmp2mqtt-ctl: ignoring a result with a bad "
		    "signature for id %s: %s\n", c->id, why);
		break;
	case TK_RESULT_OLD_VERSION:
	case TK_RESULT_NEW_VERSION:
		fprintf(stderr, "qmp2mqtt-ctl: ignoring the result for id %s: "
		    "%s\n", c->id, why);
		break;
	case TK_RESULT_MALFORMED:
	case TK_RESULT_OK:
	default:
		fprintf(stderr, "qmp2mqtt-ctl: ignoring a malformed result "
		    "for id %s: %s\n", c->id, why ? why : "-");
		break;
	}
	return NULL;
}

/*
 * Without HMAC auth nothing can be verified: the result as published.
 * Returns it (json_object_put() it), or NULL when it is not a JSON object
 * (counted, logged at debug level).
 */
static json_object *
unverified(struct ctl *c, const struct mqtt_msg *msg)
{
	struct json_tokener	*tok;
	json_object		*o = NULL;

	if (msg->len <= TK_RESULT_MAX && (tok = json_tokener_new()) != NULL) {
		o = json_tokener_parse_ex(tok, msg->payload, (int)msg->len);
		if (json_tokener_get_error(tok) != json_tokener_success) {
			json_object_put(o);
			o = NULL;
		}
		json_tokener_free(tok);
	}
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		c->ignored++;
		log_debug("ignoring a result that is not a JSON object");
		return NULL;
	}
	return o;
}

static void
on_message(struct mqtt *m, const struct mqtt_msg *msg, void *arg)
{
	struct ctl	*c = arg;
	json_object	*o, *v;
	const char	*status, *reason;

	if (c->done || strcmp(msg->topic, c->t_listen) != 0)
		return;
	if (!c->takeover) {
		printf("%.*s\n", (int)msg->len, (const char *)msg->payload);
		c->done = 1;
		c->status = 0;
		return;
	}
	o = c->cf->takeover.auth == CONFIG_AUTH_HMAC ? verified(c, msg) :
	    unverified(c, msg);
	if (o == NULL)
		return;
	if (!json_object_object_get_ex(o, "id", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    strcmp(json_object_get_string(v), c->id) != 0) {
		json_object_put(o);
		return;		/* somebody else's result */
	}
	reason = json_object_object_get_ex(o, "reason", &v) &&
	    json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : "";
	/*
	 * Anyone who may publish on the command topic can make the bridge
	 * answer "bad_signature" (or "replay") with our id.  Such answers are
	 * marked unauthenticated (signed, with HMAC auth): note them, keep
	 * waiting for ours.
	 */
	if ((json_object_object_get_ex(o, "authenticated", &v) &&
	    !json_object_get_boolean(v)) || strcmp(reason, "replay") == 0) {
		fprintf(stderr, "qmp2mqtt-ctl: note: the bridge refused an "
		    "unattributable request with this id (%s); still waiting "
		    "for the answer to ours\n", reason);
		snprintf(c->unauth, sizeof(c->unauth), "%s", reason);
		json_object_put(o);
		return;
	}
	printf("%s\n", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	status = json_object_object_get_ex(o, "status", &v) &&
	    json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : "";
	c->status = strcmp(status, "ok") == 0 ? 0 : 1;
	c->done = 1;
	json_object_put(o);
}

static int
random_id(char *buf, size_t len)
{
	unsigned char	r[12];

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return -1;
	for (size_t i = 0; i < sizeof(r) && 2 * i + 2 < len; i++)
		snprintf(buf + 2 * i, 3, "%02x", r[i]);
	return 0;
}

/*
 * genkey FILE: GENKEY_BYTES from getrandom(2) as lowercase hex and a
 * newline, in a new file of mode 0600 (never an existing one, never
 * through a symbolic link).  Returns the exit status.
 */
static int
genkey(const char *path)
{
	unsigned char	r[GENKEY_BYTES];
	char		hex[2 * GENKEY_BYTES + 2];
	size_t		i;
	int		fd;

	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		fprintf(stderr, "qmp2mqtt-ctl: getrandom: %s\n",
		    strerror(errno));
		return 2;
	}
	for (i = 0; i < sizeof(r); i++)
		snprintf(hex + 2 * i, 3, "%02x", r[i]);
	hex[2 * GENKEY_BYTES] = '\n';
	hex[2 * GENKEY_BYTES + 1] = '\0';
	explicit_bzero(r, sizeof(r));
	if ((fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) == -1) {
		if (errno == EEXIST)
			fprintf(stderr, "qmp2mqtt-ctl: %s already exists; "
			    "refusing to overwrite it\n", path);
		else
			fprintf(stderr, "qmp2mqtt-ctl: %s: %s\n", path,
			    strerror(errno));
		explicit_bzero(hex, sizeof(hex));
		return 2;
	}
	if (fchmod(fd, 0600) == -1 ||
	    write(fd, hex, 2 * GENKEY_BYTES + 1) != 2 * GENKEY_BYTES + 1 ||
	    fsync(fd) == -1 || close(fd) == -1) {
		fprintf(stderr, "qmp2mqtt-ctl: %s: %s\n", path,
		    strerror(errno));
		explicit_bzero(hex, sizeof(hex));
		(void)unlink(path);
		return 2;
	}
	explicit_bzero(hex, sizeof(hex));
	printf("qmp2mqtt-ctl: new takeover key in %s (mode 0600); chown it "
	    "to the user each bridge runs as, and chmod/chown the copies "
	    "you install likewise\n", path);
	return 0;
}

/*
 * Parses the command line into c.  Returns -1 to go on, or the exit
 * status to leave with (0 after --help).
 */
static int
parse_args(struct ctl *c, int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "expect", required_argument, NULL, 'e' },
		{ "wait", required_argument, NULL, 'w' },
		{ "id", required_argument, NULL, 'i' },
		{ "key", required_argument, NULL, 'k' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	char	*end;
	int	 ch, nargs;

	c->file = "/etc/qmp2mqtt/qmp2mqtt.conf";
	c->verbose = -1;
	c->wait_s = -1;
	/* GNU getopt permutes: options may come before or after operands. */
	while ((ch = getopt_long(argc, argv, "c:vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			c->file = optarg;
			break;
		case 'v':
			c->verbose++;
			break;
		case 'e':
			if (strcmp(optarg, "primary") != 0 &&
			    strcmp(optarg, "secondary") != 0) {
				fprintf(stderr, "qmp2mqtt-ctl: --expect takes "
				    "primary or secondary\n");
				return 2;
			}
			c->expect = optarg;
			break;
		case 'f':
			c->force = 1;
			break;
		case 'w':
			errno = 0;
			c->wait_s = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || errno != 0 ||
			    c->wait_s < 1 || c->wait_s > 3600) {
				fprintf(stderr, "qmp2mqtt-ctl: --wait takes 1 to "
				    "3600 seconds\n");
				return 2;
			}
			break;
		case 'i':
			if (strlen(optarg) == 0 || strlen(optarg) > TK_ID_MAX) {
				fprintf(stderr, "qmp2mqtt-ctl: --id takes 1 to %d "
				    "characters\n", TK_ID_MAX);
				return 2;
			}
			snprintf(c->id, sizeof(c->id), "%s", optarg);
			break;
		case 'k':
			c->key = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	nargs = argc - optind;
	if (nargs >= 1 && strcmp(argv[optind], "genkey") == 0) {
		if (nargs != 2 || c->expect != NULL || c->id[0] != '\0' ||
		    c->force || c->wait_s != -1 || c->key != NULL) {
			usage(stderr);
			return 2;
		}
		c->cmd = CMD_GENKEY;
		c->keyout = argv[optind + 1];
		return -1;
	}
	if (nargs != 3) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[optind], "takeover") == 0) {
		c->cmd = CMD_TAKEOVER;
		c->takeover = 1;
	} else if (strcmp(argv[optind], "status") == 0)
		c->cmd = CMD_STATUS;
	else {
		fprintf(stderr, "qmp2mqtt-ctl: unknown command \"%s\"\n",
		    argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!c->takeover && (c->expect != NULL || c->id[0] != '\0' ||
	    c->force || c->key != NULL)) {
		fprintf(stderr, "qmp2mqtt-ctl: --expect, --force, --id and "
		    "--key go with takeover\n");
		return 2;
	}
	c->host = argv[optind + 1];
	c->vm = argv[optind + 2];
	return -1;
}

/*
 * Loads the configuration and prepares the request id and the topics.
 * Returns -1 to go on, or the exit status (c->cf freed).
 */
static int
load_config(struct ctl *c)
{
	struct config_load_opts	 o = { c->key, !c->takeover };
	char			 err[1024];
	const char		*why;

	if ((why = topic_level_check(c->host)) != NULL ||
	    (why = topic_level_check(c->vm)) != NULL) {
		fprintf(stderr, "qmp2mqtt-ctl: bad HOST or VM: %s\n", why);
		return 2;
	}
	/* A status reads retained state: it needs no key. */
	if ((c->cf = config_load_opts(c->file, &o, err, sizeof(err))) == NULL) {
		fprintf(stderr, "qmp2mqtt-ctl: %s\n", err);
		return 2;
	}
	if (c->takeover && c->cf->takeover.auth == CONFIG_AUTH_HMAC &&
	    c->cf->takeover.key == NULL) {
		fprintf(stderr, "qmp2mqtt-ctl: %s: no takeover key: set "
		    "takeover.enabled and takeover.key_file\n", c->file);
		goto fail;
	}
	if (c->wait_s < 0)
		c->wait_s = c->takeover ? 30 : 5;
	/* A client id of its own, so the daemon's session is untouched. */
	free(c->cf->client_id);
	if ((c->cf->client_id = malloc(64)) == NULL)
		fatal("malloc");
	snprintf(c->cf->client_id, 64, "qmp2mqtt-ctl-%ld", (long)getpid());
	if (c->takeover && c->id[0] == '\0' &&
	    random_id(c->id, sizeof(c->id)) == -1)
		fatal("getrandom");
	if (topic_build(c->t_cmd, sizeof(c->t_cmd), c->cf->base_topic,
	    c->host, c->vm, "cmd/takeover") == -1 ||
	    topic_build(c->t_listen, sizeof(c->t_listen), c->cf->base_topic,
	    c->host, c->vm, c->takeover ? "result/takeover" : "state") == -1) {
		fprintf(stderr, "qmp2mqtt-ctl: topic too long\n");
		goto fail;
	}
	return -1;
fail:
	config_free(c->cf);
	c->cf = NULL;
	return 2;
}

/* Says why nothing (believable) came before the deadline. */
static void
report_timeout(const struct ctl *c)
{
	if (!mqtt_connected(c->mqtt))
		fprintf(stderr, "qmp2mqtt-ctl: cannot reach the broker %s\n",
		    c->cf->uris[0]);
	else if (c->takeover && c->unauth[0] != '\0')
		fprintf(stderr, "qmp2mqtt-ctl: request %s was refused as "
		    "\"%s\" (is the key the bridge's?)\n", c->id, c->unauth);
	else if (c->takeover && c->version > 0)
		fprintf(stderr, "qmp2mqtt-ctl: no result for request %s that "
		    "this qmp2mqtt-ctl can verify within %ld s: %s\n", c->id,
		    c->wait_s, c->version_why);
	else if (c->takeover && c->forged > 0)
		fprintf(stderr, "qmp2mqtt-ctl: no result signed by the bridge "
		    "for request %s within %ld s (%u unsigned or badly signed "
		    "result(s) ignored)\n", c->id, c->wait_s, c->forged);
	else if (c->takeover)
		fprintf(stderr, "qmp2mqtt-ctl: no result for request %s "
		    "within %ld s (is a bridge serving %s/%s up?)\n", c->id,
		    c->wait_s, c->host, c->vm);
	else
		fprintf(stderr, "qmp2mqtt-ctl: no retained state for %s/%s\n",
		    c->host, c->vm);
}

/*
 * Connects, subscribes, sends the request once the subscription is
 * acknowledged (on_subscribed) and waits for the answer.  Returns the
 * exit status.
 */
static int
run(struct ctl *c)
{
	struct mqtt_callbacks	mcb = { NULL, NULL, on_message, on_subscribed,
	    NULL };
	uint64_t		deadline;

	if ((c->loop = loop_new()) == NULL ||
	    (c->mqtt = mqtt_new(c->loop, c->cf, NULL, NULL, &mcb, c)) == NULL ||
	    mqtt_subscribe(c->mqtt, c->t_listen, 1, 0) == -1 ||
	    mqtt_start(c->mqtt) == -1)
		fatalx("cannot set up the MQTT client");
	c->status = 1;
	deadline = loop_now_ms() + (uint64_t)c->wait_s * 1000;
	while (!c->done && loop_now_ms() < deadline)
		loop_run_once(c->loop, 100);
	if (!c->done)
		report_timeout(c);
	if (c->forged > CTL_NOTES_MAX)
		fprintf(stderr, "qmp2mqtt-ctl: %u more results for id %s "
		    "ignored (not shown)\n", c->forged - CTL_NOTES_MAX, c->id);
	mqtt_shutdown(c->mqtt, NULL, NULL, 2000);
	mqtt_free(c->mqtt);
	loop_free(c->loop);
	return c->status;
}

int
main(int argc, char *argv[])
{
	struct ctl	c;
	int		rv;

	memset(&c, 0, sizeof(c));
	if ((rv = parse_args(&c, argc, argv)) != -1)
		return rv;
	if (c.cmd == CMD_GENKEY)
		return genkey(c.keyout);
	log_init(c.verbose, "qmp2mqtt-ctl");
	if ((rv = load_config(&c)) != -1)
		return rv;
	rv = run(&c);
	config_free(c.cf);
	return rv;
}
