"""The package's shape: layers import only downwards, capabilities never import each other, no import circles,
no private name imported across modules, no module or export cell too long to read, and an installed wheel works
outside the repository."""
import ast, json, os, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / 'mlprep'
CAPABILITIES = ('sampling', 'pref', 'mateconv', 'qgen', 'evals')
TOP = {'core': 0, 'config': 0, 'runs': 0,                           # the flat modules of mlprep/ and their layers
       'stages': 3, 'slurm': 3, 'pipeline': 3, 'cli': 3, 'testing': 3}
MAX_MODULE_LINES, MAX_CELL_LINES = 600, 60


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports_of(path: Path) -> set[str]:
    "mlprep modules a file imports (relative imports resolved; imports inside functions count too)."
    mod, out = module_name(path), set()
    pkg = mod if path.name == '__init__.py' else mod.rsplit('.', 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith('mlprep')}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split('.')
                base = base[:len(base) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module else []))
            else: target = node.module or ''
            if not target.startswith('mlprep'): continue
            names = [f'{target}.{a.name}' for a in node.names]
            out |= {n for n in names if (ROOT / (n.replace('.', '/') + '.py')).exists()} or {target}
    return {m for m in out if m != mod}


def layer(mod: str) -> int:
    "0 core / config / runs, 1 data, 2 capabilities, 3 stages / slurm / pipeline / cli / testing."
    parts = mod.split('.')
    if mod == 'mlprep' or parts[1] == '_modidx': return 0
    if parts[1] == 'data': return 1
    if parts[1] in CAPABILITIES: return 2
    return TOP.get(parts[1], 3)


def graph():
    return {module_name(p): imports_of(p) for p in PKG.rglob('*.py') if '__pycache__' not in p.parts}


def test_layers_import_only_downwards_and_capabilities_never_meet():
    bad = []
    for mod, deps in graph().items():
        for d in deps:
            if layer(d) > layer(mod): bad.append(f'{mod} (layer {layer(mod)}) imports {d} (layer {layer(d)})')
            a, b = mod.split('.'), d.split('.')
            if layer(mod) == layer(d) == 2 and a[1] != b[1]: bad.append(f'capability {mod} imports another capability: {d}')
    assert not bad, '\n'.join(bad)


def test_no_import_circles():
    g = graph()
    state, stack, cycles = {}, [], []
    def visit(m):
        state[m] = 1; stack.append(m)
        for d in g.get(m, ()):
            if d not in g: continue
            if state.get(d) == 1: cycles.append(stack[stack.index(d):] + [d])
            elif not state.get(d): visit(d)
        state[m] = 2; stack.pop()
    for m in g:
        if not state.get(m): visit(m)
    assert not cycles, '\n'.join(' -> '.join(c) for c in cycles)


def test_layout_checker_can_fail(tmp_path):
    "The checker itself: a data module importing a capability is caught."
    assert layer('mlprep.data.tiny') < layer('mlprep.sampling.decode') < layer('mlprep.cli')
    assert layer('mlprep.runs') == layer('mlprep.core') < layer('mlprep.evals.pairs') < layer('mlprep.pipeline') == layer('mlprep.stages')


def test_no_module_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in PKG.rglob('*.py')
            if p.name != '_modidx.py' and (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def test_capabilities_are_subpackages():
    for sub in ('data', 'sampling'): assert (PKG / sub / '__init__.py').exists()
    flat = {p.stem for p in PKG.glob('*.py') if not p.stem.startswith('_')}
    assert flat <= set(TOP), f'a flat module the layer test does not know: {sorted(flat - set(TOP))}'
    assert {'cli', 'config', 'core', 'slurm', 'stages', 'testing'} <= flat, sorted(flat)


def private_imports(source: str, mod: str, is_package: bool = False) -> list[str]:
    """`_private` names (not dunders) that module `mod` takes from another mlprep module: `from mlprep.x import _y`,
    `from .x import _y`, `from . import _x`, or `m._y` where `m` is an imported mlprep module."""
    pkg, bad, modules = mod if is_package else mod.rsplit('.', 1)[0], [], set()
    private = lambda n: n.startswith('_') and not (n.startswith('__') and n.endswith('__'))
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split('.')
                target = '.'.join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            else: target = node.module or ''
            if target.split('.')[0] != 'mlprep': continue
            for a in node.names:
                full = f'{target}.{a.name}'
                if (PKG.parent / (full.replace('.', '/') + '.py')).exists() or (PKG.parent / full.replace('.', '/')).is_dir():
                    modules.add(a.asname or a.name)                 # `from mlprep import core`: a module, not a name
                if private(a.name) and target != mod: bad.append(f'{mod}: from {target} import {a.name} (line {node.lineno})')
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split('.')[0] != 'mlprep': continue
                if any(private(p) for p in a.name.split('.')[1:]): bad.append(f'{mod}: import {a.name} (line {node.lineno})')
                if a.asname: modules.add(a.asname)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules and private(node.attr):
            bad.append(f'{mod}: {node.value.id}.{node.attr} (line {node.lineno})')
    return bad


def test_private_import_checker_can_fail():
    assert private_imports('from mlprep.pref.dpo import _file_log, trl_args', 'mlprep.pref.pref_dpo') == \
        ['mlprep.pref.pref_dpo: from mlprep.pref.dpo import _file_log (line 1)']
    assert private_imports('from .dpo import (trl_args,\n    _LogToFile)', 'mlprep.pref.pref_dpo') == \
        ['mlprep.pref.pref_dpo: from mlprep.pref.dpo import _LogToFile (line 1)']
    assert private_imports('from ..config import _hints', 'mlprep.pref.dpo')[0].startswith('mlprep.pref.dpo: from mlprep.config import _hints')
    assert private_imports('from mlprep import core as c\nc._named(e, p)', 'mlprep.cli') == ['mlprep.cli: c._named (line 2)']
    assert private_imports('import mlprep.core as c\nx = c.__name__', 'mlprep.cli') == []
    assert private_imports('from __future__ import annotations\nfrom .core import get_logger\nfrom os import _exit', 'mlprep.cli') == []
    assert private_imports('def f():\n    from mlprep.core import _x', 'mlprep.core') == []    # its own name


def test_no_private_name_imported_from_another_module():
    bad = [b for p in sorted(PKG.rglob('*.py')) if '__pycache__' not in p.parts and p.name != '_modidx.py'
           for b in private_imports(p.read_text(), module_name(p), p.name == '__init__.py')]
    assert not bad, 'make the name public (no underscore) in the module that defines it, or move it:\n' + '\n'.join(bad)


def export_cells(nb: Path):
    "(cell index, source) of each code cell that starts with `#| export` or `#| exports`."
    for i, c in enumerate(json.loads(nb.read_text())['cells']):
        src = ''.join(c['source']) if c['cell_type'] == 'code' else ''
        first = src.lstrip().split('\n', 1)[0].replace(' ', '')
        if first in ('#|export', '#|exports'): yield i, src


_LITERAL = (ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Name, ast.Load, ast.UnaryOp, ast.USub, ast.UAdd)

def is_data_table(src: str) -> bool:
    """A pure data table: every statement assigns a value built only of literals, containers and names (no calls,
    lambdas, comprehensions, operators besides a sign), like a list of problem templates."""
    try: body = ast.parse(src).body
    except SyntaxError: return False
    return bool(body) and all(isinstance(s, (ast.Assign, ast.AnnAssign)) and s.value is not None
                              and all(isinstance(n, _LITERAL) for n in ast.walk(s.value)) for s in body)


def test_data_table_rule_can_fail():
    assert is_data_table("#| export\nTOPICS = {'algebra': ['linear', 'quadratic'], 'n': -1}  # why\nLEVELS: tuple = (EASY, 'hard')\n")
    assert not is_data_table("#| export\nTOPICS = [t.strip() for t in 'a,b'.split(',')]")
    assert not is_data_table("#| export\nT = dict(a=1)")
    assert not is_data_table("#| export\nT = {'a': 1}\ndef f(): return T")
    assert not is_data_table("#| export\nimport os")


def test_no_export_cell_over_60_lines():
    "One definition (or a tight pair) per export cell, followed by its example; pure data tables may be longer."
    long = [f'{nb.relative_to(ROOT)} cell {i}: {n} lines'
            for nb in sorted((ROOT / 'nbs').rglob('*.ipynb')) if '.ipynb_checkpoints' not in nb.parts
            for i, src in export_cells(nb) if (n := len(src.splitlines())) > MAX_CELL_LINES and not is_data_table(src)]
    assert not long, f'{len(long)} export cells over {MAX_CELL_LINES} lines (split them):\n' + '\n'.join(long)


@pytest.mark.slow
def test_installed_wheel_works_outside_the_repository(tmp_path):
    "A wheel installed into a fresh venv, run from another folder: demo data, tokenizer and the tiny pair come from the cache."
    wheel_dir, site, home = tmp_path / 'wheel', tmp_path / 'site', tmp_path / 'home'
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', '-w', wheel_dir, ROOT],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', venv], check=True)
    vpy = venv / 'bin' / 'python'
    vsite = next((venv / 'lib').glob('python3*/site-packages'))
    # the dependencies come from this environment's site-packages (its .pth files, the editable mlprep among them, are not run)
    deps = next(Path(p) for p in sys.path if p.endswith('site-packages') and (Path(p) / 'torch').is_dir())
    (vsite / 'deps.pth').write_text(str(deps) + '\n')
    r = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target', vsite, *wheel_dir.glob('*.whl')],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    # the cached tiny pair of the checkout stands in for training it again (same data -> same cache key)
    cache = home / '.cache' / 'mlprep' / 'outputs'
    cache.mkdir(parents=True)
    if (ROOT / 'outputs' / 'tiny_pair').is_dir(): shutil.copytree(ROOT / 'outputs' / 'tiny_pair', cache / 'tiny_pair')
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'MLPREP_HOME')}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / '.cache'), HF_HUB_OFFLINE='1')
    run = lambda *code: subprocess.run([vpy, *code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    r = run('-c', 'import mlprep, mlprep.core as c; print(mlprep.__file__); print(c.project_root()); '
                  'from mlprep.stages import stages_dir; print(stages_dir())')
    assert r.returncode == 0, r.stderr[-2000:]
    where, root, stages = r.stdout.split()
    assert str(vsite) in where and root == str(home / '.cache' / 'mlprep') and (Path(stages) / 'data.ipynb').exists()
    r = run('-m', 'mlprep.cli', 'data', '--dataset', 'demo:pairs', '--dataset_adapter', 'pairs', '--kind', 'pair',
            '--num_samples', '8', '--output_dir', tmp_path / 'data-run')
    assert r.returncode == 0, r.stderr[-3000:]
    assert (home / '.cache' / 'mlprep' / 'data' / 'demo' / 'pairs.jsonl').exists()
    r = run('-m', 'mlprep.cli', 'datagen', '--model_theta', 'tiny:theta', '--model_t', 'tiny:target', '--dataset', 'demo:deepscaler',
            '--num_samples', '2', '--max_new_tokens', '4', '--output', tmp_path / 'gen' / 'data.jsonl')
    assert r.returncode == 0, r.stderr[-3000:]
    assert len((tmp_path / 'gen' / 'data.jsonl').read_text().splitlines()) == 2
    r = run('-m', 'mlprep.cli', 'demo', '--only', 'sampling', '--output_dir', tmp_path / 'demo', '--num_samples', '2',
            '--max_new_tokens', '4', '--no_progress')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'Open the report: ' + str(tmp_path / 'demo') in r.stdout
