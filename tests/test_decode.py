"""mlprep.sampling.decode beyond the notebook's examples: more architectures, sampling, eos, log-probs, the trained pair, the benchmark script."""
import math, re, subprocess, sys
from pathlib import Path

import pytest
import torch

from mlprep.sampling.decode import (check_tokenizers, decode_completions, encode_prompt_pair, encode_prompts, generate_mixture,
                                    generate_mixture_nocache)
from mlprep.sampling.mixture import SamplingParams
from mlprep.data.tiny import IM_END, demo_tokenizer, tiny_model

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ['What is 2 + 3?', 'Hi', 'Write one sentence about the sea and the wind.', 'Name a colour.']


@pytest.fixture(scope='module')
def tok(): return demo_tokenizer()

@pytest.fixture(scope='module', autouse=True)
def one_thread():
    "Tiny models gain nothing from threads and lose a lot on a shared CPU."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def pair(tok, arch='llama', **kw):
    return [tiny_model(arch, tok, seed=s, initializer_range=0.5, **kw) for s in (1, 2)]


@pytest.mark.parametrize('arch', ['qwen2', 'mistral'])
def test_cache_equals_nocache_other_architectures(tok, arch):
    theta, target = pair(tok, arch)
    theta_batch, target_batch, _ = encode_prompt_pair(tok, tok, PROMPTS)
    kw = dict(params=SamplingParams('kl_symmetry', temperature=0), max_new_tokens=16, eos_token_ids=())
    assert torch.equal(generate_mixture(theta, target, theta_batch, target_batch, **kw).tokens,
                       generate_mixture_nocache(theta, target, theta_batch, target_batch, **kw).tokens)


def test_sliding_window_models_decode_past_their_window(tok):
    """A sliding-window model (mistral, window 4 positions) has no hard length limit besides its positions: its cache
    keeps the last window, so the mixture decodes far past the window, equal to the no-cache reference (which masks
    by the same window) and refused by nothing."""
    theta, target = pair(tok, 'mistral', sliding_window=4)
    assert theta.config.sliding_window == 4
    theta_batch, target_batch, _ = encode_prompt_pair(tok, tok, PROMPTS)
    kw = dict(params=SamplingParams('kl_symmetry', temperature=0), max_new_tokens=16, eos_token_ids=())
    cached = generate_mixture(theta, target, theta_batch, target_batch, **kw).tokens
    assert cached.shape[1] == 16
    assert torch.equal(cached, generate_mixture_nocache(theta, target, theta_batch, target_batch, **kw).tokens)
    full = generate_mixture(*pair(tok, 'mistral', sliding_window=None), theta_batch, target_batch, **kw).tokens
    assert not torch.equal(cached, full)               # the window really is in force: full attention decodes otherwise

def test_sampling_cache_equals_nocache_with_same_seed(tok):
    "With one generator seed, sampling (temperature, top-p) draws the same tokens with and without the caches."
    theta, target = pair(tok)
    theta_batch, target_batch, _ = encode_prompt_pair(tok, tok, PROMPTS)
    outs = [f(theta, target, theta_batch, target_batch, SamplingParams('ess_balance', temperature=0.8, top_p=0.9), max_new_tokens=16,
              eos_token_ids=(), generator=torch.Generator().manual_seed(7))
            for f in (generate_mixture, generate_mixture_nocache)]
    assert torch.equal(outs[0].tokens, outs[1].tokens)
    assert len(set(outs[0].tokens.flatten().tolist())) > 16  # it did sample, not collapse onto one token


def test_token_logprobs_match_a_teacher_forced_pass(tok):
    "log π_θ, log π_t of each chosen token, from the cached loop, equal one forward pass of each model over prompt + completion."
    theta, target = pair(tok)
    theta_batch, target_batch, _ = encode_prompt_pair(tok, tok, PROMPTS)
    out = generate_mixture(theta, target, theta_batch, target_batch, max_new_tokens=10, eos_token_ids=(),
                           return_token_logprobs=True, generator=torch.Generator().manual_seed(0))
    for model, batch, key in ((theta, theta_batch, 'logp_theta_tokens'), (target, target_batch, 'logp_target_tokens')):
        ids = torch.cat([batch['input_ids'], out.tokens], 1)
        mask = torch.cat([batch['attention_mask'], torch.ones_like(out.tokens)], 1)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp_min(0)).logits
        T = batch['input_ids'].shape[1]
        logp = logits[:, T - 1:-1].float().log_softmax(-1).gather(-1, out.tokens[..., None])[..., 0]
        for i, s in enumerate(out.samples):
            assert torch.allclose(torch.tensor(s[key]), logp[i], atol=1e-4), key
    for s in out.samples:  # log q* of a sampled token is a log-probability, and finite; at the defaults it is the sampling one
        assert all(-math.inf < lq <= 0 for lq in s['logq_tokens'])
        assert torch.allclose(torch.tensor(s['logq_sampled_tokens']), torch.tensor(s['logq_tokens']), atol=1e-5)


def test_huge_eos_logit_stops_every_row_at_once(tok):
    "A target that always says eos: any mixture weight on it stops every row after one token; α = 1 ignores it."
    theta, target = pair(tok)
    head = torch.nn.Linear(target.config.hidden_size, target.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.copy_(target.lm_head.weight)
        head.bias.zero_()[tok.eos_token_id] = 1e4
    target.lm_head = head
    theta_batch, target_batch, _ = encode_prompt_pair(tok, tok, PROMPTS)
    eos = [tok.eos_token_id]
    out = generate_mixture(theta, target, theta_batch, target_batch, SamplingParams('fixed', fixed_alpha=0.5, temperature=0),
                           max_new_tokens=20, eos_token_ids=eos)
    assert out.steps == 1 and out.lengths.tolist() == [1] * 4 and out.tokens[:, 0].tolist() == eos * 4
    assert [s['finish_reason'] for s in out.samples] == ['eos'] * 4
    assert decode_completions(tok, out) == [''] * 4
    out = generate_mixture(theta, target, theta_batch, target_batch, SamplingParams('fixed', fixed_alpha=1.0, temperature=0),
                           max_new_tokens=20, eos_token_ids=eos)
    assert out.steps == 20 and [s['finish_reason'] for s in out.samples] == ['length'] * 4


def test_encode_message_lists(tok):
    messages = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
    batch = encode_prompts(tok, [messages, 'Hello'], chat_template=True)
    ids = batch['input_ids'][0][batch['attention_mask'][0] == 1]
    assert tok.decode(ids) == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    with pytest.raises(TypeError, match='raw prompt must be a string'): encode_prompts(tok, [messages], chat_template=False)


def test_check_tokenizers_logs_a_padded_extra_range(tok, caplog):
    "A tokenizer with extra tokens after the shared range is accepted; the shared size excludes them."
    bigger = demo_tokenizer()
    bigger.add_tokens(['<extra_a>', '<extra_b>'])
    assert check_tokenizers(tok, bigger) == len(tok)
    assert 'never sampled' in caplog.text


@pytest.mark.slow
def test_trained_pair():
    "The tiny trained pair (trained and cached under outputs/ on first use): endpoints, solver targets, real eos."
    from mlprep.data.models import load_model, load_tokenizer
    from mlprep.data.tiny import tiny_pair
    theta_path, target_path = tiny_pair()
    tok_theta, tok_target = load_tokenizer(theta_path), load_tokenizer(target_path)
    V = check_tokenizers(tok_theta, tok_target)
    theta, target = load_model(theta_path, device='cpu'), load_model(target_path, device='cpu')
    prompts = ['What is 12 + 7?', 'Tell me about rivers.', 'Give me a tip for studying.', 'Hello!']
    theta_batch, target_batch, _ = encode_prompt_pair(tok_theta, tok_target, prompts)
    eos = [tok_target.eos_token_id, tok_target.convert_tokens_to_ids(IM_END)]
    for alpha, model, batch in ((1.0, theta, theta_batch), (0.0, target, target_batch)):
        ours = generate_mixture(theta, target, theta_batch, target_batch, SamplingParams('fixed', fixed_alpha=alpha, temperature=0),
                                max_new_tokens=40, eos_token_ids=eos, pad_token_id=tok_theta.pad_token_id, vocab_size=V)
        ref = model.generate(**{k: batch[k] for k in ('input_ids', 'attention_mask')}, do_sample=False, max_new_tokens=40,
                             eos_token_id=eos, pad_token_id=tok_theta.pad_token_id)[:, batch['input_ids'].shape[1]:]
        assert torch.equal(ours.tokens, ref)
    # the chat-tuned target ends its answers: with α = 0 every row stops at an eos well before 40 tokens
    assert all(s['finish_reason'] == 'eos' for s in ours.samples)
    kw = dict(max_new_tokens=32, eos_token_ids=eos, vocab_size=V)
    for method, key in (('kl_symmetry', 'kl_gap_mean'), ('ess_balance', 'ess_ratio_mean')):
        cached = generate_mixture(theta, target, theta_batch, target_batch, SamplingParams(method, temperature=0), **kw)
        exact = generate_mixture_nocache(theta, target, theta_batch, target_batch, SamplingParams(method, temperature=0), **kw)
        assert torch.equal(cached.tokens, exact.tokens)
        for s in cached.samples:
            assert s['n_unconverged'] == 0 and 0 < s['alpha_mean'] < 1 and s['alpha_std'] > 0
            assert (s[key] < 1e-3) if key == 'kl_gap_mean' else abs(s[key] - 1) < 1e-2, (method, s[key])


def test_benchmark_script_runs():
    "bench/sampler.py end to end on tiny models (a smoke test: no timing is checked)."
    r = subprocess.run([sys.executable, str(ROOT / 'bench' / 'sampler.py'), '--small', '--quick', '--no_trl',
                        '--batch_size', '2', '--new_tokens', '4', '--prompt_tokens', '8'],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    last = r.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r'ratio_vs_single=[\d.]+ ratio_nocache=[\d.]+ overhead_vs_bare=[\d.]+', last), last
    assert sum(line[:1].isdigit() for line in r.stdout.splitlines()) == 9  # one row per method (2, 2b, 8, 8b), TRL skipped
    assert "# LoRA target: one batched forward" in r.stdout


def test_sampled_logprobs_differ_from_q_star_with_temperature_and_top_k(tok):
    "With temperature/top-k the tokens come from q* sharpened and cut: `logq_sampled_tokens` is that log-prob, not q*'s."
    theta, target = pair(tok)
    theta_batch, target_batch, _ = encode_prompt_pair(tok, tok, PROMPTS)
    out = generate_mixture(theta, target, theta_batch, target_batch, SamplingParams(temperature=0.5, top_k=5), max_new_tokens=6,
                           eos_token_ids=(), return_token_logprobs=True, generator=torch.Generator().manual_seed(0))
    for s in out.samples:
        assert all(ls > lq for ls, lq in zip(s['logq_sampled_tokens'], s['logq_tokens']))  # sharper and cut: more mass per drawn token


def test_per_row_generators_make_rows_independent_of_their_batch(tok):
    "One generator per row: a prompt's sample is the same alone or in a batch (greedy-free sampling, same seed)."
    theta, target = pair(tok)
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]
    tb, gb, _ = encode_prompt_pair(tok, tok, PROMPTS[:2])
    both = generate_mixture(theta, target, tb, gb, max_new_tokens=8, eos_token_ids=(), generator=gens([11, 12]))
    tb1, gb1, _ = encode_prompt_pair(tok, tok, PROMPTS[1:2])
    alone = generate_mixture(theta, target, tb1, gb1, max_new_tokens=8, eos_token_ids=(), generator=gens([12]))
    assert torch.equal(both.tokens[1], alone.tokens[0])


def test_decode_loop_passes_cache_not_the_deprecated_past_key_values(tok):
    "transformers 5 deprecates `past_key_values` (removed in 5.40): the loop passes the cache as `cache`."
    theta, target = pair(tok)
    seen = []
    for m in (theta, target):
        forward = m.forward
        def spy(*a, _f=forward, **kw):
            seen.append(set(kw)); return _f(*a, **kw)
        m.forward = spy
    theta_batch, target_batch, _ = encode_prompt_pair(tok, tok, PROMPTS[:2])
    generate_mixture(theta, target, theta_batch, target_batch, max_new_tokens=3, eos_token_ids=())
    assert seen and all('cache' in kw and 'past_key_values' not in kw for kw in seen)


def test_a_prompt_that_does_not_fit_the_positions_is_refused_before_the_first_forward(tok):
    theta, target = pair(tok, max_position_embeddings=32)
    theta_batch, target_batch, _ = encode_prompt_pair(tok, tok, PROMPTS)
    with pytest.raises(ValueError, match='positions'):
        generate_mixture(theta, target, theta_batch, target_batch, max_new_tokens=30)


def test_chi_square_helper_works_without_scipy(monkeypatch):
    "mlprep.testing.chi_square_gof falls back to a normal approximation (and its `math` import) without scipy."
    from mlprep.testing import chi_square_gof
    monkeypatch.setitem(sys.modules, 'scipy', None); monkeypatch.setitem(sys.modules, 'scipy.stats', None)
    probs = torch.full((10,), 0.1)
    p, df = chi_square_gof(torch.full((10,), 100), probs)
    assert df == 9 and p > 0.5
    p, _ = chi_square_gof(torch.tensor([300] + [78] * 9), probs)
    assert p < 1e-6


def test_entropy_q_in_log_space_at_the_extreme():
    "V = 6400, logits at scale 40, α = 1: π_t's log-probs underflow float32 on tokens q weights; entropy_q stays exact."
    from mlprep.sampling.mixture import mixture_step
    from mlprep.testing import random_logits
    theta, target = random_logits(4, 6400, scale=40, seed=1), random_logits(4, 6400, scale=40, seed=2)
    step = mixture_step(theta, target, SamplingParams('fixed', fixed_alpha=1.0))
    ref = -(theta.double().softmax(-1) * theta.double().log_softmax(-1)).sum(-1)
    assert torch.allclose(step.diagnostics['entropy_q'].double(), ref, atol=1e-4)
