/*
 * Unit tests for src/hass.c (Home Assistant discovery configs, pure part)
 * and the homeassistant group of src/config.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "hass.h"
#include "topic.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

static const struct hass_target tgt = {
	"homeassistant", "qmp2mqtt", "hv1", "hv1", "vm1", "7.2.0"
};

static const char *
str(json_object *o, const char *k)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static json_object *
member(json_object *o, const char *k)
{
	json_object *v = NULL;

	json_object_object_get_ex(o, k, &v);
	return v;
}

/* Keys every config carries, whatever the platform. */
static void
check_common(json_object *o)
{
	json_object *d = member(o, "device"), *or = member(o, "origin"), *ids;

	assert_non_null(str(o, "name"));
	assert_non_null(str(o, "unique_id"));
	assert_non_null(d);
	ids = member(d, "identifiers");
	assert_non_null(ids);
	assert_true(json_object_is_type(ids, json_type_array));
	assert_int_equal(json_object_array_length(ids), 1);
	assert_string_equal(str(d, "manufacturer"), "qmp2mqtt");
	assert_non_null(str(d, "name"));
	assert_non_null(str(d, "model"));
	assert_non_null(or);
	assert_string_equal(str(or, "name"), "qmp2mqtt");
	assert_non_null(str(or, "sw_version"));
	/* No abbreviations: HA's full option names only. */
	assert_null(member(o, "uniq_id"));
	assert_null(member(o, "dev"));
	assert_null(member(o, "o"));
	assert_null(member(o, "stat_t"));
}

static void
test_encode(void **state)
{
	static const struct {
		const char	*in, *out;
	} cases[] = {
		{ "vm1", "vm1" },
		{ "web-01", "web-01" },
		{ "a_b", "a_5fb" },
		{ "hv.1", "hv_2e1" },
		{ "my vm", "my_20vm" },
		{ "vm-\xc3\xa9", "vm-_c3_a9" },
		{ "__", "_5f_5f" },
	};
	char	buf[3 * TOPIC_LEVEL_MAX + 1], back[TOPIC_LEVEL_MAX + 1];

	for (size_t i = 0; i < NELEM(cases); i++) {
		int n = hass_encode(buf, sizeof(buf), cases[i].in);

		assert_int_equal(n, (int)strlen(cases[i].out));
		assert_string_equal(buf, cases[i].out);
		assert_null(strstr(buf, "__"));
		assert_int_equal(hass_decode(back, sizeof(back), buf,
		    strlen(buf)), (int)strlen(cases[i].in));
		assert_string_equal(back, cases[i].in);
	}
	/* Injective: names that sanitize alike stay apart. */
	hass_encode(buf, sizeof(buf), "hv.1");
	hass_encode(back, sizeof(back), "hv_1");
	assert_string_not_equal(buf, back);
	/* Not an encoding: bare '_', uppercase hex, escaped letter, NUL. */
	assert_int_equal(hass_decode(back, sizeof(back), "a_", 2), -1);
	assert_int_equal(hass_decode(back, sizeof(back), "a_5F", 4), -1);
	assert_int_equal(hass_decode(back, sizeof(back), "_61", 3), -1);
	assert_int_equal(hass_decode(back, sizeof(back), "_00", 3), -1);
	assert_int_equal(hass_decode(back, sizeof(back), "a.b", 3), -1);
	/* Too small a buffer. */
	assert_int_equal(hass_encode(buf, 3, "abc"), -1);
	assert_int_equal(hass_encode(buf, 4, "a.b"), -1);
}

static void
test_sensor(void **state)
{
	char		 topic[HASS_TOPIC_MAX];
	json_object	*o = hass_config(&tgt, HASS_MODE, topic);
	json_object	*d, *av, *a0, *a1;

	assert_non_null(o);
	check_common(o);
	assert_string_equal(topic,
	    "homeassistant/sensor/qmp2mqtt_hv1/hv1__vm1__mode/config");
	assert_string_equal(str(o, "state_topic"), "qmp2mqtt/hv1/vm1/state");
	assert_non_null(strstr(str(o, "value_template"), "value_json.mode"));
	assert_string_equal(str(o, "unique_id"), "qmp2mqtt_hv1__vm1__mode");
	d = member(o, "device");
	assert_string_equal(json_object_get_string(json_object_array_get_idx(
	    member(d, "identifiers"), 0)), "qmp2mqtt_hv1__vm1");
	assert_string_equal(str(d, "model"), "QEMU 7.2.0");
	assert_string_equal(str(d, "via_device"), "qmp2mqtt_hv1");
	assert_string_equal(str(d, "name"), "hv1/vm1");
	assert_string_equal(str(o, "availability_mode"), "all");
	av = member(o, "availability");
	assert_int_equal(json_object_array_length(av), 2);
	a0 = json_object_array_get_idx(av, 0);
	a1 = json_object_array_get_idx(av, 1);
	assert_string_equal(str(a0, "topic"), "qmp2mqtt/hv1/bridge/state");
	assert_string_equal(str(a0, "value_template"),
	    "{{ value_json.state }}");
	assert_string_equal(str(a0, "payload_available"), "online");
	assert_string_equal(str(a1, "topic"),
	    "qmp2mqtt/hv1/vm1/availability");
	assert_null(member(a1, "value_template"));
	assert_null(member(o, "entity_category"));
	json_object_put(o);

	/* Diagnostic sensors. */
	o = hass_config(&tgt, HASS_EXIT_REASON, topic);
	check_common(o);
	assert_string_equal(str(o, "entity_category"), "diagnostic");
	assert_non_null(strstr(str(o, "value_template"),
	    "value_json.last_exit.reason"));
	json_object_put(o);
	o = hass_config(&tgt, HASS_QMP, topic);
	check_common(o);
	assert_string_equal(topic,
	    "homeassistant/sensor/qmp2mqtt_hv1/hv1__vm1__qmp/config");
	assert_string_equal(str(o, "entity_category"), "diagnostic");
	assert_string_equal(str(o, "device_class"), "enum");
	assert_int_equal(json_object_array_length(member(o, "options")), 2);
	json_object_put(o);
}

static void
test_binary_sensor(void **state)
{
	char		 topic[HASS_TOPIC_MAX];
	json_object	*o = hass_config(&tgt, HASS_PROTECTED, topic);

	check_common(o);
	assert_string_equal(topic, "homeassistant/binary_sensor/qmp2mqtt_hv1/"
	    "hv1__vm1__protected/config");
	assert_string_equal(str(o, "state_topic"), "qmp2mqtt/hv1/vm1/state");
	assert_string_equal(str(o, "payload_on"), "ON");
	assert_string_equal(str(o, "payload_off"), "OFF");
	json_object_put(o);

	o = hass_bridge_config(&tgt, topic);
	assert_non_null(o);
	check_common(o);
	assert_string_equal(topic,
	    "homeassistant/binary_sensor/qmp2mqtt_hv1/bridge/config");
	assert_string_equal(str(o, "state_topic"),
	    "qmp2mqtt/hv1/bridge/state");
	assert_string_equal(str(o, "device_class"), "connectivity");
	assert_string_equal(str(o, "payload_on"), "online");
	assert_null(member(o, "availability"));
	assert_null(member(member(o, "device"), "via_device"));
	json_object_put(o);
}

static void
test_event(void **state)
{
	char		 topic[HASS_TOPIC_MAX];
	json_object	*o = hass_config(&tgt, HASS_EXIT, topic), *et;

	check_common(o);
	assert_string_equal(topic,
	    "homeassistant/event/qmp2mqtt_hv1/hv1__vm1__colo_exit/config");
	assert_string_equal(str(o, "state_topic"),
	    "qmp2mqtt/hv1/vm1/event/colo_exit");
	et = member(o, "event_types");
	assert_int_equal(json_object_array_length(et), 4);
	assert_string_equal(json_object_get_string(
	    json_object_array_get_idx(et, 1)), "error");
	assert_non_null(strstr(str(o, "value_template"), "event_type"));
	json_object_put(o);
}

static void
test_button(void **state)
{
	char		 topic[HASS_TOPIC_MAX];
	json_object	*o = hass_config(&tgt, HASS_TAKEOVER, topic);

	check_common(o);
	assert_string_equal(topic,
	    "homeassistant/button/qmp2mqtt_hv1/hv1__vm1__takeover/config");
	assert_string_equal(str(o, "command_topic"),
	    "qmp2mqtt/hv1/vm1/cmd/takeover");
	assert_null(member(o, "state_topic"));
	assert_non_null(strstr(str(o, "command_template"), "issued_us"));
	assert_false(json_object_get_boolean(member(o, "retain")));
	json_object_put(o);
}

/* Unique ids and topics differ across entities, VMs and hosts. */
static void
test_unique(void **state)
{
	static const struct hass_target ts[] = {
		{ "homeassistant", "qmp2mqtt", "hv1", "hv1", "vm1", NULL },
		{ "homeassistant", "qmp2mqtt", "hv1", "hv1", "vm2", NULL },
		{ "homeassistant", "qmp2mqtt", "hv1", "hv.1", "vm1", NULL },
		{ "homeassistant", "qmp2mqtt", "hv1", "hv_1", "vm1", NULL },
		{ "homeassistant", "qmp2mqtt", "hv1", "hv1", "vm1__mode", NULL },
	};
	char	 ids[NELEM(ts) * HASS_NENTITIES][256];
	char	 topics[NELEM(ts) * HASS_NENTITIES][HASS_TOPIC_MAX];
	size_t	 n = 0;

	for (size_t i = 0; i < NELEM(ts); i++)
		for (int e = 0; e < HASS_NENTITIES; e++) {
			json_object *o = hass_config(&ts[i],
			    (enum hass_entity)e, topics[n]);

			assert_non_null(o);
			snprintf(ids[n], sizeof(ids[n]), "%s",
			    str(o, "unique_id"));
			if (ts[i].qemu == NULL)
				assert_string_equal(str(member(o, "device"),
				    "model"), "QEMU");
			json_object_put(o);
			for (size_t j = 0; j < n; j++) {
				assert_string_not_equal(ids[j], ids[n]);
				assert_string_not_equal(topics[j], topics[n]);
			}
			n++;
		}
}

/* The longest names still give a topic and a config. */
static void
test_long_names(void **state)
{
	char			 name[TOPIC_LEVEL_MAX + 1], base[TOPIC_BASE_MAX + 1];
	char			 topic[HASS_TOPIC_MAX];
	struct hass_target	 t = tgt;
	json_object		*o;

	memset(name, '.', TOPIC_LEVEL_MAX);
	name[TOPIC_LEVEL_MAX] = '\0';
	memset(base, 'b', TOPIC_BASE_MAX);
	base[TOPIC_BASE_MAX] = '\0';
	t.prefix = base;
	t.base = base;
	t.bridge_host = t.host = t.vm = name;
	for (int e = 0; e < HASS_NENTITIES; e++) {
		o = hass_config(&t, (enum hass_entity)e, topic);
		assert_non_null(o);
		assert_true(strlen(topic) < HASS_TOPIC_MAX);
		json_object_put(o);
	}
	o = hass_bridge_config(&t, topic);
	assert_non_null(o);
	json_object_put(o);
}

static char	dir[] = "/tmp/qmp2mqtt-test-hass-XXXXXX";

static struct config *
load(const char *group, char *err, size_t errlen)
{
	char	 path[256];
	FILE	*f;

	snprintf(path, sizeof(path), "%s/t.conf", dir);
	assert_non_null(f = fopen(path, "w"));
	fprintf(f, "mqtt = { uri = \"tcp://127.0.0.1:1883\"; };\n"
	    "vms = ( { name = \"vm1\"; qmp = \"unix:/x\"; } );\n%s\n", group);
	fclose(f);
	return config_load(path, err, errlen);
}

static void
test_config(void **state)
{
	struct config	*cf;
	char		 err[1024];

	assert_non_null(mkdtemp(dir));
	cf = load("", err, sizeof(err));
	assert_non_null(cf);
	assert_int_equal(cf->hass.enabled, 0);
	assert_string_equal(cf->hass.prefix, "homeassistant");
	config_free(cf);
	cf = load("homeassistant = { enabled = true; };", err, sizeof(err));
	assert_non_null(cf);
	assert_int_equal(cf->hass.enabled, 1);
	assert_string_equal(cf->hass.prefix, "homeassistant");
	config_free(cf);
	cf = load("homeassistant = { enabled = true; prefix = \"ha/disc\"; };",
	    err, sizeof(err));
	assert_non_null(cf);
	assert_string_equal(cf->hass.prefix, "ha/disc");
	config_free(cf);
	assert_null(load("homeassistant = { prefix = \"ha/+\"; };", err,
	    sizeof(err)));
	assert_non_null(strstr(err, ":3: homeassistant.prefix:"));
	assert_null(load("homeassistant = { prefix = \"$SYS\"; };", err,
	    sizeof(err)));
	assert_non_null(strstr(err, "homeassistant.prefix"));
	assert_null(load("homeassistant = { prefix = \"\"; };", err,
	    sizeof(err)));
	assert_null(load("homeassistant = { enabled = 1; };", err,
	    sizeof(err)));
	assert_non_null(strstr(err, "homeassistant.enabled: must be true"));
	assert_null(load("homeassistant = { enable = true; };", err,
	    sizeof(err)));
	assert_non_null(strstr(err, "homeassistant.enable: unknown setting"));
	assert_null(load("homeassistant = true;", err, sizeof(err)));
	assert_non_null(strstr(err, "homeassistant: must be a group"));
	{
		char path[256];

		snprintf(path, sizeof(path), "%s/t.conf", dir);
		unlink(path);
		rmdir(dir);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_sensor),
		cmocka_unit_test(test_binary_sensor),
		cmocka_unit_test(test_event),
		cmocka_unit_test(test_button),
		cmocka_unit_test(test_unique),
		cmocka_unit_test(test_long_names),
		cmocka_unit_test(test_config),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
