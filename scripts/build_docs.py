"""Build mlprep's docs site offline with MkDocs (Material), from the nbdev notebooks.

    python scripts/build_docs.py [--force] [--jobs N] [--timeout S] [--out DIR]   (or: bash scripts/docs.sh)

What it does, in order:
1. Library notebooks (`nbs/NN_*.ipynb` and `nbs/index.ipynb`): each is executed the way `nbdev_test` runs it
   (execnb's CaptureShell, cwd = the notebook's folder, cells flagged with settings.ini's `tst_flags` skipped), in a
   fresh process per notebook, then processed with nbdev's own docs processors (the ones `nbdev_docs` uses for
   Quarto: `#| hide` and `#| export` cells removed, `show_doc` added after exported code, names linked).
   Results are cached in `_docs/cache/` by a hash of the notebook and of `mlprep/`.
   Before execution a cell holding several `show_doc(...)` calls is split into one cell per call (a cell shows only
   its last value), `show_doc` renders a parameter table (name, type, default, help: from the signature, fastcore
   docments and, for `Config` dataclasses, the fields' `param(help=...)`) and a source link built from settings.ini's
   `git_url` and `branch`; after execution every name in the module's `__all__` that still has no entry gets one.
2. Stage notebooks (`nbs/stages/*.ipynb`): the page shows the newest completed run found anywhere under `outputs/`
   (a folder whose `run.json` says completed and that holds `STAGE.ipynb`: what `mlprep run` and `mlprep demo`
   write); without one, the stage notebook is executed with papermill with its default parameters into a temporary
   folder.
3. Every notebook is converted to a Markdown page (images written next to it), the guides in `docs/guides/` are
   added, and `mkdocs build --strict` writes the site to `_docs/site/` (open `_docs/site/index.html`). Outputs are
   scrubbed: paths of the build machine become relative (`outputs/...`, `~/...`, `.../name`), INFO/DEBUG log lines
   are dropped; TeX between `$` signs becomes MathML on every page (guides included).

Nothing is fetched from the network: no CDN fonts or scripts. A notebook that fails stops the build with a
message naming the notebook and the cell. Notebooks keep their nbdev format, so `nbdev_docs` (Quarto) still works.
"""
from __future__ import annotations
import argparse, base64, concurrent.futures as cf, hashlib, json, os, re, shutil, signal, subprocess, sys, tempfile, time
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT/'docs'                      # mkdocs.yml template, guides/*.md, assets/
CACHE_VERSION = '2'                          # bump when the processing below changes what a cached notebook holds


def log(msg): print(f'docs: {msg}', flush=True)

def rel(p) -> str:
    p = Path(p)
    try: return str(p.resolve().relative_to(ROOT))
    except ValueError: return str(p)

def settings() -> dict:
    cfg = ConfigParser(delimiters=['='])
    cfg.read(ROOT/'settings.ini', encoding='utf-8')
    return dict(cfg['DEFAULT'])

class DocsError(Exception): "A notebook failed or a page could not be built; the message says which and why."

# ---------------------------------------------------------------------------------------------------------------
# Discovery

CAPABILITY_TITLES = {'': 'Core', 'data': 'Data', 'sampling': 'Optimal sampling', 'pref': 'Preference optimization',
                     'mateconv': 'MateConv', 'qgen': 'Questions-Gen', 'evals': 'Evaluation'}

def _group(nb: Path) -> str:
    "The capability folder of a library notebook (`''` for the top level)."
    return nb.parent.name if nb.parent.name in CAPABILITY_TITLES else ''

def page_name(nb: Path) -> str:
    "The page of a notebook: `00_core.ipynb` -> `core`, `sampling/10_mixture.ipynb` -> `sampling_mixture`."
    name = re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb.stem.lower())
    return f'{_group(nb)}_{name}' if _group(nb) else name

def library_notebooks(nbs: Path) -> list[Path]:
    "`index.ipynb` first, then `NN_*.ipynb` (top level and capability folders) in number order."
    nbs_ = sorted((p for p in nbs.rglob('*.ipynb') if re.match(r'^\d+[a-zA-Z0-9]*_', p.name)
                   and _group(p) == p.parent.relative_to(nbs).as_posix().replace('.', '')), key=lambda p: p.name)
    return ([nbs/'index.ipynb'] if (nbs/'index.ipynb').exists() else []) + nbs_

def stage_notebooks(stages_dir: Path) -> list[Path]:
    if not stages_dir.is_dir(): return []
    return sorted(p for p in stages_dir.glob('*.ipynb') if not p.name.startswith(('.', '_')))

def _stage_names(nb: Path) -> list[str]:
    "Names a stage notebook's runs may be filed under: its stem, the stem without `NN_`, and registered stage names."
    names = [nb.stem, page_name(nb)]
    try:                                           # the registry (mlprep.stages) knows which name runs which notebook
        import mlprep.stages as S
        S.load_jobs()
        names += [n for n, st in S.STAGES.items() if st.notebook and Path(st.notebook_path).resolve() == nb.resolve()]
    except Exception: pass
    return list(dict.fromkeys(names))

def _run_ok(nb_path: Path) -> bool:
    "A run counts if its run.json says completed (or, without run.json, papermill executed it without an exception)."
    rj = nb_path.parent/'run.json'
    if rj.exists():
        try: return json.loads(rj.read_text()).get('status') == 'completed'
        except ValueError: return False
    try: meta = json.loads(nb_path.read_text(encoding='utf-8')).get('metadata', {})
    except ValueError: return False
    return 'papermill' in meta and not meta['papermill'].get('exception')

def _run_notebooks(outputs_dir: Path, names: list[str]):
    "Candidate runs: every `NAME.ipynb` at any depth under `outputs_dir` (`_run_ok` decides whether it counts)."
    if not outputs_dir.is_dir(): return
    for d, dirs, files in os.walk(outputs_dir):
        dirs[:] = [x for x in dirs if not x.startswith(('.', '__', 'checkpoint-'))]
        for n in names:
            if f'{n}.ipynb' in files: yield Path(d)/f'{n}.ipynb'

def _run_time(nb_path: Path) -> tuple:
    "When a run finished (run.json's `finished`, else the notebook's modification time), for picking the newest."
    try: fin = json.loads((nb_path.parent/'run.json').read_text()).get('finished') or ''
    except (OSError, ValueError): fin = ''
    return (nb_path.stat().st_mtime if not fin else time.mktime(time.strptime(fin[:19], '%Y-%m-%dT%H:%M:%S')),
            nb_path.parent.name)

def newest_run(stage_nb: Path, outputs_dir: Path, names: list[str] | None = None) -> Path | None:
    """The newest completed executed notebook `NAME.ipynb` of this stage under `outputs_dir`, at any depth
    (`outputs/NAME/RUN_ID/` from `mlprep run`, `outputs/demo/CAPABILITY/...` from `mlprep demo`), or None."""
    runs = [p for p in _run_notebooks(outputs_dir, names or _stage_names(stage_nb)) if _run_ok(p)]
    return max(runs, key=_run_time) if runs else None

# ---------------------------------------------------------------------------------------------------------------
# Execution (each notebook in its own process: `build_docs.py --_exec KIND SRC DST`)

def _lib_hash() -> str:
    h = hashlib.sha256(CACHE_VERSION.encode())
    for p in sorted((ROOT/'mlprep').rglob('*.py')) + [ROOT/'settings.ini', Path(__file__)]:
        h.update(str(p.relative_to(ROOT)).encode()); h.update(p.read_bytes())
    return h.hexdigest()

def _cached(cache: Path, kind: str, src: Path, lib_hash: str) -> Path:
    h = hashlib.sha256(lib_hash.encode() + src.read_bytes()).hexdigest()[:16]
    return cache/kind/f'{src.stem}.{h}.ipynb'

def _execute(kind: str, src: Path, dst: Path, timeout: int) -> float:
    "Run one notebook in a child process with a time limit; raise DocsError naming the notebook and cell."
    tmp = dst.with_name(f'.{dst.stem}.{os.getpid()}.tmp.ipynb')
    progress = dst.with_name(f'.{dst.name}.cell')
    env = {**os.environ, 'MLPREP_PROGRESS': '0', 'PYTHONUNBUFFERED': '1',
           'MPLBACKEND': 'module://matplotlib_inline.backend_inline'}      # a kernel with MPLBACKEND=Agg shows no plots
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, __file__, '--_exec', kind, str(src), str(tmp), str(progress), str(timeout)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try: out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL); proc.communicate()
        cell = progress.read_text() if progress.exists() else '(unknown cell)'
        tmp.unlink(missing_ok=True)
        raise DocsError(f'{rel(src)} did not finish within {timeout} s (--timeout); it was running {cell}') from None
    finally: progress.unlink(missing_ok=True)
    if proc.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        msg = out[out.find('docs: '):] if 'docs: ' in out else out     # our message, without the noise before it
        raise DocsError(msg.strip()[-6000:] or f'{rel(src)}: executing it failed with exit code {proc.returncode}')
    for old in dst.parent.glob(f'{src.stem}.*.ipynb'): old.unlink()       # keep one cached version per notebook
    tmp.replace(dst)
    return time.time() - t0

def _cell_desc(n: int | None, source: str) -> str:
    lines = [l for l in source.splitlines() if l.strip()][:6]
    where = f'cell {n} (counting from 1, markdown cells included)' if n else 'a show_doc cell nbdev added'
    return where + ':\n' + '\n'.join('    ' + l for l in lines)

# ---------------------------------------------------------------------------------------------------------------
# API entries: one per show_doc call, parameter tables, source links, every exported name

def split_show_docs(source: str) -> list[str]:
    """Split a cell holding several top-level `show_doc(...)` calls into one cell per call (a cell displays only its
    last value, so the others would be lost); other statements stay, in order, in cells of their own. Leading
    `#|` directive lines are kept on every part. A cell with at most one call comes back unchanged."""
    import ast
    lines = source.splitlines()
    n_dir = 0
    while n_dir < len(lines) and lines[n_dir].lstrip().startswith('#|'): n_dir += 1
    try: tree = ast.parse(source)
    except SyntaxError: return [source]
    def is_sd(node): return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                             and getattr(node.value.func, 'id', None) == 'show_doc')
    if sum(map(is_sd, tree.body)) < 2: return [source]
    directives, parts, rest = lines[:n_dir], [], []
    for node in tree.body:
        seg = ast.get_source_segment(source, node, padded=False)
        if is_sd(node):
            if rest: parts.append('\n'.join(rest)); rest = []
            parts.append(seg)
        else: rest.append(seg)
    if rest: parts.append('\n'.join(rest))
    return ['\n'.join(directives + [p]) for p in parts]

def _fmt_type(tp) -> str:
    "An annotation as people write it: `str | None`, `list[int]`, `'a' | 'b'` for a Literal."
    import typing, inspect
    if tp is inspect.Parameter.empty: return ''
    if isinstance(tp, str): return tp
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal: return ' | '.join(repr(a) for a in args)
    if origin is typing.Union or type(tp).__name__ == 'UnionType':
        return ' | '.join('None' if a is type(None) else _fmt_type(a) for a in args)
    if origin is not None and args:
        return f"{getattr(origin, '__name__', str(origin).replace('typing.', ''))}[{', '.join(_fmt_type(a) for a in args)}]"
    if isinstance(tp, type): return tp.__name__
    return str(tp).replace('typing.', '')

def _fmt_default(v) -> str:
    import inspect, dataclasses
    if v is inspect.Parameter.empty or v is dataclasses.MISSING: return ''
    if callable(v) and hasattr(v, '__name__'): return v.__name__
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + '...'

def param_rows(obj) -> list[tuple[str, str, str, str]]:
    """(name, type, default, help) for each parameter of `obj`: a dataclass's fields (help from `metadata['help']`,
    which mlprep's `param(help=...)` sets), else the signature's parameters (help from fastcore docments comments)."""
    import dataclasses, inspect, typing
    rows = []
    if isinstance(obj, type) and dataclasses.is_dataclass(obj):
        try: hints = typing.get_type_hints(obj)
        except Exception: hints = {}
        for f in dataclasses.fields(obj):
            if not f.init or f.name.startswith('_'): continue
            d = f.default
            if d is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
                try: d = f.default_factory()
                except Exception: d = dataclasses.MISSING
            rows.append((f.name, _fmt_type(hints.get(f.name, f.type)), _fmt_default(d), str(f.metadata.get('help', ''))))
        return rows
    try: sig = inspect.signature(obj, eval_str=True)
    except Exception:
        try: sig = inspect.signature(obj)
        except Exception: return []
    try:
        from fastcore.docments import docments
        helps = {k: (v or '') for k, v in docments(obj).items()}
    except Exception: helps = {}
    for name, p in sig.parameters.items():
        if name in ('self', 'cls'): continue
        pre = '*' if p.kind == p.VAR_POSITIONAL else '**' if p.kind == p.VAR_KEYWORD else ''
        rows.append((pre + name, _fmt_type(p.annotation), _fmt_default(p.default), str(helps.get(name) or '')))
    return rows

def param_table(obj) -> str:
    "The parameter table of an API entry, as HTML (pipes in types such as `str | None` cannot break it)."
    import html
    rows = param_rows(obj)
    if not rows: return ''
    def esc(x): return html.escape(x).replace('{', '&#123;').replace('}', '&#125;')    # attr_list would eat {...}
    def code(x): return f'<code>{esc(x)}</code>' if x else ''
    def text(x): return re.sub(r'`([^`]+)`', lambda m: f'<code>{m.group(1)}</code>', esc(x))
    has_help = any(r[3] for r in rows)
    head = ''.join(f'<th>{h}</th>' for h in ['Parameter', 'Type', 'Default'] + (['Help'] if has_help else []))
    body = ''.join('<tr>' + ''.join(f'<td>{c}</td>' for c in [code(n), code(t), code(d)] + ([text(h)] if has_help else []))
                   + '</tr>' for n, t, d, h in rows)
    return f'<table class="api-params"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

def _library_twin(obj, module: str | None, lib: str = 'mlprep'):
    "The library's own object for `obj` (a notebook defines its classes and `@patch`ed methods in `__main__`)."
    import importlib
    qual = getattr(obj, '__qualname__', None) or getattr(obj, '__name__', None)
    mods = [m for m in (getattr(obj, '__module__', None), module and f'{lib}.{module}') if m and m.split('.')[0] == lib]
    for m in mods:
        try: o = importlib.import_module(m)
        except Exception: continue
        try:
            for part in (qual or '').split('.'): o = inspect_getattr(o, part)
            return o
        except AttributeError: continue
    return obj

def inspect_getattr(o, name):
    "getattr that sees a property or staticmethod itself, not its value."
    import inspect
    return inspect.getattr_static(o, name) if isinstance(o, type) else getattr(o, name)

def source_url(obj, cfg: dict | None = None, module: str | None = None) -> str | None:
    """`git_url/blob/branch/PATH#LN` of `obj`'s definition in the library (settings.ini's `git_url` and `branch`),
    or None when it is not defined in a file of this checkout."""
    import inspect
    cfg = cfg if cfg is not None else settings()
    git = cfg.get('git_url', '').rstrip('/')
    if not git: return None
    for o in (obj, _library_twin(obj, module, cfg.get('lib_name', 'mlprep'))):
        try:
            o = inspect.unwrap(getattr(o, 'fget', None) or getattr(o, '__func__', None) or o)   # @torch.no_grad etc.
            f = Path(inspect.getsourcefile(o)).resolve()
            if f.suffix != '.py' or not f.is_relative_to(ROOT/cfg.get('lib_path', 'mlprep')): continue
            line = inspect.getsourcelines(o)[1]
            return f"{git}/blob/{cfg.get('branch', 'main')}/{f.relative_to(ROOT).as_posix()}#L{line}"
        except Exception: continue
    return None

def _patch_show_doc(cfg: dict, module: str | None = None):
    "Make nbdev's show_doc render: source link (from settings.ini), heading, signature, docstring, parameter table."
    import inspect, nbdev.showdoc as sd, fastcore.docments as fd
    from fastcore.docments import MarkdownRenderer
    def signature(obj, *args, eval_str=False, **kw):   # a string annotation that does not evaluate: show it as written
        try: return inspect.signature(obj, *args, eval_str=eval_str, **kw)
        except NameError: return inspect.signature(obj, *args, **kw)
    fd.signature = signature
    def _repr_markdown_(self):
        doc = '---\n\n'
        url = source_url(self.sym, cfg, module)
        if url: doc += f'[source]({url}){{ .api-source target="_blank" }}\n\n'
        doc += f"{'#' * self.title_level} {self.nm}\n\n" + MarkdownRenderer._repr_markdown_(self)
        try: tbl = param_table(self.sym)
        except Exception: tbl = ''
        return doc + (f'\n\n{tbl}' if tbl else '')
    sd.BasicMarkdownRenderer._repr_markdown_ = _repr_markdown_

_DOC_HEADING = re.compile(r'^#{2,6} (\S+)\s*$', re.MULTILINE)

def documented_names(cells) -> set[str]:
    "Names that have an API entry (a show_doc heading) among the outputs of `cells`."
    out = set()
    for c in cells:
        for o in c.get('outputs', []) or []:
            md = (o.get('data') or {}).get('text/markdown')
            md = ''.join(md) if isinstance(md, list) else (md or '')
            if md.lstrip().startswith('---'): out |= set(_DOC_HEADING.findall(md))
    return out

def dedupe_entries(cells) -> list:
    """Drop a show_doc entry whose name already has one earlier on the page (an explicit `show_doc(C.m)` after the one
    nbdev adds behind a `@patch`ed method): each name once, so each anchor once."""
    seen, out = set(), []
    for c in cells:
        outs = c.get('outputs') or []
        keep = []
        for o in outs:
            md = (o.get('data') or {}).get('text/markdown')
            md = ''.join(md) if isinstance(md, list) else (md or '')
            names = set(_DOC_HEADING.findall(md)) if md.lstrip().startswith('---') else set()
            if names and names <= seen: continue
            seen |= names; keep.append(o)
        if outs and not keep and c.get('cell_type') == 'code': continue
        if outs: c['outputs'] = keep
        out.append(c)
    return out

def default_exp(nb: Path) -> str | None:
    "The module a notebook exports to (`#| default_exp`), or None."
    try: cells = json.loads(nb.read_text(encoding='utf-8'))['cells']
    except (OSError, ValueError, KeyError): return None
    for c in cells:
        if c.get('cell_type') == 'code' and (m := re.search(r'^#\|\s*default_exp\s+(\S+)', _text(c.get('source')), re.MULTILINE)):
            return m.group(1)
    return None

def definitions(cells) -> dict[str, tuple[int, str | None]]:
    "Name -> (cell index, source of the assignment; None for a def/class) for what the exported cells define."
    import ast
    out = {}
    for i, c in enumerate(cells):
        src = _text(c.get('source'))
        if c.get('cell_type') != 'code' or not re.search(r'^#\|\s*exports?\b', src, re.MULTILINE): continue
        try: tree = ast.parse(src)
        except SyntaxError: continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): out.setdefault(node.name, (i, None))
            tgts = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            for t in tgts:
                if isinstance(t, ast.Name): out.setdefault(t.id, (i, ast.get_source_segment(src, node)))
    return out

def _complete_api(nb, module: str, mk_cell, defs: dict, cfg: dict):
    """Give every name of `module.__all__` that has no entry yet one, where the exported cell defining it was: show_doc
    for functions and classes, the defining source for other values (constants, registry rows)."""
    import importlib, nbdev.showdoc as sd
    try: mod = importlib.import_module(f"{cfg.get('lib_name', 'mlprep')}.{module}")
    except Exception as e:
        sys.stderr.write(f'docs: warning: cannot import {module} to check its API entries: {e}\n'); return
    have = {n.lower() for n in documented_names(nb.cells)}
    for name in [n for n in getattr(mod, '__all__', []) if n.lower() not in have]:
        obj = getattr(mod, name, None)
        k, seg = defs.get(name, (10**9, None))
        if callable(obj) and not isinstance(obj, (dict, list)):
            md = sd.BasicMarkdownRenderer(obj, name=name)._repr_markdown_()
        else:
            lines = (seg or f'{name} = {obj!r}').splitlines()
            md = f"---\n\n### {name}\n\n```python\n" + '\n'.join(lines[:15] + (['...'] if len(lines) > 15 else [])) + '\n```'
        cell = mk_cell(f'#| echo: false\n#| output: asis\nshow_doc({name})')
        cell.directives_ = {}
        cell.outputs = [{'output_type': 'display_data', 'metadata': {}, 'data': {'text/markdown': md, 'text/plain': name}}]
        pos = 0                                      # after the last surviving cell that came before the definition,
        for j, c in enumerate(nb.cells):             # and after the show_doc cells nbdev added behind it
            o = getattr(c, 'orig_idx_', None)
            if o is not None and o > k: break
            pos = j + 1
        nb.cells.insert(pos, cell)

def _child_lib(src: Path, dst: Path, progress: Path):
    "Execute a library notebook as nbdev_test does, then apply nbdev's docs processors (as nbdev_docs does)."
    os.environ['IN_TEST'] = '1'
    from fastcore.basics import str2bool, AttrDict
    from fastcore.xtras import working_directory
    from execnb.nbio import write_nb, mk_cell, read_nb
    from execnb.shell import CaptureShell, format_exc
    from nbdev.config import get_config
    from nbdev.process import NBProcessor, Processor
    from nbdev.processors import FilterDefaults, add_show_docs, exec_show_docs, insert_warning
    from nbdev.frontmatter import _md2dict
    cfg = get_config()
    sys.path.insert(0, str(cfg.config_path))
    flags = set(cfg.get('tst_flags', '').split())

    class execute_all(Processor):
        "Run every cell that nbdev_test would run (this replaces nbdev's exec_show_docs, which runs only a few)."
        def begin(self):
            fm = getattr(self.nb, 'frontmatter_', {})
            if str2bool(fm.get('skip_exec', False)): return
            k = CaptureShell(src)
            k.run_cell('from nbdev.showdoc import show_doc')
            with working_directory(src.parent):
                for cell in self.nb.cells:
                    if cell.cell_type != 'code' or 'nbdev_export(' in cell.source: continue
                    d = getattr(cell, 'directives_', None) or {}
                    if d.get('eval:', [''])[0].lower() == 'false' or flags & d.keys(): continue
                    desc = _cell_desc(numbers.get(id(cell)), cell.source)
                    progress.write_text(desc)
                    cell.outputs = []
                    k.cell(cell)
                    if k.exc:
                        tb = ''.join(format_exc(k.exc))
                        sys.stderr.write(f'docs: {rel(src)} failed in {desc}\n{tb}\n'); sys.stderr.flush()
                        os._exit(1)

    _patch_show_doc(settings(), default_exp(src))
    procs = [p for p in FilterDefaults().procs() if p not in (exec_show_docs, insert_warning)]
    procs.insert(procs.index(add_show_docs) + 1 if add_show_docs in procs else 1, execute_all)
    nb, cells, numbers = read_nb(src), [], {}
    defs = definitions(nb.cells)
    for i, c in enumerate(nb.cells):                 # one show_doc per cell: split cells holding several
        parts = split_show_docs(c.source) if c.cell_type == 'code' else [c.source]
        for part in parts:
            c2 = c if len(parts) == 1 else mk_cell(part, 'code', metadata=AttrDict(c.get('metadata', {})))
            c2.orig_idx_ = i
            cells.append(c2); numbers[id(c2)] = i + 1
    nb.cells = cells
    proc = NBProcessor(nb=nb, procs=procs)
    title_md = next((c.source for c in proc.nb.cells if c.cell_type == 'markdown' and _md2dict(c.source)), None)
    proc.process()
    module = default_exp(src)
    if module: _complete_api(proc.nb, module, mk_cell, defs, settings())
    proc.nb.cells = dedupe_entries(proc.nb.cells)
    _title_cell(proc.nb, title_md, mk_cell)
    write_nb(proc.nb, dst)

def _title_cell(nb, title_md, mk_cell):
    "Quarto shows the title from frontmatter; a Markdown page needs the title cell back (all its prose, too)."
    fm = getattr(nb, 'frontmatter_', {}) or {}
    cells = [c for c in nb.cells if not (c.cell_type == 'raw' and c.source.lstrip().startswith('---'))]
    if not title_md and fm.get('title'):
        title_md = f"# {fm['title']}" + (f"\n\n> {fm['description']}" if fm.get('description') else '')
    nb.cells = ([mk_cell(title_md, 'markdown')] if title_md else []) + cells

def _child_stage(src: Path, dst: Path, progress: Path, timeout: int):
    "Execute a stage notebook with papermill, default parameters, scratch output in a temporary folder."
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    params, scratch = {}, tempfile.mkdtemp(prefix=f'mlprep-docs-{src.stem}-')
    if 'output_dir' in pm.inspect_notebook(str(src)): params['output_dir'] = scratch
    try:
        pm.execute_notebook(str(src), str(dst), parameters=params, cwd=str(ROOT), progress_bar=False,
                            kernel_name=os.environ.get('MLPREP_KERNEL', 'python3'), language='python',
                            start_timeout=120, execution_timeout=timeout)
    except PapermillExecutionError as e:
        n = e.cell_index + 1 if e.cell_index is not None else None
        sys.stderr.write(f'docs: stage notebook {rel(src)} failed in {_cell_desc(n, e.source or "")}\n'
                         f'{e.ename}: {e.evalue}\n'); os._exit(1)
    nb = json.loads(dst.read_text(encoding='utf-8'))
    nb['cells'] = [c for c in nb['cells'] if 'injected-parameters' not in c.get('metadata', {}).get('tags', [])]
    nb.setdefault('metadata', {})['mlprep_docs'] = {'executed_by': 'docs build', 'scratch_output_dir': scratch}
    dst.write_text(json.dumps(nb, indent=1), encoding='utf-8')

def _process_stage(src: Path):
    "nbdev's docs processors for an already-executed stage notebook (no execution, no added show_doc)."
    from execnb.nbio import read_nb, mk_cell
    from nbdev.process import NBProcessor
    from nbdev.processors import FilterDefaults, add_show_docs, exec_show_docs, insert_warning, mv_exports
    from nbdev.frontmatter import _md2dict
    procs = [p for p in FilterDefaults().procs() if p not in (add_show_docs, exec_show_docs, insert_warning, mv_exports)]
    proc = NBProcessor(nb=read_nb(src), procs=procs)
    title_md = next((c.source for c in proc.nb.cells if c.cell_type == 'markdown' and _md2dict(c.source)), None)
    proc.process()
    _title_cell(proc.nb, title_md, mk_cell)
    from execnb.nbio import nb2dict
    return nb2dict(proc.nb)

# ---------------------------------------------------------------------------------------------------------------
# Notebook -> Markdown page

_ANSI = re.compile(r'\x1B(?:[@-Z\\-_]|\[[0-?]*[ -/]*[@-~])')
_DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_LIST_ITEM = re.compile(r'^ {0,3}(?:[-*+]|\d+[.)])\s+\S')

def _text(x) -> str: return ''.join(x) if isinstance(x, list) else (x or '')

def _fence(text: str, lang: str = '') -> str:
    ticks = max([3] + [len(m) + 1 for m in re.findall(r'`{3,}', text)])
    return f"{'`' * ticks}{lang}\n{text.rstrip()}\n{'`' * ticks}"

def _quarto_options(source: str) -> tuple[dict, str]:
    "Split the `#| key: value` lines nbdev's processors leave for Quarto (echo, output, code-fold ...) off a cell."
    opts, lines = {}, source.splitlines()
    while lines and (m := _DIRECTIVE.match(lines[0])):
        opts[m.group(1).lower()] = m.group(2).strip('"\'').lower(); lines.pop(0)
    return opts, '\n'.join(lines)

_FENCED = re.compile(r'^(```|~~~).*?^\1[^\n]*$|(`+)[^`].*?\2', re.MULTILINE | re.DOTALL)
_DISPLAY_MATH = re.compile(r'\$\$(.+?)\$\$', re.DOTALL)
_INLINE_MATH = re.compile(r'(?<![\\$\w])\$(?=\S)([^$\n]+?)(?<=\S)\$(?![\w$])')

def _math(md: str) -> str:
    "TeX between `$`/`$$` -> MathML, which browsers draw without MathJax (no CDN); TeX that fails stays as it is."
    try: from latex2mathml.converter import convert
    except ImportError: return md
    def conv(m, display):       # inline math in a span: Python-Markdown takes a line starting with <math> for a block
        try: html = convert(m.group(1).strip(), display=display).replace('\n', ' ')
        except Exception: return m.group(0)
        return f'<span class="math">{html}</span>' if display == 'inline' else html
    out, last = [], 0
    for code in _FENCED.finditer(md):                  # leave code blocks and `code spans` alone
        text = md[last:code.start()]
        text = _DISPLAY_MATH.sub(lambda m: conv(m, 'block'), text)
        out += [_INLINE_MATH.sub(lambda m: conv(m, 'inline'), text), code.group(0)]
        last = code.end()
    text = _DISPLAY_MATH.sub(lambda m: conv(m, 'block'), md[last:])
    return ''.join(out + [_INLINE_MATH.sub(lambda m: conv(m, 'inline'), text)])

_LOG_LINE = re.compile(r'^(?:\d{4}-\d\d-\d\d[ T])?\d\d:\d\d:\d\d(?:[,.]\d+)? (?:INFO|DEBUG) \S.*\n?|^(?:INFO|DEBUG)[: ].*\n?',
                       re.MULTILINE)
_PATH_CHARS = r"""[^/\s'"<>()\[\],;|`]"""

def _machine_paths() -> list[tuple[re.Pattern, str]]:
    "This machine's paths and what they become on a page: the checkout -> relative, temp -> `.../`, home -> `~/`."
    import tempfile
    roots = sorted({str(ROOT), str(ROOT.resolve())}, key=len, reverse=True)
    tmps = sorted({'/tmp', '/var/tmp', tempfile.gettempdir().rstrip('/')}, key=len, reverse=True)
    homes = sorted({'/root', str(Path.home())} - {'/', ''}, key=len, reverse=True)
    subs = [(re.compile(re.escape(r) + r'/'), '') for r in roots]
    subs += [(re.compile(re.escape(r) + r"""(?![\w/.-])"""), '.') for r in roots]
    subs += [(re.compile(r'(?<![\w.~])' + re.escape(t) + rf'/(?:{_PATH_CHARS}+/)?'), '.../') for t in tmps]
    subs += [(re.compile(r'(?<![\w.~])' + re.escape(h) + r'(?=/)'), '~') for h in homes]
    subs += [(re.compile(rf'(?<![\w.~])/work/{_PATH_CHARS}+/'), '.../')]
    return subs

_PATHS = None
def scrub(text: str, logs: bool = True) -> str:
    "A page's text without this machine's paths (`/tmp/...`, `/root/...`, the checkout) and, with `logs`, INFO/DEBUG log lines."
    global _PATHS
    if _PATHS is None: _PATHS = _machine_paths()
    if logs: text = _LOG_LINE.sub('', text)
    for pat, rep in _PATHS: text = pat.sub(rep, text)
    return text

def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b'\x89PNG\r\n\x1a\n' or len(data) < 24: return None
    return int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big')

class Pages:
    "Turns processed notebooks into Markdown pages under `docs_dir`, rewriting links between notebooks."
    def __init__(self, docs_dir: Path, cfg: dict, page_of: dict[str, str]):
        self.docs_dir, self.page_of = docs_dir, page_of      # page_of: notebook file name or html name -> page .md
        host = cfg.get('doc_host', '').rstrip('/') + '/' + cfg.get('doc_baseurl', '').strip('/')
        self.doc_url = host.rstrip('/') + '/'

    def _link(self, target: str, page: str) -> str:
        "Map a link to another notebook or to its published nbdev page onto the relative .md path of our page."
        url, _, anchor = target.partition('#')
        if self.doc_url != '/' and url.startswith(self.doc_url): url = url[len(self.doc_url):]
        elif re.match(r'^[a-z]+:', url) or not url: return target
        path = os.path.normpath(url).lstrip('./')         # 'stages/data.ipynb', '../nbs/00_core.ipynb' -> ...
        dest = next((self.page_of[k] for k in (path, Path(path).name) if k in self.page_of), None)
        if not dest: return target
        relp = os.path.relpath(dest, start=str(Path(page).parent) or '.').replace(os.sep, '/')
        return relp + ('#' + anchor if anchor else '')

    def _markdown(self, md: str, page: str) -> str:
        md = _math(md)
        def link(m):                                     # a notebook without a page here: its name, unlinked
            new = self._link(m.group(2), page)
            if new == m.group(2) and not re.match(r'^[a-z]+:', new) and new.partition('#')[0].endswith('.ipynb'): return m.group(1)
            return f'[{m.group(1)}]({new})'
        md = re.sub(r'(?<!!)\[([^\]]*)\]\(([^)\s]+)\)', link, md)
        md = re.sub(r'\]\(([^)\s]+)\)', lambda m: '](' + self._link(m.group(1), page) + ')', md)     # images
        out, fenced, prev = [], False, ''
        for line in md.splitlines():                     # Python-Markdown needs a blank line before a list
            if line.lstrip().startswith(('```', '~~~')): fenced = not fenced
            if (not fenced and _LIST_ITEM.match(line) and prev.strip() and not _LIST_ITEM.match(prev)
                    and not prev.startswith((' ', '\t', '>', '|'))): out.append('')
            out.append(line); prev = line
        return '\n'.join(out)

    def _doc_markdown(self, md: str, page: str) -> str:
        "show_doc output: give each symbol heading nbdev's anchor (`#badrows.add`), so nbdev's links land on it."
        md = re.sub(r'^(#{2,6}) (\S+)\s*$', lambda m: f'{m.group(1)} {m.group(2)} {{ #{m.group(2).lower()} .api-entry }}', md,
                    flags=re.MULTILINE)
        return self._markdown(md, page)

    def _output(self, o: dict, page: str, files: Path, stem: str) -> str:
        t = o.get('output_type')
        if t == 'stream':
            text = scrub(_ANSI.sub('', _text(o.get('text'))))
            return _fence(text, 'text') if text.strip() else ''
        if t == 'error': return _fence(scrub(_ANSI.sub('', '\n'.join(o.get('traceback', []))), logs=False), 'text')
        data, meta = o.get('data', {}), o.get('metadata', {})
        for mime, ext in (('image/png', 'png'), ('image/jpeg', 'jpg'), ('image/svg+xml', 'svg')):
            if mime in data:
                files.mkdir(parents=True, exist_ok=True)
                f, size = files/f'{stem}.{ext}', None
                if ext == 'svg': f.write_text(_text(data[mime]), encoding='utf-8')
                else:
                    raw = base64.b64decode(_text(data[mime])); f.write_bytes(raw); size = _png_size(raw)
                w = (meta.get(mime) or {}).get('width')
                src = os.path.relpath(f, self.docs_dir/Path(page).parent).replace(os.sep, '/')
                if size and size[0] >= 1.8 * size[1]: return f'![]({src}){{ .nb-wide }}'   # multi-panel: the page's width
                return f'![]({src})' + (f'{{ width="{int(w)}" }}' if w else '')
        if 'text/markdown' in data:
            md = scrub(_text(data['text/markdown']), logs=False)
            if md.lstrip().startswith('---'):                # show_doc: an API entry
                return f'<div class="nb-doc" markdown>\n\n{self._doc_markdown(md, page)}\n\n</div>'
            return f'<div class="nb-md" markdown>\n\n{self._markdown(md, page)}\n\n</div>'
        if 'text/html' in data:
            html = scrub(_text(data['text/html']).strip(), logs=False)
            if '<script' not in html: return f'<div class="nb-output nb-html">\n{html}\n</div>'
        if 'text/plain' in data:
            text = scrub(_ANSI.sub('', _text(data['text/plain'])))
            return _fence(text, 'text') if text.strip() else ''
        return ''

    def write(self, nb: dict, page: str, note: str = '') -> Path:
        "Write notebook `nb` (nbformat dict) as `docs_dir/page`; its images go to `PAGE_files/`."
        files = self.docs_dir/(page[:-3] + '_files')
        shutil.rmtree(files, ignore_errors=True)
        parts = []
        for i, cell in enumerate(nb.get('cells', [])):
            src, tags = _text(cell.get('source')), set(cell.get('metadata', {}).get('tags', []))
            if cell['cell_type'] == 'markdown':
                if src.strip() and 'remove_cell' not in tags: parts.append(self._markdown(src, page))
                if i == 0 and note: parts.append(note)
                continue
            if cell['cell_type'] != 'code' or 'remove_cell' in tags: continue
            opts, code = _quarto_options(src)
            if opts.get('include') == 'false': continue
            if code.strip() and opts.get('echo') != 'false' and not tags & {'remove_input', 'remove-input'}:
                parts.append(_fence(code, 'python'))
            if opts.get('output') == 'false' or tags & {'remove_output', 'remove-output'}: continue
            outs, streams = [], {}
            for j, o in enumerate(cell.get('outputs', [])):
                if o.get('output_type') == 'stream':           # one block per stream, as Jupyter shows them
                    if o.get('name') in streams: streams[o['name']]['text'] = _text(streams[o['name']]['text']) + _text(o['text']); continue
                    o = streams[o.get('name')] = dict(o, text=_text(o.get('text')))
                outs.append(o)
            rendered = [r for j, o in enumerate(outs) if (r := self._output(o, page, files, f'cell{i}-{j}'))]
            for r in rendered:
                parts.append(r if r.startswith(('<div class="nb-doc"', '<div class="nb-md"')) else f'<div class="nb-output" markdown>\n\n{r}\n\n</div>')
        dst = self.docs_dir/page
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text('\n\n'.join(parts) + '\n', encoding='utf-8')
        return dst

def nb_title(nb: dict, default: str) -> str:
    for c in nb.get('cells', []):
        if c['cell_type'] == 'markdown' and (m := re.search(r'^#\s+(.+?)\s*$', _text(c['source']), re.MULTILINE)):
            return re.sub(r'(?<!\w)_(\S.*?)_(?!\w)', r'\1', re.sub(r'[`*]', '', m.group(1)))   # keep the _ of qgen_sft
    return default

# ---------------------------------------------------------------------------------------------------------------
# The build

def build(out: Path, stages_dir: Path, outputs_dir: Path, jobs: int = 2, timeout: int = 600, force: bool = False,
          strict: bool = True, keep_going: bool = False, stages: list[str] | None = None) -> Path:
    "Build the site into `out/site`; `stages` limits the stage pages to these stage notebooks (names; default all)."
    import yaml
    t0, cfg = time.time(), settings()
    nbs = ROOT/cfg.get('nbs_path', 'nbs')
    cache, docs_dir, site_dir = ROOT/'_docs'/'cache', out/'pages', out/'site'
    lib_nbs, stage_nbs = library_notebooks(nbs), stage_notebooks(stages_dir)
    if stages is not None: stage_nbs = [nb for nb in stage_nbs if nb.stem in stages or page_name(nb) in stages]
    if not lib_nbs: raise DocsError(f'no notebooks found in {rel(nbs)}')
    log(f'{len(lib_nbs)} library notebooks, {len(stage_nbs)} stage notebooks ({rel(stages_dir)})')

    # 1. what to execute
    lib_hash, todo, sources = _lib_hash(), [], {}
    for nb in lib_nbs:
        dst = _cached(cache, 'lib', nb, lib_hash)
        sources[nb] = dst
        if force or not dst.exists(): todo.append(('lib', nb, dst))
    for nb in stage_nbs:
        run = newest_run(nb, outputs_dir)
        if run: sources[nb] = run; continue
        dst = _cached(cache, 'stage', nb, lib_hash)
        sources[nb] = dst
        if force or not dst.exists(): todo.append(('stage', nb, dst))
    for _, _, dst in todo: dst.parent.mkdir(parents=True, exist_ok=True)
    if todo: log(f'executing {len(todo)} notebooks with {jobs} workers (the rest are cached in {rel(cache)})')
    errors, failed = [], {}
    with cf.ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        futs = {ex.submit(_execute, kind, nb, dst, timeout): nb for kind, nb, dst in todo}
        for f in cf.as_completed(futs):
            try: log(f'executed {rel(futs[f])} in {f.result():.1f} s')
            except DocsError as e: errors.append(str(e)); failed[futs[f]] = str(e); log(f'FAILED {rel(futs[f])}')
    if errors and not keep_going: raise DocsError('\n\n'.join(errors))
    for nb, msg in failed.items():                   # --keep-going: the page says what failed
        sources[nb] = cache/'failed'/f'{nb.stem}.ipynb'
        sources[nb].parent.mkdir(parents=True, exist_ok=True)
        sources[nb].write_text(json.dumps({'cells': [
            {'cell_type': 'markdown', 'metadata': {}, 'source': f'# {nb.stem}'},
            {'cell_type': 'markdown', 'metadata': {}, 'source': '!!! failure "This notebook failed when the docs were built"\n\n'
             + '\n'.join('    ' + l for l in _fence(scrub(msg, logs=False), 'text').splitlines())}]}), encoding='utf-8')

    # 2. pages
    shutil.rmtree(docs_dir, ignore_errors=True); docs_dir.mkdir(parents=True)
    page_of = {}
    for nb in lib_nbs:
        page_of[nb.name] = page_of[page_name(nb) + '.html'] = page_name(nb) + '.md'
    for nb in stage_nbs:
        page_of[f'stages/{nb.name}'] = page_of[f'stages/{page_name(nb)}.html'] = f'stages/{page_name(nb)}.md'
    for f in sorted((TEMPLATES/'guides').glob('*.md')):     # links to a guide's source file or its page
        name = re.sub(r'^\d+_', '', f.stem)
        page_of[f'docs/guides/{f.name}'] = page_of[f'guides/{name}.html'] = f'guides/{name}.md'
    pages = Pages(docs_dir, cfg, page_of)
    api, stage_nav, stage_rows = {}, [], []
    for nb in lib_nbs:
        d = json.loads(sources[nb].read_text(encoding='utf-8'))
        pages.write(d, page_of[nb.name])
        if nb.name != 'index.ipynb': api.setdefault(CAPABILITY_TITLES[_group(nb)], []).append({nb_title(d, page_name(nb)): page_of[nb.name]})
    for nb in stage_nbs:
        src = sources[nb]
        d = _process_stage(src) if nb not in failed else json.loads(src.read_text(encoding='utf-8'))
        if src.is_relative_to(cache):
            note = (f'!!! note "Executed for these docs"\n    The docs build ran this stage notebook with its default '
                    f'parameters (no run of it was found under `{rel(outputs_dir)}/`).')
            how = 'docs build, default parameters'
        else:
            when = time.strftime('%Y-%m-%d %H:%M', time.localtime(src.stat().st_mtime))
            note = f'!!! note "Run shown"\n    The newest completed run: `{scrub(rel(src.parent))}/` ({when}).'
            how = f'run `{src.parent.name}`'
        pages.write(d, page_of[f'stages/{nb.name}'], note=note)
        title = nb_title(d, page_name(nb))
        stage_nav.append({title: page_of[f'stages/{nb.name}']})
        stage_rows.append(f'| [{title}]({page_name(nb)}.md) | `{rel(nb)}` | {how} |')
    _stages_index(docs_dir, stage_rows, stages_dir)
    guides = _copy_guides(docs_dir)
    _copy_assets(nbs, docs_dir)

    # 3. mkdocs
    conf = yaml.safe_load((TEMPLATES/'mkdocs.yml').read_text(encoding='utf-8'))
    conf.update(site_name=cfg.get('title', 'mlprep'), site_description=cfg.get('description', ''),
                docs_dir=str(docs_dir), site_dir=str(site_dir),
                nav=[{'Home': 'index.md'}, {'Guides': guides}, {'API': [{k: v} for k, v in api.items()]},
                     {'Stages': [{'Overview': 'stages/index.md'}] + stage_nav}])
    if not (docs_dir/'index.md').exists(): conf['nav'].pop(0)
    (out/'mkdocs.yml').write_text(yaml.safe_dump(conf, sort_keys=False), encoding='utf-8')
    cmd = [sys.executable, '-m', 'mkdocs', 'build', '--clean', '-q', '-f', str(out/'mkdocs.yml')] + (['--strict'] if strict else [])
    r = subprocess.run(cmd, cwd=out, capture_output=True, text=True, env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})
    if r.returncode != 0:
        raise DocsError(f'mkdocs build failed (a broken link between pages fails the build):\n{r.stdout}{r.stderr}')
    log(f'site built in {time.time() - t0:.0f} s: {rel(site_dir)}/index.html')
    if failed: raise DocsError(f'{len(failed)} notebooks failed (their pages say so):\n\n' + '\n\n'.join(errors))
    return site_dir

def _stages_index(docs_dir: Path, rows: list[str], stages_dir: Path):
    text = ['# Stages', '',
            'Each stage is a parameterized notebook. Its page shows the newest completed run found under '
            '`outputs/` (`outputs/STAGE/RUN_ID/STAGE.ipynb` from `mlprep run STAGE`, `outputs/demo/...` from `mlprep demo`), or, without one, the notebook as '
            'the docs build executed it with its default parameters. See [Running stages](../guides/running-stages.md).', '']
    if rows: text += ['| Stage | Notebook | Shown |', '| --- | --- | --- |', *rows]
    else: text += [f'There are no stage notebooks yet (none in `{rel(stages_dir)}/`).']
    (docs_dir/'stages').mkdir(exist_ok=True)
    (docs_dir/'stages'/'index.md').write_text('\n'.join(text) + '\n', encoding='utf-8')

def _copy_guides(docs_dir: Path) -> list:
    "docs/guides/NN_name.md -> guides/name.md (TeX between `$` signs as MathML), in file-name order, titled by their first heading."
    nav = []
    for f in sorted((TEMPLATES/'guides').glob('*.md')):
        name = re.sub(r'^\d+_', '', f.name)
        (docs_dir/'guides').mkdir(exist_ok=True)
        text = f.read_text(encoding='utf-8')
        (docs_dir/'guides'/name).write_text(_math(text), encoding='utf-8')      # formulas typeset here too
        m = re.search(r'^#\s+(.+?)\s*$', text, re.MULTILINE)
        nav.append({m.group(1) if m else name[:-3]: f'guides/{name}'})
    return nav

def _copy_assets(nbs: Path, docs_dir: Path):
    "Our CSS, plus images the notebooks' Markdown refers to (any image file under nbs/)."
    if (TEMPLATES/'assets').is_dir(): shutil.copytree(TEMPLATES/'assets', docs_dir/'assets', dirs_exist_ok=True)
    for f in nbs.rglob('*'):
        if f.suffix.lower() in ('.png', '.jpg', '.jpeg', '.gif', '.svg') and not any(p.startswith(('.', '_')) for p in f.relative_to(nbs).parts):
            d = docs_dir/f.relative_to(nbs); d.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, d)

def main(argv=None):
    if argv is None and sys.argv[1:2] == ['--_exec']:               # child process: execute one notebook
        kind, src, dst, progress, timeout = sys.argv[2:7]
        if kind == 'lib': _child_lib(Path(src), Path(dst), Path(progress))
        else: _child_stage(Path(src), Path(dst), Path(progress), int(timeout))
        return
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT/'_docs'), help='build folder: pages/, mkdocs.yml and site/ (default _docs)')
    ap.add_argument('--stages-dir', default=str(ROOT/'nbs'/'stages'),
                    help='stage notebooks (default nbs/stages)')
    ap.add_argument('--outputs-dir', default=str(ROOT/'outputs'), help='where runs are (default outputs)')
    ap.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1), help='notebooks executed at once')
    ap.add_argument('--timeout', type=int, default=600, help='seconds allowed per notebook')
    ap.add_argument('--force', action='store_true', help='execute every notebook again (ignore the cache)')
    ap.add_argument('--no-strict', action='store_true', help='do not fail on broken links')
    ap.add_argument('--keep-going', action='store_true', help='a notebook that fails gets a page saying so (the build still exits 1)')
    ap.add_argument('--stages', default=None, help='only these stage notebooks get pages (comma-separated names; default all)')
    a = ap.parse_args(argv)
    try:
        build(Path(a.out).resolve(), Path(a.stages_dir).resolve(), Path(a.outputs_dir).resolve(), a.jobs, a.timeout,
              a.force, not a.no_strict, a.keep_going, [x.strip() for x in a.stages.split(',') if x.strip()] if a.stages is not None else None)
    except DocsError as e:
        print(f'docs: build failed\n{e}', file=sys.stderr); sys.exit(1)

if __name__ == '__main__': main()
