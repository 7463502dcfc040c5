# qmp2mqtt -- see README.md.
#
#   make            build the daemon, the control client and the simulator
#   make test       install what is missing, build, run the whole suite
#   make test SAN=1 the same under AddressSanitizer + UBSan
#   make run        install what is missing, run the live demo
#   make bench      the benchmark (prints figures, asserts nothing)
#   make fuzz       build and briefly run the libFuzzer targets (clang)
#   make interop    the bridge against mosquitto, ejabberd, RabbitMQ, aedes
#   make install    install into $(DESTDIR)$(PREFIX) (and /etc/qmp2mqtt)
#   make man-lint   check the manual pages with mandoc -T lint

SHELL	:= /bin/bash
PREFIX	?= /usr/local
CC	?= cc
PYTHON	?= /usr/bin/python3
SAN	?= 0

PKGS	 = json-c libconfig libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN	 = -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes \
	   -Wmissing-prototypes -Wformat=2 -Wvla -Wcast-qual -Wwrite-strings \
	   -Wno-unused-parameter -Werror
CFLAGS	?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP
LDLIBS	 = -lpaho-mqtt3as $(PKG_LIBS) -lpthread

ifeq ($(SAN),1)
B	 = build/san
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer \
	   -fno-sanitize-recover=all
LDFLAGS	+= -fsanitize=address,undefined
else
B	 = build/std
endif

LIB_SRC	 = log.c notify.c ratelim.c loop.c jstream.c colo.c topic.c backoff.c config.c secret.c qmp.c \
	   takeover.c tkresult.c tkcache.c tkstore.c failover.c spool.c vmstate.c \
	   rec.c fifo.c mqtt.c mqttconn.c mqttcb.c mqttcode.c peer.c vm.c command.c stats.c fleet.c discover.c bridge.c hass.c
LIB_OBJ	 = $(LIB_SRC:%.c=$(B)/src/%.o)

UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)

BINS	 = $(B)/qmp2mqtt $(B)/qmp2mqtt-ctl $(B)/qmpsim

.SECONDEXPANSION:
.SECONDARY:

all: $(BINS)
	@ln -sfn $(notdir $(B)) build/current

$(B)/src/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(B)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Isrc -c -o $@ $<

$(B)/libqmp2mqtt.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(B)/qmp2mqtt: $(B)/src/main.o $(B)/libqmp2mqtt.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/qmp2mqtt-ctl: $(B)/src/ctl.o $(B)/libqmp2mqtt.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/qmpsim: $(B)/tests/sim/qmpsim.o
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(B)/tests/test_%: $(B)/tests/unit/test_%.o $(B)/libqmp2mqtt.a
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

# test_fifo fails the library's allocations on demand (its __wrap_malloc).
$(B)/tests/test_fifo: LDFLAGS += -Wl,--wrap=malloc -Wl,--wrap=calloc

units: $(UNIT_BIN)

deps:
	@sh scripts/deps.sh

# The whole suite: unit tests, then end-to-end tests against real
# mosquitto, real QEMU and the simulator.  Prints "N passed, N failed".
test: deps
	@$(MAKE) --no-print-directory all units
	@$(PYTHON) tests/run_tests.py --build $(B) $(UNIT_BIN) -- tests/e2e

check: test

run: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory web || echo "run: the fleet page could not be built (make web); the demo runs without it"
	@$(PYTHON) scripts/demo.py --build $(B) $(DEMO_ARGS)

# libFuzzer targets (clang).  New inputs go to build/fuzz/corpus-NAME, never
# into the seed corpora under tests/fuzz/corpus/.
FUZZ_NAMES   = jstream colo takeover config
FUZZ_SECONDS ?= 20
FUZZ_CC      ?= clang
FUZZ_SRC_jstream  = src/jstream.c
FUZZ_SRC_colo     = src/colo.c
FUZZ_SRC_takeover = src/takeover.c src/tkresult.c src/tkcache.c
FUZZ_SRC_config   = src/config.c src/secret.c src/topic.c
FUZZ_BIN = $(FUZZ_NAMES:%=build/fuzz/fuzz_%)

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c src/*.h $$(FUZZ_SRC_$$*)
	@mkdir -p $(@D)
	$(FUZZ_CC) -std=c11 -D_GNU_SOURCE -g -O1 \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    $(PKG_CFLAGS) -Isrc -o $@ $< $(FUZZ_SRC_$*) $(PKG_LIBS)

fuzz-build: $(FUZZ_BIN)

fuzz:
	@EXTRA_PKGS="clang libclang-rt-14-dev" sh scripts/deps.sh
	@$(MAKE) --no-print-directory fuzz-build
	@for n in $(FUZZ_NAMES); do \
	    mkdir -p build/fuzz/corpus-$$n; \
	    echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
	    LSAN_OPTIONS=suppressions=$(CURDIR)/tests/fuzz/lsan.supp \
	    build/fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=build/fuzz/ \
	        build/fuzz/corpus-$$n tests/fuzz/corpus/$$n 2>&1 | \
	        grep -E '^(stat::number_of_executed_units|==[0-9]+==|SUMMARY|INFO: Seed)' ; \
	    test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

# The benchmark (make bench) lives in tests/bench/bench.mk.
-include tests/bench/bench.mk
# The one-hour soak (make soak; not part of make test).
-include tests/soak/soak.mk
# The broker compatibility run (make interop; not part of make test).
-include tests/interop/interop.mk

# Binaries, manual pages, the systemd unit (ExecStart pointed at
# $(PREFIX)/bin), the example configuration in the doc directory, and
# $(SYSCONFDIR)/qmp2mqtt/qmp2mqtt.conf from it only when there is none.
SYSCONFDIR ?= /etc
UNITDIR	   ?= $(PREFIX)/lib/systemd/system
MANDIR	   ?= $(PREFIX)/share/man
MAN1	 = man/qmp2mqtt-ctl.1
MAN5	 = man/qmp2mqtt.conf.5
MAN8	 = man/qmp2mqtt.8

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/qmp2mqtt \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(SYSCONFDIR)/qmp2mqtt
	install -m 0755 $(B)/qmp2mqtt $(DESTDIR)$(PREFIX)/bin/qmp2mqtt
	install -m 0755 $(B)/qmp2mqtt-ctl $(DESTDIR)$(PREFIX)/bin/qmp2mqtt-ctl
	install -m 0644 config/qmp2mqtt.conf README.md $(DESTDIR)$(PREFIX)/share/doc/qmp2mqtt/
	install -m 0644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	sed -e 's|/usr/local/bin/|$(PREFIX)/bin/|g' \
	    -e 's|/etc/qmp2mqtt/|$(SYSCONFDIR)/qmp2mqtt/|g' \
	    config/qmp2mqtt.service > $(DESTDIR)$(UNITDIR)/qmp2mqtt.service.tmp
	chmod 0644 $(DESTDIR)$(UNITDIR)/qmp2mqtt.service.tmp
	mv -f $(DESTDIR)$(UNITDIR)/qmp2mqtt.service.tmp $(DESTDIR)$(UNITDIR)/qmp2mqtt.service
	test -e $(DESTDIR)$(SYSCONFDIR)/qmp2mqtt/qmp2mqtt.conf || \
	    install -m 0640 config/qmp2mqtt.conf $(DESTDIR)$(SYSCONFDIR)/qmp2mqtt/qmp2mqtt.conf

# The manual pages must be clean under mandoc's linter (warnings and up).
man-lint:
	mandoc -T lint -W warning $(MAN1) $(MAN5) $(MAN8)

clean:
	rm -rf build

.PHONY: all units deps test check run install man-lint clean fuzz fuzz-build
-include $(shell find build -name '*.d' 2>/dev/null)

# The live fleet page (web/README.md): the page's files and the browser build
# of mqtt.js (npm, web/package-lock.json) into web/dist, which mosquitto
# serves with http_dir.
WEB_SRC = web/index.html web/fleet.css web/fleet.js
web: web/dist/index.html
web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
web/dist/index.html: $(WEB_SRC) web/node_modules/.package-lock.json
	@mkdir -p web/dist
	cp web/node_modules/mqtt/dist/mqtt.min.js $(WEB_SRC) web/dist/
.PHONY: web
