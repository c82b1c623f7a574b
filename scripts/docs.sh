#!/usr/bin/env bash
# The docs site, built offline from the notebooks: _docs/site/index.html. Notebooks that changed are executed
# (as nbdev_test runs them); stage pages show the newest completed run found under outputs/ (mlprep run, mlprep demo);
# source links follow settings.ini's git_url and branch. Arguments go to scripts/build_docs.py:
# --force (run every notebook again), --jobs N, --timeout SECONDS, --out DIR, --outputs-dir DIR, --no-strict,
# --keep-going (a failing notebook gets a page saying so; the build still fails), --stages NAME,... (only these
# stage pages).
source "$(dirname "$0")/_env.sh"
if ! python -c "import mkdocs, material, latex2mathml" 2>/dev/null; then
  echo "mlprep: installing the docs requirements (settings.ini docs_requirements) into .venv" >&2
  python - <<'PY'
import shlex, subprocess, sys
from configparser import ConfigParser
c = ConfigParser(delimiters=['=']); c.read('settings.ini', encoding='utf-8')
reqs = shlex.split(c['DEFAULT'].get('docs_requirements', 'mkdocs mkdocs-material').replace('\n', ' '))
subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '-c', 'scripts/constraints.txt', *reqs], check=False)
PY
  python -c "import mkdocs, material" || { echo "mlprep: installing the docs requirements failed" >&2; exit 1; }
fi
exec python scripts/build_docs.py "$@"
