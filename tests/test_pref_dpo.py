"""DPO: a killed run continues on a plain rerun to the same weights (killed during training and during a checkpoint
save), one writer per output folder, a rerun with another β refused; learning on the demo pairs."""
import os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mlprep.cli import main
from mlprep.pref.dpo import DPOConfig, load_pairs, pair_rewards, score_pairs, train_dpo

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT), 'MLPREP_PROGRESS': '0', 'HF_HUB_OFFLINE': '1'}

# The child is `mlprep dpo` itself, with two test hooks: SLOW_STEP seconds of sleep per step (so that a kill lands
# mid-run) and HANG_IN_SAVE=N, which stops checkpoint-N's save after the weights and optimizer are written, before
# the RNG state, trainer_state.json and the COMPLETE marker: a kill then leaves a half-written checkpoint.
CHILD = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path
    from mlprep.pref import dpo
    from mlprep.cli import main
    slow, hang = float(os.environ.get('SLOW_STEP', 0)), int(os.environ.get('HANG_IN_SAVE', 0))
    loss, rng = dpo.PrefDPOTrainer.compute_loss, dpo.PrefDPOTrainer._save_rng_state
    def slow_loss(self, *a, **k):
        time.sleep(slow); return loss(self, *a, **k)
    def hanging_rng(self, output_dir):
        if self.state.global_step == hang:
            Path(output_dir, 'HANGING').write_text('')
            time.sleep(600)
        return rng(self, output_dir)
    dpo.PrefDPOTrainer.compute_loss, dpo.PrefDPOTrainer._save_rng_state = slow_loss, hanging_rng
    sys.exit(main(sys.argv[1:]))
''')


def _tiny(tmp_path):
    from mlprep.data.tiny import tiny_model
    path = tmp_path/'tiny'
    tiny_model(seed=3, path=path)
    return str(path)


KW = dict(dataset='demo:pairs', dataset_adapter='pairs', sanity_check=True, max_steps=6, batch_size=2, save_steps=2, eval_steps=100,
          logging_steps=2, warmup_steps=2, learning_rate=1e-3, num_workers=0, max_length=192, max_prompt_length=96, device='cpu')


def _cfg(model, out, **kw):
    return DPOConfig(model_name=model, output_dir=str(out), **{**KW, **kw})


def _argv(model, out, **kw):
    return ['dpo', *[x for k, v in {**KW, 'model_name': model, 'output_dir': out, **kw}.items() for x in (f'--{k}', str(v))]]


def _child(argv, **env):
    return subprocess.Popen([sys.executable, '-c', CHILD, *argv], env={**ENV, **env}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc, what: str, timeout=240):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f'{what}: the child ended early:\n' + proc.stderr.read()[-3000:]
        assert time.time() < deadline, f'no {path} in time'
        time.sleep(0.05)


def _kill(proc):
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return proc.stderr.read()


@pytest.mark.slow
def test_killed_runs_continue_on_a_plain_rerun(tmp_path, capsys):
    """Run 1 is killed while saving checkpoint-4 (checkpoint-2 complete); meanwhile a second process into the same folder
    is refused, naming run 1's pid. The plain rerun resumes from checkpoint-2 (not the half-written checkpoint-4) and is
    killed mid-training after checkpoint-4; the next plain rerun finishes. The final weights equal an uninterrupted
    run's (CPU float32: the same ops in the same order). A rerun with another β is then refused, naming beta."""
    model = _tiny(tmp_path)
    full = train_dpo(_cfg(model, tmp_path/'full'))
    out = tmp_path/'killed'
    run1 = _child(_argv(model, out), HANG_IN_SAVE='4')
    _wait_for(out/'checkpoint-4'/'HANGING', run1, 'run 1')
    assert (out/'checkpoint-2'/'COMPLETE').exists() and not (out/'checkpoint-4'/'COMPLETE').exists()
    second = subprocess.run([sys.executable, '-m', 'mlprep.cli', *_argv(model, out)], env=ENV, cwd=ROOT, capture_output=True, text=True)
    assert second.returncode == 2, second.stderr[-2000:]
    err = second.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('mlprep: error:') and f'pid {run1.pid}' in err[0], err
    _kill(run1)                                                       # killed during its save of checkpoint-4
    run2 = _child(_argv(model, out), SLOW_STEP='1.5')   # steps 5 and 6 take 3 s: time to kill
    _wait_for(out/'checkpoint-4'/'COMPLETE', run2, 'run 2')
    err2 = _kill(run2)                                                # killed during step 5 or 6
    assert 'resuming from checkpoint-2 of 6' in err2, err2[-2000:]
    assert 'removed checkpoint-4: it was not saved completely' in err2
    assert not (out/'final_model').exists()
    assert main(_argv(model, out)) == 0                               # the plain rerun, in this process
    assert 'resuming from' in (out/'training.log').read_text() and 'checkpoint-4' in (out/'training.log').read_text()
    a = load_file(Path(full['final_model'])/'model.safetensors')
    b = load_file(out/'final_model'/'model.safetensors')
    assert a.keys() == b.keys()
    moved = max((a[k] - load_file(Path(model)/'model.safetensors')[k]).abs().max().item() for k in a)
    assert moved > 1e-3                                               # training did change the weights
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff <= 1e-6, f'resumed run differs from the uninterrupted one by {diff}'
    capsys.readouterr()
    assert main(_argv(model, out, beta=0.5)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'beta: 0.1 → 0.5' in err[0] and '--overwrite_output_dir' in err[0], err
    assert main(_argv(model, out, beta=0.5, max_steps=2, overwrite_output_dir=True)) == 0   # starting over is allowed
    assert sorted(p.name for p in out.glob('checkpoint-*')) == ['checkpoint-2']


def test_bad_config_fails_before_loading_any_model(tmp_path, monkeypatch):
    import mlprep.pref.dpo as dpo
    monkeypatch.setattr(dpo, 'load_model', lambda *a, **k: pytest.fail('a model was loaded'))
    from mlprep.config import ConfigError
    for argv, msg in ((['--loss_type', 'bogus'], 'bogus'), (['--beta', '-1'], 'beta must be > 0')):
        with pytest.raises(ConfigError, match=msg): DPOConfig.from_cli(argv)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match='CUDA'): DPOConfig.from_cli(['--load_in_8bit'])
    bad = tmp_path/'bad.jsonl'; bad.write_text('{"prompt": "p", "chosen": "x", "rejected": "x"}\n')
    with pytest.raises(ValueError, match='no usable preference pair'):
        train_dpo(DPOConfig(dataset=str(bad), dataset_adapter='pairs', output_dir=str(tmp_path/'o'), model_name=_tiny(tmp_path)))


@pytest.mark.slow
def test_dpo_learns_correctness_on_held_out_pairs(tmp_path):
    """From the tiny chat model, 30 DPO steps on the demo pairs: held-out implicit-reward accuracy >= 0.85, also on the
    pairs whose chosen answer is the *shorter* one (so it is not a length preference)."""
    from mlprep.data.models import load_model, load_tokenizer
    from mlprep.data.resolve import resolve_model
    cfg = DPOConfig(model_name='tiny:target', dataset='demo:pairs', dataset_adapter='pairs', max_steps=30, batch_size=8,
                    learning_rate=2e-4, warmup_steps=5, eval_steps=30, save_steps=1000, logging_steps=10,
                    eval_fraction=0.05, max_length=256, max_prompt_length=128, num_workers=0, output_dir=str(tmp_path), device='cpu')
    s = train_dpo(cfg)
    tok = load_tokenizer(resolve_model(cfg.model_name), padding_side='right')
    pairs, _ = load_pairs(cfg.dataset, cfg.dataset_adapter, tok, cfg.max_prompt_length)
    held = pairs[-s['eval_pairs']:]
    ref = load_model(resolve_model(cfg.model_name), dtype='float32', device='cpu')
    ref_lp = score_pairs(ref, tok, held)
    base = (ref_lp[:, 0] > ref_lp[:, 1]).float().mean().item()  # the reference's own preference: about chance
    r = pair_rewards(load_model(s['final_model'], dtype='float32', device='cpu'), ref, tok, held, cfg.beta)
    right = r[:, 0] > r[:, 1]
    shorter = torch.tensor([len(ex['chosen'][0]['content']) < len(ex['rejected'][0]['content']) for ex in held])
    print(f'held-out: reference prefers chosen {base:.2f}; after DPO accuracy {right.float().mean():.2f} '
          f'(chosen shorter: {right[shorter].float().mean():.2f} of {int(shorter.sum())}), trainer eval {s["eval"]["accuracy"]:.2f}')
    assert 0.3 < base < 0.7
    assert right.float().mean() >= 0.85
    assert right[shorter].float().mean() >= 0.75
