#!/usr/bin/env bash
# Every test: notebooks and library in step, every notebook executed as a test, then pytest.
source "$(dirname "$0")/_env.sh"
start=$SECONDS
echo "== 1/3 nbdev_export and nbdev_clean leave nbs/ and mlprep/ unchanged"
snap() { find nbs mlprep -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/.ipynb_checkpoints/*' -not -path '*/__pycache__/*' -not -path 'nbs/*.py' -not -path 'nbs/*/*.py' | sort | xargs sha256sum; }
before="$(snap)"
nbdev_export
nbdev_clean
after="$(snap)"
if [ "$before" != "$after" ]; then
  echo "FAIL: nbdev_export / nbdev_clean changed these files (now fixed in your tree; commit them):"
  diff <(echo "$before") <(echo "$after") | grep '^[<>]' | awk '{print $3}' | sort -u
  exit 1
fi
echo "== warm-up: the tiny policy/target pair that several notebooks and tests use (trained once, cached in outputs/)"
python -c "from mlprep.data.tiny import tiny_pair; print(tiny_pair())"
# Tests run two notebooks (or a test and its subprocesses) at once on small models: one thread each is much faster
# than two threads each fighting for two cores.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MLPREP_PROGRESS=0
echo "== 2/3 nbdev_test: every notebook runs, and its examples are tests"
nbdev_test --n_workers "${NBDEV_WORKERS:-2}" --timing ${NBDEV_FLAGS:+--flags "$NBDEV_FLAGS"}
echo "== 3/3 pytest tests/"
python -m pytest -q -n "${PYTEST_WORKERS:-2}" --dist loadgroup tests "$@"
echo "all tests passed in $((SECONDS - start)) s"
