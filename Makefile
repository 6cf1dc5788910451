# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
DEMO_PASSWORD ?= demo-labeling
export PYTHON := $(abspath $(PY))
export PORT DEMO_PASSWORD

# Tests use the PostgreSQL and Redis on this machine; each run makes (and drops) its own
# database, and sends its tasks to a queue of its own.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
SQLITE_TESTS ?= tests/annotate/services/test_serving.py tests/annotate/services/test_quality.py \
	tests/annotate/services/test_consensus.py tests/labeling_api/test_api.py \
	tests/labeling_api/test_recent_reads.py tests/test_faults.py::test_database_failure_mid_request_is_a_503_and_changes_nothing

.PHONY: install migrate demo run web proxy worker beat test test-fast lint ruff typecheck mypy-baseline check ci clean messages

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py demo --password "$(DEMO_PASSWORD)"

run: demo
	bin/run

web: install
	bin/web

# nginx in front of `make web` (deploy/nginx.conf.template); set TRUSTED_PROXY_COUNT=1 for web.
proxy:
	bin/proxy

worker: install
	bin/worker

beat: install
	bin/beat

# Format, lint and type checks (pyproject.toml configures them; .pre-commit-config.yaml runs the
# same before each commit). `make check`, and so CI, runs them first.
lint: ruff typecheck

ruff: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# mypy over the whole tree. annotate/services, worker/ml and labeling_api are strict and have no
# errors; the errors left elsewhere are listed in mypy-baseline.txt. A new error fails; a fixed
# one does not, and `make mypy-baseline` then takes it off the list (commit the shorter list).
# Exit status 2 is mypy failing to run at all, which must not pass as "no new errors".
typecheck: install
	@out=$$(mktemp); $(VENV)/bin/mypy --no-error-summary . > $$out; status=$$?; \
	if [ $$status -gt 1 ]; then cat $$out; rm -f $$out; exit $$status; fi; \
	$(VENV)/bin/mypy-baseline filter < $$out; status=$$?; rm -f $$out; exit $$status

mypy-baseline: install
	$(VENV)/bin/mypy --no-error-summary . | $(VENV)/bin/mypy-baseline sync

check: install lint
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null
	$(PY) manage.py check_translations

# The pages' messages (templates, code, scripts) extracted into locale/*/LC_MESSAGES/*.po, and
# the .mo files the server reads compiled from them (both committed). Needs GNU gettext.
MESSAGE_IGNORES := -i "node_modules/*" -i "test-output/*" -i "var/*" -i "tests/*" -i "bench/*" -i "docs/*"
messages: install
	$(PY) manage.py makemessages -l zh_Hans --no-location $(MESSAGE_IGNORES)
	$(PY) manage.py makemessages -d djangojs -l zh_Hans --no-location $(MESSAGE_IGNORES)
	$(PY) manage.py compilemessages -l zh_Hans

test: install
	DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" \
	TEST_DATABASE_NAME="test_annotate_$$$$" CELERY_QUEUE="test-$$$$" \
	DATA_DIR="$$(mktemp -d)" $(PY) -m pytest $(PYTEST_ARGS)
	@# The volunteer loop once more on SQLite, the embedded default: its statements take a
	@# step-by-step path there (annotate.rows.write_together, serving._lease_step_by_step).
	env -u DATABASE_URL -u TEST_DATABASE_NAME REDIS_URL="$(TEST_REDIS_URL)" CELERY_QUEUE="test-sqlite-$$$$" \
	DATA_DIR="$$(mktemp -d)" $(PY) -m pytest -q -p no:cacheprovider $(SQLITE_TESTS)

# The inner loop: everything but the tests that start processes, drive a browser or run
# Celery (markers in pyproject.toml), on PostgreSQL; `make test` still runs them all.
test-fast: install
	DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" \
	TEST_DATABASE_NAME="test_annotate_$$$$" CELERY_QUEUE="test-$$$$" \
	DATA_DIR="$$(mktemp -d)" $(PY) -m pytest -q -m "not slow and not browser and not celery" \
	$(PYTEST_ARGS)

ci: check test

clean:
	rm -rf var .pytest_cache
