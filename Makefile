# `make demo`: install into .venv, train U-Net on the generated Shapes data on the CPU, evaluate it.
# `make test`: install into .venv and run the test suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO_RUN := runs/shapes-u-net-demo

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt pytest
	touch $@

# The test suite also needs onnx and onnxruntime (tools/export.py's graphs); training does not.
$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

demo: install
	$(PY) train/shapes-u-net/train.py --run-dir $(DEMO_RUN) --overwrite
	$(PY) eval.py $(DEMO_RUN)/best.pth --json $(DEMO_RUN)/eval.json

test: install $(VENV)/.installed-dev
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) .pytest_cache
