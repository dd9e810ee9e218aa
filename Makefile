# Two entry points for a fresh machine: `make main` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared/data
OUT ?= out
W := $(SHARED)/official/pre-trained/300W_LP_models
FUSION_H5 := $(W)/fsanet_capsule_3_16_2_21_5/fsanet_capsule_3_16_2_21_5.h5 \
             $(W)/fsanet_var_capsule_3_16_2_21_5/fsanet_var_capsule_3_16_2_21_5.h5 \
             $(W)/fsanet_noS_capsule_3_16_2_192_5/fsanet_noS_capsule_3_16_2_192_5.h5

.PHONY: setup main test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The main job so far: the authors' 300W-LP fusion -> checkpoint -> one fused ONNX graph
# (verified on the real faces) -> MAE on the AFLW2000 sample -> benchmark against two
# third-party ONNX ports of FSA-Net, side by side, with reports in $(OUT)/bench-onnx.
REF := $(SHARED)/reference-models
main: setup
	$(BIN)/fsanet import-keras $(FUSION_H5) -o $(OUT)/fsanet-fusion-300wlp.pt
	$(BIN)/fsanet export $(OUT)/fsanet-fusion-300wlp.pt --to onnx --verify $(SHARED)/real-faces -o $(OUT)
	$(BIN)/fsanet eval $(OUT)/fsanet-fusion-300wlp.onnx --data $(SHARED)/aflw2000-sample --json $(OUT)/eval-aflw2000-sample.json
	$(BIN)/fsanet bench $(OUT)/fsanet-fusion-300wlp.onnx \
		"$(REF)/foxtracker_fsanet_capsule_official_weights.onnx@nhwc,bgr,raw" \
		"$(REF)/fsanet-1x1-iter-688590.onnx@nchw,bgr,mean=127.5,std=128" \
		--data $(SHARED)/aflw2000-sample --faces $(SHARED)/real-faces/helen-trainset \
		--reference $(OUT)/fsanet-fusion-300wlp.onnx --peak-gflops 100 --runs $(RUNS) -o $(OUT)/bench-onnx
RUNS ?= 1000

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
