# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCKED := $(VENV)/.locked

.PHONY: demo test install system-deps lock fresh-check bench clean

# espeak-ng speaks the demo's sentence; Debian's chromium runs the web page test (Playwright drives it).
SYSTEM_PACKAGES := espeak-ng chromium

system-deps:
	@command -v espeak-ng >/dev/null && command -v chromium >/dev/null || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES)) >/dev/null 2>&1 \
	  || sudo sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES)' >/dev/null; }

# Every install comes from the lock: the same packages on every machine and day. `make lock` refreshes it on purpose.
LOCK := requirements.txt
MEDIAPIPE_LOCK := requirements-mediapipe.txt
MEDIAPIPE_VERSION := 0.10.21
LOCK_FLAGS ?=

# A new lock means a new venv: nothing from the old one lingers.
$(LOCKED): $(LOCK) $(MEDIAPIPE_LOCK)
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	# --no-deps: the lock is complete, and MediaPipe's own pins (numpy<2, protobuf<5) are deliberately not honoured
	$(BIN)/pip install -q --require-hashes --no-deps -r $(LOCK) -r $(MEDIAPIPE_LOCK)
	touch $(LOCKED)

$(STAMP): $(LOCKED) pyproject.toml
	# -qq: setuptools' warning that an editable install is editable is noise
	$(BIN)/pip install -qq --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Re-resolve pyproject.toml (all extras) + requirements.in into the lock. Pins already in the lock are kept
# unless LOCK_FLAGS says otherwise: `make lock LOCK_FLAGS=--upgrade` (everything newest) or
# `LOCK_FLAGS='--upgrade-package faster-whisper'`.
lock: $(STAMP)
	$(BIN)/pip-compile -q pyproject.toml requirements.in --all-extras --generate-hashes --allow-unsafe \
	  --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_FLAGS) -o $(LOCK)
	rm -rf $(VENV)/mediapipe-wheel
	$(BIN)/pip download -q --no-deps -d $(VENV)/mediapipe-wheel mediapipe==$(MEDIAPIPE_VERSION)
	{ sed -n '1,2p' $(MEDIAPIPE_LOCK); echo 'mediapipe==$(MEDIAPIPE_VERSION) \\'; \
	  $(BIN)/pip hash $(VENV)/mediapipe-wheel/*.whl | sed -n 's/^--hash/    --hash/p'; } > $(MEDIAPIPE_LOCK).new
	mv $(MEDIAPIPE_LOCK).new $(MEDIAPIPE_LOCK)

install: system-deps $(STAMP)

demo: install
	$(BIN)/openvasa demo

test: install
	$(BIN)/ruff check openvasa tests benchmarks
	$(BIN)/ruff format --check openvasa tests benchmarks
	$(BIN)/pytest -q

# Clone into a temporary folder, install from the lock into a new venv, run the suite 3 times with one core busy.
fresh-check:
	RUNS=3 BUSY=1 .ci/fresh

bench: install
	$(BIN)/python benchmarks/bench_render.py

clean:
	rm -rf $(VENV) build *.egg-info
