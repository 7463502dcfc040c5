# The soak test: make soak [SOAK_MINUTES=60] (not part of make test).
# tests/soak/soak.py: 500 simulated VMs at a steady event rate for
# SOAK_MINUTES, broker restarts, QMP closes, RSS/fd table, loss check.
SOAK_MINUTES ?= 60

soak: deps
	@$(MAKE) --no-print-directory all
	@SOAK_MINUTES=$(SOAK_MINUTES) QMP2MQTT_BUILD=$(abspath $(B)) \
	    $(PYTHON) tests/soak/soak.py

.PHONY: soak
