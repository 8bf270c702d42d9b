# warren: common tasks. `make run` starts a broker, `make test` runs every test.
CARGO ?= cargo

.PHONY: run build release test test-rust test-clients bench bench-ab bench-durability lint fmt clean fuzz fuzz-build

run: ## Run the broker in the foreground (AMQP on 0.0.0.0:5672, data in ./warren-data)
	$(CARGO) run --release -p warren --

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p warren

test: ## Every test: unit, lapin integration, pika suite, seed scripts, client libraries
	scripts/test.sh

# Client-library compatibility suite (tests/clients); CLIENT=pika (or "pika lapin") runs those only
test-clients:
	$(CARGO) build -p warren
	tests/clients/run.sh $(CLIENT)

bench: ## Side-by-side benchmarks against RabbitMQ and garagemq; writes docs/benchmarks.md
	scripts/bench.sh

bench-ab: ## Throughput of another warren build against this one: make bench-ab BEFORE_BIN=path/to/warren
	$(CARGO) build --release -p warren
	python3 scripts/bench_ab.py $(BEFORE_BIN) target/release/warren

bench-durability: ## Backlog, restart and drain with 1M persistent messages, warren vs RabbitMQ
	cargo build --release -p warren
	python3 scripts/bench_durability.py

test-rust:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean

# Coverage-guided fuzzing (cargo-fuzz + libFuzzer, nightly; docs/fuzzing.md). Not part of
# `make test`. Runs each target for FUZZ_SECONDS, one after another; TARGET=frame runs one.
# New inputs go to crates/warren-fuzz/fuzz/corpus/<target> (not committed); the seeds in
# crates/warren-fuzz/corpus/<target> are read, never written; crashes land in
# crates/warren-fuzz/fuzz/artifacts/<target>. FUZZ_ARGS adds libFuzzer options.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := frame method field_table connection definitions http
TARGET ?= $(FUZZ_TARGETS)
FUZZ_DIR := crates/warren-fuzz/fuzz
FUZZ_CARGO := cargo +nightly fuzz
FUZZ_BUILD_FLAGS ?= --sanitizer none
FUZZ_ARGS ?=

fuzz-build:
	$(FUZZ_CARGO) build --fuzz-dir $(FUZZ_DIR) $(FUZZ_BUILD_FLAGS)

fuzz: fuzz-build
	@set -e; for t in $(TARGET); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
	  $(FUZZ_CARGO) run --fuzz-dir $(FUZZ_DIR) $(FUZZ_BUILD_FLAGS) $$t \
	    $(FUZZ_DIR)/corpus/$$t crates/warren-fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=20 -print_final_stats=1 $(FUZZ_ARGS); \
	done
