# Two commands on a fresh machine:  `make run`  (install + open the benchmark app)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
APP    ?= rapids_benchmark_dashboard.py
HOST   ?= 127.0.0.1
PORT   ?= 2718
# The GPU extra (cuDF, CuPy) is added when an NVIDIA driver is present; force with GPU=1 or GPU=0.
GPU    ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1 || echo 0)
REQS   := requirements.txt $(if $(filter 1,$(GPU)),requirements-gpu.txt)

.PHONY: run edit test test-all lint smoke install clean

$(BIN)/.installed: requirements.txt requirements-gpu.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(addprefix -r ,$(REQS)) -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

run: install   ## read-only app in the browser (add HOST=0.0.0.0 to share it)
	$(BIN)/marimo run $(APP) --host $(HOST) --port $(PORT)

edit: install  ## the notebook with its code (token-protected)
	$(BIN)/marimo edit $(APP) --host $(HOST) --port $(PORT)

test: install   ## the CI suite: everything except tests marked `slow`
	$(BIN)/python -m pytest -m "not slow"

test-all: install   ## the whole suite, `slow` tests included
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/marimo check rapids_benchmark_dashboard.py llm_finetuning_dashboard.py

smoke: install
	$(BIN)/marimo export html $(APP) -o outputs/$(basename $(APP)).html -- --smoke

clean:
	rm -rf $(VENV) outputs __marimo__ .pytest_cache
