"""The evals capability: verified pairs from a hand-made datagen output (both record formats), math_eval on a tiny model,
and one clear error line for each kind of bad input."""
import json

import pytest

from mlprep.evals.math_eval import MathEvalConfig, math_eval
from mlprep.evals.pairs import PairsConfig, make_pairs
from tests.test_cli_errors import one_line_error
from tests.test_stages import mlprep


def chat(prompt, reply, **kw):
    return json.dumps(dict(messages=[dict(role='user', content=prompt), dict(role='assistant', content=reply)], **kw))


def test_pairs_with_k_responses_per_prompt(tmp_path):
    "K = 3 records (prompt_idx, response_idx, answer); α method from the diagnostics file; bad rows counted."
    gen = tmp_path / 'gen.jsonl'
    rows = [chat('What is 2 + 3?', r'\boxed{5}', sample_idx=0, prompt_idx=0, response_idx=0, answer='5'),
            chat('What is 2 + 3?', 'The answer is 6.', sample_idx=1, prompt_idx=0, response_idx=1, answer='5'),
            chat('What is 2 + 3?', 'so 2 + 3 = 5', sample_idx=2, prompt_idx=0, response_idx=2, answer='5'),
            chat('What is 7 - 4?', 'The answer is 3.', sample_idx=3, prompt_idx=1, response_idx=0, answer='3'),
            chat('What is 7 - 4?', r'\boxed{3}', sample_idx=4, prompt_idx=1, response_idx=1, answer='3'),
            chat('What is 7 - 4?', 'It is 3', sample_idx=5, prompt_idx=1, response_idx=2, answer='3'),
            chat('Name a color.', 'Blue.', sample_idx=6, prompt_idx=2, response_idx=0, answer=None),
            '{"messages": [', '[1, 2]', json.dumps(dict(messages='hi', sample_idx=9))]
    gen.write_text('\n'.join(rows) + '\n')
    (tmp_path / 'gen.diagnostics.jsonl').write_text(''.join(
        json.dumps(dict(sample_idx=i, alpha_method='kl_symmetry' if i < 3 else 'fixed')) + '\n' for i in range(7)))
    rep = make_pairs(PairsConfig(input=str(gen), output_dir=str(tmp_path / 'out')))
    assert (rep['responses'], rep['checked'], rep['correct'], rep['pairs']) == (7, 6, 5, 2)
    assert rep['no_pair'] == {'all correct': 1, 'no verified answer': 1}
    assert rep['bad_rows']['counts'] == {'not JSON': 1, 'not an object': 1, "no 'messages' list": 1}
    assert rep['by_alpha_method']['kl_symmetry']['correct_rate'] == pytest.approx(2 / 3, abs=1e-3)
    assert rep['by_alpha_method']['fixed']['correct'] == 3
    pairs = [json.loads(l) for l in (tmp_path / 'out' / 'pairs.jsonl').read_text().splitlines()]
    assert [(p['chosen_idx'], p['rejected_idx'], p['answer']) for p in pairs] == [(0, 1, '5'), (2, 1, '5')]
    saved = json.loads((tmp_path / 'out' / 'pairs_report.json').read_text())
    assert saved['pairs'] == 2 and saved['no_pair'] == rep['no_pair']


def test_pairs_answers_from_the_dataset_datagen_read(tmp_path):
    "K = 1 records carry no answer: it comes from the dataset named in OUTPUT.settings.json, matched by prompt text."
    data = tmp_path / 'problems.jsonl'
    data.write_text(json.dumps(dict(problem='What is 2 + 3?', solution='5', answer='5')) + '\n'
                    + json.dumps(dict(problem='What is 1/2 + 1/4?', solution='3/4', answer='3/4')) + '\n')
    gen = tmp_path / 'gen.jsonl'
    gen.write_text('\n'.join([chat('What is 2 + 3?', r'\boxed{5}', sample_idx=0), chat('What is 2 + 3?', '4', sample_idx=1),
                              chat('What is 1/2 + 1/4?', r'\boxed{\frac{3}{4}}', sample_idx=2)]) + '\n')
    (tmp_path / 'gen.settings.json').write_text(json.dumps(dict(settings=dict(dataset=str(data), dataset_adapter='deepscaler',
                                                                               alpha_method='entropy'))))
    rep = make_pairs(PairsConfig(input=str(gen), output_dir=str(tmp_path / 'out')))
    assert (rep['checked'], rep['correct'], rep['pairs']) == (3, 2, 1)
    assert rep['no_pair'] == {'all correct': 1} and list(rep['by_alpha_method']) == ['entropy']


def test_math_eval_on_a_tiny_model(tmp_path):
    from mlprep.data.tiny import tiny_model
    from mlprep.evals.tiny_math import math_problems
    tiny_model('llama', hidden_size=32, num_layers=1, path=tmp_path / 'm')
    held = tmp_path / 'heldout.jsonl'
    held.write_text(''.join(json.dumps(dict(problem=p['problem'], answer=p['answer'])) + '\n' for p in math_problems(5, 'heldout')))
    s = math_eval(MathEvalConfig(model=str(tmp_path / 'm'), base_model=str(tmp_path / 'm'), problems=str(held), num_samples=3,
                                 max_new_tokens=6, device='cpu', output_dir=str(tmp_path / 'out')))
    policy, base = s['results']
    assert policy['greedy'] == base['greedy'] and 0 <= policy['greedy'] <= 1          # the same model, greedy: the same answers
    assert policy['pass@1'] <= policy['pass@2'] <= policy['pass@3']
    assert (tmp_path / 'out' / 'math_eval.png').stat().st_size > 1000
    table = (tmp_path / 'out' / 'math_eval.md').read_text()
    assert table.count('\n') == 4 and 'pass@3' in table and json.loads((tmp_path / 'out' / 'math_eval.json').read_text())['results']


@pytest.mark.slow
def test_bad_input_gets_one_error_line(tmp_path):
    one_line_error(mlprep('pairs', '--input', tmp_path / 'missing.jsonl', '--output_dir', tmp_path / 'o'), 'missing.jsonl')
    one_line_error(mlprep('math-eval', '--problems', 'p.jsonl'), '--model')
    one_line_error(mlprep('math-eval', '--model', tmp_path, '--problems', tmp_path / 'nope.jsonl', '--output_dir', tmp_path / 'o'), 'nope.jsonl')
    one_line_error(mlprep('tiny-math-pair', '--hidden_size', '30'), 'hidden_size=30')
