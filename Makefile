# Two commands on a fresh machine:
#   make demo   creates .venv, installs semcomm, prepares CIFAR-10, runs the bitrate-accuracy sweep
#   make test   creates .venv if needed, installs, runs the test suite
# and one for the notebooks' stored outputs:
#   make notebooks   re-executes notebooks/*.ipynb at their full setting and stores their outputs
#                    (`make notebooks NOTEBOOKS="quickstart iaq"` runs only those; about an hour on 2 cores)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision are pinned to the builds this project is developed and measured with;
# override e.g. `make demo TORCH="torch torchvision"` elsewhere.
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
RESULTS := results

.PHONY: demo test install data notebooks clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/python -c "from semcomm.data import load_split; [print(load_split('cifar10', s).name, 'ready') for s in ('train', 'test')]"

demo: data
	mkdir -p $(RESULTS)
	$(BIN)/semcomm zoo
	$(BIN)/semcomm sweep --dataset cifar10 --json $(RESULTS)/sweep-cifar10.json --plot $(RESULTS)/sweep-cifar10.png

test: $(STAMP)
	$(BIN)/python -m pytest -q

notebooks: $(STAMP)
	$(BIN)/python notebooks/execute.py $(NOTEBOOKS)

clean:
	rm -rf $(VENV) $(RESULTS)
