# make interop: the bridge against several MQTT brokers (tests/interop/README.md).
# Included by the top Makefile, whose B, PYTHON and deps it uses.
#
#   make interop                          every broker, table in build/interop.md
#   make interop INTEROP_ARGS='--only rabbitmq aedes'
#
# Installs on demand: the Debian packages rabbitmq-server and ejabberd, and
# nodejs + npm when no npm is on PATH (a NodeSource nodejs brings its own
# npm and conflicts with Debian's), stops the Debian services if they were
# started and disables those it just installed; then aedes from the committed lock file
# (npm ci) into build/interop/aedes.  The brokers run privately on free
# loopback ports, started and stopped by the test itself.

INTEROP_ARGS ?=
INTEROP_AEDES = build/interop/aedes
INTEROP_AEDES_SRC = tests/interop/aedes

interop-deps:
	@new=""; for p in rabbitmq-server ejabberd; do \
	    dpkg-query -W -f '$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || new="$$new $$p"; \
	done; \
	EXTRA_PKGS="rabbitmq-server ejabberd $$(command -v npm >/dev/null 2>&1 || echo nodejs npm)" \
	    sh scripts/deps.sh && \
	$(PYTHON) tests/interop/interop.py --quiet-services $$new
	@mkdir -p $(INTEROP_AEDES)
	@if ! cmp -s $(INTEROP_AEDES_SRC)/package-lock.json $(INTEROP_AEDES)/package-lock.json || \
	    [ ! -d $(INTEROP_AEDES)/node_modules/aedes ]; then \
	    cp $(INTEROP_AEDES_SRC)/package.json $(INTEROP_AEDES_SRC)/package-lock.json $(INTEROP_AEDES)/ && \
	    echo "interop: npm ci (aedes)" && \
	    (cd $(INTEROP_AEDES) && npm ci --no-audit --no-fund --loglevel=error) ; \
	fi
	@cp $(INTEROP_AEDES_SRC)/server.mjs $(INTEROP_AEDES)/

interop: interop-deps
	@$(MAKE) --no-print-directory all
	@$(PYTHON) tests/interop/interop.py --build $(B) --out build/interop.md \
	    --aedes-dir $(INTEROP_AEDES) $(INTEROP_ARGS)

.PHONY: interop interop-deps
