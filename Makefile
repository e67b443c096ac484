# Quick start: `make demo` (set up, run the pipeline on the bundled demo set) and `make test`.
# Both create or reuse the virtual environment .venv inside the repository.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stamp changes with the lock file, so an edited lock reinstalls.
STAMP := $(VENV)/.installed-$(shell sha256sum envs/requirements.lock pyproject.toml | sha256sum | cut -c1-12)
CORES ?= all

.PHONY: venv demo test lint clean

venv: $(STAMP)

$(STAMP): envs/requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The lock is the full, resolved closure: installed as is, without re-resolving
	# (facenet-pytorch's metadata pins an old torch it does not need).
	$(BIN)/pip install --no-deps -r envs/requirements.lock
	$(BIN)/pip install --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

demo: venv
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/report.html
	$(BIN)/snakemake --cores $(CORES) results/demo/test_score.json
	$(BIN)/python -m affectflow.evaluate results/submission.csv results/demo/test_ground_truth.csv

# The report test renders the Snakemake report in Debian's headless Chromium (installed with
# apt-get when missing; needs root or sudo).
test: venv
	bash .ci/browser_deps.sh
	$(BIN)/python -m pytest

# ruff (configured in pyproject.toml), snakefmt and Snakemake's own linter; CI runs it first.
lint: venv
	$(BIN)/ruff check src tests bench workflow/scripts
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs benchmarks .snakemake
