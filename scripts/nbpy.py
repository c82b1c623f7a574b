"""Round-trip notebooks and percent scripts, for editing notebooks as text.

    python scripts/nbpy.py py2nb nbs/00_core.py   # writes nbs/00_core.ipynb
    python scripts/nbpy.py nb2py nbs/00_core.ipynb  # writes nbs/00_core.py

Cells start with `# %%` (code) or `# %% [markdown]` (markdown, each line prefixed by `# `).
`# %% id=ab12cd34 tags=["parameters"]` keeps a cell's id and tags it (new cells get a deterministic id). The .ipynb is the source of truth: the .py is a
scratch file that you delete after converting (it is git-ignored).
"""
import hashlib, json, re, sys
from pathlib import Path

HEAD = re.compile(r'^# %%(?P<md> \[markdown\])?(?: id=(?P<id>[\w-]+))?(?: tags=(?P<tags>\[.*\]))?\s*$')

def py2nb(path):
    path = Path(path)
    cells, cur = [], None
    for line in path.read_text().splitlines():
        m = HEAD.match(line)
        if m:
            cur = dict(kind='markdown' if m['md'] else 'code', id=m['id'], tags=json.loads(m['tags']) if m['tags'] else [], lines=[])
            cells.append(cur)
            continue
        if cur is None: continue
        if cur['kind'] == 'markdown': line = line[2:] if line.startswith('# ') else line.lstrip('#')
        cur['lines'].append(line)
    out = []
    for i, c in enumerate(cells):
        while c['lines'] and not c['lines'][-1].strip(): c['lines'].pop()
        while c['lines'] and not c['lines'][0].strip(): c['lines'].pop(0)
        src = [l + '\n' for l in c['lines']]
        if src: src[-1] = src[-1][:-1]
        # Deterministic cell ids: nbdev_clean would otherwise invent random ones on every run.
        cid = c['id'] or hashlib.sha1(f'{path.stem}:{i}:{src[:1]}'.encode()).hexdigest()[:8]
        cell = dict(cell_type=c['kind'], id=cid, metadata={'tags': c['tags']} if c['tags'] else {}, source=src)
        if c['kind'] == 'code': cell.update(execution_count=None, outputs=[])
        out.append(cell)
    nb = dict(cells=out, metadata=dict(kernelspec=dict(display_name='python3', language='python', name='python3')),
              nbformat=4, nbformat_minor=5)
    dest = path.with_suffix('.ipynb')
    dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    return dest

def nb2py(path):
    path = Path(path)
    nb = json.loads(path.read_text())
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        tags = c.get('metadata', {}).get('tags', [])
        t = (f" id={c['id']}" if c.get('id') else '') + (f' tags={json.dumps(tags)}' if tags else '')
        if c['cell_type'] == 'markdown':
            parts.append('# %% [markdown]' + t + '\n' + '\n'.join(('# ' + l) if l else '#' for l in src.splitlines()))
        else: parts.append('# %%' + t + '\n' + src)
    dest = path.with_suffix('.py')
    dest.write_text('\n\n'.join(parts) + '\n')
    return dest

if __name__ == '__main__':
    cmd, *paths = sys.argv[1:]
    for p in paths: print({'py2nb': py2nb, 'nb2py': nb2py}[cmd](p))
