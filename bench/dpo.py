"""DPO training speed and memory: TRL's DPOTrainer vs `mlprep dpo`, precomputed reference, LoRA, `mlprep pref-dpo`.

One process, one tiny-but-not-trivial llama (default ~26M parameters, the demo tokenizer), the same demo pairs and the
same number of steps for every case:

1. TRL `DPOTrainer` with its defaults (AdamW) and a separate reference model;
2. `mlprep dpo` defaults: `PrefDPOTrainer` (mlprep's loss and metrics), RMSprop, separate reference model;
3. as 2 with the reference log-probs precomputed (no reference model during training; the precompute pass is not timed);
4. as 2 with LoRA r16/α32, the reference being the adapter disabled;
5. `mlprep pref-dpo`: preference-guided DPO, LoRA r16/α32 (4 sequences per pair in one forward; the guidance's keys
   and values computed once per step and read by every guided row from a shared cache).

Throughput is pairs per second over the steps after the first (median step time; the fastest of `--repeats`
round-robin runs of all cases, so that a busy machine hurts no case more than another). Peak memory is
`torch.cuda.max_memory_allocated` on a GPU; on CPU it is the bytes of the tensors a step keeps alive: weights of the
policy and of the reference model, gradients, optimizer state, and the activations saved for backward in one step
(measured with saved-tensor hooks). The last line:
`dpo_vs_trl` = throughput(2)/throughput(1) (target >= 0.95), `prefdpo_vs_dpo` = step time(5)/step time(4) (equal LoRA
settings; target <= 2.2), `lora_mem_vs_full` = peak memory(4)/peak memory(1) (target <= 0.7).

    python bench/dpo.py [--steps 6] [--batch_size 4] [--hidden 512] [--layers 6] [--repeats 2] [--device cpu]
"""
import argparse, statistics, tempfile, time
from pathlib import Path

import torch
from transformers import TrainerCallback

from mlprep.core import get_device
from mlprep.data.adapters import to_dataset
from mlprep.data.models import load_model
from mlprep.data.tiny import demo_tokenizer, tiny_model
from mlprep.pref.dpo import DPOConfig, PrefDPOTrainer, load_pairs, quiet_printer, trl_args
from mlprep.pref.pref_dpo import PrefDPOConfig, PrefGuidedDPOTrainer, guidance_ids
from trl import DPOConfig as TRLDPOConfig, DPOTrainer


class StepTimer(TrainerCallback):
    "Wall time of every optimizer step."
    def __init__(self): self.times, self.t0 = [], None
    def on_step_begin(self, *a, **k):
        if torch.cuda.is_available(): torch.cuda.synchronize()
        self.t0 = time.perf_counter()
    def on_step_end(self, *a, **k):
        if torch.cuda.is_available(): torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self.t0)


def tensor_bytes(tensors) -> int:
    seen, n = set(), 0
    for t in tensors:
        if t is None or not isinstance(t, torch.Tensor): continue
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key in seen: continue
        seen.add(key); n += key[1]
    return n


class SavedActivations:
    "Bytes of the tensors autograd saves for backward, summed over the run (divided by the steps: per step)."
    def __init__(self): self.total = 0
    def pack(self, t):
        self.total += t.untyped_storage().nbytes()
        return t
    def unpack(self, t): return t


def run_case(name, make_trainer, device):
    if device.type == 'cuda': torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    trainer = make_trainer()
    quiet_printer(trainer)
    timer = StepTimer(); trainer.add_callback(timer)
    acts = SavedActivations()
    with torch.autograd.graph.saved_tensors_hooks(acts.pack, acts.unpack):
        trainer.train()
    step = statistics.median(timer.times[1:] or timer.times)
    if device.type == 'cuda': mem = torch.cuda.max_memory_allocated()
    else:
        ref = getattr(trainer, 'ref_model', None)
        opt_state = [t for s in trainer.optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        grads = sum(p.numel() * p.element_size() for p in trainer.model.parameters() if p.requires_grad)  # freed after the step
        mem = tensor_bytes([p for p in trainer.model.parameters()] + ([p for p in ref.parameters()] if ref is not None else [])
                           + opt_state) + grads + acts.total // max(1, len(timer.times))
    return dict(name=name, step=step, mem=mem)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=6); ap.add_argument('--batch_size', type=int, default=4)
    ap.add_argument('--hidden', type=int, default=512); ap.add_argument('--layers', type=int, default=6)
    ap.add_argument('--max_length', type=int, default=256); ap.add_argument('--device', default='auto')
    ap.add_argument('--repeats', type=int, default=2, help='run every case this many times, round-robin; keep the fastest')
    a = ap.parse_args(argv)
    device = get_device(a.device)
    tok = demo_tokenizer()
    tmp = Path(tempfile.mkdtemp(prefix='bench-dpo-'))
    path = tmp/'model'
    tiny_model('llama', tok, hidden_size=a.hidden, num_layers=a.layers, num_heads=8, seed=0, path=path)
    n_params = sum(p.numel() for p in load_model(path, dtype='float32', device='cpu').parameters())
    pairs, _ = load_pairs('demo:pairs', 'pairs', tok, 128, num_samples=a.batch_size * (a.steps + 1))
    ds = to_dataset(pairs)
    dtype = 'float32' if device.type == 'cpu' else 'bfloat16'
    load = lambda: load_model(path, dtype=dtype, device=device)
    common = dict(max_steps=a.steps, batch_size=a.batch_size, gradient_accumulation_steps=1, logging_steps=10**6, eval_steps=10**6,
                  save_steps=10**6, warmup_steps=0, max_length=a.max_length, num_workers=0, output_dir=str(tmp/'o'))
    cfg = DPOConfig(**common)
    from peft import LoraConfig
    lora = lambda: LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1, target_modules='all-linear', task_type='CAUSAL_LM')
    args = lambda c, **kw: trl_args(c, tmp/'o', device, report_to=[], save_strategy='no', eval_strategy='no', **{'optim': cfg.optimizer, **kw})
    cases = [
        ('1 TRL DPOTrainer defaults, ref model', lambda: DPOTrainer(model=load(), ref_model=load(), train_dataset=ds, processing_class=tok,
            args=TRLDPOConfig(output_dir=str(tmp/'trl'), per_device_train_batch_size=a.batch_size, max_steps=a.steps,
                              max_length=a.max_length, use_cpu=device.type == 'cpu', bf16=device.type == 'cuda', report_to=[],
                              save_strategy='no', logging_steps=10**6, disable_tqdm=True))),
        ('2 mlprep dpo defaults, ref model', lambda: PrefDPOTrainer(model=load(), ref_model=load(), args=args(cfg), train_dataset=ds, processing_class=tok)),
        ('3 mlprep dpo, precomputed ref', lambda: PrefDPOTrainer(model=load(), args=args(cfg, precompute_ref_log_probs=True), train_dataset=ds, processing_class=tok)),
        ('4 mlprep dpo, LoRA (adapter off = ref)', lambda: PrefDPOTrainer(model=load(), args=args(cfg), train_dataset=ds, processing_class=tok, peft_config=lora())),
        ('5 mlprep pref-dpo, LoRA', lambda: PrefGuidedDPOTrainer(model=load(), args=args(PrefDPOConfig(**common), optim='rmsprop'),
            train_dataset=ds, processing_class=tok, peft_config=lora(), guidance=torch.tensor(guidance_ids(tok, PrefDPOConfig().preference_text)),
            guidance_is_ids=True, alpha=0.1, lambda_kl=0.1)),
    ]
    print(f'model: llama {n_params/1e6:.1f}M params, {device}, {dtype}; {a.steps} steps of {a.batch_size} pairs, max_length {a.max_length}')
    res = [None] * len(cases)
    for rep in range(a.repeats):                   # round-robin repeats; the fastest median per case resists machine load
        for i, (name, make) in enumerate(cases):
            r = run_case(name, make, device)
            res[i] = r if res[i] is None else dict(r, step=min(r['step'], res[i]['step']), mem=max(r['mem'], res[i]['mem']))
    for (name, _), r in zip(cases, res):
        print(f"{name:42s} {a.batch_size / r['step']:8.2f} pairs/s  step {r['step']*1000:8.1f} ms  peak {r['mem']/2**20:8.1f} MiB", flush=True)
    thr = lambda i: a.batch_size / res[i]['step']
    print(f"dpo_vs_trl={thr(1)/thr(0):.3f} prefdpo_vs_dpo={res[4]['step']/res[3]['step']:.3f} lora_mem_vs_full={res[3]['mem']/res[0]['mem']:.3f}")


if __name__ == '__main__':
    main()
