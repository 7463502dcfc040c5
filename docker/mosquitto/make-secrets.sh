#!/bin/sh
# The demo stack's broker credentials (docker/compose.yaml, service
# "secrets", run once as root before the others), in the volume on
# SECRETS_DIR (default /secrets):
#   bridge/mqtt.password    the bridge's (user hv1), owner BRIDGE_UID, 0600
#   operator/mqtt.password  the operator's (user operator), owner
#                           OPERATOR_UID, 0600
#   broker/passwd           mosquitto's password_file (mosquitto_passwd
#                           hashes of both), owner mosquitto, 0600
# The two passwords are random, made once: they stay in the volume until
# `down -v` (put your own in the files to choose them).
set -eu
d=${SECRETS_DIR:-/secrets}
umask 077
gen() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
make_one() {	# who uid
	install -d -m 0700 -o "$2" -g "${QMP2MQTT_GID:-10001}" "$d/$1"
	f="$d/$1/mqtt.password"
	[ -s "$f" ] || gen > "$f"
	chown "$2:${QMP2MQTT_GID:-10001}" "$f"
	chmod 0600 "$f"
}
make_one bridge "${BRIDGE_UID:-10001}"
make_one operator "${OPERATOR_UID:-10003}"
install -d -m 0700 -o mosquitto -g mosquitto "$d/broker"
t="$d/broker/passwd.tmp"
printf 'hv1:%s\noperator:%s\n' "$(head -n 1 "$d/bridge/mqtt.password")" \
    "$(head -n 1 "$d/operator/mqtt.password")" > "$t"
mosquitto_passwd -U "$t"
chown mosquitto:mosquitto "$t"
mv -f "$t" "$d/broker/passwd"
echo "make-secrets: broker users hv1 and operator ready in $d"
