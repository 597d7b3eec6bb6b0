# The README's commands. Every target creates .venv itself and needs nothing installed by hand.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.tagsmith-installed
# torch first, pinned to the release this project is tested with; the project's own range (>=2.4,<2.14)
# is then already satisfied and pip never pulls a multi-GB CUDA build in its place.
TORCH   ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export BENTOML_DO_NOT_TRACK ?= True
export GRADIO_ANALYTICS_ENABLED ?= False

.PHONY: install demo test test-fast bench bench-tagging bench-cclue-limits bench-domain bench-export bench-serving bench-distributed lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	# the stock pip 23 resolver backtracks for 20+ minutes on this dependency set
	$(PIP) install --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install "$(TORCH)"
	# the same install script the Apptainer images run (containers/install.sh), keeping that torch
	TAGSMITH_PYTHON=$(PY) TAGSMITH_EXTRAS=dev TAGSMITH_EDITABLE=1 bash containers/install.sh
	touch $@

install: $(STAMP)

# OLID=path/to/olid uses a local OLID copy for the toxicity demo model (else the hub, else a seed set)
OLID ?=
demo: $(STAMP)
	$(BIN)/tagsmith data fetch chinese-poetry
	TAGSMITH_OLID=$(OLID) $(BIN)/python -m tagsmith.demo

test: $(STAMP)
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

bench-tagging: $(STAMP)
	$(BIN)/python bench/tagging.py

bench-domain: $(STAMP)
	$(BIN)/python bench/domain.py

bench-export: $(STAMP)
	$(BIN)/python bench/export_bench.py

bench-serving: $(STAMP)
	$(BIN)/python bench/serving_bench.py

bench-distributed: $(STAMP)
	$(BIN)/python bench/distributed.py

bench-cclue-limits: bench-tagging
	$(BIN)/python bench/cclue_limits.py ensemble
	$(BIN)/python bench/cclue_limits.py in-domain --run segmentation-cpu
	$(BIN)/python bench/cclue_limits.py in-domain --run punctuation-cpu

bench: bench-tagging bench-domain bench-export bench-serving bench-distributed

lint: $(STAMP)
	$(BIN)/python -m compileall -q tagsmith training export serving bench tests

clean:
	rm -rf runs models .pytest_cache
