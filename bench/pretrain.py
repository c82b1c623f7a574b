"""Training throughput of `mlprep pretrain` (MateConv on the HF Trainer) vs a bare PyTorch loop over the same model and
batches (the floor) vs HF `LlamaForCausalLM` of the same dimensions under the same Trainer. Side by side in one process.

    python bench/pretrain.py [--steps 40] [--dim 256] [--layers 4] [--seq 256] [--batch 8]

Last line: `pretrain_vs_bare=X mateconv_vs_llama=Y` (targets X >= 0.90, Y >= 0.95). Also an MFU estimate against the
measured matmul rate of this machine (no published peak for a CPU)."""
import argparse, math, os, tempfile, time
os.environ.setdefault('MLPREP_PROGRESS', '0')
import torch
from transformers import LlamaConfig, LlamaForCausalLM, get_cosine_schedule_with_warmup

from mlprep.core import set_seed
from mlprep.mateconv.model import MateConvConfig, MateConvForCausalLM
from mlprep.mateconv.pretrain import PretrainConfig, TokenWindows, demo_bin, train_pretrain
from mlprep.mateconv.tokenizer import demo_mateconv_tokenizer

ap = argparse.ArgumentParser()
ap.add_argument('--steps', type=int, default=30); ap.add_argument('--dim', type=int, default=128)
ap.add_argument('--layers', type=int, default=4); ap.add_argument('--seq', type=int, default=128); ap.add_argument('--batch', type=int, default=8)
ap.add_argument('--rounds', type=int, default=3, help='interleaved repetitions; the best of each is kept (shared machines are noisy)')
a = ap.parse_args()
torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '2')))

tok = demo_mateconv_tokenizer()
binp = demo_bin()
heads, kv = max(a.dim // 64, 2), max(a.dim // 128, 1)
common = dict(train_data_path=str(binp), dim=a.dim, n_layers=a.layers, n_heads=heads, n_kv_heads=kv, max_seq_len=a.seq,
              batch_size=a.batch, max_steps=a.steps, eval_interval=10**6, log_interval=10**6, samples=0, learning_rate=3e-4,
              warmup_steps=2, sampling='random', save_total_limit=1)
mconf = MateConvConfig(dim=a.dim, n_layers=a.layers, n_heads=heads, n_kv_heads=kv, vocab_size=len(tok), max_seq_len=a.seq)
n_params = sum(p.numel() for p in MateConvForCausalLM(mconf).parameters())
flops_per_token = 6 * n_params + 12 * a.layers * a.seq * a.dim          # Kaplan et al.: dense + attention
tokens_per_step = a.batch * a.seq

def trainer_run(model=None):
    with tempfile.TemporaryDirectory() as d:
        s = train_pretrain(PretrainConfig.from_dict({**common, 'out_dir': d}), model=model)
    return s['tokens_per_s']

def bare_loop():
    "The floor: the same model, windows, optimizer, clipping and schedule, in a plain loop."
    set_seed(1337)
    model = MateConvForCausalLM(mconf).train()
    ds = TokenWindows(binp, a.seq)
    g = torch.Generator().manual_seed(1337)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, generator=g, drop_last=True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    sched = get_cosine_schedule_with_warmup(opt, 2, a.steps)
    it = iter(dl)
    t0 = time.perf_counter()
    for step in range(a.steps):
        b = next(it)
        loss = model(input_ids=b['input_ids'], labels=b['labels']).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
    return a.steps * tokens_per_step / (time.perf_counter() - t0)

def llama():
    set_seed(1337)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=a.dim, intermediate_size=mconf.hidden_dim, num_hidden_layers=a.layers,
                      num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=a.seq, rms_norm_eps=1e-5,
                      tie_word_embeddings=True, rope_parameters={'rope_type': 'default', 'rope_theta': 1e4},
                      bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(cfg)

def matmul_rate(n=512, reps=20, tries=5):
    "The best fp32 matmul rate of this machine (FLOP/s): the 'peak' an MFU on CPU is measured against."
    x, y = torch.randn(n, n), torch.randn(n, n)
    x @ y
    best = 0.0
    for _ in range(tries):
        t0 = time.perf_counter()
        for _ in range(reps): x @ y
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t0))
    return best

print(f'MateConv {n_params / 1e6:.2f}M params, dim {a.dim}, {a.layers} layers, seq {a.seq}, batch {a.batch}, {a.steps} steps, '
      f'{torch.get_num_threads()} threads')
runs = {'bare': [], 'pretrain': [], 'llama': []}
peak = matmul_rate()
for r in range(a.rounds):
    for name, fn in [('bare', bare_loop), ('pretrain', trainer_run), ('llama', lambda: trainer_run(llama()))]:
        runs[name].append(fn())
        print(f'round {r + 1}: {name:9s} {runs[name][-1]:10.0f} tokens/s', flush=True)
    peak = max(peak, matmul_rate())
best = {k: max(v) for k, v in runs.items()}
print('best: ' + ', '.join(f'{k} {v:.0f} tokens/s' for k, v in best.items()))
print(f'MFU estimate: {best["pretrain"] * flops_per_token / peak:.1%} of the measured fp32 matmul rate ({peak / 1e9:.1f} GFLOP/s); '
      f'{flops_per_token / 1e6:.1f} MFLOP/token')
print(f'pretrain_vs_bare={best["pretrain"] / best["bare"]:.3f} mateconv_vs_llama={best["pretrain"] / best["llama"]:.3f}')
