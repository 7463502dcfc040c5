# make bench: the benchmark (see tests/bench/README.md).  Included by the
# top Makefile, whose B, CC, ALL_CFLAGS, LDFLAGS, LDLIBS and PYTHON it uses.
#
#   make bench                      the whole run (~3 minutes), one table,
#                                   also written to build/bench-results.md
#   make bench BENCH_ARGS=--perf    + one throughput run under perf record
#   make bench BENCH_ARGS='--phases tput --repeat 3'

BENCH_TOOLS = $(B)/bench/sub $(B)/bench/pahopub $(B)/bench/tkpub $(B)/bench/rawpub
BENCH_ARGS ?=

$(B)/bench/%: tests/bench/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS)

bench-tools: $(BENCH_TOOLS)

# The Node.js peer's mqtt.js, from the committed lock file (npm registry).
bench-node:
	@test -d tests/bench/node/node_modules || \
	    (cd tests/bench/node && npm ci --no-audit --no-fund) || \
	    echo "bench: npm ci failed: no Node.js peer column"

bench:
	@EXTRA_PKGS=linux-perf sh scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory bench-tools bench-node
	@$(PYTHON) tests/bench/bench.py --build $(B) \
	    --out build/bench-results.md --run-dir build/bench-run $(BENCH_ARGS)

.PHONY: bench bench-tools bench-node
