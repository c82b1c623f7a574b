"""Write the demo diagnostics files: 50 demo DeepScaleR prompts, the tiny trained pair, one file per α method.

    python data/demo/diagnostics/make_demo.py            # from the repository root; about a minute on a CPU

A plain mixture decode loop over `mlprep.mixture` (see README.md for why it is not `mlprep datagen`): each step runs
both models over their prompt + the tokens so far, chooses α per row with `compute_alpha`, mixes with `mix_logprobs`,
measures with `token_diagnostics`, samples with `sample_next`; `aggregate_diagnostics` makes the per-sample lines.
"""
import json, sys
from pathlib import Path

import torch

from mlprep.adapters import load_records
from mlprep.mixture import ALPHA_METHODS, aggregate_diagnostics, compute_alpha, mix_logprobs, sample_next, token_diagnostics
from mlprep.models import load_model, load_tokenizer
from mlprep.synth import demo_path
from mlprep.tiny import tiny_pair

N, MAX_NEW_TOKENS, TEMPERATURE, SEED = 50, 64, 1.0, 0
OUT = Path(__file__).resolve().parent


def left_pad(seqs, pad):
    "(B, L) ids and attention mask of ragged lists, padded on the left."
    L = max(len(s) for s in seqs)
    ids = torch.tensor([[pad] * (L - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (L - len(s)) + [1] * len(s) for s in seqs])
    return ids, mask


@torch.no_grad()
def next_logits(model, prompts, generated, pad):
    "Next-token logits (B, V) of `model` after each prompt + its generated tokens (a full forward; the models are tiny)."
    ids, mask = left_pad([p + g for p, g in zip(prompts, generated)], pad)
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    return model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1].float()


def generate(theta, target, tok, theta_prompts, target_prompts, method):
    g = torch.Generator().manual_seed(SEED)
    B, eos = len(theta_prompts), {tok.eos_token_id, tok.convert_tokens_to_ids('<|im_end|>')}
    generated, alive = [[] for _ in range(B)], torch.ones(B, dtype=torch.bool)
    steps, masks, clamped = [], [], torch.zeros(B, dtype=torch.long)
    for _ in range(MAX_NEW_TOKENS):
        lt = next_logits(theta, theta_prompts, generated, tok.pad_token_id)
        lg = next_logits(target, target_prompts, generated, tok.pad_token_id)
        res = compute_alpha(lt, lg, method)
        logq = mix_logprobs(lt, lg, res.alpha)
        steps.append(token_diagnostics(lt, lg, logq, res.alpha))
        masks.append(alive.clone())
        clamped += res.clamped & alive
        nxt = sample_next(logq, TEMPERATURE, generator=g)
        for i in range(B):
            if alive[i]:
                generated[i].append(int(nxt[i]))
                if int(nxt[i]) in eos: alive[i] = False
        if not alive.any(): break
    rows = aggregate_diagnostics(steps, masks)
    alpha = torch.stack([s['alpha'] for s in steps], 1)
    mask = torch.stack(masks, 1)
    out = []
    for i, r in enumerate(rows):
        ended = bool(generated[i]) and generated[i][-1] in eos
        out.append(dict(sample_idx=i, alpha_method=method, alpha_mean=r['alpha_mean'], alpha_std=r['alpha_std'],
                        ess_ratio_mean=r['ess_ratio_mean'], ess_theta_mean=r['ess_theta_mean'], ess_t_mean=r['ess_t_mean'],
                        kl_theta_mean=r['kl_theta_mean'], kl_t_mean=r['kl_t_mean'], kl_gap_mean=r['kl_gap_mean'],
                        entropy_theta_mean=r['entropy_theta_mean'], entropy_t_mean=r['entropy_t_mean'],
                        entropy_q_mean=r['entropy_q_mean'], n_tokens=r['n_tokens'], clamped_tokens=int(clamped[i]),
                        finish_reason='eos' if ended else 'length',
                        alpha_tokens=[round(a, 4) for a in alpha[i][mask[i]].tolist()]))
    return out, generated


def main():
    theta_path, target_path = tiny_pair()
    theta = load_model(theta_path, dtype='float32', device='cpu')
    target = load_model(target_path, dtype='float32', device='cpu')
    tok = load_tokenizer(theta_path)
    prompts = [r['prompt'] for r in load_records(demo_path('deepscaler'), adapter='deepscaler', num_samples=N).records]
    theta_prompts = [tok(p)['input_ids'] for p in prompts]  # π_θ: the raw prompt; π_t: the chat template (as datagen)
    target_prompts = [tok(tok.apply_chat_template([dict(role='user', content=p)], add_generation_prompt=True, tokenize=False),
                          add_special_tokens=False)['input_ids'] for p in prompts]
    for method in (sys.argv[1:] or ALPHA_METHODS):
        rows, generated = generate(theta, target, tok, theta_prompts, target_prompts, method)
        with open(OUT/f'{method}.diagnostics.jsonl', 'w') as f:
            for r in rows: f.write(json.dumps(r) + '\n')
        with open(OUT/f'{method}.jsonl', 'w') as f:
            for i, (p, g) in enumerate(zip(prompts, generated)):
                f.write(json.dumps(dict(messages=[dict(role='user', content=p), dict(role='assistant', content=tok.decode(g, skip_special_tokens=True))],
                                        sample_idx=i), ensure_ascii=False) + '\n')
        print(method, f"{sum(r['n_tokens'] for r in rows)} tokens", {k: round(sum(r[k] for r in rows) / len(rows), 3)
                                                                   for k in ('alpha_mean', 'ess_ratio_mean', 'kl_gap_mean')})


if __name__ == '__main__': main()
