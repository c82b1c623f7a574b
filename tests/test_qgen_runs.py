"""Questions-Gen trainers as runs (`mlprep.runs`): a killed `mlprep qgen sft` (during training, then during a checkpoint
save) continues on a plain rerun to the uninterrupted result; other settings, a second process and a file as the output
are refused in one line; and every command of the Questions-Gen guide runs as written (plus `--sanity_check`) or says
in one line why it cannot."""
import json, logging, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SFT = ['--max_steps', '6', '--save_steps', '2', '--num_samples', '8', '--gradient_accumulation_steps', '2', '--learning_rate', '2e-3',
       '--warmup_steps', '1', '--lora_r', '4', '--lora_alpha', '8', '--max_seq_length', '256', '--device', 'cpu']

# The CLI in a child process, slowed down (a sleep per micro-step) so that a kill lands mid-run; with `save`, it stops for
# good right after writing checkpoint-4 and before the callbacks' on_save (so checkpoint-4 has no COMPLETE marker).
CHILD = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    import transformers
    mode, out = sys.argv[1], Path(sys.argv[2])
    step, save = transformers.Trainer.training_step, transformers.Trainer._save_checkpoint
    def slow_step(self, *a, **k):
        time.sleep(0.3); return step(self, *a, **k)
    def stalled_save(self, *a, **k):
        save(self, *a, **k)
        if mode == 'save' and self.state.global_step == 4:
            (out/'saved-4').write_text('x'); time.sleep(600)
    transformers.Trainer.training_step, transformers.Trainer._save_checkpoint = slow_step, stalled_save
    from mlprep.cli import main
    sys.exit(main(['qgen', 'sft', *sys.argv[3:], '--output_dir', str(out)]))
''')


from tests.test_qgen_cli import Result, mlprep   # the CLI in this process, its output captured


def ok(r):
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def one_line_error(r):
    lines = [l for l in r.stderr.strip().splitlines() if l.startswith('mlprep:')]
    assert r.returncode == 2 and lines and 'Traceback' not in r.stderr, r.stderr[-2000:]
    return lines[-1]


def child(mode, out, tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT), 'MLPREP_PROGRESS': '0'}
    err = open(tmp_path/f'{mode}.err', 'w')
    return subprocess.Popen([sys.executable, '-c', CHILD, mode, str(out), *SFT], env=env, stdout=subprocess.DEVNULL, stderr=err)


def wait_for(proc, path, tmp_path, mode, timeout=240):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, (tmp_path/f'{mode}.err').read_text()[-3000:]
        assert time.time() - t0 < timeout, f'no {path.name} in time'
        time.sleep(0.05)


def losses(out):
    return [h['loss'] for h in json.loads((out/'train_log.json').read_text()) if 'loss' in h]


@pytest.mark.slow
@pytest.mark.xdist_group('qgen_runs')
def test_sft_killed_in_training_and_in_a_save_resumes_to_the_same_result(tmp_path, capsys):
    ref, out = tmp_path/'ref', tmp_path/'run'
    ok(mlprep('qgen', 'sft', *SFT, '--output_dir', ref, capsys=capsys))
    # 1. killed during training, after checkpoint-2 is complete; meanwhile a second process is refused, naming the pid
    p = child('train', out, tmp_path)
    wait_for(p, out/'checkpoint-2'/'COMPLETE', tmp_path, 'train')
    line = one_line_error(mlprep('qgen', 'sft', *SFT, '--output_dir', out, capsys=capsys))
    assert f'pid {p.pid}' in line and 'is being written by' in line
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (out/'adapter').exists() and not (out/'checkpoint-6').exists()
    # 2. the plain rerun resumes from checkpoint-2, and is killed while saving checkpoint-4
    p = child('save', out, tmp_path)
    wait_for(p, out/'saved-4', tmp_path, 'save')
    p.send_signal(signal.SIGKILL); p.wait()
    assert (out/'checkpoint-4'/'trainer_state.json').exists() and not (out/'checkpoint-4'/'COMPLETE').exists()
    # 3. the plain rerun drops the half-saved checkpoint-4, resumes from checkpoint-2 and ends as the uninterrupted run
    ok(mlprep('qgen', 'sft', *SFT, '--output_dir', out, capsys=capsys))
    log = (out/'log.txt').read_text()
    assert log.count('resuming from checkpoint-2 of 6') == 2 and 'removed checkpoint-4: it was not saved completely' in log
    assert 'starting fresh' in log and 's/step' in log                    # the time estimate after the first steps
    assert losses(out) == pytest.approx(losses(ref), abs=1e-6) and len(losses(ref)) == 6
    a, b = load_file(out/'adapter'/'adapter_model.safetensors'), load_file(ref/'adapter'/'adapter_model.safetensors')
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    # other settings into a folder with checkpoints: refused naming them; --overwrite_output_dir starts over
    line = one_line_error(mlprep('qgen', 'sft', *SFT, '--learning_rate', '1e-3', '--output_dir', out, capsys=capsys))
    assert 'learning_rate: 0.002 → 0.001' in line and '--overwrite_output_dir' in line


def test_output_dir_that_is_a_file_and_missing_integrations(tmp_path, capsys):
    f = tmp_path/'taken'; f.write_text('x')
    for stage in ('sft', 'grpo', 'distill'):
        line = one_line_error(mlprep('qgen', stage, '--device', 'cpu', '--output_dir', f, capsys=capsys))
        assert '--output_dir' in line and 'is a file, not a folder' in line, line
    from mlprep.qgen.common import has_module, setup_integrations
    from mlprep.runs import check_integrations
    from mlprep.core import UserError
    uses = setup_integrations(dict(backend='unsloth', quantization='4bit', optim='adamw_8bit'))
    for flag, pkg in uses.items():
        if not has_module(pkg):
            with pytest.raises(UserError, match=f'{flag} needs {pkg}, which is not installed: pip install {pkg}'): check_integrations({flag: pkg})


GUIDE = 'docs/guides/07_questions-gen.md'


@pytest.mark.slow
@pytest.mark.xdist_group('qgen_runs')
def test_every_guide_command(tmp_path, capsys, monkeypatch):
    "The guide's commands as written, run from a fresh folder: trainers with `--sanity_check`, eval with short outputs."
    text = (ROOT/GUIDE).read_text()
    monkeypatch.chdir(tmp_path)
    cmds = [
        ('qgen sft --max_steps 30 --gradient_accumulation_steps 4 --learning_rate 2e-3 --output_dir outputs/qgen_sft', ['--sanity_check']),
        ('qgen grpo --model outputs/qgen_sft/adapter --max_steps 20 --learning_rate 1e-3 --max_completion_length 48 '
         '--output_dir outputs/qgen_grpo', ['--sanity_check']),
        ('qgen distill --model outputs/qgen_grpo/adapter --num_steps 6 --max_steps 6 --output_dir outputs/qgen_distill', ['--sanity_check']),
        ('qgen eval --model outputs/qgen_distill/adapter --output_dir outputs/qgen_eval',
         ['--samples_per_prompt', '1', '--max_new_tokens', '8', '--thinking_max_new_tokens', '8']),
        ('qgen export --adapter outputs/qgen_distill/adapter --output_dir outputs/qgen_export', []),
        ('qgen export --adapter outputs/qgen_distill/adapter --formats adapter merged_16bit --output_dir outputs/qgen_export2', []),
    ]
    for cmd, extra in cmds:
        assert ' '.join(cmd.split()[:2]) in text
        r = ok(mlprep(*cmd.split(), *extra, capsys=capsys))
    s = {k: json.loads((tmp_path/'outputs'/k/'summary.json').read_text()) for k in ('qgen_sft', 'qgen_grpo', 'qgen_distill')}
    assert (s["qgen_sft"]["steps"], s["qgen_grpo"]["steps"], s["qgen_distill"]["sft_steps"]) == (8, 6, 6)
    for k in s:
        log = (tmp_path/'outputs'/k/'log.txt').read_text()
        assert 'starting fresh' in log and 'training on cpu with hf' in log and 's/step' in log   # the estimate after the first steps
        assert (tmp_path/'outputs'/k/'adapter'/'adapter_model.safetensors').exists()
    assert (tmp_path/'outputs'/'qgen_export'/'merged_16bit'/'config.json').exists()
    # the sanity check proves resume too: its rerun continues from the last checkpoint (here: the end)
    ok(mlprep(*cmds[0][0].split(), '--sanity_check', capsys=capsys))
    assert 'resuming from checkpoint-8 of 8' in (tmp_path/'outputs'/'qgen_sft'/'log.txt').read_text()
    # the guide's commands that need the hub or a key: one line each, offline and without a key
    real = 'qgen sft --model unsloth/Qwen3-14B --reasoning_dataset unsloth/OpenMathReasoning-mini --chat_dataset mlabonne/FineTome-100k --max_steps 100'
    assert real.replace('qgen sft ', '') in ' '.join(text.split())
    line = one_line_error(mlprep(*real.split(), capsys=capsys))          # after the quick start: its folder holds other settings
    assert 'outputs/qgen_sft holds checkpoints of a run with other settings' in line and "model: 'tiny:qwen3' → 'unsloth/Qwen3-14B'" in line
    (tmp_path/'fresh').mkdir(); monkeypatch.chdir(tmp_path/'fresh')
    line = one_line_error(mlprep(*real.split(), capsys=capsys))          # in a fresh folder: offline, the hub is out of reach
    assert 'offline mode (HF_HUB_OFFLINE=1)' in line
    monkeypatch.chdir(tmp_path)
    line = one_line_error(mlprep(*'qgen distill --model outputs/qgen_grpo/adapter --teacher_serve'.split(), '',
                                 *'--teacher_base_url https://api.deepseek.com --teacher_model deepseek-reasoner --num_steps 30'.split(),
                                 '--output_dir', 'outputs/ds', env={'QGEN_TEACHER_API_KEY': ''}, capsys=capsys))
    assert 'set the environment variable QGEN_TEACHER_API_KEY' in line
    line = one_line_error(mlprep(*'qgen export --adapter outputs/qgen_distill/adapter --push_to_hub me/qgen-14b'.split(),
                                 env={'HF_TOKEN': 'x'}, capsys=capsys))
    assert 'HF_HUB_OFFLINE=1' in line
