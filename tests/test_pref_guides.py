"""The DPO guide's and the preference-guided DPO guide's commands, as written, through `mlprep`: each runs with only a
tiny local model (and `--max_steps`) in place of the hub model, or stops with one `mlprep: error:` line saying why.
The guides' shell scripts (`examples/*.sh`, `fast_train.sh`, `slurm_job.sh`) are `mlprep dpo`, `mlprep pref-dpo` and
`mlprep slurm` here; docs/guides/05_dpo.md maps them."""
import os, subprocess, sys
from pathlib import Path

import pytest

from mlprep.cli import main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT), 'MLPREP_PROGRESS': '0', 'HF_HUB_OFFLINE': '1'}


@pytest.fixture
def tiny(tmp_path_factory):
    from mlprep.data.resolve import resolve_model
    return resolve_model('tiny:target')                       # the offline tiny chat model stands in for gpt2 / Qwen


def _error(capsys, argv) -> str:
    "Run `mlprep ARGV`, expect exit status 2 and exactly one `mlprep: error:` line; return it."
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('mlprep: error: '), err
    return err[0]


@pytest.mark.slow
def test_use_wandb_without_wandb_is_one_line_before_any_model_loads(tmp_path):
    "The DPO guide's example 2, as written (wandb is not installed here): one line, nothing written, no model loaded."
    pytest.importorskip('torch')
    if __import__('importlib').util.find_spec('wandb'): pytest.skip('wandb is installed here')
    out = tmp_path/'outputs'/'opt125m_dpo'
    p = subprocess.run([sys.executable, '-m', 'mlprep.cli', 'dpo', '--model_name', 'facebook/opt-125m', '--beta', '0.5', '--batch_size', '8',
                        '--max_steps', '3000', '--use_wandb', '--output_dir', str(out)], env=ENV, cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ['mlprep: error: --use_wandb needs wandb, which is not installed: pip install wandb']
    assert not out.exists()


def test_dpo_guide_refusals(tmp_path, capsys, monkeypatch):
    """As written, offline: a hub model name that is not in the cache, an --output_dir that is a file, the SLURM script's
    settings (`mlprep slurm dpo`, dry run), the 8-bit flag without a GPU."""
    monkeypatch.chdir(tmp_path)
    line = _error(capsys, ['dpo', '--model_name', 'gpt2', '--batch_size', '2', '--max_steps', '50', '--sanity_check', '--output_dir', './outputs/test'])
    assert 'gpt2' in line, line
    Path('afile').write_text('')
    line = _error(capsys, ['dpo', '--sanity_check', '--output_dir', 'afile'])
    assert line == 'mlprep: error: --output_dir afile: afile is a file, not a folder: give a folder path (or move the file away)', line
    import torch
    if not torch.cuda.is_available(): assert 'CUDA' in _error(capsys, ['dpo', '--load_in_8bit'])
    assert main(['slurm', 'dpo', '-p', 'model_name', 'EleutherAI/pythia-410m', '-p', 'beta', '0.1', '-p', 'batch_size', '16',
                 '-p', 'max_steps', '5000', '--dry_run']) == 0             # example 3 (slurm_job.sh with MODEL_NAME, BETA, ...)
    assert '#SBATCH' in capsys.readouterr().out


@pytest.mark.slow
def test_dpo_guide_commands_run(tmp_path, tiny, caplog, monkeypatch):
    """The local test, example 1, `tail training.log`, loading final_model and generating, and continuing from a
    checkpoint, each as written with only the tiny model and a small --max_steps."""
    monkeypatch.chdir(tmp_path)
    assert main(['dpo', '--model_name', tiny, '--batch_size', '2', '--max_steps', '2', '--sanity_check', '--output_dir', './outputs/test']) == 0
    assert ' s/step: ~' in Path('outputs/test/training.log').read_text()    # the time estimate after the first steps
    assert main(['dpo', '--model_name', tiny, '--beta', '0.1', '--learning_rate', '1e-6', '--batch_size', '4', '--max_steps', '2',
                 '--eval_steps', '100', '--save_steps', '500', '--output_dir', './outputs/gpt2_dpo', '--num_workers', '4']) == 0   # example 1
    assert 'final eval: accuracy' in Path('outputs/gpt2_dpo/training.log').read_text()      # tail -f outputs/gpt2_dpo/training.log
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained('./outputs/gpt2_dpo/final_model')
    tokenizer = AutoTokenizer.from_pretrained('./outputs/gpt2_dpo/final_model')
    inputs = tokenizer('Human: How do I make pizza?\n\nAssistant:', return_tensors='pt')
    outputs = model.generate(**inputs, max_length=40)
    assert tokenizer.decode(outputs[0]).startswith('Human: How do I make pizza?')
    assert main(['dpo', '--model_name', './outputs/test/checkpoint-2', '--max_steps', '1', '--sanity_check',
                 '--output_dir', './outputs/gpt2_dpo_continued']) == 0   # continuing: a new run from checkpoint-N's weights
    assert Path('outputs/gpt2_dpo_continued/final_model/model.safetensors').exists()


def test_pref_guide_refusals(tmp_path, capsys, monkeypatch):
    "As written on a CPU: the embedding mode's placeholder path, the DeepSpeed launch, and the guide's hyper-parameter presets."
    monkeypatch.chdir(tmp_path)
    line = _error(capsys, ['pref-dpo', '--mode', 'embedding', '--prompt_embedding_path', '/path/to/your/prompt_embeddings.pt'])
    assert 'no file at /path/to/your/prompt_embeddings.pt' in line
    import torch
    if not torch.cuda.is_available():
        assert 'needs CUDA GPUs' in _error(capsys, ['pref-dpo', '--deepspeed', 'zero2'])   # deepspeed --include=localhost:1,2 ...
    from mlprep.pref.pref_dpo import PrefDPOConfig
    for flags in (['--beta', '0.01', '--alpha', '0.05'], ['--beta', '0.05', '--alpha', '0.1'], ['--beta', '0.1', '--alpha', '0.2'],
                  ['--gradient_accumulation_steps', '512', '--max_length', '300', '--lora_r', '16'],
                  ['--gradient_accumulation_steps', '256', '--max_length', '512', '--lora_r', '32'],
                  ['--learning_rate', '5e-4', '--num_epochs', '1', '--lora_alpha', '32', '--lora_dropout', '0.1', '--max_prompt_length', '128']):
        PrefDPOConfig.from_cli(flags)                                   # each preset is a valid config


@pytest.mark.slow
def test_pref_guide_commands_run(tmp_path, tiny, caplog, monkeypatch):
    """fast_train.sh in text mode with the guide's preference text, then TensorBoard's log folder and loading the adapter
    with PeftModel as the guide shows; a plain rerun of the finished command resumes and adds no step."""
    monkeypatch.chdir(tmp_path)
    text = '请提供一个有用、诚实、无害且简洁的回答。'
    argv = ['pref-dpo', '--model_name', tiny, '--mode', 'text', '--preference_text', text, '--max_steps', '2', '--sanity_check',
            '--output_dir', 'model_output/Preference_Guided_DPO']
    assert main(argv) == 0
    out = Path('model_output/Preference_Guided_DPO')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ev = EventAccumulator(str(out/'logs')); ev.Reload()                  # tensorboard --logdir=.../logs
    for tag in ('eval/loss', 'eval/dpo_loss', 'eval/aligned_loss', 'eval/pref_advantage_ratio'):   # (train/ from step 5: --logging_steps)
        assert tag in ev.Tags()['scalars'], tag
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    base_model = AutoModelForCausalLM.from_pretrained(tiny)
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = PeftModel.from_pretrained(base_model, str(out))
    inputs = tokenizer('你的问题', return_tensors='pt')
    assert model.generate(**inputs, max_length=30).shape[1] > inputs['input_ids'].shape[1]
    caplog.clear()
    with caplog.at_level('INFO', logger='mlprep'): assert main(argv) == 0
    assert 'resuming from checkpoint-2 of 2' in caplog.text
