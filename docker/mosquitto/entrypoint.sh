#!/bin/sh
# Writes the broker's password file from the environment, then runs
# mosquitto in the foreground (it gets the signals: PID 1 after exec).
#   BRIDGE_PASSWORD    password of the user hv1 (the bridge; mqtt.password
#                      in docker/qmp2mqtt.conf)
#   OPERATOR_PASSWORD  password of the user operator (docker/operator.conf)
set -eu
umask 077
f=/run/mosquitto/passwd
: > "$f"
for pair in "hv1:${BRIDGE_PASSWORD:?BRIDGE_PASSWORD is not set}" \
            "operator:${OPERATOR_PASSWORD:?OPERATOR_PASSWORD is not set}"; do
	case "${pair#*:}" in
	""|*:*|*"
"*)	echo "mosquitto-entrypoint: the password of ${pair%%:*} must be" \
		     "non-empty, without ':' or newline" >&2
		exit 1 ;;
	esac
	printf '%s\n' "$pair" >> "$f"
done
# Plain "user:password" lines to salted hashes, in place.
mosquitto_passwd -U "$f"
exec mosquitto -c /etc/mosquitto/qmp2mqtt-broker.conf "$@"
