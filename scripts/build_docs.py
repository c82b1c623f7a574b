"""Build mlprep's docs site offline with MkDocs (Material), from the nbdev notebooks.

    python scripts/build_docs.py [--force] [--jobs N] [--timeout S] [--out DIR]   (or: bash scripts/docs.sh)

What it does, in order:
1. Library notebooks (`nbs/NN_*.ipynb` and `nbs/index.ipynb`): each is executed the way `nbdev_test` runs it
   (execnb's CaptureShell, cwd = the notebook's folder, cells flagged with settings.ini's `tst_flags` skipped), in a
   fresh process per notebook, then processed with nbdev's own docs processors (the ones `nbdev_docs` uses for
   Quarto: `#| hide` and `#| export` cells removed, `show_doc` added after exported code, names linked).
   Results are cached in `_docs/cache/` by a hash of the notebook and of `mlprep/`.
2. Stage notebooks (`nbs/stages/*.ipynb`): the page shows the newest completed run
   under `outputs/STAGE/*/STAGE.ipynb` (what `mlprep run` writes); without one, the stage notebook is executed
   with papermill with its default parameters into a temporary folder.
3. Every notebook is converted to a Markdown page (images written next to it), the guides in `docs/guides/` are
   added, and `mkdocs build --strict` writes the site to `_docs/site/` (open `_docs/site/index.html`).

Nothing is fetched from the network: no CDN fonts or scripts. A notebook that fails stops the build with a
message naming the notebook and the cell. Notebooks keep their nbdev format, so `nbdev_docs` (Quarto) still works.
"""
from __future__ import annotations
import argparse, base64, concurrent.futures as cf, hashlib, json, os, re, shutil, signal, subprocess, sys, tempfile, time
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT/'docs'                      # mkdocs.yml template, guides/*.md, assets/
CACHE_VERSION = '1'                          # bump when the processing below changes what a cached notebook holds


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
                     'mateconv': 'MateConv', 'qgen': 'Questions-Gen'}

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
    "A run counts if its run.json says completed (or, without run.json, papermill recorded no exception)."
    rj = nb_path.parent/'run.json'
    if rj.exists():
        try: return json.loads(rj.read_text()).get('status') == 'completed'
        except ValueError: return False
    try: meta = json.loads(nb_path.read_text(encoding='utf-8')).get('metadata', {})
    except ValueError: return False
    return not meta.get('papermill', {}).get('exception')

def newest_run(stage_nb: Path, outputs_dir: Path, names: list[str] | None = None) -> Path | None:
    "The newest completed executed notebook `outputs_dir/NAME/RUN_ID/NAME.ipynb` of this stage, or None."
    runs = [p for n in (names or _stage_names(stage_nb)) for p in (outputs_dir/n).glob(f'*/{n}.ipynb') if _run_ok(p)]
    return max(runs, key=lambda p: (p.stat().st_mtime, p.parent.name)) if runs else None

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

def _child_lib(src: Path, dst: Path, progress: Path):
    "Execute a library notebook as nbdev_test does, then apply nbdev's docs processors (as nbdev_docs does)."
    os.environ['IN_TEST'] = '1'
    from fastcore.basics import str2bool
    from fastcore.xtras import working_directory
    from execnb.nbio import write_nb, mk_cell
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

    procs = [p for p in FilterDefaults().procs() if p not in (exec_show_docs, insert_warning)]
    procs.insert(procs.index(add_show_docs) + 1 if add_show_docs in procs else 1, execute_all)
    proc = NBProcessor(src, procs=procs)
    numbers = {id(c): i + 1 for i, c in enumerate(proc.nb.cells)}
    title_md = next((c.source for c in proc.nb.cells if c.cell_type == 'markdown' and _md2dict(c.source)), None)
    proc.process()
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
    def conv(m, display):
        try: return convert(m.group(1).strip(), display=display).replace('\n', ' ')
        except Exception: return m.group(0)
    out, last = [], 0
    for code in _FENCED.finditer(md):                  # leave code blocks and `code spans` alone
        text = md[last:code.start()]
        text = _DISPLAY_MATH.sub(lambda m: conv(m, 'block'), text)
        out += [_INLINE_MATH.sub(lambda m: conv(m, 'inline'), text), code.group(0)]
        last = code.end()
    text = _DISPLAY_MATH.sub(lambda m: conv(m, 'block'), md[last:])
    return ''.join(out + [_INLINE_MATH.sub(lambda m: conv(m, 'inline'), text)])

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
        md = re.sub(r'\]\(([^)\s]+)\)', lambda m: '](' + self._link(m.group(1), page) + ')', md)
        out, fenced, prev = [], False, ''
        for line in md.splitlines():                     # Python-Markdown needs a blank line before a list
            if line.lstrip().startswith(('```', '~~~')): fenced = not fenced
            if (not fenced and _LIST_ITEM.match(line) and prev.strip() and not _LIST_ITEM.match(prev)
                    and not prev.startswith((' ', '\t', '>', '|'))): out.append('')
            out.append(line); prev = line
        return '\n'.join(out)

    def _doc_markdown(self, md: str, page: str) -> str:
        "show_doc output: give each symbol heading nbdev's anchor (`#badrows.add`), so nbdev's links land on it."
        md = re.sub(r'^(#{2,6}) (\S+)\s*$', lambda m: f'{m.group(1)} {m.group(2)} {{ #{m.group(2).lower()} }}', md,
                    flags=re.MULTILINE)
        return self._markdown(md, page)

    def _output(self, o: dict, page: str, files: Path, stem: str) -> str:
        t = o.get('output_type')
        if t == 'stream': return _fence(_ANSI.sub('', _text(o.get('text'))), 'text')
        if t == 'error': return _fence(_ANSI.sub('', '\n'.join(o.get('traceback', []))), 'text')
        data, meta = o.get('data', {}), o.get('metadata', {})
        for mime, ext in (('image/png', 'png'), ('image/jpeg', 'jpg'), ('image/svg+xml', 'svg')):
            if mime in data:
                files.mkdir(parents=True, exist_ok=True)
                f = files/f'{stem}.{ext}'
                if ext == 'svg': f.write_text(_text(data[mime]), encoding='utf-8')
                else: f.write_bytes(base64.b64decode(_text(data[mime])))
                w = (meta.get(mime) or {}).get('width')
                src = os.path.relpath(f, self.docs_dir/Path(page).parent).replace(os.sep, '/')
                return f'![]({src})' + (f'{{ width="{int(w)}" }}' if w else '')
        if 'text/markdown' in data:
            return f'<div class="nb-doc" markdown>\n\n{self._doc_markdown(_text(data["text/markdown"]), page)}\n\n</div>'
        if 'text/html' in data:
            html = _text(data['text/html']).strip()
            if '<script' not in html: return f'<div class="nb-output nb-html">\n{html}\n</div>'
        if 'text/plain' in data: return _fence(_ANSI.sub('', _text(data['text/plain'])), 'text')
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
                parts.append(r if r.startswith('<div class="nb-doc"') else f'<div class="nb-output" markdown>\n\n{r}\n\n</div>')
        dst = self.docs_dir/page
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text('\n\n'.join(parts) + '\n', encoding='utf-8')
        return dst

def nb_title(nb: dict, default: str) -> str:
    for c in nb.get('cells', []):
        if c['cell_type'] == 'markdown' and (m := re.search(r'^#\s+(.+?)\s*$', _text(c['source']), re.MULTILINE)):
            return re.sub(r'[`*_]', '', m.group(1))
    return default

# ---------------------------------------------------------------------------------------------------------------
# The build

def build(out: Path, stages_dir: Path, outputs_dir: Path, jobs: int = 2, timeout: int = 600, force: bool = False,
          strict: bool = True) -> Path:
    import yaml
    t0, cfg = time.time(), settings()
    nbs = ROOT/cfg.get('nbs_path', 'nbs')
    cache, docs_dir, site_dir = ROOT/'_docs'/'cache', out/'pages', out/'site'
    lib_nbs, stage_nbs = library_notebooks(nbs), stage_notebooks(stages_dir)
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
    errors = []
    with cf.ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        futs = {ex.submit(_execute, kind, nb, dst, timeout): nb for kind, nb, dst in todo}
        for f in cf.as_completed(futs):
            try: log(f'executed {rel(futs[f])} in {f.result():.1f} s')
            except DocsError as e: errors.append(str(e)); log(f'FAILED {rel(futs[f])}')
    if errors: raise DocsError('\n\n'.join(errors))

    # 2. pages
    shutil.rmtree(docs_dir, ignore_errors=True); docs_dir.mkdir(parents=True)
    page_of = {}
    for nb in lib_nbs:
        page_of[nb.name] = page_of[page_name(nb) + '.html'] = page_name(nb) + '.md'
    for nb in stage_nbs:
        page_of[f'stages/{nb.name}'] = page_of[f'stages/{page_name(nb)}.html'] = f'stages/{page_name(nb)}.md'
    pages = Pages(docs_dir, cfg, page_of)
    api, stage_nav, stage_rows = {}, [], []
    for nb in lib_nbs:
        d = json.loads(sources[nb].read_text(encoding='utf-8'))
        pages.write(d, page_of[nb.name])
        if nb.name != 'index.ipynb': api.setdefault(CAPABILITY_TITLES[_group(nb)], []).append({nb_title(d, page_name(nb)): page_of[nb.name]})
    for nb in stage_nbs:
        src = sources[nb]
        d = _process_stage(src)
        if src.is_relative_to(cache):
            note = (f'!!! note "Executed for these docs"\n    The docs build ran this stage notebook with its default '
                    f'parameters (no run of it was found under `{rel(outputs_dir)}/`).')
            how = 'docs build, default parameters'
        else:
            when = time.strftime('%Y-%m-%d %H:%M', time.localtime(src.stat().st_mtime))
            note = f'!!! note "Run shown"\n    The newest completed run: `{rel(src.parent)}/` ({when}).'
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
    return site_dir

def _stages_index(docs_dir: Path, rows: list[str], stages_dir: Path):
    text = ['# Stages', '',
            'Each stage is a parameterized notebook. Its page shows the newest completed run found under '
            '`outputs/STAGE/RUN_ID/STAGE.ipynb` (what `mlprep run STAGE` writes), or, without one, the notebook as '
            'the docs build executed it with its default parameters. See [Running stages](../guides/running-stages.md).', '']
    if rows: text += ['| Stage | Notebook | Shown |', '| --- | --- | --- |', *rows]
    else: text += [f'There are no stage notebooks yet (none in `{rel(stages_dir)}/`).']
    (docs_dir/'stages').mkdir(exist_ok=True)
    (docs_dir/'stages'/'index.md').write_text('\n'.join(text) + '\n', encoding='utf-8')

def _copy_guides(docs_dir: Path) -> list:
    "docs/guides/NN_name.md -> guides/name.md, in file-name order, titled by their first heading."
    nav = []
    for f in sorted((TEMPLATES/'guides').glob('*.md')):
        name = re.sub(r'^\d+_', '', f.name)
        (docs_dir/'guides').mkdir(exist_ok=True)
        text = f.read_text(encoding='utf-8')
        (docs_dir/'guides'/name).write_text(text, encoding='utf-8')
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
    a = ap.parse_args(argv)
    try:
        build(Path(a.out).resolve(), Path(a.stages_dir).resolve(), Path(a.outputs_dir).resolve(), a.jobs, a.timeout,
              a.force, not a.no_strict)
    except DocsError as e:
        print(f'docs: build failed\n{e}', file=sys.stderr); sys.exit(1)

if __name__ == '__main__': main()
