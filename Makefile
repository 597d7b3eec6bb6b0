# The README's commands. Every target creates .venv itself and needs nothing installed by hand.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.tagsmith-installed
# torch first, pinned to the release this project is tested with (the training image installs the same release,
# apptainer.def); the project's own range (>=2.13,<2.14) is then already satisfied and pip never pulls a
# multi-GB CUDA build in its place.
TORCH   ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export BENTOML_DO_NOT_TRACK ?= True
export GRADIO_ANALYTICS_ENABLED ?= False

.PHONY: install demo demo-pipeline ship-punctuation ship-toxicity toxicity-packages bench-scaling bench-shipped bench-data-scale bench-whole-book test test-fast bench bench-tagging bench-cclue-limits bench-domain bench-export bench-serving bench-distributed lint clean docs-config

$(PY):
	$(PYTHON) -m venv $(VENV)
	# the stock pip 23 resolver backtracks for 20+ minutes on this dependency set
	$(PIP) install --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	# the same install script the Apptainer images run (containers/install.sh): torch first, then the rest
	TAGSMITH_PYTHON=$(PY) TAGSMITH_TORCH="$(TORCH)" TAGSMITH_EXTRAS=dev TAGSMITH_EDITABLE=1 bash containers/install.sh
	touch $@

install: $(STAMP)

# The API and the demo page on the packages tagsmith ships (serving/shipped/) and any in models/: no training.
demo: $(STAMP)
	$(BIN)/tagsmith demo --models models

# The whole tiny pipeline: fetch chinese-poetry, train, export into models/, serve (a few minutes; demo-grade models).
# OLID=path/to/olid uses a local OLID copy for the toxicity demo model (else the hub, else a seed set)
OLID ?=
demo-pipeline: $(STAMP)
	$(BIN)/tagsmith data fetch chinese-poetry
	TAGSMITH_OLID=$(OLID) $(BIN)/python -m tagsmith.demo

# Reproduce the shipped Classical Chinese package from a clone of NiuTrans/Classical-Modern (or its .tar.xz):
# <= 2 hours on 2 CPU cores (punctuation-cpu, then punctuation-cpu-2h), then the int8-only export.
CLASSICAL_MODERN ?=
ship-punctuation: $(STAMP)
	@test -n "$(CLASSICAL_MODERN)" || { echo "set CLASSICAL_MODERN=path/to/Classical-Modern (a clone or its .tar.xz)"; exit 2; }
	$(BIN)/tagsmith data fetch classical-modern --local "$(CLASSICAL_MODERN)"
	$(BIN)/tagsmith train --config training/configs/punctuation-cpu.yaml --set trainer.save_total_limit=null
	$(BIN)/tagsmith train --config training/configs/punctuation-cpu-2h.yaml --set trainer.save_total_limit=null
	$(BIN)/tagsmith export runs/punctuation-cpu-2h/best --int8-only --out serving/shipped/punctuation

# Reproduce the shipped toxicity package (OLID=path/to/olid, the folder with olid-training-v1.0.tsv): MiniLM-L6
# fine-tuned on OLID (toxicity-cpu), then its 3-layer student distilled from it (toxicity-student-l3 with
# distill.teacher=runs/toxicity-cpu), both exported; the card says which one ships and why. ~40 min on 2 CPU cores.
ship-toxicity: $(STAMP)
	@test -n "$(OLID)" || { echo "set OLID=path/to/olid (the folder with olid-training-v1.0.tsv)"; exit 2; }
	$(BIN)/tagsmith data fetch olid --local "$(OLID)"
	$(BIN)/tagsmith train --config training/configs/toxicity-cpu.yaml
	$(BIN)/tagsmith train --config training/configs/toxicity-student-l3.yaml --set distill.teacher=runs/toxicity-cpu --set options.max_minutes=15
	$(BIN)/tagsmith export runs/toxicity-cpu/best --int8-only --out models/toxicity-cpu
	$(BIN)/tagsmith export runs/toxicity-student-l3/best --int8-only --min-agreement 0.995 --out models/toxicity-student-l3
	$(BIN)/python bench/toxicity.py --packages "minilm=models/toxicity-cpu" "student-l3=models/toxicity-student-l3"
	@echo "shipped: models/toxicity-student-l3 (as fast again as MiniLM-L6 at its accuracy); copy it to serving/shipped/toxicity, then: pytest tests/test_shipped_models.py"

# The toxicity models of the headline table (bench/toxicity.py): the teacher (all-mpnet-base-v2 from PyPI, the
# `teacher` extra), MiniLM without distillation, and the distilled students, each exported to models/<run>;
# OLID=path/to/olid (a folder with olid-training-v1.0.tsv). Several hours on 2 CPU cores, minutes on a GPU.
toxicity-packages: $(STAMP)
	@test -n "$(OLID)" || { echo "set OLID=path/to/olid (the folder with olid-training-v1.0.tsv)"; exit 2; }
	$(PIP) install -e ".[teacher]"
	$(BIN)/tagsmith data fetch olid --local "$(OLID)"
	$(BIN)/tagsmith train --config training/configs/toxicity-teacher.yaml
	$(BIN)/tagsmith train --config training/configs/toxicity-cpu.yaml
	$(BIN)/tagsmith train --config training/configs/toxicity-student.yaml
	$(BIN)/tagsmith train --config training/configs/toxicity-student-l3.yaml
	for run in toxicity-teacher toxicity-cpu toxicity-student toxicity-student-l3; do \
		$(BIN)/tagsmith export runs/$$run/best --int8-only --out models/$$run || exit 1; done
	$(BIN)/python bench/toxicity.py

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

bench-scaling: $(STAMP)
	$(BIN)/python bench/scaling.py --runs punctuation-cpu punctuation-cpu-2h

bench-shipped: $(STAMP)
	$(BIN)/python bench/shipped.py

# a 1M-character held-out book: tagsmith punctuate (int8, all cores and one) vs PyTorch; SLURM=1 adds the
# array's shard scaling on the local SLURM (containers/local-slurm/up.sh first)
bench-whole-book: $(STAMP)
	$(BIN)/python bench/whole_book.py $(if $(SLURM),--slurm)

bench-data-scale: $(STAMP)
	$(BIN)/python bench/data_scale.py --lists

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

# docs/config.md from the config schema in tagsmith/config.py (tests/test_config_schema.py checks it is current)
docs-config: $(STAMP)
	$(BIN)/python -m tagsmith.config --markdown > docs/config.md
