"""Benchmark: what sampling from the mixture q* of two models costs, next to the alternatives.

All methods run in one process on the same two models, prompts, batch and number of new tokens (eos is disabled for
every method, so each generates exactly `--new_tokens` tokens per row):

  1. hf_generate     HF `generate` of π_θ alone, sampling: the single-model reference
  2. bare_loop       the two models' cached forward passes with a fixed mixture and nothing else: the floor (with
                     mlprep's in-place growing KV cache, so that the ratio to it measures the mixture's own cost)
  2b. bare_loop      the same with transformers' DynamicCache (which copies the cache at every step), for context
  3. mlprep_fixed    mlprep.sampling.decode.generate_mixture, alpha_method='fixed'
  4. mlprep_kl       ... alpha_method='kl_symmetry'
  5. mlprep_ess      ... alpha_method='ess_balance'
  6. exact_nocache   the exact mixture without KV caches (both models re-run the whole prefix each step; fixed α)
  7. trl_gmw         TRL's GeometricMixtureWrapper (last shipped in TRL 1.13.0; installed into outputs/bench/ on first use)
  8. lora_joint      π_t = π_θ + a LoRA adapter (r 16, every linear layer): mlprep.sampling.decode.generate_mixture_adapters, one
                     batched forward of 2B rows with peft's mixed adapters (kl_symmetry)
  8b. lora_two       the same π_t merged into a second model: generate_mixture with two forwards (kl_symmetry)

    python bench/sampler.py                 # the full run (a few minutes on 2 CPU cores)
    python bench/sampler.py --quick         # 32 new tokens, one timed repeat
    python bench/sampler.py --functions     # instead: the mixture functions alone, ms per call and ratios

Timing is wall-clock (time.perf_counter) of whole calls, prefill included; each method is warmed up once, then the
methods are timed round-robin (so that load from other processes hits all of them alike) and the best of `--repeats`
runs is reported (the median too). Peak memory: on CUDA, torch.cuda.max_memory_allocated above
what was allocated before the call; on CPU, the growth of the process's peak resident set size (VmHWM, reset through
/proc/self/clear_refs after returning freed heap to the OS with malloc_trim) above its resident size before the call:
memory the call newly touched, allocator and Python objects included. The last line is

    ratio_vs_single=X ratio_nocache=Y overhead_vs_bare=Z

with X = time(4)/time(1), Y = time(6)/time(3), Z = time(4)/time(2).
"""
from __future__ import annotations
import argparse, ast, ctypes, gc, importlib, os, platform, statistics, subprocess, sys, time
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
os.environ.setdefault('TRL_EXPERIMENTAL_SILENCE', '1')
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))

import torch
import transformers
from transformers import DynamicCache, GenerationConfig

from mlprep.core import get_device, get_dtype
from mlprep.sampling.decode import _growing_cache, generate_mixture, generate_mixture_adapters, generate_mixture_nocache
from mlprep.sampling.mixture import (ALPHA_METHODS, SamplingParams, compute_alpha, mix_logprobs, mixture_step, sample_next,
                                    token_diagnostics)
from mlprep.testing import random_logits
from mlprep.data.tiny import demo_tokenizer, tiny_model

TRL_VERSION = '1.13.0'  # the last TRL release with GeometricMixtureWrapper (trl/experimental/nash_md); 1.14.0 removed it
TRL_DIR = ROOT / 'outputs' / 'bench' / f'trl{TRL_VERSION.replace(".", "")}'


# --- the models and prompts ---------------------------------------------------------------------------------------

def make_models(device, dtype, vocab_size=6400, hidden=384, layers=6, heads=6, intermediate=1024):
    "Two randomly initialised llamas of about 15M parameters (seeds 0 and 1) that share the demo tokenizer's ids."
    tok = demo_tokenizer()
    kw = dict(hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=intermediate,
              vocab_size=vocab_size, tie_word_embeddings=False)
    models = [tiny_model('llama', tok, seed=s, **kw).to(device, dtype).eval() for s in (0, 1)]
    for m in models: m.generation_config.eos_token_id = None  # never stop early: every method makes all new tokens
    return models, tok


# --- the methods ----------------------------------------------------------------------------------------------------

@torch.no_grad()
def hf_generate(theta, ids, new_tokens, generator=None):
    "1. `generate` of theta alone, plain sampling (no top-k, no top-p), eos disabled."
    config = GenerationConfig(do_sample=True, max_new_tokens=new_tokens, min_new_tokens=new_tokens, temperature=1.0,
                              top_k=0, top_p=1.0, eos_token_id=None, pad_token_id=3)
    return theta.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)[:, ids.shape[1]:]

@torch.no_grad()
def bare_loop(theta, target, ids, new_tokens, alpha=0.5, generator=None, growing=True):
    "2. The floor: both models' cached forwards, a fixed geometric mixture, inverse-CDF sampling, nothing else."
    if growing: theta_cache, target_cache = (_growing_cache(m, ids.shape[1] + new_tokens) for m in (theta, target))
    else: theta_cache, target_cache = DynamicCache(config=theta.config), DynamicCache(config=target.config)
    theta_logits = theta(input_ids=ids, cache=theta_cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    target_logits = target(input_ids=ids, cache=target_cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    tokens = []
    for step in range(new_tokens):
        logq = alpha * theta_logits.float().log_softmax(-1) + (1 - alpha) * target_logits.float().log_softmax(-1)
        token = sample_next(logq, generator=generator)[:, None]  # one uniform per row, the cheapest exact draw
        tokens.append(token)
        if step == new_tokens - 1: break
        theta_logits = theta(input_ids=token, cache=theta_cache, use_cache=True).logits[:, -1]
        target_logits = target(input_ids=token, cache=target_cache, use_cache=True).logits[:, -1]
    return torch.cat(tokens, 1)

def mlprep_method(alpha_method, cached=True):
    "3-6. mlprep's decode loop (diagnostics included, as in data generation); `cached=False` is the exact no-cache mixture."
    def run(theta, target, ids, new_tokens, generator=None):
        batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids))
        generate = generate_mixture if cached else generate_mixture_nocache
        return generate(theta, target, batch, batch, SamplingParams(alpha_method), max_new_tokens=new_tokens, eos_token_ids=(), vocab_size=theta.config.vocab_size, generator=generator).tokens
    return run

def lora_models(theta, rank=16):
    "theta + a random (non-zero) LoRA adapter on every linear layer: the peft model, and the adapter merged into a copy."
    import copy
    from peft import LoraConfig, get_peft_model
    config = LoraConfig(r=rank, lora_alpha=2 * rank, init_lora_weights=False,
                        target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'])
    torch.manual_seed(0)
    peft_model = get_peft_model(copy.deepcopy(theta), config).eval()
    return peft_model, copy.deepcopy(peft_model).merge_and_unload().eval()

def lora_joint(peft_model):
    "8. π_θ = the base, π_t = base + adapter, in one batched forward."
    def run(theta, target, ids, new_tokens, generator=None):
        batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids))
        return generate_mixture_adapters(peft_model, batch, batch, SamplingParams('kl_symmetry'), max_new_tokens=new_tokens,
                                         eos_token_ids=(), vocab_size=theta.config.vocab_size, generator=generator).tokens
    return run

def lora_two(merged):
    "8b. The same pair as two models (the adapter merged into a copy of theta)."
    def run(theta, target, ids, new_tokens, generator=None):
        return mlprep_method('kl_symmetry')(theta, merged, ids, new_tokens, generator)
    return run


# --- TRL's GeometricMixtureWrapper ---------------------------------------------------------------------------------

def _install_trl():
    "pip-install TRL 1.13.0 (no dependencies) into outputs/bench/ unless it is there."
    if (TRL_DIR / 'trl' / 'experimental' / 'nash_md' / 'nash_md_trainer.py').exists(): return
    print(f'installing trl=={TRL_VERSION} into {TRL_DIR} (once) ...', flush=True)
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target', str(TRL_DIR), f'trl=={TRL_VERSION}'],
                   check=True, capture_output=True, text=True, timeout=300)

def load_trl_wrapper():
    "TRL 1.13's GeometricMixtureWrapper class, imported from outputs/bench/ without disturbing the installed trl."
    _install_trl()
    saved = {k: v for k, v in sys.modules.items() if k == 'trl' or k.startswith('trl.')}
    for k in saved: del sys.modules[k]
    sys.path.insert(0, str(TRL_DIR))
    try:
        try:
            mod = importlib.import_module('trl.experimental.nash_md.nash_md_trainer')
            cls = mod.GeometricMixtureWrapper
            where = f'trl {importlib.import_module("trl").__version__} from {TRL_DIR}'
        except Exception as e:  # the trainer module may not import with this transformers: take the class alone
            src_path = TRL_DIR / 'trl' / 'experimental' / 'nash_md' / 'nash_md_trainer.py'
            tree = ast.parse(src_path.read_text())
            node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == 'GeometricMixtureWrapper')
            ns = dict(torch=torch, GenerationMixin=transformers.GenerationMixin)
            exec(compile(ast.Module([node], []), str(src_path), 'exec'), ns)
            cls, where = ns['GeometricMixtureWrapper'], f'the class source of {src_path} (module import failed: {e!r})'
    finally:
        sys.path.remove(str(TRL_DIR))
        for k in [k for k in sys.modules if k == 'trl' or k.startswith('trl.')]: del sys.modules[k]
        sys.modules.update(saved)
    return cls, where

def trl_method(wrapper_cls, alpha=0.5):
    "7. TRL's wrapper through `generate`; mixture_coef is the weight on the reference model, so it is 1 - α."
    def run(theta, target, ids, new_tokens, generator=None, do_sample=True):
        sampling = dict(temperature=1.0, top_k=0, top_p=1.0) if do_sample else {}
        config = GenerationConfig(do_sample=do_sample, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                  eos_token_id=None, pad_token_id=3, **sampling)
        wrapper = wrapper_cls(theta, target, config, mixture_coef=1 - alpha, device=theta.device)
        return wrapper.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)[:, ids.shape[1]:]
    return run

def check_trl_greedy(wrapper_cls, theta, target, ids, new_tokens):
    "Does the wrapper's greedy output equal the exact mixture's? Also: do its two models share one KV cache?"
    exact = generate_mixture_nocache(theta, target, dict(input_ids=ids), dict(input_ids=ids), SamplingParams('fixed', temperature=0),
                                     max_new_tokens=new_tokens, eos_token_ids=(),
                                     vocab_size=theta.config.vocab_size).tokens
    caches = []
    hooks = [m.register_forward_pre_hook(lambda mod, a, kw: caches.append(kw.get('cache', kw.get('past_key_values'))), with_kwargs=True)
             for m in (theta, target)]
    try: trl_tokens = trl_method(wrapper_cls)(theta, target, ids, new_tokens, do_sample=False)
    finally:
        for h in hooks: h.remove()
    equal = bool((trl_tokens == exact).all())
    same = (trl_tokens == exact).all(0)
    first_diff = int((~same).nonzero()[0, 0]) if not equal else None
    rows_same_first = int((trl_tokens[:, 0] == exact[:, 0]).sum())
    shared = len(caches) >= 2 and caches[0] is not None and caches[0] is caches[1]
    return equal, first_diff, rows_same_first, shared


# --- the mixture functions alone (what the notebook 10_mixture's 'Speed' section describes) -------------------------

def time_functions(threads=1, n=20):
    "ms per call, best of `n`, B = 8: each α method, mix_logprobs, token_diagnostics, sample_next, mixture_step."
    torch.set_num_threads(threads)
    def best_of(f):
        times = []
        for _ in range(n):
            t0 = time.perf_counter(); f(); times.append(time.perf_counter() - t0)
        return min(times) * 1e3
    print(f'# mixture functions: ms per call, best of {n}, B = 8, {threads} thread(s); "moderate": π_θ logits at scale 3 '
          f'against π_t at 1; "peaked": 10 against 0.3')
    for case, (s_theta, s_t) in (('moderate', (3, 1)), ('peaked', (10, 0.3))):
        for V in (6400, 152064):
            theta, target = random_logits(8, V, scale=s_theta, seed=21), random_logits(8, V, scale=s_t, seed=22)
            logq = mix_logprobs(theta, target, 0.5)
            fns = {m: (lambda m=m: compute_alpha(theta, target, m)) for m in ALPHA_METHODS}
            fns.update(mix_logprobs=lambda: mix_logprobs(theta, target, 0.5), token_diagnostics=lambda: token_diagnostics(theta, target, logq),
                       sample_next=lambda: sample_next(logq), multinomial=lambda: torch.multinomial(logq.exp(), 1),
                       mixture_step_kl=lambda: mixture_step(theta, target, 'kl_symmetry'))
            ms = {k: best_of(f) for k, f in fns.items()}
            print(f'{case:8} V={V:6}: ' + ', '.join(f'{k} {v:.2f}' for k, v in ms.items()) + ' ms')
            print(f'{case:8} V={V:6}: kl_symmetry/fixed={ms["kl_symmetry"] / ms["fixed"]:.1f} ess_balance/kl_symmetry='
                  f'{ms["ess_balance"] / ms["kl_symmetry"]:.2f} mixture_step/(compute_alpha+mix+diagnostics)='
                  f'{ms["mixture_step_kl"] / (ms["kl_symmetry"] + ms["mix_logprobs"] + ms["token_diagnostics"]):.2f} '
                  f'multinomial/sample_next={ms["multinomial"] / ms["sample_next"]:.1f}')


# --- timing and memory ----------------------------------------------------------------------------------------------

def _rss_kib(field):
    for line in open('/proc/self/status'):
        if line.startswith(field): return int(line.split()[1])
    return 0

class PeakMemory:
    "Peak memory a block adds: CUDA allocations, or else growth of the process's peak resident set (Linux)."
    def __init__(self, device): self.device, self.mib = device, float('nan')
    def __enter__(self):
        gc.collect()
        if self.device.type == 'cuda':
            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); self.base = torch.cuda.memory_allocated()
            return self
        try: ctypes.CDLL('libc.so.6').malloc_trim(0)
        except OSError: pass
        try:
            with open('/proc/self/clear_refs', 'w') as f: f.write('5')  # reset VmHWM to the current RSS
            self.base = _rss_kib('VmRSS:')
        except OSError: self.base = None
        return self
    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(); self.mib = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        elif self.base is not None: self.mib = (_rss_kib('VmHWM:') - self.base) / 1024

def run_timed(fn, theta, target, ids, new_tokens, device, seed):
    "One timed run: (seconds, peak MiB, tokens)."
    g = torch.Generator(device).manual_seed(seed)
    with PeakMemory(device) as mem:
        if device.type == 'cuda': torch.cuda.synchronize()
        t0 = time.perf_counter()
        tokens = fn(theta, target, ids, new_tokens, generator=g)
        if device.type == 'cuda': torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    if tokens.shape != (ids.shape[0], new_tokens):
        raise RuntimeError(f'expected {(ids.shape[0], new_tokens)} tokens, got {tuple(tokens.shape)}')
    return seconds, mem.mib, tokens


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='auto', help="auto, cpu, cuda, mps")
    p.add_argument('--dtype', default='float32', help='float32, bfloat16, float16 or auto')
    p.add_argument('--quick', action='store_true', help='32 new tokens and one timed repeat (unless given)')
    p.add_argument('--batch_size', type=int, default=8)
    p.add_argument('--new_tokens', type=int, default=None, help='new tokens per row (default 128, 32 with --quick)')
    p.add_argument('--prompt_tokens', type=int, default=32)
    p.add_argument('--repeats', type=int, default=None, help='timed runs per method (default 3, 1 with --quick)')
    p.add_argument('--nocache_repeats', type=int, default=1, help='timed runs of the two slow no-cache methods')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: 1 on CPU, where the 2 shared cores make more threads noisy)')
    p.add_argument('--no_trl', action='store_true', help='skip TRL\'s GeometricMixtureWrapper')
    p.add_argument('--no_lora', action='store_true', help='skip the LoRA-target rows (8, 8b)')
    p.add_argument('--small', action='store_true', help='tiny models (hidden 64, 2 layers): a smoke test of this script')
    p.add_argument('--functions', action='store_true', help='instead: time one call of each mixture function (B = 8, V = 6 400 and 152 064)')
    args = p.parse_args(argv)
    if args.functions: return time_functions(args.threads or 1)
    new_tokens = args.new_tokens or (32 if args.quick else 128)
    repeats = args.repeats or (1 if args.quick else 3)
    device = get_device(args.device)
    dtype = get_dtype(args.dtype, device)
    threads = args.threads or (1 if device.type == 'cpu' else torch.get_num_threads())
    torch.set_num_threads(threads)

    size = dict(hidden=64, layers=2, heads=4, intermediate=256) if args.small else {}
    (theta, target), tok = make_models(device, dtype, **size)
    n_params = sum(p.numel() for p in theta.parameters())
    ids = torch.randint(4, len(tok), (args.batch_size, args.prompt_tokens), generator=torch.Generator().manual_seed(0)).to(device)
    print(f'# mixture sampling benchmark: torch {torch.__version__}, transformers {transformers.__version__}, '
          f'{platform.processor() or platform.machine()}, device {device}'
          + (f' ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else f', {threads} thread(s) of {os.cpu_count()} cores'))
    print(f'# two llamas of {n_params / 1e6:.1f}M parameters each (vocab {theta.config.vocab_size}, hidden '
          f'{theta.config.hidden_size}, {theta.config.num_hidden_layers} layers), {dtype}; batch {args.batch_size}, '
          f'{args.prompt_tokens}-token prompts, {new_tokens} new tokens per row, eos disabled; best of {repeats} '
          f'({args.nocache_repeats} for the no-cache methods) after a warm-up', flush=True)

    methods = [('1 hf_generate (theta alone)', lambda th, ta, i, n, generator=None: hf_generate(th, i, n, generator)),
               ('2 bare_loop (floor)', bare_loop),
               ('2b bare_loop, DynamicCache', lambda *a, **k: bare_loop(*a, growing=False, **k)),
               ('3 mlprep fixed', mlprep_method('fixed')),
               ('4 mlprep kl_symmetry', mlprep_method('kl_symmetry')),
               ('5 mlprep ess_balance', mlprep_method('ess_balance')),
               ('6 exact no-cache (fixed)', mlprep_method('fixed', cached=False))]
    trl_note = None
    if not args.no_trl:
        try:
            wrapper_cls, where = load_trl_wrapper()
            methods.append(('7 TRL GeometricMixtureWrapper', trl_method(wrapper_cls)))
            print(f'# TRL GeometricMixtureWrapper: {where}', flush=True)
        except Exception as e:
            trl_note = f'skipped TRL GeometricMixtureWrapper: {type(e).__name__}: {e}'.splitlines()[0]
            print(f'# {trl_note}', flush=True)
    if not args.no_lora:
        peft_model, merged = lora_models(theta)
        methods += [('8 LoRA target, one forward', lora_joint(peft_model)), ('8b LoRA target, two forwards', lora_two(merged))]

    # warm up every method, then time them round-robin, so that load from other processes hits all of them alike
    for name, fn in methods: fn(theta, target, ids, 4 if name[0] in '67' else min(8, new_tokens), generator=torch.Generator(device).manual_seed(0))
    times, mems = {name: [] for name, _ in methods}, {name: [] for name, _ in methods}
    for r in range(max(repeats, args.nocache_repeats)):
        for name, fn in methods:
            if r >= (args.nocache_repeats if name[0] in '67' else repeats): continue
            seconds, mib, _ = run_timed(fn, theta, target, ids, new_tokens, device, seed=r + 1)
            times[name].append(seconds); mems[name].append(mib)
    rows, n = {}, args.batch_size * new_tokens
    print(f'{"method":32s} {"best s":>8s} {"median s":>9s} {"tokens/s":>9s} {"ms/step":>8s} {"peak MiB":>9s}')
    for name, _ in methods:
        best, median, mem = min(times[name]), statistics.median(times[name]), max(mems[name])
        rows[name.split()[0]] = best
        print(f'{name:32s} {best:8.3f} {median:9.3f} {n / best:9.1f} {1e3 * best / new_tokens:8.2f} {mem:+9.1f}')
    if '7' in rows:
        equal, first_diff, rows_same, shared = check_trl_greedy(wrapper_cls, theta, target, ids, min(new_tokens, 16))
        print(f'# TRL greedy == exact mixture greedy: {equal}' + (
            '' if equal else f' (first differing step {first_diff}; the first token agrees in {rows_same} of '
                             f'{args.batch_size} rows)') +
            f'; theta and target were handed the same KV cache object: {shared}')
        if shared:
            print('#   under transformers 5, generate() gives the wrapper one DynamicCache and the wrapper passes it to both '
                  'models; use_cache=False does not stop them writing to it, so each model attends to both models\' keys '
                  'and values (its own and the other\'s), and decoding is incremental, not the intended no-cache re-run')
    if '8' in rows:
        print(f'# LoRA target: one batched forward (peft mixed adapters) / two forwards = {rows["8"] / rows["8b"]:.3f}; '
              f'/ the two-model floor (2) = {rows["8"] / rows["2"]:.3f}')
    print(f'ratio_vs_single={rows["4"] / rows["1"]:.2f} ratio_nocache={rows["6"] / rows["3"]:.2f} '
          f'overhead_vs_bare={rows["4"] / rows["2"]:.3f}')


if __name__ == '__main__':
    main()
