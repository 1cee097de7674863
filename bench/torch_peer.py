#!/usr/bin/python3
"""torch_peer.py - the PyTorch peer of `pslora bench`: the same LoRA training
step on the same GPT-2 shape, so the two tokens/s figures can be compared.

The model is written out here in plain torch (no transformers): token and
position embeddings, pre-LayerNorm blocks with a fused qkv Conv1D-style linear
(weights [in, out]), causal attention (manual softmax over the full T x T:
torch 1.13 has no scaled_dot_product_attention), tanh GELU, final LayerNorm,
the head tied to the token embedding, mean cross-entropy.  Every base weight
is frozen (requires_grad False), so autograd forms no weight gradients and
stops below the lowest adapted layer, as pslora does.  LoRA on the targets
(PEFT matching: a target matches a module path equal to it or ending in
"." + target): A Kaiming-uniform (a = sqrt(5)), B small random (not zero, so
the backward pass is representative, as in pslora bench), y += s (x A^T) B^T
with s = alpha / r.  Per step: forward, backward, global-norm clip 1.0 and
AdamW over the adapter.  Warm-up steps are not timed.

--autocast runs the forward pass (and the loss) under
torch.autocast("cpu", dtype=torch.bfloat16), PyTorch's own bf16 mixed
precision: its matrix products take bf16 inputs and the backward pass
follows their dtypes; weights, adapter and optimizer stay fp32.  That is the
peer of `pslora bench --compute bf16` (frozen products in bf16, the rest
fp32).

Run under Debian's interpreter (python3-torch).  OMP_WAIT_POLICY=PASSIVE is
set before torch loads unless given: at 2 threads torch's OpenMP pool and
OpenBLAS's otherwise spin against each other.  Last line: "tokens/s X".
"""
import argparse
import math
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402  (after the environment is set)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def frozen(t):
    return nn.Parameter(t, requires_grad=False)


def matches(path, targets):
    return any(path == t or path.endswith("." + t) for t in targets)


class Linear(nn.Module):
    """Conv1D-style frozen linear, y = x W + b with W [in, out], plus LoRA."""

    def __init__(self, n_in, n_out, std, lora):
        super().__init__()
        self.w = frozen(torch.randn(n_in, n_out) * std)
        self.b = frozen(torch.zeros(n_out))
        self.A = self.B = None
        if lora:
            r, alpha = lora
            self.A = nn.Parameter(torch.empty(r, n_in))
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
            self.B = nn.Parameter(torch.randn(n_out, r) * 0.01)
            self.scale = alpha / r

    def forward(self, x):
        shape = x.shape[:-1] + (self.w.shape[1],)
        y = torch.addmm(self.b, x.reshape(-1, x.shape[-1]), self.w).view(shape)
        if self.A is not None:
            y = y + self.scale * ((x @ self.A.t()) @ self.B.t())
        return y


class Block(nn.Module):
    def __init__(self, a, layer, targets, lora):
        super().__init__()
        C, inter = a.dim, a.intermediate
        resid = 0.02 / math.sqrt(2 * a.layers)
        shapes = {"attn.c_attn": (C, 3 * C, 0.02), "attn.c_proj": (C, C, resid),
                  "mlp.c_fc": (C, inter, 0.02), "mlp.c_proj": (inter, C, resid)}
        lin = {}
        for name in LINEARS:
            n_in, n_out, std = shapes[name]
            path = "transformer.h.%d.%s" % (layer, name)
            lin[name] = Linear(n_in, n_out, std, lora if matches(path, targets) else None)
        self.c_attn, self.attn_proj = lin["attn.c_attn"], lin["attn.c_proj"]
        self.c_fc, self.mlp_proj = lin["mlp.c_fc"], lin["mlp.c_proj"]
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        for p in list(self.ln1.parameters()) + list(self.ln2.parameters()):
            p.requires_grad_(False)
        self.H = a.heads

    def attention(self, x, mask):
        B, T, C = x.shape
        H, D = self.H, C // self.H
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
        att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.attn_proj(y)

    def forward(self, x, mask):
        x = x + self.attention(self.ln1(x), mask)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, a, targets, lora):
        super().__init__()
        self.wte = frozen(torch.randn(a.vocab, a.dim) * 0.02)
        self.wpe = frozen(torch.randn(a.ctx, a.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(a, l, targets, lora) for l in range(a.layers))
        self.ln_f = nn.LayerNorm(a.dim)
        for p in self.ln_f.parameters():
            p.requires_grad_(False)

    def forward(self, idx, tgt):
        B, T = idx.shape
        x = self.wte[idx] + self.wpe[:T]
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        for b in self.blocks:
            x = b(x, mask)
        logits = self.ln_f(x) @ self.wte.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), tgt.reshape(-1))


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="gpt2", choices=["gpt2"])
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--ctx", type=int, default=0, help="context length (default = seq)")
    p.add_argument("--intermediate", type=int, default=0, help="MLP width (default 4*dim)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--targets", default="c_attn")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--autocast", action="store_true",
                   help='forward under torch.autocast("cpu", dtype=torch.bfloat16)')
    a = p.parse_args()
    a.ctx = a.ctx or a.seq
    a.intermediate = a.intermediate or 4 * a.dim
    if a.dim % a.heads or a.seq > a.ctx:
        p.error("--dim must be a multiple of --heads and --seq at most --ctx")
    return a


def main():
    a = parse()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    targets = [t for t in a.targets.split(",") if t]
    model = GPT2(a, targets, (a.rank, a.alpha))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        sys.exit("torch_peer.py: --targets %s matches no module" % a.targets)
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    tok = torch.randint(0, a.vocab, (a.batch, a.seq + 1))
    inp, tgt = tok[:, :-1].contiguous(), tok[:, 1:].contiguous()
    print("torch %s, threads %d (OMP_WAIT_POLICY=%s), BLAS core %s; precision %s" % (
        torch.__version__, torch.get_num_threads(), os.environ.get("OMP_WAIT_POLICY"),
        os.environ.get("OPENBLAS_CORETYPE", "auto-detected"),
        "bf16 autocast" if a.autocast else "fp32"))
    print("model: gpt2, %d layers, dim %d, %d heads, intermediate %d, vocab %d, ctx %d" % (
        a.layers, a.dim, a.heads, a.intermediate, a.vocab, a.ctx))
    print("step: batch %d x seq %d = %d tokens; LoRA r %d alpha %g on %s (%d params); AdamW" % (
        a.batch, a.seq, a.batch * a.seq, a.rank, a.alpha, a.targets,
        sum(p.numel() for p in params)))
    t = {"fwd": 0.0, "bwd": 0.0, "opt": 0.0}
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast):
            loss = model(inp, tgt)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        if s >= a.warmup:
            t["fwd"] += t1 - t0
            t["bwd"] += t2 - t1
            t["opt"] += t3 - t2
    n = a.steps
    total = t["fwd"] + t["bwd"] + t["opt"]
    print("steps %d timed (+%d warm-up): ms/step %.1f = forward %.1f + backward %.1f + "
          "optimizer %.2f" % (n, a.warmup, 1e3 * total / n, 1e3 * t["fwd"] / n,
                              1e3 * t["bwd"] / n, 1e3 * t["opt"] / n))
    print("loss %.4f (last)" % loss.item())
    print("tokens/s %.1f" % (a.batch * a.seq * n / total))


if __name__ == "__main__":
    main()
