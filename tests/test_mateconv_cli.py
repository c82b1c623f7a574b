"The MateConv commands through `mlprep`: tokenizer, process, pretrain, infer; bad input is one clear line."
import json
from pathlib import Path
import pytest

from mlprep.cli import main as _main


def main(argv): return _main([str(a) for a in argv])
from mlprep.data.resolve import resolve_dataset


@pytest.fixture
def small(tmp_path):
    p = tmp_path / 'small.jsonl'
    p.write_text(''.join(open(resolve_dataset('demo:text')).readlines()[:600]) + 'not json\n')
    return p


@pytest.mark.slow
def test_tokenizer_process_pretrain_infer(small, tmp_path, capsys):
    assert main(['tokenizer', 'train', '--input', small, '--vocab_size', '400', '--output_dir', tmp_path / 'tok']) == 0
    assert main(['process', '--input', small, '--output', tmp_path / 'd.bin', '--tokenizer_path', tmp_path / 'tok',
                 '--val_fraction', '0.1']) == 0
    out = capsys.readouterr().out
    assert '"not JSON": 1' in out and (tmp_path / 'd_val.bin').exists() and (tmp_path / 'd_stats.png').exists()
    cfg = tmp_path / 'config.yaml'                       # the guide's nested config.yaml, with flags on top
    cfg.write_text(f'data:\n  tokenizer_path: "{tmp_path / "tok"}"\n  train_data_path: "{tmp_path / "d_train.bin"}"\n'
                   f'  val_data_path: "{tmp_path / "d_val.bin"}"\ntraining:\n  epochs: 1\n  batch_size: 8\n  use_ema: true\n'
                   f'  early_stopping: true\n')
    assert main(['pretrain', '--config', cfg, '--out_dir', tmp_path / 'out', '--dim', '32', '--n_layers', '1', '--n_heads', '2',
                 '--n_kv_heads', '1', '--max_seq_len', '32', '--max_steps', '6', '--eval_interval', '3', '--samples', '0']) == 0
    s = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert s['steps'] == 6 and 'eval_loss' in s and (tmp_path / 'out' / 'ema_model' / 'model.safetensors').exists()
    (tmp_path / 'prompts.txt').write_text('Problem:\nTo find\n')
    capsys.readouterr()
    assert main(['infer', '--model_path', tmp_path / 'out' / 'best_model', '--batch_file', tmp_path / 'prompts.txt',
                 '--max_new_tokens', '5', '--greedy', 'true']) == 0
    assert '--- To find' in capsys.readouterr().out


def test_bad_flags_are_one_line(tmp_path, capsys):
    assert main(['process', '--input', tmp_path / 'missing.jsonl']) != 0
    err = capsys.readouterr().err
    assert 'missing.jsonl' in err and 'Traceback' not in err
    assert main(['pretrain', '--lr_scheduler', 'cosin']) != 0
    assert "'cosin'" in capsys.readouterr().err
