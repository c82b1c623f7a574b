"""The docs site: `bash scripts/docs.sh` builds it offline, headless Chromium renders its pages, no internal link is
broken, and nothing is loaded from the network. Every exported name has an API entry with a parameter table, pages
show real outputs without this machine's paths or INFO log lines, formulas are typeset, the home page lists every
registered job, source links follow settings.ini. The helpers of scripts/build_docs.py are tested on small inputs."""
import ast, html, importlib.util, json, os, re, shutil, subprocess, tempfile, time
from configparser import ConfigParser
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.xdist_group("docs")   # one site build: the docs tests share one worker

ROOT = Path(__file__).resolve().parents[1]


def _builder():
    spec = importlib.util.spec_from_file_location('build_docs', ROOT/'scripts'/'build_docs.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def _write_nb(path: Path, cells: list[tuple[str, str, dict]], metadata: dict | None = None):
    "A minimal nbformat-4 notebook from (cell_type, source, extra) triples."
    nb = {'nbformat': 4, 'nbformat_minor': 5, 'cells': [],
          'metadata': metadata or {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}}}
    for i, (kind, src, extra) in enumerate(cells):
        c = {'cell_type': kind, 'id': f'c{i}', 'metadata': extra.pop('metadata', {}), 'source': src, **extra}
        if kind == 'code': c = {'execution_count': None, 'outputs': [], **c}
        nb['cells'].append(c)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))
    return path


def _dummy_stage(path: Path) -> Path:
    "A tiny stage notebook: a parameters cell, a print and a plot."
    return _write_nb(path, [
        ('markdown', '# Dummy stage\n\n> A stand-in stage notebook for the docs test.', {}),
        ('code', "n = 20\noutput_dir = 'outputs/dummy'", {'metadata': {'tags': ['parameters']}}),
        ('code', 'import matplotlib.pyplot as plt\nprint(f"plotting {n} points")\n'
                 'plt.plot(range(n), [i * i for i in range(n)]); plt.title("squares"); plt.show()', {}),
    ])


# ---------------------------------------------------------------------------------------------------------------
# Fast tests of the builder's parts

def test_newest_completed_run_is_chosen(tmp_path):
    b = _builder()
    stage_nb = _dummy_stage(tmp_path/'stages'/'dummy.ipynb')
    out = tmp_path/'outputs'
    test_runs = [('20260101-000000-aaaa', 'completed'), ('20260102-000000-bbbb', 'completed'),
                 ('20260103-000000-cccc', 'failed'), ('20260104-000000-dddd', 'running')]
    for i, (run_id, status) in enumerate(test_runs):
        nb = _dummy_stage(out/'dummy'/run_id/'dummy.ipynb')
        (nb.parent/'run.json').write_text(json.dumps({'status': status}))
        os.utime(nb, (1_800_000_000 + i, 1_800_000_000 + i))
    assert b.newest_run(stage_nb, out, names=['dummy']) == out/'dummy'/'20260102-000000-bbbb'/'dummy.ipynb'
    assert b.newest_run(stage_nb, tmp_path/'nothing', names=['dummy']) is None
    # without run.json, a notebook papermill marked as failed does not count
    nb = _dummy_stage(out/'dummy'/'20260105-000000-eeee'/'dummy.ipynb')
    d = json.loads(nb.read_text()); d['metadata']['papermill'] = {'exception': True}; nb.write_text(json.dumps(d))
    assert b._run_ok(nb) is False


def test_notebook_to_markdown_page(tmp_path):
    b = _builder()
    page_of = {'00_core.ipynb': 'core.md', 'core.html': 'core.md', 'stages/x.ipynb': 'stages/x.md', 'stages/x.html': 'stages/x.md'}
    pages = b.Pages(tmp_path, {'doc_host': 'https://mlprep.github.io', 'doc_baseurl': '/mlprep'}, page_of)
    png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='
    nb = {'cells': [
        {'cell_type': 'markdown', 'source': '# X\n\nSee [`read_jsonl`](https://mlprep.github.io/mlprep/core.html#read_jsonl)\n'
                                            'and [core](00_core.ipynb), [`gone.ipynb`](stages/gone.ipynb).\nA list:\n- one\n- two'},
        {'cell_type': 'code', 'source': "#| output: asis\n#| echo: false\nshow_doc(f)", 'metadata': {},
         'outputs': [{'output_type': 'display_data', 'metadata': {},
                      'data': {'text/markdown': '---\n\n### BadRows.add\n\n*Add a row.*', 'text/plain': 'x'}}]},
        {'cell_type': 'code', 'source': 'print(1); print(2)\nplot()', 'metadata': {},
         'outputs': [{'output_type': 'stream', 'name': 'stdout', 'text': ['1\n']},
                     {'output_type': 'stream', 'name': 'stdout', 'text': '\x1b[31m2\x1b[0m\n'},
                     {'output_type': 'display_data', 'metadata': {'image/png': {'width': 300}},
                      'data': {'image/png': png, 'text/plain': '<Figure>'}}]},
    ]}
    md = pages.write(nb, 'stages/x.md').read_text()
    assert '[`read_jsonl`](../core.md#read_jsonl)' in md and '[core](../core.md)' in md
    assert '[core](../core.md), `gone.ipynb`.' in md                # a notebook without a page: its name, unlinked
    assert 'A list:\n\n- one\n- two' in md                        # Python-Markdown needs the blank line
    assert 'show_doc(f)' not in md and '### BadRows.add { #badrows.add .api-entry }' in md
    assert '```text\n1\n2\n```' in md                             # streams merged, ANSI codes gone
    assert '![](x_files/cell2-1.png){ width="300" }' in md and (tmp_path/'stages'/'x_files'/'cell2-1.png').exists()


def test_runs_are_found_at_any_depth(tmp_path):
    "`mlprep demo` files its runs under outputs/demo/CAPABILITY/...: they count like `mlprep run`'s."
    b = _builder()
    stage_nb = _dummy_stage(tmp_path/'stages'/'dummy.ipynb')
    out = tmp_path/'outputs'
    for i, (folder, status) in enumerate([('dummy/20260101-000000-aaaa', 'completed'), ('demo/pref/dummy', 'completed'),
                                          ('demo/pref/dummy-later', 'failed')]):
        nb = _dummy_stage(out/folder/'dummy.ipynb')
        (nb.parent/'run.json').write_text(json.dumps({'status': status}))
        os.utime(nb, (1_800_000_000 + i, 1_800_000_000 + i))
    assert b.newest_run(stage_nb, out, names=['dummy']) == out/'demo'/'pref'/'dummy'/'dummy.ipynb'
    # a notebook that nothing executed (no run.json, no papermill record) is not a run
    _dummy_stage(out/'copies'/'dummy.ipynb'); os.utime(out/'copies'/'dummy.ipynb', (1_900_000_000,) * 2)
    assert b.newest_run(stage_nb, out, names=['dummy']) == out/'demo'/'pref'/'dummy'/'dummy.ipynb'


def test_cells_with_several_show_docs_are_split():
    b = _builder()
    parts = b.split_show_docs('#| echo: false\nshow_doc(Explorer)\nshow_doc(Explorer.widget)\nx = 1\nshow_doc(run_analysis)')
    assert parts == ['#| echo: false\nshow_doc(Explorer)', '#| echo: false\nshow_doc(Explorer.widget)',
                     '#| echo: false\nx = 1', '#| echo: false\nshow_doc(run_analysis)']
    assert b.split_show_docs('show_doc(f)') == ['show_doc(f)']
    assert b.split_show_docs('def f(): pass\nf()') == ['def f(): pass\nf()']


def test_entries_are_deduplicated():
    b = _builder()
    def entry(name): return {'cell_type': 'code', 'source': f'show_doc({name})', 'outputs': [
        {'output_type': 'display_data', 'data': {'text/markdown': f'---\n\n### {name}\n\nx'}}]}
    cells = b.dedupe_entries([entry('A.m'), entry('A'), entry('A.m'), {'cell_type': 'markdown', 'source': 'text'}])
    assert [c['source'] for c in cells] == ['show_doc(A.m)', 'show_doc(A)', 'text']


def test_parameter_table_from_signature_docments_and_param_help():
    from dataclasses import dataclass
    from typing import Literal
    from mlprep.config import Config, param
    b = _builder()
    @dataclass
    class TinyConfig(Config):
        "A config for the test."
        beta: float = param(0.1, 'DPO temperature `beta`')
        kind: Literal['a', 'b'] = param('a', 'which kind')
        layers: list = param([1, 2], 'layer sizes | widths, e.g. {a: 1}')
        name: str | None = param(None, '')
    rows = b.param_rows(TinyConfig)
    assert rows[:3] == [('beta', 'float', '0.1', 'DPO temperature `beta`'), ('kind', "'a' | 'b'", "'a'", 'which kind'),
                        ('layers', 'list', '[1, 2]', 'layer sizes | widths, e.g. {a: 1}')]
    assert rows[3][:3] == ('name', 'str | None', 'None')
    tbl = b.param_table(TinyConfig)
    assert '<th>Parameter</th><th>Type</th><th>Default</th><th>Help</th>' in tbl
    assert '<td><code>beta</code></td><td><code>float</code></td><td><code>0.1</code></td><td>DPO temperature <code>beta</code></td>' in tbl
    assert 'e.g. &#123;a: 1&#125;' in tbl                          # Markdown's attr_list would take {a: 1} away
    def f(x: int,            # the input
          y: str = 'a', *args, **kw) -> int: return x
    assert b.param_rows(f) == [('x', 'int', '', 'the input'), ('y', 'str', "'a'", ''), ('*args', '', '', ''), ('**kw', '', '', '')]
    assert b.param_table(lambda: 1) == ''


def test_source_links_follow_settings():
    "Source links are `git_url/blob/branch/PATH#LN` from settings.ini, for the library's own definitions only."
    b = _builder()
    from mlprep.core import read_jsonl
    url = b.source_url(read_jsonl, {'git_url': 'https://git.example.org/me/fork/', 'branch': 'dev', 'lib_path': 'mlprep'})
    assert re.fullmatch(r'https://git\.example\.org/me/fork/blob/dev/mlprep/core\.py#L\d+', url), url
    assert b.source_url(json.dumps, {'git_url': 'https://x.org/a', 'branch': 'main'}) is None       # not ours
    assert b.source_url(read_jsonl, {'git_url': '', 'branch': 'main'}) is None


def test_scrub_machine_paths_and_log_lines():
    b = _builder()
    text = (f'12:01:02 INFO mlprep.data: wrote {ROOT}/outputs/demo/x.jsonl\n2026-01-01 12:01:03,456 DEBUG mlprep: d\n'
            f'saved to /tmp/mlprep-docs-data-ab12/out.jsonl and /tmp/x.json, cache /root/.cache/mlprep\n'
            f'12:01:04 WARNING mlprep.x: kept\nmodel at {ROOT}/outputs/tiny_pair and /work/elsewhere/a/b\n')
    out = b.scrub(text)
    assert 'INFO' not in out and 'DEBUG' not in out and 'WARNING mlprep.x: kept' in out
    assert 'saved to .../out.jsonl and .../x.json, cache ~/.cache/mlprep' in out
    assert 'model at outputs/tiny_pair and .../a/b' in out
    assert '/tmp' not in out and '/root' not in out and str(ROOT) not in out and '/work/' not in out
    assert b.scrub('see http://x.org/tmp/a') == 'see http://x.org/tmp/a'


def test_math_in_guides_and_pages():
    b = _builder()
    md = b._math('From $q^* \\propto \\pi_\\theta^{\\alpha}\\,\\pi_t^{1-\\alpha}$ and `$HOME` and\n\n$$\\alpha \\in [0, 1]$$')
    assert md.count('<math') == 2 and '`$HOME`' in md and 'display="block"' in md
    assert md.startswith('From <span class="math"><math')              # inline math stays inline in a paragraph


def test_wide_images_take_the_page_width(tmp_path):
    import base64, io
    from PIL import Image
    b = _builder()
    def png(w, h):
        buf = io.BytesIO(); Image.new('RGB', (w, h), 'white').save(buf, 'PNG'); return base64.b64encode(buf.getvalue()).decode()
    nb = {'cells': [{'cell_type': 'code', 'source': 'plot()', 'metadata': {}, 'outputs': [
        {'output_type': 'display_data', 'metadata': {}, 'data': {'image/png': png(1300, 420)}},
        {'output_type': 'display_data', 'metadata': {}, 'data': {'image/png': png(600, 400)}},
        {'output_type': 'stream', 'name': 'stderr', 'text': '12:00:00 INFO mlprep: only a log line\n'}]}]}
    md = b.Pages(tmp_path, {}, {}).write(nb, 'p.md').read_text()
    assert '![](p_files/cell0-0.png){ .nb-wide }' in md and '![](p_files/cell0-1.png)\n' in md
    assert 'only a log line' not in md and '```text' not in md          # a stream of log lines only: no empty box


@pytest.mark.slow
def test_failing_or_hanging_notebook_is_named(tmp_path):
    b = _builder()
    bad = _write_nb(tmp_path/'01_bad.ipynb', [('markdown', '# Bad', {}), ('code', 'x = 1', {}),
                                               ('code', 'assert x == 2, "x is not 2"', {})])
    with pytest.raises(b.DocsError) as e: b._execute('lib', bad, tmp_path/'bad.ipynb', 300)
    assert '01_bad.ipynb failed in cell 3' in str(e.value) and 'x is not 2' in str(e.value), str(e.value)
    stage = _write_nb(tmp_path/'stages'/'broken.ipynb', [('markdown', '# Broken', {}), ('code', '1 / 0', {})])
    with pytest.raises(b.DocsError) as e: b._execute('stage', stage, tmp_path/'broken.ipynb', 300)
    assert 'broken.ipynb failed in cell 2' in str(e.value) and 'ZeroDivisionError' in str(e.value), str(e.value)
    hang = _write_nb(tmp_path/'02_hang.ipynb', [('markdown', '# Hang', {}), ('code', 'import time\nwhile True: time.sleep(0.1)', {})])
    with pytest.raises(b.DocsError) as e: b._execute('lib', hang, tmp_path/'hang.ipynb', 30)
    assert 'did not finish within 30 s' in str(e.value) and 'while True' in str(e.value), str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# The whole site

def _test_stages() -> list[str]:
    """The stage pages the test builds: `data` (executed by the build: the stage path) and every stage with a completed
    run under outputs/ (shown, not executed). Each capability's tests run its stage notebooks; executing them all
    again here would make this test as slow as all their trainings together (`bash scripts/docs.sh` builds them all)."""
    b = _builder()
    return ['data'] + [nb.stem for nb in b.stage_notebooks(ROOT/'nbs'/'stages') if nb.stem != 'data' and b.newest_run(nb, ROOT/'outputs')]


@pytest.fixture(scope='session')
def site(tmp_path_factory):
    "Build the site once per test session with the one command, into a temporary folder."
    if os.environ.get('MLPREP_DOCS_SITE'): return Path(os.environ['MLPREP_DOCS_SITE'])   # reuse a built site
    out = tmp_path_factory.mktemp('docs')
    cmd = ['bash', 'scripts/docs.sh', '--out', str(out)]
    if not list((ROOT/'nbs'/'stages').glob('*.ipynb')):          # no stage notebooks yet: exercise the stage path
        cmd += ['--stages-dir', str(_dummy_stage(tmp_path_factory.mktemp('stages')/'dummy.ipynb').parent)]
    else: cmd += ['--stages', ','.join(_test_stages())]
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f'docs build failed:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}'
    print(f'docs site built in {time.time() - t0:.0f} s')
    return out/'site'


class _Refs(HTMLParser):
    "Collects (tag, attribute, value) of every href and src in a page, and its <title>."
    def __init__(self):
        super().__init__(); self.refs, self.title, self._in_title = [], '', False
    def handle_starttag(self, tag, attrs):
        self._in_title = tag == 'title'
        for k, v in attrs:
            if k in ('href', 'src') and v is not None: self.refs.append((tag, k, v))
    def handle_endtag(self, tag): self._in_title = False if tag == 'title' else self._in_title
    def handle_data(self, data):
        if self._in_title: self.title += data

def _parse(path: Path) -> _Refs:
    p = _Refs(); p.feed(path.read_text(encoding='utf-8')); return p


@pytest.mark.slow
def test_site_has_every_page_and_no_broken_link(site):
    b = _builder()
    expected = ['index.html', 'guides/getting-started.html', 'guides/running-stages.html', 'guides/slurm.html',
                'stages/index.html'] + [b.page_name(nb) + '.html' for nb in b.library_notebooks(ROOT/'nbs')]
    for page in expected: assert (site/page).exists(), f'missing page {page}'
    pages = sorted(site.rglob('*.html'))
    broken, external = [], []
    for page in pages:
        for tag, attr, url in _parse(page).refs:
            u = urlsplit(url)
            if u.scheme in ('http', 'https'):
                if tag in ('script', 'link', 'img', 'iframe', 'source'): external.append(f'{page.relative_to(site)}: {url}')
                continue
            if u.scheme or not u.path: continue                     # mailto:, data:, javascript:, '#anchor'
            target = (site/u.path.lstrip('/')) if u.path.startswith('/') else (page.parent/unquote(u.path))
            if target.is_dir(): target = target/'index.html'
            if not target.exists(): broken.append(f'{page.relative_to(site)}: {tag} {attr}={url}')
    assert not broken, 'broken internal links:\n' + '\n'.join(broken)
    assert not external, 'pages load resources from the network:\n' + '\n'.join(external)
    for css in site.rglob('*.css'):
        assert 'fonts.googleapis' not in css.read_text(encoding='utf-8', errors='replace'), css
    # executed: show_doc rendered into the API pages, and the stage pages show outputs
    api = [site/(b.page_name(nb) + '.html') for nb in b.library_notebooks(ROOT/'nbs') if nb.name != 'index.ipynb']
    assert any('nb-doc' in p.read_text(encoding='utf-8') for p in api), 'no show_doc output in any API page'
    stage_pages = [p for p in (site/'stages').glob('*.html') if p.name != 'index.html']
    assert stage_pages, 'no stage page'
    assert all('nb-output' in p.read_text(encoding='utf-8') for p in stage_pages), 'a stage page has no outputs'


def _settings() -> dict:
    c = ConfigParser(delimiters=['=']); c.read(ROOT/'settings.ini', encoding='utf-8'); return dict(c['DEFAULT'])


class _Entries(HTMLParser):
    "Ids of API entries (`.api-entry` headings), the text inside notebook outputs, and the links of a page."
    OUT = ('nb-output', 'nb-doc', 'nb-md')
    def __init__(self):
        super().__init__(); self.entries, self.out_text, self.hrefs, self._stack = set(), [], [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs); cls = (a.get('class') or '').split()
        if 'api-entry' in cls and a.get('id'): self.entries.add(a['id'])
        if tag == 'a' and a.get('href'): self.hrefs.append(a['href'])
        if tag == 'div': self._stack.append(any(c in self.OUT for c in cls))
    def handle_endtag(self, tag):
        if tag == 'div' and self._stack: self._stack.pop()
    def handle_data(self, data):
        if any(self._stack): self.out_text.append(data)

def _entries(page: Path) -> _Entries:
    p = _Entries(); p.feed(page.read_text(encoding='utf-8')); return p


def _modules() -> dict[str, tuple[Path, list[str]]]:
    "Every module of the library that exports names: module -> (its notebook, its `__all__`), read from the files."
    out = {}
    for py in sorted((ROOT/'mlprep').rglob('*.py')):
        if py.name in ('__init__.py', '_modidx.py'): continue
        text = py.read_text(encoding='utf-8')
        names = next((ast.literal_eval(n.value) for n in ast.parse(text).body if isinstance(n, ast.Assign)
                      and any(getattr(t, 'id', None) == '__all__' for t in n.targets)), [])
        m = re.search(r'File to edit: (\S+\.ipynb)', text)
        nb = (py.parent/m.group(1)).resolve() if m else None
        if names: out['.'.join(py.relative_to(ROOT).with_suffix('').parts)] = (nb, list(names))
    return out


@pytest.mark.slow
def test_every_exported_name_has_an_api_entry(site):
    "Each name in the `__all__` of each module has an entry (heading with class api-entry) on its notebook's page."
    b = _builder()
    missing, no_page = [], []
    for module, (nb, names) in _modules().items():
        if nb is None or not nb.exists(): no_page.append(f'{module}: no notebook'); continue
        page = site/(b.page_name(nb) + '.html')
        if not page.exists(): no_page.append(f'{module}: no page {page.name}'); continue
        have = _entries(page).entries
        missing += [f'{module}.{n} (on {page.name})' for n in names if n.lower() not in have]
    assert not no_page, '\n'.join(no_page)
    assert not missing, 'exported names without an API entry:\n' + '\n'.join(missing)


@pytest.mark.slow
def test_config_entries_have_parameter_tables(site):
    "Every registered job's Config has a parameter table on its page: each field with its type, default and help."
    b = _builder()
    from dataclasses import fields
    from mlprep.stages import get_stage, load_jobs
    mods = _modules()
    checked = 0
    for name in load_jobs():
        cls = get_stage(name).config
        if cls is None: continue                                   # a job that parses its own argv (`mlprep merge`)
        nb = mods.get(cls.__module__, (None,))[0]
        if nb is None: continue
        page = (site/(b.page_name(nb) + '.html')).read_text(encoding='utf-8')
        m = re.search(rf'id="{cls.__name__.lower()}".*?<table class="api-params">(.*?)</table>', page, re.DOTALL)
        assert m, f'{cls.__name__}: no parameter table on {b.page_name(nb)}.html'
        for f in fields(cls):
            if not f.init or f.name.startswith('_'): continue
            assert f'<code>{f.name}</code>' in m.group(1), f'{cls.__name__}.{f.name} is not in its parameter table'
            if f.metadata.get('help'):
                want = re.sub(r'`([^`]+)`', r'<code>\1</code>', html.escape(f.metadata['help']).replace('{', '&#123;').replace('}', '&#125;'))
                assert want in m.group(1), f'{cls.__name__}.{f.name}: its help text is not in the table: {want!r}'
        checked += 1
    assert checked, 'no registered job config was checked'


@pytest.mark.slow
def test_pages_show_outputs_without_machine_paths_or_log_lines(site):
    b = _builder()
    bad = []
    for page in sorted(site.rglob('*.html')):
        text = ''.join(_entries(page).out_text)
        for pat in ('/tmp/', '/root/', '/work/', str(ROOT) + '/', str(Path.home()) + '/'):
            if pat in text: bad.append(f'{page.relative_to(site)}: {pat}...{text[text.index(pat):][:80]!r}')
        for m in re.finditer(r'^.*\d\d:\d\d:\d\d(?:,\d+)? INFO .*$', text, re.MULTILINE): bad.append(f'{page.relative_to(site)}: {m.group(0)[:100]}')
    assert not bad, 'machine paths or INFO log lines on pages:\n' + '\n'.join(bad[:30])
    # stage pages show the newest completed run under outputs/ when there is one (mlprep run, mlprep demo)
    built = [nb for nb in b.stage_notebooks(ROOT/'nbs'/'stages') if (site/'stages'/(b.page_name(nb) + '.html')).exists()]
    assert not (ROOT/'nbs'/'stages'/'data.ipynb').exists() or any(nb.stem == 'data' for nb in built), 'no page for the data stage'
    for nb in built:
        page = (site/'stages'/(b.page_name(nb) + '.html')).read_text(encoding='utf-8')
        run = b.newest_run(nb, ROOT/'outputs')
        if run: assert 'Run shown' in page and b.rel(run.parent) in page, f'{nb.name}: the page does not show {run}'
        else: assert 'Executed for these docs' in page, nb.name
        assert '<img' in page or 'nb-html' in page or 'nb-output' in page, f'{nb.name}: no outputs'


@pytest.mark.slow
def test_formulas_are_typeset_on_home_page_and_guides(site):
    home = (site/'index.html').read_text(encoding='utf-8')
    assert '<math' in home and 'display="block"' in home, 'no typeset formula on the home page'
    assert '$q^*' not in home and 'q* ∝' not in home
    guide = (site/'guides'/'getting-started.html').read_text(encoding='utf-8')
    assert '<math' in guide, 'no typeset formula in the getting started guide'
    css = next(site.rglob('mlprep.css')).read_text(encoding='utf-8')
    assert re.search(r'th code[^{]*\{[^}]*white-space:\s*nowrap', css), 'flag names in table headers may break'
    assert re.search(r'\.nb-html\s*\{[^}]*overflow-x:\s*auto', css) and '.nb-wide' in css


@pytest.mark.slow
def test_home_page_lists_every_registered_job(site):
    "The home page is made from the job registry: a registered job missing from it fails here."
    from mlprep.stages import load_jobs
    home = (site/'index.html').read_text(encoding='utf-8')
    missing = [n for n in load_jobs() if f'<code>{n}</code>' not in home]
    assert not missing, f'registered jobs missing from the home page: {missing}'
    assert 'What exists today and what is coming' in home


@pytest.mark.slow
def test_source_links_and_api_nav(site):
    "Source links point into settings.ini's git_url at its branch; the API nav is grouped by capability."
    b = _builder()
    cfg = _settings()
    prefix = f"{cfg['git_url'].rstrip('/')}/blob/{cfg.get('branch', 'main')}/{cfg.get('lib_path', 'mlprep')}/"
    links = [h for page in site.glob('*.html') for h in _entries(page).hrefs if '/blob/' in h]
    assert links, 'no source links'
    assert all(h.startswith(prefix) for h in links), [h for h in links if not h.startswith(prefix)][:5]
    import yaml
    conf = yaml.safe_load((site.parent/'mkdocs.yml').read_text())
    api = next(item['API'] for item in conf['nav'] if 'API' in item)
    groups = [next(iter(g)) for g in api]
    want = [b.CAPABILITY_TITLES[g] for g in b.CAPABILITY_TITLES
            if any(b._group(nb) == g for nb in b.library_notebooks(ROOT/'nbs') if nb.name != 'index.ipynb')]
    assert sorted(groups) == sorted(want), groups


def _chromium() -> str:
    "Headless Chromium; installed with apt-get when missing (root on Debian, as in CI), else the test is skipped."
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        if shutil.which(name): return shutil.which(name)
    if not shutil.which('apt-get') or os.geteuid() != 0:
        pytest.skip('chromium is not installed and cannot be installed here (needs root and apt-get): '
                    'apt-get install chromium')
    env = {**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'}
    subprocess.run(['apt-get', 'update', '-qq'], env=env, capture_output=True, timeout=900)
    r = subprocess.run(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'chromium', 'fonts-liberation'],
                       env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0 or not shutil.which('chromium'):
        pytest.skip(f'could not install chromium with apt-get:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}')
    return shutil.which('chromium')


def _headless(chromium: str, *args, timeout=120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix='mlprep-chromium-') as profile:
        cmd = [chromium, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
               '--disable-background-networking', '--disable-component-update', '--disable-sync',
               '--disable-dev-shm-usage', f'--user-data-dir={profile}', '--hide-scrollbars', *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _check_page(chromium: str, page: Path, title: str, shots: Path):
    url = page.resolve().as_uri()
    dom = _headless(chromium, '--virtual-time-budget=3000', '--dump-dom', url)
    assert dom.returncode == 0, dom.stderr[-3000:]
    t = _Refs(); t.feed(dom.stdout)
    assert t.title.strip() == title, f'{page.name}: title {t.title.strip()!r}, expected {title!r}'
    png = shots/(page.stem + '.png')
    r = _headless(chromium, '--virtual-time-budget=3000', f'--screenshot={png}', '--window-size=1280,900', url)
    assert png.exists() and png.stat().st_size > 0, f'no screenshot of {page.name}: {r.stderr[-3000:]}'
    from PIL import Image
    img = Image.open(png).convert('RGB')
    assert img.size == (1280, 900)
    colours = img.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, f'{page.name}: the screenshot is (nearly) blank: {len(colours)} colours'
    r_, g_, b_ = img.getpixel((640, 20))                            # Material's indigo header bar: the CSS loaded
    assert b_ > 150 and r_ < 120, f'{page.name}: no styled header at the top of the screenshot, pixel {(r_, g_, b_)}'
    return dom.stdout


@pytest.mark.slow
def test_pages_render_in_headless_chromium(site):
    "The home page, the `data` stage page and (when there is one) the explorer page render, styled, with content."
    chromium = _chromium()
    shots = Path(os.environ.get('MLPREP_DOCS_SHOTS') or tempfile.mkdtemp(prefix='mlprep-docs-shots-'))
    shots.mkdir(parents=True, exist_ok=True)
    _check_page(chromium, site/'index.html', 'mlprep', shots)
    stage_pages = sorted(p for p in (site/'stages').glob('*.html') if p.name != 'index.html')
    data = site/'stages'/'data.html'
    page = data if data.exists() else stage_pages[0] if stage_pages else next(p for p in sorted(site.glob('*.html')) if p.name != 'index.html')
    pages = [page] + ([site/'sampling_explorer.html'] if (site/'sampling_explorer.html').exists() else [])
    for page in pages:
        title = _parse(page).title.strip()
        assert title.endswith(' - mlprep') and len(title) > len(' - mlprep'), title
        dom = _check_page(chromium, page, title, shots)
        assert dom.count('class="nb-output') + dom.count('class="nb-doc') >= 2, f'{page.name}: no notebook outputs'
        if page.parent.name == 'stages': assert '<img' in dom or 'nb-html' in dom, f'{page.name}: no plot or table'
