"Pretraining: a plain rerun after SIGKILL resumes exactly, one writer, other settings refused; DDP on 2 CPU processes, and learning well below the unigram entropy."
import ast, json, math, os, shutil, signal, subprocess, sys, sysconfig, time
from pathlib import Path
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mlprep.cli import main as _cli_main
from mlprep.data.resolve import resolve_dataset
from mlprep.mateconv.pretrain import PretrainConfig, train_pretrain
from mlprep.mateconv.process import load_bin, process_dataset
from mlprep.mateconv.tokenizer import demo_mateconv_tokenizer, train_tokenizer
from mlprep.runs import latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1', MLPREP_PROGRESS='0', TOKENIZERS_PARALLELISM='false')


@pytest.fixture(scope='module')
def small_bin(tmp_path_factory):
    d = tmp_path_factory.mktemp('bin')
    (d / 'small.jsonl').write_text(''.join(open(resolve_dataset('demo:text')).readlines()[:1500]))
    demo_mateconv_tokenizer()
    process_dataset(d / 'small.jsonl', d / 'small.bin')
    return d / 'small.bin'


def cli_main(argv): return _cli_main([str(a) for a in argv])


def _flags(kw):
    return [x for k, v in kw.items() for x in (f'--{k}', str(v))]


def _weights_equal(a_dir, b_dir):
    for name in ('best_model', 'ema_model'):
        a, b = load_file(a_dir / name / 'model.safetensors'), load_file(b_dir / name / 'model.safetensors')
        for k in a: torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=f'{name}/{k}')


@pytest.mark.slow
def test_kill_and_plain_rerun(small_bin, tmp_path, capsys):
    """`mlprep pretrain` killed (SIGKILL) during training and during a checkpoint save, then rerun unchanged: it resumes
    from the newest complete checkpoint and ends equal to an uninterrupted run. While it runs, a second process is
    refused naming its pid; a rerun with another learning rate is refused naming it, and `--overwrite_output_dir` starts over."""
    kw = dict(train_data_path=small_bin, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64, batch_size=8,
              learning_rate=3e-3, max_steps=40, eval_interval=5, log_interval=5, use_ema='true', ema_decay=0.9, samples=0,
              warmup_steps=3, save_total_limit=20)
    ref = train_pretrain(PretrainConfig.from_dict({**kw, 'out_dir': str(tmp_path / 'ref')}))
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'mlprep.cli', 'pretrain', *_flags({**kw, 'out_dir': out})]
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while p.poll() is None and not (out / 'checkpoint-15').exists() and time.time() - t0 < 120: time.sleep(0.002)
    p.send_signal(signal.SIGSTOP)                         # frozen, during (or right after) the save of checkpoint-15
    try:
        assert p.poll() is None, 'the run finished before it could be stopped'
        assert cli_main(['pretrain', *_flags({**kw, 'out_dir': out})]) != 0           # a second process: refused
        assert f'pid {p.pid}' in capsys.readouterr().err
    finally:
        p.send_signal(signal.SIGKILL); p.wait()
    assert not (out / 'best_model').exists()
    last = latest_checkpoint(out)
    newest = max(int(c.name.split('-')[1]) for c in out.glob('checkpoint-*'))        # checkpoint-15 may be torn already
    fake = out / f'checkpoint-{newest + 5}'                                               # and one surely killed during its save
    shutil.copytree(last, fake); (fake / 'COMPLETE').unlink(); (fake / 'model.safetensors').write_bytes(b'torn')
    assert cli_main(['pretrain', *_flags({**kw, 'out_dir': out, 'learning_rate': 1e-3})]) != 0
    assert 'learning_rate: 0.003 → 0.001' in capsys.readouterr().err
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)     # the same command again
    assert r.returncode == 0, r.stderr[-3000:]
    assert f'resuming from {last.name} of 40' in r.stderr and f'removed {fake.name}' in r.stderr
    assert json.loads((out / 'summary.json').read_text())['steps'] == ref['steps'] == 40
    _weights_equal(tmp_path / 'ref', out)
    steps = lambda d: [json.loads(l)['step'] for l in open(d / 'metrics.jsonl')]
    assert steps(out) == steps(tmp_path / 'ref')                                          # nothing logged twice
    s = train_pretrain(PretrainConfig.from_dict({**kw, 'out_dir': str(out), 'max_steps': 4, 'overwrite_output_dir': 'true'}))
    assert s['resumed_from'] is None and s['steps'] == 4 and latest_checkpoint(out).name == 'checkpoint-4'


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
