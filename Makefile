# Two commands for a fresh machine (see README):
#   make demo   install, then run the embedded offline benchmark
#   make test   install, then run the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision pinned here, not in pyproject (which keeps loose ranges): these two are the
# pair served from this machine's disk; elsewhere override, e.g. `make demo TORCH=torch`.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed-stamp
OUT    ?= results/embedded

.PHONY: install demo test clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(TORCH) -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/ood-bench run --config embedded --out $(OUT)

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) results/cache
