# One entry point for humans and CI. `make test` on a fresh machine installs everything it needs.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make serve` binds HOST:PORT: `PORT=9000 make serve` (or `make serve PORT=9000`); else the
# service's own JEM_HOST / JEM_PORT when set (docs/service.md), else these
HOST ?= $(or $(JEM_HOST),127.0.0.1)
PORT ?= $(or $(JEM_PORT),8000)
PYTEST_ARGS ?=

.PHONY: install system-deps test test-fast lint format proto serve train-default evaluate-default train-emoji evaluate-emoji bench bench-quick bench-peers bench-perf-analyzer gpu-check ui-screenshots ui-vendor clean

# torch first, pinned to the CPU wheel that lies on local disk: any other route lets pip pull
# a multi-GB CUDA build. Where no CPU wheel lies on disk (pip's find-links), name PyTorch's CPU
# index: make install TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'.
# Everything else comes from pyproject.toml.
TORCH_PIP_ARGS ?=
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) torch==2.13.0
	$(BIN)/pip install --quiet -e '.[train,dev]'
	touch $@

install: $(STAMP) system-deps

# Real Prometheus (server + promtool), a Docker engine (dockerd, started by tests/docker when
# none runs), docker-compose 1.29 and mmdebstrap (a base image from Debian packages where no
# registry answers) for the deployment checks; Chromium (driven by Playwright, and its
# WebDriver) for the browser tests; handwriting-like fonts for the photographed/drawn digits
# test set (tests/rendered_digits.py) and other fonts for the digits models' training data; the
# colour emoji font and Unicode's emoji-test.txt for the emoji data set (`python -m training data
# emoji`). Debian packages; needs root, as CI and the dev machines are.
SYSTEM_TOOLS := promtool prometheus docker-compose dockerd mmdebstrap chromium chromedriver
SYSTEM_PACKAGES := prometheus docker-compose docker.io mmdebstrap chromium chromium-driver fonts-noto-color-emoji unicode-data
# the digits models' extra training data (training/datasets/digit_rendering.py: FONTS, MORE_FONTS,
# HAND_FONTS and the Hershey vector faces of STROKE_FONTS)
TRAINING_FONT_PACKAGES := hershey-fonts-data fonts-navilu fonts-lobster fonts-opendyslexic \
	fonts-jura fonts-monoid fonts-dancingscript fonts-kristi fonts-ecolier-court fonts-kaushanscript \
	fonts-tlwg-purisa-ttf fonts-staypuft fonts-fantasque-sans fonts-sil-andika fonts-liberation \
	fonts-freefont-ttf fonts-gnutypewriter fonts-averia-gwf fonts-cabinsketch fonts-isabella \
	fonts-quicksand fonts-klee fonts-leckerli-one fonts-sjfonts fonts-yusei-magic fonts-tomsontalks \
	fonts-nanum-extra fonts-seto fonts-kiloji fonts-havana fonts-dustin \
	fonts-smc-chilanka fonts-smc-karumbi fonts-summersby fonts-stick fonts-unfonts-extra \
	fonts-aoyagi-soseki
# the rendered-digits test set's fonts (tests/rendered_digits.py) and the training fonts above
# (defined first: `:=` expands at once)
# perf_analyzer's binary (bench/perf_analyzer: its PyPI wheel links libb64.so.0d, not shipped in it)
LIB_PACKAGES := libb64-0d
FONT_PACKAGES := fonts-humor-sans fonts-dkg-handwriting fonts-breip fonts-femkeklaver fonts-comic-neue fonts-bwht fonts-rufscript \
	$(TRAINING_FONT_PACKAGES)
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
EMOJI_TEST := /usr/share/unicode/emoji/emoji-test.txt
system-deps:
	@for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	for file in $(EMOJI_FONT) $(EMOJI_TEST); do [ -f $$file ] || missing=1; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
		else echo "system-deps: run as root (or install $(SYSTEM_PACKAGES)) for the deployment, browser and emoji checks"; fi; \
	fi
	@if ! dpkg -s $(FONT_PACKAGES) $(LIB_PACKAGES) >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends $(FONT_PACKAGES) $(LIB_PACKAGES) >/dev/null; \
		else echo "system-deps: run as root (or install $(FONT_PACKAGES) $(LIB_PACKAGES)) for the rendered-digits tests, training data and perf_analyzer"; fi; \
	fi

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The Open Inference Protocol's gRPC modules, committed beside their .proto (service/v2/proto/).
# Their descriptors go to a private pool: Triton's own modules (tritonclient.grpc) register the
# same `inference.*` names in protobuf's default pool, and both must load in one process.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. \
		service/v2/proto/grpc_predict_v2.proto
	sed -i 's/_descriptor_pool\.Default()\.AddSerializedFile/_descriptor_pool.DescriptorPool().AddSerializedFile/' \
		service/v2/proto/grpc_predict_v2_pb2.py

serve: $(STAMP)
	$(BIN)/python -m service --host $(HOST) --port $(PORT)

# Reproduces the shipped default models (see README: "The embedded default"); the first run
# renders their extra training digits into data/cache/ (37 s of one core; docs/training.md).
train-default: $(STAMP)
	$(BIN)/python -m training train --preset digits-baseline
	$(BIN)/python -m training train --preset digits-jem

# Calibrates the shipped models unless they are already (a new version each; a calibrated version
# is evaluated as it is, not fitted again) and regenerates reports/digits/.
evaluate-default: $(STAMP)
	$(BIN)/python -m training calibrate digits-jem --skip-calibrated
	$(BIN)/python -m training calibrate digits-baseline --skip-calibrated
	$(BIN)/python -m training evaluate digits-jem --against digits-baseline --out reports/digits --notes reports/digits/discussion.md

# The colour emoji data set (docs/emoji.md): rendered from the Debian packages above.
data/emoji/train/dataset.json: | $(STAMP) system-deps
	$(BIN)/python -m training data emoji --out data/emoji

# Reproduces the shipped emoji models (docs/emoji.md) on CPU. The baseline adds label smoothing
# (0.1), which the JEM lacks, so the JEM's first 1,000 iterations (px_start) are not its baseline's
# (with `--set label_smoothing=0` they are, and `--resume` of that run's step-1000 checkpoint skips them).
train-emoji: $(STAMP) data/emoji/train/dataset.json
	$(BIN)/python -m training train --preset emoji-baseline
	$(BIN)/python -m training train --preset emoji-jem

# Calibrates them unless they are already (as evaluate-default) and regenerates reports/emoji/
# with the held-out groups' test halves as OOD sets (their validation halves, data/emoji/ood/val,
# are for `screen` only).
EMOJI_OOD := $(foreach g,food-drink activities flags,--ood $(g)=data/emoji/ood/test/$(g))
evaluate-emoji: $(STAMP) data/emoji/train/dataset.json
	$(BIN)/python -m training calibrate emoji-jem --skip-calibrated
	$(BIN)/python -m training calibrate emoji-baseline --skip-calibrated
	$(BIN)/python -m training evaluate emoji-jem --against emoji-baseline --out reports/emoji \
		$(EMOJI_OOD) --per-class 10 --sgld-steps 100 --pgd-steps 10 --linf-eps 0,0.03,0.1 \
		--l2-eps 0,0.5 --threads 1 --notes reports/emoji/discussion.md

bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

# This service side by side with TorchServe (needs java), BentoML, LitServe and Ray Serve; the
# peers go into their own venv (.venv-peers, from bench/peers/requirements.txt) on first use.
# Writes bench/results/peers.{md,json}. Not part of `make test` (the peers are heavy).
bench-peers: $(STAMP)
	$(BIN)/python -m bench --peers

# Triton's perf_analyzer (from its own venv, .venv-perf-analyzer, made from
# bench/perf_analyzer/requirements.txt on first use) against the service over REST and gRPC.
# Writes bench/results/perf_analyzer.{md,json}; tests/bench runs its --quick form.
bench-perf-analyzer: $(STAMP)
	$(BIN)/python -m bench.perf_analyzer

# One prepared end-to-end check on a CUDA machine (bench/gpu_check): cuda tests, training,
# serving on the GPU; JSON + Markdown under bench/results/. DEVICE=cpu: a tiny dry run (CI).
DEVICE ?= cuda
GPU_CHECK_OUT ?=
gpu-check: $(STAMP)
	bash bench/gpu_check/run.sh $(DEVICE) $(GPU_CHECK_OUT)

# Screenshots of the demo page and the API docs, desktop and phone, under reports/ui/ (the
# browser tests take them; Debian's Chromium, headless).
ui-screenshots: install
	JEM_UI_SCREENSHOTS=reports/ui $(BIN)/python -m pytest tests/ui/test_browser.py -q $(PYTEST_ARGS)

# Re-vendor Swagger UI and ReDoc from the npm registry (versions pinned in service/ui/vendor.py;
# needs npm).
ui-vendor: $(STAMP)
	$(BIN)/python -m service.ui.vendor

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
