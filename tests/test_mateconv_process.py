"Token-bin processing: real SIGKILLs at random points, then resume, give a byte-identical file; bad lines; num_proc."
import json, os, random, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest

from mlprep.data.resolve import resolve_dataset
from mlprep.mateconv.process import load_bin, meta_path, process_dataset
from mlprep.mateconv.tokenizer import demo_mateconv_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
from mlprep.mateconv.process import process_dataset
process_dataset(sys.argv[1], sys.argv[2], chunk_size=150)
print('DONE')
"""


def _corpus(tmp_path):
    src = Path(resolve_dataset('demo:text')).read_bytes().splitlines(keepends=True)
    lines = src[:3000] + [b'not json\n', b'{"text": 5}\n', b'\xff\n'] + src[3000:]
    p = tmp_path / 'corpus.jsonl'; p.write_bytes(b''.join(lines))
    return p


@pytest.mark.slow
def test_sigkill_resume_byte_identical(tmp_path):
    demo_mateconv_tokenizer()                    # build the cached tokenizer before timing the kills
    corpus = _corpus(tmp_path)
    ref = process_dataset(corpus, tmp_path / 'ref.bin', chunk_size=150)
    assert ref['bad'] == {'not JSON': 1, 'wrong type': 1, 'not UTF-8': 1}
    out = tmp_path / 'out.bin'
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1', MLPREP_PROGRESS='0')
    rng, kills, done = random.Random(0), 0, False
    state, part = Path(str(out) + '.state.json'), Path(str(out) + '.partial')

    def progress_line():
        try: return json.loads(state.read_text())['line']
        except (OSError, ValueError, KeyError): return -1

    # kill points: as soon as the .partial appears (inside the first chunk), then after ~1500, ~3000, ~4500 input lines,
    # each plus a random few milliseconds so that the kill lands anywhere inside a chunk (tokenizing, writing, committing)
    for target in (0, 1500, 3000, 4500, None):
        p = subprocess.Popen([sys.executable, '-c', SCRIPT, str(corpus), str(out)], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if target is not None:
            t0 = time.time()
            while time.time() - t0 < 120 and p.poll() is None:
                if (target == 0 and part.exists()) or (target and progress_line() >= target): break
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.05))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL); p.wait(); kills += 1
                # after a kill there is never a corrupt .bin: either none, or the complete file
                assert not out.exists() or out.read_bytes() == (tmp_path / 'ref.bin').read_bytes()
                continue
        stdout, _ = p.communicate(timeout=300)
        assert p.returncode == 0 and 'DONE' in stdout
        done = True; break
    assert done and kills >= 3, (done, kills)
    assert out.read_bytes() == (tmp_path / 'ref.bin').read_bytes()
    assert json.loads(meta_path(out).read_text())['docs'] == ref['docs']
    assert not Path(str(out) + '.partial').exists() and not Path(str(out) + '.state.json').exists()


def test_max_length_skip_or_truncate(tmp_path):
    p = tmp_path / 'c.jsonl'
    p.write_text('\n'.join(json.dumps({'text': t}) for t in ['short one', 'x' * 40, 'another short']) + '\n')
    a = process_dataset(p, tmp_path / 'a.bin', max_length=20, long_docs='skip')
    b = process_dataset(p, tmp_path / 'b.bin', max_length=20, long_docs='truncate')
    assert (a['docs'], a['skipped_long'], b['docs'], b['truncated']) == (2, 1, 3, 1)
    tok = demo_mateconv_tokenizer()
    x, _ = load_bin(tmp_path / 'b.bin', tok)
    assert tok.decode(x).count('<s>') == 3 and 'x' * 20 + '</s>' in tok.decode(x) and 'x' * 21 not in tok.decode(x)


@pytest.mark.slow
def test_num_proc_same_bytes(tmp_path):
    src = Path(resolve_dataset('demo:text')).read_bytes().splitlines(keepends=True)[:2000]
    p = tmp_path / 'c.jsonl'; p.write_bytes(b''.join(src))
    process_dataset(p, tmp_path / 'one.bin', chunk_size=700)
    process_dataset(p, tmp_path / 'two.bin', chunk_size=700, num_proc=2)
    assert (tmp_path / 'one.bin').read_bytes() == (tmp_path / 'two.bin').read_bytes()


def test_missing_bin_names_partial(tmp_path):
    (tmp_path / 'x.bin.partial').write_bytes(b'')
    with pytest.raises(FileNotFoundError, match='partial'): load_bin(tmp_path / 'x.bin')
