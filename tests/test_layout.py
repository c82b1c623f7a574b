"""The package's shape: layers import only downwards, capabilities never import each other, no import circles,
no module too long to read, and an installed wheel works outside the repository."""
import ast, os, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / 'mlprep'
CAPABILITIES = ('sampling', 'pref', 'mateconv', 'qgen')


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
    "0 core, 1 data, 2 capabilities, 3 stages / slurm / cli / testing."
    parts = mod.split('.')
    if len(parts) > 1 and parts[1] in ('core', 'config'): return 0
    if len(parts) > 1 and parts[1] == 'data': return 1
    if len(parts) > 1 and parts[1] in CAPABILITIES: return 2
    if mod == 'mlprep' or parts[1] in ('_modidx',): return 0
    return 3


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


def test_no_module_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in PKG.rglob('*.py')
            if p.name != '_modidx.py' and (n := len(p.read_text().splitlines())) > 650}
    assert not long, long


def test_capabilities_are_subpackages():
    for sub in ('data', 'sampling'): assert (PKG / sub / '__init__.py').exists()
    flat = sorted(p.stem for p in PKG.glob('*.py') if not p.stem.startswith('_'))
    assert flat == ['cli', 'config', 'core', 'slurm', 'stages', 'testing'], flat


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
