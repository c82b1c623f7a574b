"""The MateConv guide (seed 002) walked command by command, in a folder where `mlprep process` ran with its defaults:
each command runs as written, with only a tiny addition (`--sanity_check`, `--max_steps`, an `--out_dir`, a model path
that exists), or is refused with one line saying why."""
import io, json, os, shlex, subprocess, sys
from pathlib import Path
import pytest
import torch

from mlprep.cli import main as _main
from mlprep.data.resolve import resolve_dataset

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1', MLPREP_PROGRESS='0', TOKENIZERS_PARALLELISM='false')
GUIDE_CONFIG = '''data:
  tokenizer_path: "/path/to/tokenizer"
  train_data_path: "./dataset/pretrain_data.bin"
  val_data_path: null

training:
  epochs: 15
  batch_size: 32
  learning_rate: 3.0e-4
  optimizer_type: "adamw"
  lr_scheduler: "cosine"
  use_ema: true
  early_stopping: true
'''
pytestmark = pytest.mark.xdist_group('mateconv_guide')   # one worker: the guide folder is processed once
TRAIN = 'pretrain --epochs 15 --batch_size 32 --learning_rate 3e-4 --optimizer_type adamw --lr_scheduler cosine --use_ema --early_stopping --out_dir out'


def main(argv): return _main([str(a) for a in argv])


@pytest.fixture(scope='module')
def guide(tmp_path_factory):
    "`mlprep process` as the guide runs it (`python optimized_data_processing.py`): defaults only, in a fresh folder."
    d, cwd = tmp_path_factory.mktemp('guide'), os.getcwd()
    (d / 'config.yaml').write_text(GUIDE_CONFIG)
    (d / 'config_tok.yaml').write_text(GUIDE_CONFIG.replace('/path/to/tokenizer', 'mateconv:demo'))
    (d / 'prompts.txt').write_text('中国\n长江、黄河\n你好，好久不见\n')
    os.chdir(d)
    try: assert main(['process']) == 0
    finally: os.chdir(cwd)
    assert (d / 'dataset' / 'pretrain_data_val.bin').exists() and (d / 'dataset' / 'pretrain_data_train.bin').exists()
    return d


@pytest.fixture
def in_guide(guide, monkeypatch):
    monkeypatch.chdir(guide)
    return guide


REFUSED = [  # (command as the guide writes it, after `python train.py` / `python inference.py` → `mlprep pretrain` / `mlprep infer`; the one line)
    ('pretrain --config config.yaml', 'tokenizer_path not found: /path/to/tokenizer'),
    ('pretrain --config config.yaml --ddp', 'tokenizer_path not found'),               # torchrun ... --config config.yaml --ddp
    ('pretrain --config config.yaml --resume --resume_from out/checkpoint_step_5000.pth', 'resume_from=out/checkpoint_step_5000.pth not found'),
    ('pretrain --resume --resume_from out/checkpoint_interrupted.pth', 'resume_from=out/checkpoint_interrupted.pth not found'),
    ('pretrain --config config.yaml --use_wandb --wandb_project MateConv-Pretrain --wandb_run_name exp1', '--use_wandb needs wandb'),
    ('pretrain --use_wandb --wandb_project my-project', '--use_wandb needs wandb'),
    ('pretrain --epochs 15 --batch_size 32 --learning_rate 3e-4 --use_ema --use_wandb', '--use_wandb needs wandb'),
    ('pretrain --config config.yaml --ddp --dtype bfloat16 --batch_size 64 --use_ema --use_wandb', '--use_wandb needs wandb'),
    ('pretrain --dtype bfloat16', 'needs a CUDA GPU'),
    ('pretrain --dtype float16', 'needs a CUDA GPU'),
    ('pretrain --batch_size 8 --accumulation_steps 4 --dtype float16', 'needs a CUDA GPU'),
    ('infer --model_path out/pretrain_512.pth --prompt 中国 --max_new_tokens 100 --temperature 0.8 --top_k 50 --top_p 0.9', 'saves folders'),
]


@pytest.mark.parametrize('cmd,line', REFUSED, ids=[c for c, _ in REFUSED])
def test_guide_command_refused(in_guide, capsys, cmd, line):
    if 'CUDA' in line and torch.cuda.is_available(): pytest.skip('a GPU is present')
    wandb_installed = __import__('importlib').util.find_spec('wandb') is not None
    if 'wandb' in line and wandb_installed: pytest.skip('wandb is installed')
    assert main(shlex.split(cmd)) != 0
    err = capsys.readouterr().err
    assert line in err and 'Traceback' not in err and len(err.strip().splitlines()) == 1, err


RUN = [  # guide commands that train the default 26M model (~97 s a step on CPU): run with --sanity_check --max_steps 2
    'pretrain --config config_tok.yaml',                           # the guide's config.yaml with a tokenizer that exists
    'pretrain --batch_size 32 --accumulation_steps 4',
    'pretrain --dtype float32',
    'pretrain --lr_scheduler polynomial',
]


@pytest.mark.parametrize('cmd', RUN)
def test_guide_command_runs(in_guide, cmd):
    out = f'out_{RUN.index(cmd)}'
    assert main([*shlex.split(cmd), '--sanity_check', '--max_steps', '2', '--out_dir', out]) == 0
    s = json.loads((in_guide / out / 'summary.json').read_text())
    assert s['steps'] == 2 and Path(s['resumed_from']).name == 'checkpoint-1' and 'eval_loss' in s


@pytest.mark.slow
def test_guide_train_then_infer(in_guide, capsys, monkeypatch):
    "The guide's training command with --sanity_check (a subprocess, as a user runs it), then its inference commands."
    r = subprocess.run([sys.executable, '-m', 'mlprep.cli', *shlex.split(TRAIN), '--sanity_check'], env=ENV, cwd=in_guide,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'validation data: dataset/pretrain_data_val.bin' in r.stderr and 'starting fresh in out' in r.stderr
    assert ' s/step: ~' in r.stderr and 'sanity check: stopped after step 10; resuming from checkpoint-10' in r.stderr
    s = json.loads((in_guide / 'out' / 'summary.json').read_text())
    assert s['steps'] == 20 and (in_guide / 'out' / 'ema_model' / 'model.safetensors').exists()
    assert main(['infer', '--model_path', 'out/best_model.pth', '--prompt', '中国', '--stream']) == 0       # example 1, step 3
    assert capsys.readouterr().out.startswith('中国')
    assert main(['infer', '--model_path', 'out/best_model', '--batch_file', 'prompts.txt']) == 0
    assert '--- 长江、黄河' in capsys.readouterr().out
    assert main(['infer', '--model_path', 'out/best_model', '--prompt', 'The', '--repetition_penalty', '1.3', '--no_repeat_ngram_size', '3']) == 0
    monkeypatch.setattr('sys.stdin', io.StringIO('你好\n介绍一下中国\nclear\nexit\n'))
    assert main(['infer', '--model_path', 'out/best_model.pth', '--interactive', '--temperature', '0.8', '--top_p', '0.9',
                 '--repetition_penalty', '1.2', '--stream']) == 0                                          # example 3
    assert '👋' in capsys.readouterr().out


def test_guide_python_api(tmp_path):
    "The guide's data-processing API (`OptimizedDataProcessor` is `DataProcessor` here), with its calls as written."
    from mlprep.mateconv.process import DataProcessor
    (tmp_path / 'raw_data.jsonl').write_text(''.join(open(resolve_dataset('demo:text')).readlines()[:300]) + 'not json\n')
    processor = DataProcessor(tokenizer_path='mateconv:demo', max_length=512, chunk_size=50000)
    processor.validate_and_clean_jsonl(input_path=tmp_path / 'raw_data.jsonl', output_path=tmp_path / 'cleaned_data.jsonl')
    processor.process_dataset(input_path=tmp_path / 'cleaned_data.jsonl', output_path=tmp_path / 'pretrain_data.bin', resume=True)
    stats = processor.save_statistics(tmp_path / 'data_stats.json')
    assert stats['documents'] > 0 and (tmp_path / 'data_stats.json').exists()
