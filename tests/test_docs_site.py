"""The docs site: `bash scripts/docs.sh` builds it offline, headless Chromium renders its pages, no internal link is
broken, and nothing is loaded from the network. The helpers of scripts/build_docs.py are tested on small inputs."""
import importlib.util, json, os, shutil, subprocess, tempfile, time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

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
                                            'and [core](00_core.ipynb).\nA list:\n- one\n- two'},
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
    assert 'A list:\n\n- one\n- two' in md                        # Python-Markdown needs the blank line
    assert 'show_doc(f)' not in md and '### BadRows.add { #badrows.add }' in md
    assert '```text\n1\n2\n```' in md                             # streams merged, ANSI codes gone
    assert '![](x_files/cell2-1.png){ width="300" }' in md and (tmp_path/'stages'/'x_files'/'cell2-1.png').exists()


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

@pytest.fixture(scope='session')
def site(tmp_path_factory):
    "Build the site once per test session with the one command, into a temporary folder."
    if os.environ.get('MLPREP_DOCS_SITE'): return Path(os.environ['MLPREP_DOCS_SITE'])   # reuse a built site
    out = tmp_path_factory.mktemp('docs')
    cmd = ['bash', 'scripts/docs.sh', '--out', str(out)]
    if not list((ROOT/'nbs'/'stages').glob('*.ipynb')):          # no stage notebooks yet: exercise the stage path
        cmd += ['--stages-dir', str(_dummy_stage(tmp_path_factory.mktemp('stages')/'dummy.ipynb').parent)]
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
    return png


@pytest.mark.slow
def test_pages_render_in_headless_chromium(site):
    chromium = _chromium()
    shots = Path(os.environ.get('MLPREP_DOCS_SHOTS') or tempfile.mkdtemp(prefix='mlprep-docs-shots-'))
    shots.mkdir(parents=True, exist_ok=True)
    _check_page(chromium, site/'index.html', 'mlprep', shots)
    stage_pages = sorted(p for p in (site/'stages').glob('*.html') if p.name != 'index.html')
    page = stage_pages[0] if stage_pages else next(p for p in sorted(site.glob('*.html')) if p.name != 'index.html')
    title = _parse(page).title.strip()
    assert title.endswith(' - mlprep') and len(title) > len(' - mlprep'), title
    _check_page(chromium, page, title, shots)
