# The two commands a newcomer needs: `make run` and `make test`.
# Both create .venv and install the pinned requirements on first use.

PYTHON ?= python3
# Let Python keep compiled modules (__pycache__, ignored by git) even where the environment says not to:
# the test suite starts many gateway processes (manage.py, gunicorn replicas), and each would otherwise
# compile every module again, and pytest would rewrite every test module's asserts again on each run.
unexport PYTHONDONTWRITEBYTECODE
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
# Started as root, the demo still runs its commands as an unprivileged account.
RUN_AS := $(if $(filter 0,$(shell id -u)),RUN_AS_USER=nobody,)

.PHONY: run test test-fast lint demo compile-requirements clean run-as-user browser \
  translations translations-extract translations-update
OIDC_PROVIDER := tests/oidc_provider
UI_TOOLS := tests/ui_tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

# The spawn helper (gateway/runners/launcher.c): sets the parent-death signal and the run-as
# account, then execs the command. Optional: without a C compiler commands start through
# util-linux's setpriv, about 0.8 ms slower per run.
$(BIN)/gateway-launch: gateway/runners/launcher.c | $(BIN)/python
	@if command -v cc >/dev/null 2>&1; then \
	  cc -O2 -Wall -Wextra -Werror -static -o $@ $< 2>/dev/null || cc -O2 -Wall -Wextra -Werror -o $@ $<; \
	  chmod 0755 $@; \
	else echo "no C compiler: commands will start through setpriv"; fi

# The UI's translations (gateway/i18n): translations/<language>/LC_MESSAGES/messages.po is the source,
# committed; its compiled messages.mo is built here from it and never committed (.gitignore).
PO_FILES := $(wildcard translations/*/LC_MESSAGES/messages.po)
MO_FILES := $(PO_FILES:.po=.mo)
PYBABEL_EXTRACT := $(BIN)/pybabel --quiet extract -F babel.cfg -k _l -k lazy_gettext -k N_counted:1,2 -k N_plural:1,2 --no-location --sort-output \
  --project "Ops Gateway" --copyright-holder "Ops Gateway" -o translations/messages.pot .

translations/%/LC_MESSAGES/messages.mo: translations/%/LC_MESSAGES/messages.po | $(VENV)/.runtime-installed
	$(BIN)/pybabel compile --statistics -i $< -o $@

## translations: compile every language's .po into the .mo the gateway reads (run, test and test-fast do it)
translations: $(MO_FILES)

## translations-extract: translations/messages.pot from the strings in gateway/ and templates/ (babel.cfg)
translations-extract: $(VENV)/.runtime-installed
	$(PYBABEL_EXTRACT)

## translations-update: extract, then merge the new strings into every language's .po (translate them there)
translations-update: translations-extract
	$(BIN)/pybabel --quiet update -i translations/messages.pot -d translations
	$(MAKE) translations

## run: the gateway on the embedded default (SQLite, demo users), development mode
run: $(VENV)/.runtime-installed $(BIN)/gateway-launch $(MO_FILES)
	GATEWAY_ENV=development $(BIN)/python manage.py demo
	GATEWAY_ENV=development MFA_REQUIRED=none OPS_DB_URL=sqlite:///$(CURDIR)/instance/demo-ops.db $(RUN_AS) \
	  $(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

# Commands run as this unprivileged account (RUN_AS_USER); the isolation tests need it.
# Created when we are root; otherwise those tests skip locally.
run-as-user:
	@if [ "$$(id -u)" = 0 ] && ! id gatewayrun >/dev/null 2>&1; then \
	  useradd --system --no-create-home --shell /usr/sbin/nologin gatewayrun; fi

# The browser tests drive Debian's Chromium with Playwright (Playwright's own browser download
# does not work here). Installed when we are root; otherwise those tests skip locally.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi

# The OIDC tests sign in at a real OpenID provider (panva's oidc-provider, pinned by its lockfile).
# Without npm they skip locally; CI sets GATEWAY_TEST_REQUIRE_OIDC=1, which makes that a failure.
$(OIDC_PROVIDER)/node_modules/.installed: $(OIDC_PROVIDER)/package.json $(OIDC_PROVIDER)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $(OIDC_PROVIDER) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "no npm: the OIDC tests will skip"; fi

# The browser UI sweep (tests/browser/test_ui_sweep.py) checks every page with axe-core, pinned by its lockfile.
# Without npm the sweep skips locally; CI sets GATEWAY_TEST_REQUIRE_BROWSER=1, which makes that a failure.
$(UI_TOOLS)/node_modules/.installed: $(UI_TOOLS)/package.json $(UI_TOOLS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $(UI_TOOLS) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "no npm: the browser UI sweep will skip"; fi

## test: lint and the whole test suite (PostgreSQL and MariaDB tests run when they answer on 127.0.0.1:5432, :3306)
test: lint $(BIN)/gateway-launch run-as-user browser $(OIDC_PROVIDER)/node_modules/.installed $(UI_TOOLS)/node_modules/.installed $(MO_FILES)
	$(BIN)/pytest -n 2 --durations=30

## test-fast: the quick loop: the embedded engine (SQLite) only, without the slow (multi-process,
## browser) tests; `make test` (and CI) runs everything, PostgreSQL and MariaDB included
test-fast: $(VENV)/.dev-installed $(BIN)/gateway-launch $(OIDC_PROVIDER)/node_modules/.installed $(MO_FILES)
	$(BIN)/pytest -n 2 -m "not slow and not postgres and not mariadb" -k "not postgresql"

# Bandit fails on any finding; an accepted one carries `# nosec BXXX  # reason` on its line.
BANDIT_LEVEL ?= low

## lint: ruff (lint and format), bandit on gateway/ and mypy (settings in pyproject.toml)
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/bandit -q -c pyproject.toml -r gateway --severity-level $(BANDIT_LEVEL)
	$(BIN)/mypy

## compile-requirements: re-pin requirements*.txt from requirements*.in
compile-requirements: $(VENV)/.dev-installed
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links -o requirements.txt requirements.in
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links -o requirements-dev.txt requirements-dev.in

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
