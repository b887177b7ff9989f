# Parley: `make run` starts the whole stack locally, `make test` runs the suite.
# Both set everything up from nothing: virtual environment, dependencies,
# generated protobuf code, and a reachable RabbitMQ.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMPS := .stamps
PROTOS := $(wildcard protos/parley/v1/*.proto)

.PHONY: setup gen broker browser promtool broker-metrics run test chat unit integration bench-matcher bench-gateway bench-ban bench-moderation eval-moderation clean help

help:
	@echo "make run    start gateway, matcher, moderation and ban locally (Ctrl-C stops them)"
	@echo "make chat   open a terminal client against the local gateway"
	@echo "make test   set up from nothing and run the whole test suite"
	@echo "make gen    regenerate protobuf code from protos/"
	@echo "make promtool        install promtool (Debian's prometheus package) for the deploy tests"
	@echo "make broker-metrics  serve the local RabbitMQ's Prometheus metrics on 127.0.0.1:15692"
	@echo "make bench-matcher  drive one matcher through RabbitMQ at rising load; last line JSON"
	@echo "make bench-gateway  two gateways over real WebSockets: idle sessions, relay rate and latency; last line JSON"
	@echo "make bench-ban      CheckBan over gRPC with 1,000,000 active bans, and decision-to-banned time; last line JSON"
	@echo "make bench-moderation  chat lines classified/s by one moderation process through RabbitMQ, the classifier alone, snapshot matches/s against 1,000,000 PDQ hashes; last line JSON"
	@echo "make eval-moderation  precision and recall of the text detectors on tests/eval/moderation (dev and held-out); last line JSON"

# The code generator comes first: the project is installed (editable) once the
# generated package parley/ exists, so that the install maps it.
$(STAMPS)/venv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet grpcio-tools==1.85.1
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/gen: $(STAMPS)/venv $(PROTOS)
	rm -rf parley
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)
	touch parley/__init__.py parley/v1/__init__.py
	@touch $@

$(STAMPS)/install: $(STAMPS)/gen pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

setup: $(STAMPS)/install
gen: $(STAMPS)/gen

broker:
	@deploy/local/ensure-rabbitmq.sh

# Chromium and coturn for the web client's end-to-end test (Debian packages;
# installed when missing and we are root, otherwise says what to run).
browser:
	@deploy/local/ensure-browser.sh

# promtool (Debian's prometheus package) for the deploy tests' `promtool check
# rules` / `check metrics`, and the local broker's own Prometheus metrics
# (rabbitmq_prometheus on 127.0.0.1:15692) for the test that every metric the
# alerts and the dashboard name is exported. Installed / enabled when missing
# and we are root; otherwise they say what to run.
promtool:
	@deploy/local/ensure-promtool.sh

broker-metrics: broker
	@deploy/local/ensure-rabbitmq-prometheus.sh

run: setup broker
	$(BIN)/python -m deploy.local.run_stack

chat: setup
	$(BIN)/parley-chat $(ARGS)

test: setup broker browser promtool broker-metrics
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

unit: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

bench-matcher: setup broker
	$(BIN)/python tests/bench/bench_matcher.py

bench-gateway: setup broker
	$(BIN)/python tests/bench/bench_gateway.py $(ARGS)

bench-ban: setup broker
	$(BIN)/python tests/bench/bench_ban.py $(ARGS)

bench-moderation: setup broker
	$(BIN)/python tests/bench/bench_moderation.py $(ARGS)

# pure logic, no broker: the text detectors on the hand-written evaluation set
eval-moderation: setup
	$(BIN)/python tests/eval/moderation/eval_moderation.py $(ARGS)

clean:
	rm -rf $(VENV) $(STAMPS) parley data .pytest_cache .hypothesis
