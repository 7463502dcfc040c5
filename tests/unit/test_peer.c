/*
 * Unit tests for src/peer.c: the pair decision table row by row, and the
 * parsing of what a peer's bridge publishes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "peer.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

static void
feed(struct peer_view *p, const char *bridge, const char *state)
{
	if (bridge != NULL)
		assert_int_not_equal(peer_on_bridge(p, bridge, strlen(bridge)),
		    -1);
	if (state != NULL)
		assert_int_not_equal(peer_on_state(p, state, strlen(state)),
		    -1);
}

#define ONLINE	"{\"schema\":1,\"state\":\"online\",\"host\":\"hvA\"}"
#define OFFLINE	"{\"schema\":1,\"state\":\"offline\",\"host\":\"hvA\"}"
#define ST(mode, last, qmp, live)					\
	"{\"schema\":1,\"host\":\"hvA\",\"vm\":\"pri\",\"mode\":" mode	\
	",\"last_mode\":" last ",\"reason\":null,\"qmp\":\"" qmp "\","	\
	"\"liveness\":" live ",\"peer\":null}"
#define ST_HB(mode, last, qmp, live, hb)				\
	"{\"schema\":1,\"host\":\"hvA\",\"vm\":\"pri\",\"mode\":" mode	\
	",\"last_mode\":" last ",\"reason\":null,\"qmp\":\"" qmp "\","	\
	"\"liveness\":" live ",\"peer\":null,"			\
	"\"heartbeat_unconfirmed\":" hb "}"

static const struct row {
	const char	*name;
	int		 configured;
	const char	*bridge;	/* bridge/state payload, or NULL */
	const char	*state;		/* state payload, or NULL */
	const char	*own;		/* this half's mode */
	enum tk_reason	 want;
} rows[] = {
	{ "no peer configured", 0, NULL, NULL, "secondary", TK_PEER_UNKNOWN },
	{ "nothing heard", 1, NULL, NULL, "secondary", TK_PEER_UNKNOWN },
	{ "state but bridge never seen", 1, NULL,
	  ST("null", "null", "disconnected", "\"gone\""), "secondary",
	  TK_PEER_UNKNOWN },
	{ "bridge online, no state", 1, ONLINE, NULL, "secondary",
	  TK_PEER_UNKNOWN },
	{ "bridge offline, gone", 1, OFFLINE,
	  ST("\"primary\"", "\"none\"", "disconnected", "\"gone\""),
	  "secondary", TK_PEER_UNKNOWN },
	{ "sec: primary alive in COLO", 1, ONLINE,
	  ST("\"primary\"", "\"none\"", "connected", "\"alive\""),
	  "secondary", TK_PEER_ALIVE },
	{ "sec: primary alive after its error exit", 1, ONLINE,
	  ST("\"primary\"", "\"none\"", "connected", "\"alive\""),
	  "secondary", TK_PEER_ALIVE },
	{ "sec: primary unreachable", 1, ONLINE,
	  ST("\"primary\"", "\"none\"", "disconnected", "\"unreachable\""),
	  "secondary", TK_PEER_UNKNOWN },
	{ "sec: primary gone", 1, ONLINE,
	  ST("\"primary\"", "\"none\"", "disconnected", "\"gone\""),
	  "secondary", TK_OK },
	{ "sec: primary took over, alive", 1, ONLINE,
	  ST("\"none\"", "\"primary\"", "connected", "\"alive\""),
	  "secondary", TK_PEER_TOOK_OVER },
	{ "sec: primary took over, then died", 1, ONLINE,
	  ST("\"none\"", "\"primary\"", "disconnected", "\"gone\""),
	  "secondary", TK_PEER_TOOK_OVER },
	{ "sec: liveness of a newer bridge unknown", 1, ONLINE,
	  ST("\"primary\"", "\"none\"", "disconnected", "\"vanished\""),
	  "secondary", TK_PEER_UNKNOWN },
	{ "pri: secondary alive in COLO", 1, ONLINE,
	  ST("\"secondary\"", "\"none\"", "connected", "\"alive\""),
	  "primary", TK_OK },
	{ "pri: secondary unreachable, last seen in COLO", 1, ONLINE,
	  ST("\"secondary\"", "\"none\"", "disconnected", "\"unreachable\""),
	  "primary", TK_OK },
	{ "pri: secondary gone", 1, ONLINE,
	  ST("\"secondary\"", "\"none\"", "disconnected", "\"gone\""),
	  "primary", TK_OK },
	{ "pri: secondary took over", 1, ONLINE,
	  ST("\"none\"", "\"secondary\"", "connected", "\"alive\""),
	  "primary", TK_PEER_TOOK_OVER },
	{ "pri: a fresh QEMU at the secondary's place", 1, ONLINE,
	  ST("\"none\"", "\"none\"", "connected", "\"alive\""),
	  "primary", TK_OK },
	{ "sec: a fresh QEMU at the primary's place", 1, ONLINE,
	  ST("\"none\"", "\"none\"", "connected", "\"alive\""),
	  "secondary", TK_PEER_ALIVE },
	{ "pri: secondary's bridge offline", 1, OFFLINE,
	  ST("\"secondary\"", "\"none\"", "connected", "\"alive\""),
	  "primary", TK_PEER_UNKNOWN },
	{ "pri: secondary's mode unknown", 1, ONLINE,
	  ST("null", "null", "disconnected", "\"unreachable\""),
	  "primary", TK_PEER_UNKNOWN },
	{ "own mode unknown", 1, ONLINE,
	  ST("\"primary\"", "\"none\"", "disconnected", "\"gone\""),
	  NULL, TK_PEER_UNKNOWN },
	{ "own mode none", 1, ONLINE,
	  ST("\"primary\"", "\"none\"", "disconnected", "\"gone\""),
	  "none", TK_PEER_UNKNOWN },
	/* A heartbeat was sent to the peer, its outcome never read. */
	{ "sec: primary sent a heartbeat, then died", 1, ONLINE,
	  ST_HB("\"primary\"", "\"none\"", "disconnected", "\"gone\"",
	  "true"), "secondary", TK_PEER_TOOK_OVER },
	{ "pri: secondary sent a heartbeat, alive", 1, ONLINE,
	  ST_HB("\"secondary\"", "\"none\"", "connected", "\"alive\"",
	  "true"), "primary", TK_PEER_TOOK_OVER },
	{ "sec: primary gone, no heartbeat pending", 1, ONLINE,
	  ST_HB("\"primary\"", "\"none\"", "disconnected", "\"gone\"",
	  "false"), "secondary", TK_OK },
	{ "sec: primary gone, heartbeat_unconfirmed not a boolean", 1, ONLINE,
	  ST_HB("\"primary\"", "\"none\"", "disconnected", "\"gone\"",
	  "\"yes\""), "secondary", TK_OK },
};

static void
test_table(void **state)
{
	for (size_t i = 0; i < NELEM(rows); i++) {
		const struct row	*r = &rows[i];
		struct peer_view	 p;
		const char		*why = NULL;
		enum tk_reason		 got;

		peer_init(&p, r->configured, 0);
		feed(&p, r->bridge, r->state);
		got = peer_check(&p, r->own, &why);
		if (got != r->want)
			fail_msg("%s: want %s, got %s (%s)", r->name,
			    tk_reason_name(r->want), tk_reason_name(got),
			    why ? why : "-");
		if (got != TK_OK && why == NULL)
			fail_msg("%s: no reason given", r->name);
	}
}

/* A local peer: its bridge is this one; a running takeover counts. */
static void
test_local(void **state)
{
	struct peer_view	 p;
	const char		*why;

	peer_init(&p, 1, 1);
	assert_int_equal(peer_check(&p, "secondary", &why), TK_PEER_UNKNOWN);
	assert_int_equal(peer_set_local(&p, "primary", "none", "alive", 1, 0),
	    1);
	assert_int_equal(peer_set_local(&p, "primary", "none", "alive", 1, 0),
	    0);
	assert_int_equal(peer_check(&p, "secondary", &why), TK_PEER_ALIVE);
	assert_int_equal(peer_check(&p, "primary", &why), TK_PEER_UNKNOWN);
	peer_set_local(&p, "secondary", "none", "alive", 1, 1);
	assert_int_equal(peer_check(&p, "primary", &why), TK_PEER_TOOK_OVER);
	peer_set_local(&p, "primary", "none", "gone", 0, 0);
	assert_int_equal(peer_check(&p, "secondary", &why), TK_OK);
}

/* No view (a VM without peer, or no memory for it): unknown. */
static void
test_no_view(void **state)
{
	const char	*why = NULL;

	assert_int_equal(peer_check(NULL, "secondary", &why), TK_PEER_UNKNOWN);
	assert_non_null(why);
}

/* What is not understood changes nothing; empty payloads forget. */
static void
test_parse(void **state)
{
	struct peer_view	 p;
	static const char *const bad[] = { "", "{", "[]", "null", "\"x\"",
	    "{\"state\":1}", "{\"state\":\"maybe\"}", "{} {}" };
	const char		*why;

	peer_init(&p, 1, 0);
	for (size_t i = 1; i < NELEM(bad); i++)
		assert_int_equal(peer_on_bridge(&p, bad[i], strlen(bad[i])), -1);
	assert_int_equal(p.bridge, PEER_BRIDGE_UNKNOWN);
	for (size_t i = 1; i < NELEM(bad) - 4; i++)
		assert_int_equal(peer_on_state(&p, bad[i], strlen(bad[i])), -1);
	assert_int_equal(peer_on_availability(&p, "on", 2), -1);
	assert_int_equal(peer_on_availability(&p, "online", 6), 1);
	assert_int_equal(peer_on_availability(&p, "online", 6), 0);
	feed(&p, ONLINE, ST("\"primary\"", "\"none\"", "disconnected",
	    "\"gone\""));
	assert_int_equal(peer_check(&p, "secondary", &why), TK_OK);
	/* Wrong types are not proof. */
	assert_int_equal(peer_on_state(&p, "{\"mode\":1,\"liveness\":7}", 23),
	    1);
	assert_int_equal(peer_check(&p, "secondary", &why), TK_PEER_UNKNOWN);
	/* A cleared retained state forgets. */
	feed(&p, NULL, ST("\"primary\"", "\"none\"", "disconnected",
	    "\"gone\""));
	assert_int_equal(peer_on_state(&p, "", 0), 1);
	assert_int_equal(peer_check(&p, "secondary", &why), TK_PEER_UNKNOWN);
	/* The bridge going offline withdraws the proof. */
	feed(&p, NULL, ST("\"primary\"", "\"none\"", "disconnected",
	    "\"gone\""));
	assert_int_equal(peer_on_bridge(&p, OFFLINE, strlen(OFFLINE)), 1);
	assert_int_equal(peer_check(&p, "secondary", &why), TK_PEER_UNKNOWN);
}

static void
test_json(void **state)
{
	struct peer_view	 p;
	json_object		*o;

	peer_init(&p, 0, 0);
	assert_null(peer_json(&p, "hvA", "pri"));
	peer_init(&p, 1, 0);
	o = peer_json(&p, "hvA", "pri");
	assert_non_null(o);
	assert_string_equal(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN), "{\"host\":\"hvA\",\"vm\":\"pri\","
	    "\"bridge\":\"unknown\",\"mode\":null,\"last_mode\":null,"
	    "\"qmp\":null,\"liveness\":null}");
	json_object_put(o);
	feed(&p, ONLINE, ST("\"primary\"", "\"none\"", "disconnected",
	    "\"gone\""));
	o = peer_json(&p, "hvA", "pri");
	assert_string_equal(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN), "{\"host\":\"hvA\",\"vm\":\"pri\","
	    "\"bridge\":\"online\",\"mode\":\"primary\",\"last_mode\":\"none\","
	    "\"qmp\":\"disconnected\",\"liveness\":\"gone\"}");
	json_object_put(o);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_local),
		cmocka_unit_test(test_no_view),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
