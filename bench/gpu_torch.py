#!/usr/bin/env python3
"""The PyTorch side of the GPU benchmark: the ops of bench_backend's full table that
PyTorch has a counterpart for, at the same shapes and dtype, timed with CUDA events, plus
the card's measured copy bandwidth (the yardstick of the memory-bound ops) and the peak
memory of the LM head computed the usual way (logits + log_softmax + gather, forward and
backward: the (T x V) logits exist, which srlm's fused op avoids).

  python3 bench/gpu_torch.py [--dtype bf16|fp32] [--size full|small] [--device cuda|cpu] --json OUT

Rows are keyed like bench_backend's JSON (op, model) so bench/gpu_compare.py can join them.
Counterparts (what PyTorch users run):
  matmul              torch.matmul on the same (M, N, K) and transposes (a weight gradient
                      comes out in the dtype, not accumulated into fp32 as srlm's)
  rmsnorm_forward     torch.nn.functional.rms_norm; _backward: its autograd backward
  swiglu_forward      silu(g) * u; _backward: its autograd backward
  rope_forward        transformers' rotate_half form on q (N, H, HS)
  attention_forward   scaled_dot_product_attention, causal, GQA by enable_gqa; _backward: autograd
  add, cast           a + b, x.to(dtype)
  adamw               torch.optim.AdamW(fused=True) step on fp32 parameters
  lmhead_forward      x W^T -> float log_softmax -> gather; lmhead_backward: its autograd
                      backward (time of backward alone; peak memory of forward + backward)
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

# (op, model, dims) in the layout of bench_backend.c's tables (see its comment there)
FULL = [
    ("matmul", "0.5B x W_up^T", (4096, 4864, 896, 0, 1, 0)),
    ("matmul", "0.5B dy W_down", (4096, 896, 4864, 0, 0, 0)),
    ("matmul", "0.5B dW_up += dy^T x", (4864, 896, 4096, 1, 0, 1)),
    ("matmul", "7B x W_up^T", (16384, 14336, 4096, 0, 1, 0)),
    ("matmul", "7B dy W_down", (16384, 4096, 14336, 0, 0, 0)),
    ("matmul", "7B dW_up += dy^T x", (14336, 4096, 16384, 1, 0, 1)),
    ("rmsnorm_forward", "0.5B", (4096, 896)),
    ("rmsnorm_forward", "7B", (16384, 4096)),
    ("rmsnorm_backward", "0.5B", (4096, 896)),
    ("rmsnorm_backward", "7B", (16384, 4096)),
    ("rope_forward", "0.5B q", (4096, 14, 64)),
    ("rope_forward", "7B q", (16384, 32, 128)),
    ("attention_forward", "0.5B", (2, 2048, 14, 2, 64, 0)),
    ("attention_forward", "7B", (4, 4096, 32, 8, 128, 0)),
    ("attention_backward", "0.5B", (2, 2048, 14, 2, 64, 0)),
    ("attention_backward", "7B", (4, 4096, 32, 8, 128, 0)),
    ("swiglu_forward", "0.5B", (4096, 4864)),
    ("swiglu_forward", "7B", (16384, 14336)),
    ("swiglu_backward", "0.5B", (4096, 4864)),
    ("swiglu_backward", "7B", (16384, 14336)),
    ("add", "0.5B residual", (4096 * 896,)),
    ("add", "7B residual", (16384 * 4096,)),
    ("cast", "0.5B MLP weights", (3 * 896 * 4864,)),
    ("cast", "7B MLP weights", (3 * 4096 * 14336,)),
    ("lmhead_forward", "0.5B", (4096, 896, 151936)),
    ("lmhead_forward", "7B Llama-3 vocab", (16384, 4096, 128256)),
    ("lmhead_forward", "7B Qwen vocab", (16384, 4096, 151936)),
    ("adamw", "0.5B params", (494032768,)),
    ("adamw", "7B layer", (218103808,)),
]

# tiny shapes to check the script itself on a CPU
SMALL = [
    ("matmul", "0.5B x W_up^T", (64, 96, 32, 0, 1, 0)),
    ("matmul", "0.5B dW_up += dy^T x", (96, 32, 64, 1, 0, 1)),
    ("rmsnorm_forward", "0.5B", (64, 96)),
    ("rmsnorm_backward", "0.5B", (64, 96)),
    ("rope_forward", "0.5B q", (64, 4, 16)),
    ("attention_forward", "0.5B", (2, 64, 4, 2, 16, 0)),
    ("attention_backward", "0.5B", (2, 64, 4, 2, 16, 0)),
    ("swiglu_forward", "0.5B", (64, 160)),
    ("swiglu_backward", "0.5B", (64, 160)),
    ("add", "0.5B residual", (4096,)),
    ("cast", "0.5B MLP weights", (4096,)),
    ("lmhead_forward", "0.5B", (64, 32, 1000)),
    ("adamw", "0.5B params", (4096,)),
]


class Timer:
    """Median time of fn over enough calls to fill `budget` seconds (warm-up excluded)."""

    def __init__(self, device, budget):
        self.device, self.budget = device, budget

    def sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def __call__(self, fn):
        for _ in range(3):
            fn()
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        one = max(time.perf_counter() - t0, 1e-6)
        iters = max(3, min(200, int(self.budget / one)))
        times = []
        for _ in range(iters):
            if self.device == "cuda":
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                times.append(a.elapsed_time(b) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        times.sort()
        return times[len(times) // 2], iters


def rope(q, cos, sin):
    half = q.shape[-1] // 2
    rot = torch.cat((-q[..., half:], q[..., :half]), dim=-1)
    return q * cos + rot * sin


def run(op, dims, dt, dev, timer):
    """(seconds, iters, bytes, flops, peak_bytes) of the op's PyTorch counterpart."""
    g = torch.Generator(device=dev).manual_seed(1234)

    def rnd(*shape, dtype=dt, requires_grad=False):
        return torch.randn(*shape, generator=g, device=dev, dtype=dtype).requires_grad_(requires_grad)

    es = torch.finfo(dt).bits // 8
    peak = 0
    if op == "matmul":
        M, N, K, ta, tb, _ = dims
        a = rnd(K, M).t() if ta else rnd(M, K)
        b = rnd(N, K).t() if tb else rnd(K, N)
        sec, it = timer(lambda: torch.matmul(a, b))
        return sec, it, es * (M * K + K * N + M * N), 2.0 * M * N * K, peak
    if op in ("rmsnorm_forward", "rmsnorm_backward"):
        N, C = dims
        x, w = rnd(N, C, requires_grad=True), rnd(C, requires_grad=True)
        if op == "rmsnorm_forward":
            sec, it = timer(lambda: F.rms_norm(x, (C,), w, 1e-6))
            return sec, it, es * (2 * N * C + C) + 4 * N, 0, peak
        y = F.rms_norm(x, (C,), w, 1e-6)
        dy = rnd(N, C)
        sec, it = timer(lambda: torch.autograd.grad(y, (x, w), dy, retain_graph=True))
        return sec, it, es * (3 * N * C + C) + 4 * N, 0, peak
    if op == "rope_forward":
        N, H, HS = dims
        q = rnd(N, H, HS)
        pos = torch.arange(N, device=dev, dtype=torch.float32)
        inv = 1.0 / (10000.0 ** (torch.arange(0, HS, 2, device=dev, dtype=torch.float32) / HS))
        ang = torch.outer(pos, inv)
        cos = torch.cat((ang.cos(), ang.cos()), -1)[:, None, :].to(dt)
        sin = torch.cat((ang.sin(), ang.sin()), -1)[:, None, :].to(dt)
        sec, it = timer(lambda: rope(q, cos, sin))
        return sec, it, es * 2 * N * H * HS, 0, peak
    if op in ("attention_forward", "attention_backward"):
        B, L, NH, NKV, HS, _ = dims
        q, k, v = rnd(B, NH, L, HS, requires_grad=True), rnd(B, NKV, L, HS, requires_grad=True), rnd(B, NKV, L, HS, requires_grad=True)
        flops = 4.0 * B * NH * L * L * HS / 2  # causal: half the score matrix
        sdpa = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=NH != NKV)
        if op == "attention_forward":
            sec, it = timer(sdpa)
            return sec, it, 0, flops, peak
        o = sdpa()
        do = rnd(B, NH, L, HS)
        sec, it = timer(lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True))
        return sec, it, 0, 2.5 * flops, peak
    if op in ("swiglu_forward", "swiglu_backward"):
        N, FF = dims
        gt, up = rnd(N, FF, requires_grad=True), rnd(N, FF, requires_grad=True)
        if op == "swiglu_forward":
            sec, it = timer(lambda: F.silu(gt) * up)
            return sec, it, es * 3 * N * FF, 0, peak
        h = F.silu(gt) * up
        dh = rnd(N, FF)
        sec, it = timer(lambda: torch.autograd.grad(h, (gt, up), dh, retain_graph=True))
        return sec, it, es * 5 * N * FF, 0, peak
    if op == "add":
        (n,) = dims
        a, b = rnd(n), rnd(n)
        sec, it = timer(lambda: a + b)
        return sec, it, es * 3 * n, 0, peak
    if op == "cast":
        (n,) = dims
        x = rnd(n, dtype=torch.float32)
        sec, it = timer(lambda: x.to(dt))
        return sec, it, (4 + es) * n, 0, peak
    if op == "adamw":
        (n,) = dims
        p = torch.nn.Parameter(rnd(n, dtype=torch.float32))
        p.grad = rnd(n, dtype=torch.float32)
        opt = torch.optim.AdamW([p], lr=1e-4, fused=dev == "cuda")
        sec, it = timer(opt.step)
        return sec, it, 4.0 * 7 * n, 0, peak  # p, g, m, v read; p, m, v written
    if op == "lmhead_forward":
        N, C, V = dims
        x, w = rnd(N, C, requires_grad=True), rnd(V, C, requires_grad=True)
        t = torch.randint(0, V, (N,), generator=g, device=dev)

        def fwd():
            z = x @ w.t()
            return torch.log_softmax(z.float(), -1).gather(1, t[:, None]).squeeze(1)

        sec, it = timer(fwd)
        if dev == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        lp = fwd()
        dl = rnd(N, dtype=torch.float32)
        bsec, bit = timer(lambda: torch.autograd.grad(lp, (x, w), dl, retain_graph=True))
        if dev == "cuda":
            peak = torch.cuda.max_memory_allocated() - base
        return sec, it, 0, 2.0 * N * C * V, peak, bsec, bit
    raise ValueError(op)


def copy_bandwidth(dev, timer, gib):
    n = int(gib * (1 << 30)) // 4
    a = torch.empty(n, device=dev, dtype=torch.float32).fill_(1.0)
    b = torch.empty_like(a)
    sec, _ = timer(lambda: b.copy_(a))
    return 2.0 * n * 4 / sec / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--size", default="full", choices=["full", "small"])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--budget", type=float, default=0.25, help="seconds of timed calls per case")
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_torch: no CUDA device visible to PyTorch")
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    timer = Timer(a.device, a.budget)
    torch.backends.cuda.matmul.allow_tf32 = False
    card = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    copy = copy_bandwidth(a.device, timer, 1.0 if a.size == "full" else 0.01)
    print(f"# gpu_torch: torch {torch.__version__}, {card}, dtype {a.dtype}, size {a.size}; copy bandwidth {copy:.1f} GB/s")
    print(f"# {'op':<19} {'model':<22} {'time_us':>12} {'GB/s':>9} {'TFLOP/s':>9} {'peak_MiB':>9}")
    rows = []
    for op, model, dims in FULL if a.size == "full" else SMALL:
        r = run(op, dims, dt, a.device, timer)
        sec, it, nbytes, flops, peak = r[:5]
        rows.append({"op": op, "model": model, "time_us": sec * 1e6, "iters": it,
                     "gbps": nbytes / sec / 1e9 if nbytes else 0.0, "tflops": flops / sec / 1e12 if flops else 0.0,
                     "peak_bytes": peak})
        if len(r) > 5:  # the LM head's backward, from the same graph
            rows.append({"op": "lmhead_backward", "model": model, "time_us": r[5] * 1e6, "iters": r[6],
                         "gbps": 0.0, "tflops": 4.0 * dims[0] * dims[1] * dims[2] / r[5] / 1e12, "peak_bytes": peak})
        for row in rows[-(2 if len(r) > 5 else 1):]:
            print(f"  {row['op']:<19} {row['model']:<22} {row['time_us']:12.1f} {row['gbps']:9.1f} "
                  f"{row['tflops']:9.2f} {row['peak_bytes'] / 2**20:9.1f}", flush=True)
    out = {"bench": "torch", "torch": torch.__version__, "device": card, "dtype": a.dtype, "size": a.size,
           "copy_gbps": copy, "results": rows}
    with open(a.json + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    import os
    os.replace(a.json + ".tmp", a.json)


if __name__ == "__main__":
    main()
