# Sourced by scripts/*.sh: create .venv on first use and keep it in step with settings.ini.
# Safe to run twice: a stamp records the hash of what was installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "mlprep: creating .venv with $($PY --version 2>&1)" >&2
  "$PY" -m venv .venv
fi
want="$(cat settings.ini setup.py scripts/constraints.txt | sha256sum | cut -c1-16)"
if [ "$(cat .venv/.mlprep-installed 2>/dev/null || true)" != "$want" ]; then
  echo "mlprep: installing mlprep and its requirements into .venv (first run takes a few minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v -i warning >&2 || true
  .venv/bin/python -m pip install -q -c scripts/constraints.txt -e ".[dev]" 2>&1 | grep -v -i '^warning: location' >&2 || true
  .venv/bin/python -c "import mlprep, torch, transformers, trl, nbdev" || { echo "mlprep: install failed" >&2; exit 1; }
  echo "$want" > .venv/.mlprep-installed
fi
export PATH="$ROOT/.venv/bin:$PATH"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}" TRANSFORMERS_NO_ADVISORY_WARNINGS=1
export TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
