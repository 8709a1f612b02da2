#!/usr/bin/env python3
"""Issue 9's attention benchmark, PyTorch side: scaled_dot_product_attention with the flash
backend and with the cuDNN backend at the shapes of bench_backend --size attention (the same
case names), and the card's copy bandwidth; with --srlm, srlm's numbers side by side.

  forward/backward: bf16, head dim 64 (32 heads) and 128 (16 heads), 16k tokens per batch
    at L = 512 .. 16k, causal and not (srlm's non-causal cases are bench_backend's
    "<case> non-causal"). TFLOP/s by FlashAttention's count: 4 L^2 HS NH B, halved when
    causal; the backward 2.5x.
  decode: one query per sequence against L cached tokens (32 heads over 8 kv heads, HS 128),
    batch 1/16/64/256 at 1k/8k/32k; the bandwidth bound is the K/V bytes read / the copy
    bandwidth (a device-to-device copy of 2 GiB: 2 x bytes / time).

  python3 bench/attention_torch.py --json OUT.json [--srlm SRLM.json...] [--md] [--budget S]
  python3 bench/attention_torch.py --dry-run      tiny shapes on the CPU (math backend): checks
                                                  this script's logic where there is no GPU
"""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

FA = [(hs, nh, L) for hs, nh in ((64, 32), (128, 16)) for L in (512, 1024, 2048, 4096, 8192, 16384)]
DECODE = [(b, L) for b in (1, 16, 64, 256) for L in (1024, 8192, 32768)]
TOKENS = 16384


def lname(L):
    return f"{L // 1024}k" if L >= 1024 else str(L)


def fa_name(hs, L):
    return f"fa HS={hs} L={lname(L)}"


def decode_name(b, L):
    return f"decode b={b} L={lname(L)}"


class Timer:
    """Calls fn until about `budget` seconds of timed calls (at least 3) after 2 warm-ups."""

    def __init__(self, dev, budget):
        self.dev, self.budget = dev, budget

    def sync(self):
        if self.dev == "cuda":
            torch.cuda.synchronize()

    def __call__(self, fn):
        for _ in range(2):
            fn()
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        per = max(time.perf_counter() - t0, 1e-7)
        iters = max(3, min(1000, int(self.budget / per)))
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        self.sync()
        return (time.perf_counter() - t0) / iters


def backends(dev):
    """(name, context factory) of the SDPA backends to time."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    if dev == "cpu":
        return [("math", lambda: sdpa_kernel(SDPBackend.MATH))]
    return [("flash", lambda: sdpa_kernel(SDPBackend.FLASH_ATTENTION)),
            ("cudnn", lambda: sdpa_kernel(SDPBackend.CUDNN_ATTENTION))]


def fa_case(op, hs, nh, L, causal, be, dev, dt, timer, tokens):
    B = max(1, tokens // L)
    q, k, v = (torch.randn(B, nh, L, hs, device=dev, dtype=dt, requires_grad=op == "attention_backward")
               for _ in range(3))
    flops = 4.0 * B * L * L * hs * nh / (2 if causal else 1) * (2.5 if op == "attention_backward" else 1)
    with be():
        if op == "attention_forward":
            with torch.no_grad():
                sec = timer(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            do = torch.randn_like(o)
            sec = timer(lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True))
    return sec, flops


def decode_case(b, L, be, dev, dt, timer, nh=32, nkv=8, hs=128):
    q = torch.randn(b, nh, 1, hs, device=dev, dtype=dt)
    k, v = (torch.randn(b, nkv, L, hs, device=dev, dtype=dt) for _ in range(2))
    with be(), torch.no_grad():
        sec = timer(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
    return sec, 2.0 * b * L * nkv * hs * q.element_size()


def copy_bandwidth(dev, timer, gib):
    x = torch.empty(int(gib * 2**30) // 4, dtype=torch.float32, device=dev)
    y = torch.empty_like(x)
    sec = timer(lambda: y.copy_(x))
    return 2 * x.numel() * 4 / sec / 1e9


def run(args):
    dev, dt = ("cpu", torch.float32) if args.dry_run else ("cuda", torch.bfloat16)
    timer = Timer(dev, 0.001 if args.dry_run else args.budget)
    fa = [(64, 4, 128), (128, 2, 256)] if args.dry_run else FA
    dec = [(1, 64), (4, 128)] if args.dry_run else DECODE
    tokens = 256 if args.dry_run else TOKENS
    res = []
    for name, be in backends(dev):
        for op in ("attention_forward", "attention_backward"):
            for hs, nh, L in fa:
                for causal in (True, False):
                    r = {"op": op, "model": fa_name(hs, L), "backend": name, "causal": causal}
                    try:
                        sec, flops = fa_case(op, hs, nh, L, causal, be, dev, dt, timer, tokens)
                        r.update(time_us=sec * 1e6, tflops=flops / sec / 1e12)
                    except (RuntimeError, torch.cuda.OutOfMemoryError) as e:  # a backend without the shape
                        r["error"] = str(e).splitlines()[0][:120]
                    res.append(r)
                    if dev == "cuda":
                        torch.cuda.empty_cache()
        for b, L in dec:
            r = {"op": "attention_kv", "model": decode_name(b, L), "backend": name, "causal": False}
            try:
                sec, nbytes = decode_case(b, L, be, dev, dt, timer)
                r.update(time_us=sec * 1e6, bytes=nbytes)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
                r["error"] = str(e).splitlines()[0][:120]
            res.append(r)
            if dev == "cuda":
                torch.cuda.empty_cache()
    copy = copy_bandwidth(dev, timer, 0.01 if args.dry_run else 2)
    device = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    return {"torch": torch.__version__, "device": device, "copy_gbps": copy, "results": res}


def table(torch_res, srlm, md):
    """Rows per case: srlm, torch flash and cuDNN, causal, then the same non-causal (srlm's
    case "<case> non-causal"), each with srlm's share of the best torch backend; decode
    against the bandwidth bound."""
    t = {}
    for r in torch_res["results"]:
        t[(r["op"], r["model"], r["backend"], r["causal"])] = r
    s = {(r["op"], r["model"]): r for r in (srlm or {}).get("results", [])}
    copy = torch_res["copy_gbps"]
    keys = sorted({(r["op"], r["model"]) for r in torch_res["results"]}, key=lambda k: (k[0], k[1]))
    bes = sorted({r["backend"] for r in torch_res["results"]})

    def tf(r):
        return f"{r['tflops']:.4g}" if r and "tflops" in r else ("err" if r else "")

    def us(r):
        return f"{r['time_us']:.1f}" if r and "time_us" in r else ("err" if r else "")

    head = ["op", "case", "srlm_TF/s"] + [f"{b}_TF/s" for b in bes] + ["srlm/best", "srlm_noncausal_TF/s"] + \
        [f"{b}_noncausal_TF/s" for b in bes] + ["srlm_noncausal/best"]
    dhead = ["case", "srlm_us", "bound_us", "srlm_%bound"] + [f"{b}_us" for b in bes]
    rows, drows = [], []
    for op, model in keys:
        sr = s.get((op, model))
        if op == "attention_kv":
            anyr = next(r for r in torch_res["results"] if r["op"] == op and r["model"] == model)
            bound = anyr.get("bytes", 0) / (copy * 1e9) * 1e6 if anyr.get("bytes") else 0
            pct = f"{100 * bound / sr['time_us']:.0f}%" if sr and sr.get("ok") and bound else ""
            drows.append([model, us(sr) if sr and sr.get("ok") else "", f"{bound:.1f}" if bound else "", pct] +
                         [us(t.get((op, model, b, False))) for b in bes])
            continue
        row = [op, model]
        for causal, sr in ((True, sr), (False, s.get((op, model + " non-causal")))):
            best = max([t[(op, model, b, causal)].get("tflops", 0) for b in bes if (op, model, b, causal) in t] + [0])
            ratio = f"{sr['tflops'] / best:.2f}" if sr and sr.get("ok") and best else ""
            row += [tf(sr) if sr and sr.get("ok") else ""] + [tf(t.get((op, model, b, causal))) for b in bes] + [ratio]
        rows.append(row)
    out = [f"# srlm {(srlm or {}).get('backend', '-')} vs torch {torch_res['torch']} SDPA on {torch_res['device']}; "
           f"copy bandwidth {copy:.1f} GB/s; causal unless named"]
    for h, rs in ((head, rows), (dhead, drows)):
        if md:
            out += ["| " + " | ".join(h) + " |", "|" + "---|" * len(h)] + ["| " + " | ".join(r) + " |" for r in rs]
        else:
            w = [max(len(x), *(len(r[i]) for r in rs)) if rs else len(x) for i, x in enumerate(h)]
            out += ["  ".join(x.ljust(w[i]) for i, x in enumerate(h))] + \
                   ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rs]
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write torch's results here")
    ap.add_argument("--from-json", help="read torch's results from here instead of running")
    ap.add_argument("--srlm", nargs="*", default=[],
                    help="bench_backend --size attention --json outputs (one per op, or one), for the side by side")
    ap.add_argument("--budget", type=float, default=0.1, help="seconds of timed calls per case")
    ap.add_argument("--md", action="store_true", help="markdown tables (for bench/RESULTS.md)")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU")
    args = ap.parse_args()
    if args.from_json:
        res = json.load(open(args.from_json))
    else:
        if not args.dry_run and not torch.cuda.is_available():
            sys.exit("attention_torch: no CUDA device (use --dry-run to check the script on a CPU)")
        res = run(args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
    srlm = None
    for path in args.srlm:  # the results of several runs (one per op) as one
        part = json.load(open(path))
        if srlm is None:
            srlm = part
        else:
            srlm["results"] += part["results"]
    print(table(res, srlm, args.md))
    failed = [r for r in res["results"] if "error" in r]
    for r in failed:
        print(f"# {r['backend']} {r['op']} {r['model']} causal={r['causal']}: {r['error']}", file=sys.stderr)


if __name__ == "__main__":
    main()
