"MateConv as a transformers model: generate with/without cache, save/load, peft, TRL, and parity with the original layout."
import math, tempfile
import pytest, torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from mlprep.mateconv.model import MateConvConfig, MateConvForCausalLM, from_mateconv_checkpoint, tiny_mateconv


# ---- a reference implementation of the original MateConv/MiniMind `Transformer` (adjacent-pair complex RoPE) ----
class RefRMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__(); self.eps = eps; self.weight = nn.Parameter(torch.ones(dim))
    def forward(self, x):
        return self.weight * (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)

def precompute_pos_cis(dim, end, theta=1e4):
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: (dim // 2)].float() / dim))
    t = torch.arange(end, device=freqs.device)
    return torch.polar(torch.ones(end, dim // 2), torch.outer(t, freqs).float())

def apply_rotary_emb(xq, xk, pos_cis):
    xq_ = torch.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
    xk_ = torch.view_as_complex(xk.float().reshape(*xk.shape[:-1], -1, 2))
    pc = pos_cis.view(1, xq_.shape[1], 1, xq_.shape[-1])
    return torch.view_as_real(xq_ * pc).flatten(3).type_as(xq), torch.view_as_real(xk_ * pc).flatten(3).type_as(xk)

class RefAttention(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.nh, self.nkv, self.hd = a.n_heads, a.n_kv_heads, a.dim // a.n_heads
        self.wq = nn.Linear(a.dim, a.n_heads * self.hd, bias=False); self.wk = nn.Linear(a.dim, a.n_kv_heads * self.hd, bias=False)
        self.wv = nn.Linear(a.dim, a.n_kv_heads * self.hd, bias=False); self.wo = nn.Linear(a.n_heads * self.hd, a.dim, bias=False)
    def forward(self, x, pos_cis):
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.nh, self.hd); k = self.wk(x).view(b, t, self.nkv, self.hd); v = self.wv(x).view(b, t, self.nkv, self.hd)
        q, k = apply_rotary_emb(q, k, pos_cis)
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=2); v = v.repeat_interleave(rep, dim=2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        att = att.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float('-inf')).softmax(-1)
        return self.wo((att @ v).transpose(1, 2).reshape(b, t, -1))

class RefFF(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__(); self.w1 = nn.Linear(dim, hidden, bias=False); self.w2 = nn.Linear(hidden, dim, bias=False); self.w3 = nn.Linear(dim, hidden, bias=False)
    def forward(self, x): return self.w2(F.silu(self.w1(x)) * self.w3(x))

class RefGate(nn.Module):
    def __init__(self, a):
        super().__init__(); self.k = a.num_experts_per_tok; self.weight = nn.Parameter(torch.randn(a.n_routed_experts, a.dim) * 0.1)
    def forward(self, x):
        scores = F.linear(x.view(-1, x.shape[-1]), self.weight).softmax(-1)
        w, idx = torch.topk(scores, self.k, dim=-1, sorted=False)
        return idx, w / (w.sum(-1, keepdim=True) + 1e-20)

class RefMoE(nn.Module):        # the original's moe_infer, written as a per-token loop
    def __init__(self, a):
        super().__init__()
        self.experts = nn.ModuleList(RefFF(a.dim, a.hidden_dim) for _ in range(a.n_routed_experts))
        self.gate = RefGate(a); self.shared_experts = RefFF(a.dim, a.hidden_dim)
    def forward(self, x):
        idx, w = self.gate(x); flat = x.view(-1, x.shape[-1]); y = torch.zeros_like(flat)
        for n in range(flat.shape[0]):
            for j in range(idx.shape[1]): y[n] += w[n, j] * self.experts[int(idx[n, j])](flat[n])
        return y.view(x.shape) + self.shared_experts(x)

class RefBlock(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.attention = RefAttention(a); self.attention_norm = RefRMSNorm(a.dim, a.norm_eps); self.ffn_norm = RefRMSNorm(a.dim, a.norm_eps)
        self.feed_forward = RefMoE(a) if a.use_moe else RefFF(a.dim, a.hidden_dim)
    def forward(self, x, pos_cis):
        h = x + self.attention(self.attention_norm(x), pos_cis)
        return h + self.feed_forward(self.ffn_norm(h))

class RefTransformer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.tok_embeddings = nn.Embedding(a.vocab_size, a.dim)
        self.layers = nn.ModuleList(RefBlock(a) for _ in range(a.n_layers))
        self.norm = RefRMSNorm(a.dim, a.norm_eps); self.output = nn.Linear(a.dim, a.vocab_size, bias=False)
        self.tok_embeddings.weight = self.output.weight
        self.register_buffer('pos_cis', precompute_pos_cis(a.dim // a.n_heads, a.max_seq_len), persistent=False)
    def forward(self, ids):
        h = self.tok_embeddings(ids)
        for l in self.layers: h = l(h, self.pos_cis[: ids.shape[1]])
        return self.output(self.norm(h))


@pytest.mark.parametrize('use_moe', [False, True])
def test_original_checkpoint_parity(tmp_path, use_moe):
    cfg = MateConvConfig(vocab_size=97, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64, use_moe=use_moe)
    torch.manual_seed(0)
    ref = RefTransformer(cfg).eval()
    for p in ref.parameters():
        if p.dim() == 1: nn.init.normal_(p, 1.0, 0.1)   # norms not all ones, so that a mix-up would show
    torch.save(ref.state_dict(), tmp_path / 'pretrain_64.pth')
    model = from_mateconv_checkpoint(tmp_path / 'pretrain_64.pth', cfg)
    ids = torch.randint(0, 97, (2, 23))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref(ids), atol=1e-4, rtol=1e-4)


def test_checkpoint_errors(tmp_path):
    cfg = MateConvConfig(vocab_size=97, dim=64, n_layers=2, n_heads=4, n_kv_heads=2)
    torch.save(RefTransformer(cfg).state_dict(), tmp_path / 'a.pth')
    with pytest.raises(ValueError, match=r'vocab_size=200'):
        from_mateconv_checkpoint(tmp_path / 'a.pth', MateConvConfig(vocab_size=200, dim=64, n_layers=2, n_heads=4, n_kv_heads=2))
    with pytest.raises(ValueError, match='unexpected'):
        from_mateconv_checkpoint(tmp_path / 'a.pth', MateConvConfig(vocab_size=97, dim=64, n_layers=1, n_heads=4, n_kv_heads=2))
    torch.save({'x': object()}, tmp_path / 'evil.pth')
    with pytest.raises(ValueError, match='weights_only'):
        from_mateconv_checkpoint(tmp_path / 'evil.pth', cfg)


@pytest.mark.parametrize('use_moe', [False, True])
def test_generate_cache_equals_no_cache(use_moe):
    m = tiny_mateconv(vocab_size=120, use_moe=use_moe, seed=1)
    ids = torch.randint(3, 120, (2, 7))
    am = torch.ones_like(ids); am[1, :3] = 0           # the second row left-padded
    kw = dict(attention_mask=am, max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None)
    a = m.generate(ids, use_cache=True, **kw)
    b = m.generate(ids, use_cache=False, **kw)
    assert torch.equal(a, b)
    # the padded row generates what its unpadded prompt generates
    c = m.generate(ids[1:, 3:], max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert torch.equal(a[1, 7:], c[0, 4:])


def test_padding_mask_does_not_leak():
    m = tiny_mateconv(vocab_size=120)
    ids = torch.randint(3, 120, (1, 8))
    am = torch.ones_like(ids); am[0, :3] = 0
    other = ids.clone(); other[0, :3] = torch.randint(3, 120, (3,))    # change only the padded tokens
    with torch.no_grad():
        torch.testing.assert_close(m(ids, attention_mask=am).logits[:, 3:], m(other, attention_mask=am).logits[:, 3:])


def test_save_from_pretrained_roundtrip(tmp_path):
    m = tiny_mateconv(vocab_size=120, use_moe=True)
    m.save_pretrained(tmp_path)
    assert (tmp_path / 'model.safetensors').exists()
    m2 = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(m2).__name__ == 'MateConvForCausalLM' and m2.output.weight is m2.model.tok_embeddings.weight
    ids = torch.randint(0, 120, (2, 9))
    with torch.no_grad(): torch.testing.assert_close(m2(ids).logits, m(ids).logits)


def test_peft_lora_attaches():
    from peft import LoraConfig, get_peft_model
    m = tiny_mateconv(vocab_size=120)
    pm = get_peft_model(m, LoraConfig(r=4, lora_alpha=8, target_modules=['wq', 'wk', 'wv', 'wo'], task_type='CAUSAL_LM'))
    trainable = [n for n, p in pm.named_parameters() if p.requires_grad]
    assert trainable and all('lora_' in n for n in trainable)
    ids = torch.randint(0, 120, (2, 9))
    pm.train(); out = pm(input_ids=ids, labels=ids); out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in pm.named_parameters() if 'lora_B' in n)


@pytest.mark.slow
def test_trl_sft_steps(tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    from mlprep.data.tiny import demo_tokenizer
    tok = demo_tokenizer()
    m = tiny_mateconv(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    before = m.model.layers[0].attention.wq.weight.detach().clone()
    ds = Dataset.from_dict({'text': ['one two three four five six'] * 8 + ['the cat sat on the mat'] * 8})
    args = SFTConfig(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2, use_cpu=True,
                     bf16=False, report_to=[], save_strategy='no', max_length=32, logging_steps=1)
    tr = SFTTrainer(model=m, args=args, train_dataset=ds, processing_class=tok)
    tr.train()
    losses = [h['loss'] for h in tr.state.log_history if 'loss' in h]
    assert len(losses) == 3 and all(math.isfinite(l) for l in losses)
    assert not torch.equal(before, m.model.layers[0].attention.wq.weight.detach())
