# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages
# Debian packages the tests need: Chromium (the report in a browser); Xvfb, Mesa's software OpenGL and the
# libraries Qt 6's xcb platform loads (napari's viewer, headless). Installed by `make test` when run as root.
SYSTEM_PACKAGES := chromium xvfb libgl1 libgl1-mesa-dri libglx-mesa0 libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3 \
	libx11-xcb1 libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 \
	libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-sync1 libxcb-xfixes0 libxcb-xkb1

.PHONY: demo test test-slow lint install system-packages clean

demo: $(STAMP)
	$(BIN)/unetkit demo --out demo_out

test: $(STAMP) $(SYSTEM_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

install: $(STAMP)

system-packages: $(SYSTEM_STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

# Stamped only once all are there: without root they are reported missing (their tests skip) and checked again next time.
$(SYSTEM_STAMP): | $(STAMP)
	@missing="$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' || echo $$p; done)"; \
	if [ -z "$$missing" ]; then touch $@; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing && touch $@; \
	else echo "missing Debian packages (the browser and napari tests will skip):" $$missing; fi

clean:
	rm -rf $(VENV) demo_out .pytest_cache
