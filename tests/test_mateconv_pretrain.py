"Pretraining: exact resume after SIGKILL, DDP on 2 CPU processes, and learning well below the unigram entropy."
import ast, json, math, os, signal, subprocess, sys, sysconfig, time
from pathlib import Path
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mlprep.data.resolve import resolve_dataset
from mlprep.mateconv.pretrain import PretrainConfig, train_pretrain
from mlprep.mateconv.process import load_bin, process_dataset
from mlprep.mateconv.tokenizer import demo_mateconv_tokenizer, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1', MLPREP_PROGRESS='0', TOKENIZERS_PARALLELISM='false')


@pytest.fixture(scope='module')
def small_bin(tmp_path_factory):
    d = tmp_path_factory.mktemp('bin')
    (d / 'small.jsonl').write_text(''.join(open(resolve_dataset('demo:text')).readlines()[:1500]))
    demo_mateconv_tokenizer()
    process_dataset(d / 'small.jsonl', d / 'small.bin')
    return d / 'small.bin'


def _flags(kw):
    return [x for k, v in kw.items() for x in (f'--{k}', str(v))]


@pytest.mark.slow
def test_sigkill_resume_exact(small_bin, tmp_path):
    kw = dict(train_data_path=small_bin, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64, batch_size=8,
              learning_rate=3e-3, max_steps=40, eval_interval=5, log_interval=5, use_ema='true', ema_decay=0.9, samples=0,
              warmup_steps=3, save_total_limit=20)
    ref = train_pretrain(PretrainConfig.from_dict({**kw, 'out_dir': str(tmp_path / 'ref')}))
    out = tmp_path / 'run'
    p = subprocess.Popen([sys.executable, '-m', 'mlprep.mateconv.pretrain', *_flags({**kw, 'out_dir': out})], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while p.poll() is None and not (out / 'checkpoint-10' / 'COMPLETE').exists() and time.time() - t0 < 120: time.sleep(0.01)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL, 'the run finished before it could be killed'
    assert not (out / 'best_model').exists()
    res = train_pretrain(PretrainConfig.from_dict({**kw, 'out_dir': str(out), 'resume': 'true'}))
    assert res['resumed_from'] is not None and res['steps'] == ref['steps'] == 40
    for name in ('best_model', 'ema_model'):
        a, b = load_file(tmp_path / 'ref' / name / 'model.safetensors'), load_file(out / name / 'model.safetensors')
        for k in a: torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=f'{name}/{k}')


@pytest.mark.slow
def test_ddp_two_cpu_processes(small_bin, tmp_path):
    "What `mlprep slurm pretrain` runs on each node: torchrun + `mlprep launch`; the relative out_dir lands in the run folder."
    cfg = PretrainConfig.from_dict(dict(train_data_path=str(small_bin), dim=32, n_layers=1, n_heads=2, n_kv_heads=1, max_seq_len=32,
                                        batch_size=4, max_steps=4, eval_interval=2, log_interval=1, samples=0, ddp='true', out_dir='ddp'))
    cfg.save(tmp_path, 'params.yaml')
    run = tmp_path / 'run'
    r = subprocess.run([str(Path(sys.executable).parent / 'torchrun'), '--nproc_per_node', '2', '--master_port', '29517',
                        '-m', 'mlprep.cli', 'launch', 'pretrain', str(tmp_path / 'params.yaml'), '--output_dir', str(run)],
                       env=ENV, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((run / 'ddp' / 'summary.json').read_text())
    assert s['world_size'] == 2 and s['steps'] == 4
    assert (run / 'ddp' / 'best_model' / 'model.safetensors').exists()


def unigram_entropy(tokens: np.ndarray) -> float:
    "Entropy (nats/token) of the corpus' own token frequencies: the loss of the best model that ignores context."
    c = np.bincount(tokens.astype(np.int64)); p = c[c > 0] / c.sum()
    return float(-(p * np.log(p)).sum())


def _learn(bin_path, out, steps, dim=64, seq=64):
    s = train_pretrain(PretrainConfig.from_dict(dict(
        train_data_path=str(bin_path), tokenizer_path=str(load_bin(bin_path)[1]['tokenizer_path']), val_fraction=0.05,
        out_dir=str(out), dim=dim, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=seq, batch_size=16, learning_rate=3e-3,
        max_steps=steps, warmup_steps=15, eval_interval=steps, log_interval=50, samples=1)))
    tokens, _ = load_bin(bin_path)
    return s['eval_loss'], unigram_entropy(np.asarray(tokens)), s


@pytest.mark.slow
def test_learns_demo_corpus(tmp_path):
    process_dataset('demo:text', tmp_path / 'demo.bin')
    loss, h, s = _learn(tmp_path / 'demo.bin', tmp_path / 'out', 200)
    print(f'\ndemo corpus: validation loss {loss:.3f} nats/token vs unigram entropy {h:.3f} nats/token; sample: {s["samples"][0]!r}')
    assert loss < 0.75 * h


def stdlib_docstrings(max_chars: int = 1_500_000):
    "Docstrings of the Python standard library of this machine (modules, classes, functions), as texts."
    out, n = [], 0
    for p in sorted(Path(sysconfig.get_paths()['stdlib']).glob('*.py')):
        try: tree = ast.parse(p.read_text(encoding='utf-8'))
        except (SyntaxError, UnicodeDecodeError, ValueError): continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                d = ast.get_docstring(node)
                if d and len(d) > 40:
                    out.append(d); n += len(d)
                    if n > max_chars: return out
    return out


@pytest.mark.slow
def test_learns_stdlib_docstrings(tmp_path):
    docs = stdlib_docstrings()
    assert len(docs) > 1000
    (tmp_path / 'doc.jsonl').write_text(''.join(json.dumps({'text': t}) + '\n' for t in docs))
    train_tokenizer(tmp_path / 'doc.jsonl', 2000, tmp_path / 'tok')
    process_dataset(tmp_path / 'doc.jsonl', tmp_path / 'doc.bin', tokenizer=tmp_path / 'tok', max_length=0)
    loss, h, s = _learn(tmp_path / 'doc.bin', tmp_path / 'out', 250, dim=128, seq=128)
    print(f'\nstdlib docstrings ({len(docs)} docs): validation loss {loss:.3f} nats/token vs unigram entropy {h:.3f} nats/token; sample: {s["samples"][0]!r}')
    assert loss < 0.8 * h
