"""`mlprep qgen ...` from the command line: one-line errors for what a user can cause, keys kept out of files, a tiny run."""
import json, logging, os, sys
from pathlib import Path

import pytest

from mlprep.qgen.teacher import FaultProxy, free_port, scripted_reply

ROOT = Path(__file__).resolve().parents[1]


class Result:
    def __init__(self, returncode, stdout, stderr): self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def mlprep(*args, env=None, capsys=None):
    "`mlprep ARGS` in this process (the console script's own entry point), with `env` set for the call."
    from mlprep.cli import main
    for h in logging.getLogger('mlprep').handlers:        # a handler made under an earlier test's capture: write to this one's
        if type(h) is logging.StreamHandler: h.stream = sys.stderr
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try: rc = main([str(a) for a in args])
    finally:
        for k, v in saved.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
    out = capsys.readouterr()
    return Result(rc, out.out, out.err)


def one_line_error(r):
    lines = [l for l in r.stderr.strip().splitlines() if l.startswith('mlprep:')]
    assert r.returncode == 2 and lines and 'Traceback' not in r.stderr, r.stderr[-2000:]
    return lines[-1]


@pytest.fixture(scope='module')
def adapter(tmp_path_factory):
    from mlprep.qgen.common import load_policy, save_adapter, training_setup
    m, tok = load_policy('tiny:qwen3', training_setup('cpu'), lora_r=4, lora_alpha=8)
    return save_adapter(m, tok, tmp_path_factory.mktemp('a') / 'adapter')


def test_push_to_hub_offline_is_a_clear_error(adapter, tmp_path, capsys):
    line = one_line_error(mlprep('qgen', 'export', '--adapter', adapter, '--push_to_hub', 'me/qgen', '--output_dir', tmp_path / 'x', capsys=capsys))
    assert 'HF_HUB_OFFLINE=1' in line and not (tmp_path / 'x').exists()
    line = one_line_error(mlprep('qgen', 'export', '--adapter', adapter, '--push_to_hub', 'me/qgen', '--output_dir', tmp_path / 'x',
                                 env={'HF_HUB_OFFLINE': '0', 'HF_TOKEN': ''}, capsys=capsys))
    assert 'HF_TOKEN' in line


def test_gguf_and_4bit_need_unsloth_on_a_gpu(adapter, tmp_path, capsys):
    line = one_line_error(mlprep('qgen', 'export', '--adapter', adapter, '--formats', 'merged_4bit,gguf', '--output_dir', tmp_path / 'x', capsys=capsys))
    assert 'need a CUDA GPU' in line and 'unsloth' in line and not (tmp_path / 'x').exists()
    line = one_line_error(mlprep('qgen', 'sft', '--backend', 'unsloth', '--output_dir', tmp_path / 's', capsys=capsys))
    assert "backend='unsloth' needs" in line


def test_unreachable_teacher_fails_before_work(tmp_path, capsys):
    url = f'http://127.0.0.1:{free_port()}/v1'
    line = one_line_error(mlprep('qgen', 'distill', '--teacher_base_url', url, '--teacher_model', 'x', '--teacher_serve', '',
                                 '--teacher_max_retries', '0', '--output_dir', tmp_path / 'd', capsys=capsys))
    assert 'unreachable' in line and not (tmp_path / 'd' / 'pairs.jsonl').exists()
    line = one_line_error(mlprep('qgen', 'distill', '--teacher_base_url', 'https://api.example.invalid/v1', '--teacher_model', 'x',
                                 '--teacher_serve', '', '--output_dir', tmp_path / 'd', env={'QGEN_TEACHER_API_KEY': ''}, capsys=capsys))
    assert 'QGEN_TEACHER_API_KEY' in line


def test_teacher_key_never_reaches_a_file(tmp_path):
    from mlprep.qgen.distill import QgenDistillConfig, train_distill
    secret = 'sk-qgen-test-0123456789abcdef'
    os.environ['QGEN_TEACHER_API_KEY'] = secret
    try:
        with FaultProxy(reply=scripted_reply, models=['teacher']) as px:
            train_distill(QgenDistillConfig(teacher_base_url=px.url, teacher_model='teacher', teacher_serve='', num_steps=2,
                                            student_max_new_tokens=16, max_steps=1, gradient_accumulation_steps=1, lora_r=4, lora_alpha=8,
                                            device='cpu', output_dir=str(tmp_path / 'run')))
    finally: del os.environ['QGEN_TEACHER_API_KEY']
    files = [f for f in (tmp_path / 'run').rglob('*') if f.is_file()]
    assert any(f.name == 'exchanges.jsonl' for f in files)
    for f in files: assert secret.encode() not in f.read_bytes(), f


def test_qgen_eval_from_the_command_line(tmp_path, capsys):
    r = mlprep('qgen', 'eval', '--samples_per_prompt', '1', '--thinking', 'both', '--variation_tests', 'false', '--max_new_tokens', '8',
               '--thinking_max_new_tokens', '8', '--device', 'cpu', '--output_dir', tmp_path / 'e', capsys=capsys)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / 'e' / 'summary.json').read_text())
    assert summary['outputs'] == 6 and set(summary['by_thinking']) == {'False', 'True'}
    assert (tmp_path / 'e' / 'dimensions.png').exists()
