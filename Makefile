# warren: common tasks. `make run` starts a broker, `make test` runs every test.
CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: install-tools run build release docker-image test-docker soak test test-repeat test-rust test-clients bench bench-ab bench-durability bench-testing wheel test-wheel lint fmt clean fuzz fuzz-build

run: ## Run the broker in the foreground (AMQP on 0.0.0.0:5672, data in ./warren-data)
	$(CARGO) run --release -p warren --

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p warren

docker-image: ## The warren:dev image from the host-built release binary (docker/Dockerfile.prebuilt)
	scripts/docker_image.sh

test-docker: ## The Docker drop-in tests alone (compose stack, tools, Testcontainers)
	tests/docker/run.sh

test: ## Every test: unit, lapin integration, pika suite, seed scripts, client libraries
	scripts/test.sh

test-repeat: ## The whole suite N times in a row, stopping at the first red run: make test-repeat N=5 [BESIDE="cmd"]
	scripts/test_repeat.sh $(or $(N),5)

# Client-library compatibility suite (tests/clients); CLIENT=pika (or "pika lapin") runs those only
test-clients:
	$(CARGO) build -p warren
	tests/clients/run.sh $(CLIENT)

bench: ## Side-by-side benchmarks against RabbitMQ and garagemq; writes docs/benchmarks.md
	scripts/bench.sh

bench-ab: ## Throughput of another warren build against this one: make bench-ab BEFORE_BIN=path/to/warren
	$(CARGO) build --release -p warren
	python3 scripts/bench_ab.py $(BEFORE_BIN) target/release/warren

soak: ## Mixed load for SOAK_SECONDS (3600) with a SIGKILL every SOAK_KILL_EVERY (600) s, then an audit
	$(CARGO) build --release -p warren
	test -x target/soak-venv/bin/python || (python3 -m venv target/soak-venv && target/soak-venv/bin/pip install -q pika==1.3.2)
	target/soak-venv/bin/python scripts/soak.py

bench-testing: ## warren's pytest fixtures vs pytest-rabbitmq vs Testcontainers (docs/testing.md#measured); PARTS="warren rabbitmq testcontainers"
	$(CARGO) build -p warren
	scripts/bench_testing/run.sh

wheel: ## The release wheel of python/warren-broker (maturin, release build of warren); its path on stdout
	python/warren-broker/build_release.sh

test-wheel: ## The release wheel installed into a fresh venv, then the plugin's tests and examples/pytest-project
	wheel="$$(python/warren-broker/build_release.sh)" && WARREN_WHEEL="$$wheel" python/warren-broker/run_tests.sh

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

install-tools: ## Install warren and link rabbitmqctl, rabbitmq-diagnostics, rabbitmq-plugins, rabbitmqadmin (PREFIX=/usr/local)
	$(CARGO) build --release -p warren
	install -d $(PREFIX)/bin
	install -m 755 $${CARGO_TARGET_DIR:-target}/release/warren $(PREFIX)/bin/warren
	$(PREFIX)/bin/warren install-tools $(PREFIX)/bin

# Coverage-guided fuzzing (cargo-fuzz + libFuzzer, nightly; docs/fuzzing.md). Not part of
# `make test`. Runs each target for FUZZ_SECONDS, one after another; TARGET=frame runs one.
# New inputs go to crates/warren-fuzz/fuzz/corpus/<target> (not committed); the seeds in
# crates/warren-fuzz/corpus/<target> are read, never written; crashes land in
# crates/warren-fuzz/fuzz/artifacts/<target>. FUZZ_ARGS adds libFuzzer options.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := frame method field_table connection definitions http rabbitmq_conf
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
