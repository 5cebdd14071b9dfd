# tally: `make demo` and `make test` install what they need (idempotent) and run.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
TOOLS := .tools
NODE_STAMP := $(TOOLS)/node_modules/.tally-installed
VENV_STAMP := $(VENV)/.tally-installed
DEPLOY_VENV := .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.tally-installed
WITH_DDB := scripts/with-dynamodb-local.sh
WITH_SQS := scripts/with-sqs-local.sh
FEATURES := --features dynamodb-local
# Property-test cases against DynamoDB Local; raise for a longer soak.
TALLY_ORACLE_CASES ?= 150
export TALLY_ORACLE_CASES
ORACLE := aggregates_equal_a_recompute_whatever_the_delivery
# Tests that print counts of what they injected; run apart with --nocapture.
COUNTED := aggregates_stay_exact_through_sdk_level_faults killed_at_random_points generated_rules_files_are_refused_or_keep_aggregates_exact
# `make audit`: cargo-deny, pinned, in a project-local root (not on PATH).
CARGO_DENY_VERSION := 0.20.2
CARGO_DENY := $(TOOLS)/cargo/bin/cargo-deny
ADVISORY_DBS := $${CARGO_HOME:-$$HOME/.cargo}/advisory-dbs

.PHONY: help install java test test-rust test-lambda test-infra test-readme demo bench package template coldstart lint audit clean

help:
	@echo "make demo    - start DynamoDB Local, run tally on a realistic workload, show and verify the aggregates"
	@echo "make test    - install what is needed and run every test (Rust, Lambda emulator, infra)"
	@echo "make bench   - print DynamoDB requests and write units per record for the standard mix, and how long big rules files take to check"
	@echo "make package - sam build of the Lambda function (arm64, offline) and its size"
	@echo "make template [RULES=FILE] - write infra/template.yaml's filter, table and rules file from the rules"
	@echo "make coldstart - time from cargo lambda watch's start to the first invocation served"
	@echo "make lint    - rustfmt and clippy"
	@echo "make audit   - cargo-deny: licenses, bans, sources; advisories when the RustSec db can be had"

install: java $(NODE_STAMP) $(VENV_STAMP)

java:
	@command -v java >/dev/null 2>&1 || { echo "installing Java (DynamoDB Local needs it)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends default-jre-headless >/dev/null; }

$(NODE_STAMP): $(TOOLS)/package.json $(TOOLS)/package-lock.json
	cd $(TOOLS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENV_STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(DEPLOY_STAMP): requirements-deploy.txt
	python3 -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-deploy.txt
	touch $@

test: install test-rust test-lambda test-infra test-readme

test-rust: install
	cargo build --workspace --all-targets $(FEATURES)
	$(WITH_DDB) $(WITH_SQS) cargo test --workspace --all-targets $(FEATURES) -- --skip $(ORACLE) $(foreach t,$(COUNTED),--skip $(t))
	@# Suites that print what they exercised (faults by kind, kills survived, rules files generated), on a server of their own.
	$(WITH_DDB) cargo test $(FEATURES) --test store_sdk_faults --test cli_crashes --test rules_generated -- --nocapture
	@# The oracles (the university's, and the example rule sets') on a server of their own:
	@# tables other tests leave behind slow DynamoDB Local down.
	$(WITH_DDB) cargo test --workspace $(FEATURES) --test store_oracle --test store_examples -- --nocapture $(ORACLE)

# The same build as test-rust's (a no-op after it): building `tally` alone would compile the
# engine again with other features.
test-lambda: install
	cargo build --workspace --all-targets $(FEATURES)
	$(WITH_DDB) scripts/lambda-emulator-test.sh

# tally itself checks the template's rule-given parts (scripts/template-rules.py --check).
test-infra: install
	cargo build --workspace --all-targets $(FEATURES)
	$(VENV)/bin/cfn-lint infra/template.yaml
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider infra/tests

# The README's ```sh blocks, in order, with the debug `tally` (make demo's as scripts/demo.sh).
test-readme: install
	cargo build --workspace --all-targets $(FEATURES)
	$(WITH_DDB) scripts/readme-commands.sh

demo: install
	cargo build --release -p tally-cli --bin tally
	$(WITH_DDB) scripts/demo.sh

bench: install
	$(WITH_DDB) cargo bench --bench cost $(FEATURES)
	cargo bench --bench rules_check $(FEATURES)

# cargo-lambda (from .venv, whose python3 carries zig) cross-compiles for arm64; no Docker, no AWS.
package: install $(DEPLOY_STAMP)
	if command -v rustup >/dev/null 2>&1; then rustup target add aarch64-unknown-linux-gnu; fi
	cd infra && PATH="$(CURDIR)/$(VENV)/bin:$(CURDIR)/$(DEPLOY_VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 \
	  sam build --beta-features
	@$(VENV)/bin/python scripts/package-size.py infra/.aws-sam/build/Function/bootstrap

# The template's filter, table keys and RulesFile default from RULES (default: the university
# rules built in), the file copied into the rules layer (infra/rules/).
template: install
	cargo build --workspace --all-targets $(FEATURES)
	$(VENV)/bin/python scripts/template-rules.py $(RULES)

# The function under cargo-lambda's Runtime API emulator, binary built first; three runs.
coldstart: install
	$(WITH_DDB) scripts/cold-start.sh 3

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets $(FEATURES) -- -D warnings

$(CARGO_DENY):
	cargo install cargo-deny --locked --version $(CARGO_DENY_VERSION) --root $(TOOLS)/cargo

# Licenses, bans and sources need only crates.io. Advisories need the RustSec advisory-db, a git
# repository on GitHub: checked when it can be fetched, else against a copy fetched before, else
# skipped with a notice (this workplace reaches only the package registries). Not part of `test`.
audit: $(CARGO_DENY)
	$(CARGO_DENY) check bans licenses sources
	@if $(CARGO_DENY) fetch db; then \
	  $(CARGO_DENY) --offline check advisories; \
	elif compgen -G "$(ADVISORY_DBS)/*/.git" >/dev/null; then \
	  echo "audit: advisory-db unreachable; checking against the copy already in $(ADVISORY_DBS)"; \
	  $(CARGO_DENY) --offline check advisories; \
	else \
	  echo "audit: advisories NOT checked: the RustSec advisory-db (a GitHub repository) cannot be"; \
	  echo "       fetched from here, and $(ADVISORY_DBS) holds no copy. Where GitHub is reachable"; \
	  echo "       make audit fetches it; a copy cloned there is then used offline when it is not."; \
	fi

clean:
	cargo clean
	rm -rf $(VENV) $(DEPLOY_VENV) $(TOOLS)/node_modules infra/.aws-sam
