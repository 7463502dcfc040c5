/*
 * mqttcode: MQTT reason codes and connect failures in words (pure).
 */
#include <stdio.h>
#include <string.h>

#include "mqtt_int.h"


int
mqtt_refusal_permanent(int reason)
{
	switch (reason) {
	case 0x87:	/* not authorized */
	case 0x90:	/* topic name invalid */
	case 0x95:	/* packet too large */
	case 0x99:	/* payload format invalid */
	case 0x9A:	/* retain not supported */
	case 0x9B:	/* QoS not supported */
		return 1;
	default:	/* unspecified, implementation specific, quota... */
		return 0;
	}
}

/* An MQTT 5 reason code in words, or NULL. */
const char *
mqtt_reason_str(int code)
{
	switch (code) {
	case 0x80: return "unspecified error";
	case 0x81: return "malformed packet";
	case 0x82: return "protocol error";
	case 0x83: return "implementation specific error";
	case 0x84: return "unsupported protocol version";
	case 0x85: return "client identifier not valid";
	case 0x86: return "bad user name or password";
	case 0x87: return "not authorized";
	case 0x88: return "server unavailable";
	case 0x89: return "server busy";
	case 0x8A: return "banned";
	case 0x8B: return "server shutting down";
	case 0x8C: return "bad authentication method";
	case 0x8D: return "keep alive timeout";
	case 0x8E: return "session taken over";
	case 0x90: return "topic name invalid";
	case 0x91: return "packet identifier in use";
	case 0x93: return "receive maximum exceeded";
	case 0x95: return "packet too large";
	case 0x96: return "message rate too high";
	case 0x97: return "quota exceeded";
	case 0x99: return "payload format invalid";
	case 0x9A: return "retain not supported";
	case 0x9B: return "QoS not supported";
	case 0x9C: return "use another server";
	case 0x9D: return "server moved";
	case 0x9F: return "connection rate exceeded";
	default: return NULL;
	}
}

#define HINT_AUTH	"check mqtt.username / password / the broker's ACL"
#define HINT_V3		"this broker does not speak MQTT 5: set mqtt.version = 3"

const char *
mqtt_connect_cause(int version, int code, const char *text, char *buf,
    size_t len)
{
	const char *s = NULL, *hint = NULL;

	if (len == 0)
		return buf;
	if (code >= 0x80) {
		s = mqtt_reason_str(code);
		if (code == 0x84)
			hint = HINT_V3;
		else if (code == 0x86 || code == 0x87)
			hint = HINT_AUTH;
		else if (code == 0x85)
			hint = "check mqtt.client_id";
		snprintf(buf, len, "broker refused the connection: %s "
		    "(reason 0x%02x)%s%s", s ? s : "unknown reason", code,
		    hint ? ": " : "", hint ? hint : "");
		return buf;
	}
	if (code > 0) {
		/* An MQTT 3.1.1 CONNACK return code (also what a 3.1.1-only
		 * broker answers to an MQTT 5 CONNECT: 1). */
		switch (code) {
		case 1:
			s = "unacceptable protocol version";
			hint = version == 5 ? HINT_V3 : NULL;
			break;
		case 2:
			s = "identifier rejected";
			hint = "check mqtt.client_id";
			break;
		case 3:
			s = "server unavailable";
			break;
		case 4:
			s = "bad user name or password";
			hint = HINT_AUTH;
			break;
		case 5:
			s = "not authorized";
			hint = HINT_AUTH;
			break;
		}
		snprintf(buf, len, "broker refused the connection: %s "
		    "(return code %d)%s%s", s ? s : "unknown return code", code,
		    hint ? ": " : "", hint ? hint : "");
		return buf;
	}
	/*
	 * Paho's own failure.  1.3.12 says "TCP/TLS connect failure" when
	 * the TCP connection (or the TLS handshake) failed, and "TCP connect
	 * completion failure" when the socket failed after the CONNECT was
	 * sent, before any CONNACK: the broker closed it, which is what a
	 * 3.1.1-only broker may do to an MQTT 5 CONNECT.
	 */
	if (text == NULL || *text == '\0')
		text = MQTTAsync_strerror(code);
	if (text == NULL)
		text = "connect failed";
	if (strstr(text, "connect completion") != NULL)
		snprintf(buf, len, "%s: the broker closed the connection during "
		    "CONNECT%s", text, version == 5 ? "; if it does not speak "
		    "MQTT 5, set mqtt.version = 3" : "");
	else if (strstr(text, "TCP/TLS connect failure") != NULL)
		snprintf(buf, len, "%s: connection refused or unreachable, or "
		    "the TLS handshake failed", text);
	else
		snprintf(buf, len, "%s", text);
	return buf;
}
