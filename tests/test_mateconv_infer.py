"mlprep infer: the interactive chat loop through a pseudo-terminal, an original .pth with its config, stream and batch."
import json, os, sys
from pathlib import Path
import pexpect
import pytest
import torch

from mlprep.data.models import save_pretrained_dir
from mlprep.mateconv.infer import InferConfig, TextGenerator, generation_config, run_infer
from mlprep.mateconv.model import _rope_perm, tiny_mateconv
from mlprep.mateconv.tokenizer import demo_mateconv_tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('m')
    tok = demo_mateconv_tokenizer()
    save_pretrained_dir(tiny_mateconv(vocab_size=len(tok), seed=5), tok, d / 'model')
    return d / 'model'


@pytest.mark.slow
def test_interactive_through_pty(model_dir):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1', MLPREP_PROGRESS='0', HF_HUB_OFFLINE='1')
    child = pexpect.spawn(sys.executable, ['-m', 'mlprep.mateconv.infer', '--interactive', 'true', '--model_path', str(model_dir),
                                           '--max_new_tokens', '6', '--greedy', 'true'], env=env, encoding='utf-8', timeout=120)
    child.expect('You: ')
    child.sendline('hello there')
    child.expect('Assistant: ')
    child.expect('You: ')
    child.sendline('clear')
    child.expect(r'\(history cleared\)')
    child.expect('You: ')
    child.sendline('second question')
    child.expect('Assistant: ')
    child.expect('You: ')
    child.sendline('q')
    child.expect('Bye')
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_original_pth_with_config(tmp_path, capsys):
    tok = demo_mateconv_tokenizer()
    m = tiny_mateconv(vocab_size=len(tok), seed=7)
    sd = {}
    for k, v in m.state_dict().items():          # back to the original layout (adjacent-pair RoPE rows)
        k = k.removeprefix('model.')
        if k.endswith('attention.wq.weight'): v = v[torch.argsort(_rope_perm(4, 16))]
        if k.endswith('attention.wk.weight'): v = v[torch.argsort(_rope_perm(2, 16))]
        sd[k] = v
    torch.save(sd, tmp_path / 'pretrain_64.pth')
    (tmp_path / 'lm.json').write_text(json.dumps(dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2)))
    s = run_infer(InferConfig.from_cli(['--model_path', str(tmp_path / 'pretrain_64.pth'), '--model_config', str(tmp_path / 'lm.json'),
                                        '--prompt', 'Problem:', '--greedy', 'true', '--max_new_tokens', '8', '--stream', 'true']))
    expected = TextGenerator(m, tok).generate('Problem:', generation_config(max_new_tokens=8, greedy=True))
    assert s['results'][0]['completion'] == expected
    assert 'Problem:' + expected in capsys.readouterr().out          # streamed to stdout


def test_sampling_flags_reach_generate(model_dir):
    s = run_infer(InferConfig.from_cli(['--model_path', str(model_dir), '--prompt', 'The', '--max_new_tokens', '20', '--temperature', '1.0',
                                        '--top_k', '5', '--top_p', '0.9', '--repetition_penalty', '1.3', '--no_repeat_ngram_size', '2']))
    tok = demo_mateconv_tokenizer()
    ids = tok(s['results'][0]['completion'])['input_ids']
    grams = [tuple(ids[i:i + 2]) for i in range(len(ids) - 1)]
    assert len(grams) == len(set(grams)) or len(ids) < 3


def test_bad_inputs():
    from mlprep.config import ConfigError
    with pytest.raises(ConfigError, match='batch_file not found'): InferConfig.from_dict(dict(batch_file='nope.txt'))
    with pytest.raises(ConfigError, match='model_path not found'): InferConfig.from_dict(dict(model_path='nope.pth'))
