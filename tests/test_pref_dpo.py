"""DPO: exact resume after SIGKILL, and learning on the demo pairs (held-out implicit-reward accuracy)."""
import os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mlprep.pref.dpo import DPOConfig, load_pairs, pair_rewards, score_pairs, train_dpo

ROOT = Path(__file__).resolve().parents[1]


def _tiny(tmp_path):
    from mlprep.data.tiny import tiny_model
    path = tmp_path/'tiny'
    tiny_model(seed=3, path=path)
    return str(path)


def _cfg(model, out, **kw):
    return DPOConfig(model_name=model, dataset='demo:pairs', dataset_adapter='pairs', sanity_check=True, max_steps=8,
                     batch_size=2, save_steps=4, eval_steps=100, logging_steps=2, warmup_steps=2, learning_rate=1e-3,
                     num_workers=0, max_length=192, max_prompt_length=96, output_dir=str(out), device='cpu', **kw)


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_weights(tmp_path):
    model = _tiny(tmp_path)
    full = train_dpo(_cfg(model, tmp_path/'full'))
    out = tmp_path/'killed'
    # the child trains slowly (a sleep per step) so that the kill lands mid-run, after checkpoint-4 is complete
    child = textwrap.dedent(f'''
        import time
        from mlprep.pref import dpo
        orig = dpo.PrefDPOTrainer.compute_loss
        def slow(self, *a, **k):
            time.sleep(0.4); return orig(self, *a, **k)
        dpo.PrefDPOTrainer.compute_loss = slow
        cfg = dpo.DPOConfig.from_dict({_cfg(model, out).to_dict()!r})
        dpo.train_dpo(cfg)
    ''')
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT)}
    proc = subprocess.Popen([sys.executable, '-c', child], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (out/'checkpoint-4'/'trainer_state.json').exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, 'no checkpoint-4 in time'
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out/'final_model').exists()
    resumed = train_dpo(_cfg(model, out, resume_from_checkpoint='latest'))
    assert resumed['steps'] == full['steps'] == 8
    a = load_file(Path(full['final_model'])/'model.safetensors')
    b = load_file(Path(resumed['final_model'])/'model.safetensors')
    assert a.keys() == b.keys()
    moved = max((a[k] - load_file(Path(model)/'model.safetensors')[k]).abs().max().item() for k in a)
    assert moved > 1e-3                                         # training did change the weights
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff <= 1e-6, f'resumed run differs from the uninterrupted one by {diff}'   # CPU float32: the same ops in the same order


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
