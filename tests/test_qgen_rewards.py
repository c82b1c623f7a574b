"""Questions-Gen reward calculator: the issue's behaviours, the history across a restart, TRL reward-function use."""
import json, subprocess, sys, textwrap, time
from pathlib import Path

import pytest

from mlprep.qgen.rewards import RewardCalculator, _cached_counts, read_history, synthetic_questions

HARD = ('Let n be a positive integer. Prove that for all positive integers n, n^5 - n is divisible by 30, '
        'and determine all n such that n^2 + 1 divides n^5 + 1.')


def test_near_duplicate_of_history_is_penalised():
    calc = RewardCalculator(log_every=0)
    history = synthetic_questions(50) + ['Prove that the square root of 2 is irrational.']
    d = calc.breakdown('Prove that the square root of 2 is irrational!', history, None)
    assert d['penalised'] and d['similarity'] > 0.85
    assert abs(d['reward'] - 0.3 * calc.combine({**d, 'similarity': 0.0})) < 1e-12
    far = calc.breakdown('Determine all functions f with f(x + y) = f(x) + f(y) for every real x and y.', history, None)
    assert not far['penalised'] and far['novelty'] > 0.5


def test_identical_group_has_zero_diversity():
    calc = RewardCalculator(log_every=0)
    rewards = calc(prompts=['Write a problem:'] * 8, completions=[HARD] * 8)
    assert len(rewards) == 8 and all(r['diversity'] == 0.0 for r in calc.last)
    assert calc.calculate_diversity(HARD, [HARD] * 8) == 0.0


def test_olympiad_proof_outscores_trivial_arithmetic():
    calc = RewardCalculator(log_every=0)
    hard, easy = calc.breakdown(HARD, [], [HARD]), calc.breakdown('What is 2+3?', [], ['What is 2+3?'])
    assert hard['reward'] > easy['reward'] + 0.3
    for k in ('difficulty', 'novelty', 'rigor', 'diversity'): assert 0.0 <= hard[k] <= 1.0 and 0.0 <= easy[k] <= 1.0


def test_history_survives_a_restart(tmp_path):
    "A first process scores questions and exits; a second one started on the same file remembers them."
    path = tmp_path / 'history.json'
    code = textwrap.dedent(f"""
        from mlprep.qgen.rewards import RewardCalculator
        c = RewardCalculator(history_path={str(path)!r}, history_size=10, log_every=0)
        c(prompts=['p'] * 12, completions=[f'Find all n such that n^2 + {{i}} is prime?' for i in range(12)])
    """)
    subprocess.run([sys.executable, '-c', code], check=True)
    calc = RewardCalculator(history_path=path, history_size=10, log_every=0)
    assert calc.history == [f'Find all n such that n^2 + {i} is prime?' for i in range(2, 12)]
    assert calc.breakdown('Find all n such that n^2 + 11 is prime?')['penalised']
    assert json.loads(path.read_text())['version'] == 2


def test_bad_history_files_are_survived(tmp_path):
    (tmp_path / 'latin1.json').write_bytes('["Trouvez x tel que x = 4, déjà vu?"]'.encode('latin-1'))
    calc = RewardCalculator(history_path=tmp_path / 'latin1.json', log_every=0)
    assert len(calc.history) == 1 and 'Trouvez' in calc.history[0]
    (tmp_path / 'old.json').write_text(json.dumps([{'question': 'Old format question?'}, 'Plain old?']))
    assert read_history(tmp_path / 'old.json') == ['Old format question?', 'Plain old?']
    (tmp_path / 'garbage.json').write_bytes(b'\x00\x01\x02')
    calc = RewardCalculator(history_path=tmp_path / 'garbage.json', log_every=0)
    calc(prompts=['p'], completions=['Find x?'])                          # scoring and saving work after it
    assert read_history(tmp_path / 'garbage.json')[-1] == 'Find x?'


def test_group_of_8_against_1000_history_reuses_the_index():
    "No refit: scoring a group tokenizes only its 8 new questions, not the 1000 of the history (speed: bench/rewards.py)."
    calc = RewardCalculator(log_every=0)
    calc.add_to_history(synthetic_questions(1000, seed=1))
    calc(prompts=['p'] * 8, completions=synthetic_questions(8, seed=2))
    group = synthetic_questions(8, seed=3)
    before = _cached_counts.cache_info().misses
    t0 = time.perf_counter()
    rewards = calc(prompts=['p'] * 8, completions=group)
    dt = time.perf_counter() - t0
    assert _cached_counts.cache_info().misses - before <= 8
    assert len(rewards) == 8 and all(0 <= r <= 1 for r in rewards)
    print(f'group of 8 vs 1000 history: {dt * 1000:.1f} ms')


def test_trl_reward_function_signature_and_metrics():
    calc = RewardCalculator(log_every=1)
    logged = {}
    msgs = lambda t: [{'role': 'assistant', 'content': t}]
    out = calc(prompts=[[{'role': 'user', 'content': 'a'}]] * 2 + [[{'role': 'user', 'content': 'b'}]] * 2,
               completions=[msgs(HARD), msgs('What is 2+3?'), msgs(''), msgs('<think>x</think>Find all primes p?')],
               completion_ids=None, trainer_state=None, log_extra=lambda *a: None, log_metric=lambda k, v: logged.__setitem__(k, v))
    assert len(out) == 4 and out[2] == 0.0 and calc.bad['empty'] == 1
    assert {'qgen/difficulty', 'qgen/novelty', 'qgen/rigor', 'qgen/diversity', 'qgen/reward', 'qgen/reward_std'} <= set(logged)
    assert calc.__name__ == 'qgen_reward'
