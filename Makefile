# make demo: a Controller keeping a Kilo-like rule set in a private namespace.
# make test: the whole suite, on real iptables (nft and legacy) in private namespaces.
# make compat: the tests that run real iptables, against other iptables releases.
# make package: the wheel and the sdist, built, checked and tried in fresh virtual environments.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(PATH):/usr/sbin:/sbin

.PHONY: setup demo test compat lint package bench docs clean stateful

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install-system-deps
	scripts/install-system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,package]'
	touch $@

demo: setup
	$(BIN)/python -m aioiptables demo

# The suite runs inside its own network namespace as well (unshare --net), so
# even a test that forgot its per-test namespace could not reach this host's tables.
test: setup
	unshare --net -- $(BIN)/python -m pytest -q

# The iptables compatibility matrix (issue 11, docs/compat.md): every test that
# runs real iptables (both backends, IPv4 and IPv6, asyncio and trio), run
# against the iptables of each Debian suite below (bullseye: 1.8.7, trixie:
# 1.8.11, sid: whatever unstable holds; `make test` covers the host's). Each
# userspace is built with debootstrap into $(COMPAT_CACHE)/SUITE and reused
# while current; the runs go at once, each in its own network namespace with
# its own xtables lock. A suite that cannot be built fails the target.
COMPAT_SUITES ?= bullseye trixie sid
COMPAT_CACHE  ?= /var/cache/aioiptables-compat
compat: setup
	COMPAT_SUITES="$(COMPAT_SUITES)" CACHE="$(COMPAT_CACHE)" scripts/compat/matrix

lint: setup
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts
	$(BIN)/mypy
	$(BIN)/mypy scripts/compat/real_iptables.py scripts/check_package.py

# The wheel and the sdist, as they would be published: built (the wheel from
# the sdist, as pip builds it), checked by twine, then each installed into a
# fresh virtual environment and used there (scripts/check_package.py). The
# version comes from aioiptables.__version__, its one place.
package: setup
	rm -rf dist
	$(BIN)/python -m build --quiet --outdir dist .
	$(BIN)/twine check --strict dist/*
	$(BIN)/python scripts/check_package.py dist

# The stateful property test (a Controller against a foreign actor, issue 9) in
# its long profile, for a nightly run (`make test` runs the short one).
stateful: setup
	AIOIPTABLES_STATEFUL=long unshare --net -- $(BIN)/python -m pytest -q -s tests/integration/test_stateful.py

# Every benchmark, on real iptables (nft and legacy) in private namespaces;
# results go to docs/benchmarks.md's figures (benchmarks/*.json, docs/benchmarks.png, docs/baseline.png).
bench: setup
	$(BIN)/pip install -q -e '.[test,bench]'
	unshare --net -- $(BIN)/python benchmarks/cache.py
	unshare --net -- $(BIN)/python benchmarks/parse.py
	unshare --net -- $(BIN)/python benchmarks/reconcile.py
	unshare --net -- $(BIN)/python benchmarks/events.py
	unshare --net -- $(BIN)/python benchmarks/reads.py
	unshare --net -- $(BIN)/python benchmarks/baseline.py --plot docs/baseline.png
	for b in nft legacy; do for n in 5000 33000; do \
		unshare --net -- $(BIN)/python benchmarks/memory.py --backends $$b --sizes $$n; done; done

# The API reference, generated from the docstrings (README.md is the home page).
docs: setup
	$(BIN)/pip install -q -e '.[test,docs]'
	sed 's#](docs/#](#g' README.md > docs/index.md
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist
