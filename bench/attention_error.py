#!/usr/bin/env python3
"""Issue 9's error check against PyTorch: srlm's bf16 attention and PyTorch's bf16 SDPA on the
same inputs, each held against float64 attention computed by PyTorch.

  srlm: bench_backend --attention-io runs the srlm backend's (cuda) attention_forward and then
    attention_backward (from its own out and lse) on inputs this script writes; it reads
    back out, dq, dk, dv.
  SDPA: scaled_dot_product_attention with the flash, cuDNN and memory-efficient backends (and
    the math one, PyTorch's naive bf16 attention, for reference), forward and backward from
    the same q, k, v, dout; a backend that cannot run a case (a window needs an explicit
    mask, which flash does not take) is reported as such.
  Shapes: head dim 64 and 128, 8 query heads over 8 or 2 kv heads (GQA 1 and 4), causal and
    not, each without and with a sliding window of 256 (srlm's window: causal keys
    i - 256 < j <= i, non-causal |i - j| < 256; an explicit boolean mask for SDPA), L = 512
    (4 sequences) and 2048 (1).
  Per case and tensor (out, dq, dk, dv): max |x - float64| of srlm and of each SDPA backend;
    srlm passes when its error is at most 2x the smallest error of the fused SDPA backends
    that ran (flash, cuDNN, efficient; math when none did): the flash-attention rule, with
    PyTorch's kernels as the other implementation.

  python3 bench/attention_error.py --bench BUILD/bench/bench_backend --dir SCRATCH [--backend cuda]
                                   [--json OUT.json] [--md]
  python3 bench/attention_error.py --dry-run --bench ... --backend cpu|cuda-sim --dir SCRATCH
      tiny shapes, PyTorch on the CPU (math backend only): checks this script and the
      --attention-io path where there is no GPU
Exit status: 0 when every case passes, 1 when one does not, 2 when srlm's run fails.
SCRATCH receives the inputs and srlm's outputs (about 0.4 GB at the full shapes): keep it out
of a directory that is copied back.
"""
import argparse
import ctypes
import json
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

TENSORS = ("out", "dq", "dk", "dv")
FUSED = ("flash", "cudnn", "efficient")
WINDOW = 256


def cases(dry):
    """(name, B, L, NH, NKV, HS, window, non_causal)"""
    if dry:
        hss, gqa, Ls, W = (16, 64), ((4, 4), (4, 1)), ((2, 40), (1, 130)), 24
    else:
        hss, gqa, Ls, W = (64, 128), ((8, 8), (8, 2)), ((4, 512), (1, 2048)), WINDOW
    out = []
    for hs in hss:
        for nh, nkv in gqa:
            for B, L in Ls:
                for nc in (0, 1):
                    for w in (0, W):
                        name = f"hs{hs}_gqa{nh // nkv}_{'full' if nc else 'causal'}{f'_w{w}' if w else ''}_L{L}"
                        out.append((name, B, L, nh, nkv, hs, w, nc))
    return out


def visible(L, W, nc, dev):
    """(L, L) bool: query i sees key j (srlm's masking rule)."""
    i = torch.arange(L, device=dev).view(L, 1)
    j = torch.arange(L, device=dev).view(1, L)
    m = torch.ones(L, L, dtype=torch.bool, device=dev) if nc else j <= i
    if W > 0:
        m &= (i - j).abs() < W
    return m


def inputs(seed, B, L, NH, NKV, HS):
    """q (B, NH, L, HS), k, v (B, NKV, L, HS), dout like q: bf16 normal draws, on the CPU."""
    g = torch.Generator().manual_seed(seed)
    shp = ((B, NH, L, HS), (B, NKV, L, HS), (B, NKV, L, HS), (B, NH, L, HS))
    return [torch.randn(s, generator=g).to(torch.bfloat16) for s in shp]


def packed(x):
    """(B, H, L, HS) -> srlm's (B L, H, HS)."""
    B, H, L, HS = x.shape
    return x.transpose(1, 2).reshape(B * L, H, HS).contiguous()


def unpacked(x, B, L):
    T, H, HS = x.shape
    return x.view(B, L, H, HS).transpose(1, 2)


def write_raw(path, x):
    x = x.contiguous().cpu()
    with open(path, "wb") as f:
        f.write(ctypes.string_at(x.data_ptr(), x.numel() * x.element_size()))


def read_raw(path, dtype, shape):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    x = torch.frombuffer(data, dtype=dtype)
    if x.numel() != math.prod(shape):
        raise ValueError(f"{path}: {x.numel()} elements, want {shape}")
    return x.view(shape).clone()


def reference(q, k, v, dout, mask, scale):
    """float64 attention: out and dq, dk, dv (k, v gradients summed over their group)."""
    q64, k64, v64 = (x.double().requires_grad_() for x in (q, k, v))
    rep = q.shape[1] // k.shape[1]
    ke, ve = k64.repeat_interleave(rep, 1), v64.repeat_interleave(rep, 1)
    s = (q64 @ ke.transpose(-1, -2)) * scale
    o = torch.softmax(s.masked_fill(~mask, float("-inf")), -1) @ ve
    dq, dk, dv = torch.autograd.grad(o, (q64, k64, v64), dout.double())
    return {"out": o.detach(), "dq": dq, "dk": dk, "dv": dv}


def sdpa_backends(dev):
    from torch.nn.attention import SDPBackend
    if dev == "cpu":
        return [("math", SDPBackend.MATH)]
    return [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION), ("math", SDPBackend.MATH)]


def sdpa(backend, q, k, v, dout, mask, nc, W):
    """One SDPA backend's bf16 out and gradients; GQA natively (enable_gqa) or, where the
    backend lacks it, with k and v repeated over the group (autograd sums their gradients)."""
    from torch.nn.attention import sdpa_kernel
    rep = q.shape[1] // k.shape[1]
    kw = {"attn_mask": mask} if W > 0 else {"is_causal": not nc}
    last = None
    for native in ((True, False) if rep > 1 else (False,)):
        qq, kk, vv = (x.detach().clone().requires_grad_() for x in (q, k, v))
        try:
            with sdpa_kernel(backend):
                if native:
                    o = F.scaled_dot_product_attention(qq, kk, vv, enable_gqa=True, **kw)
                else:
                    ke, ve = (kk.repeat_interleave(rep, 1), vv.repeat_interleave(rep, 1)) if rep > 1 else (kk, vv)
                    o = F.scaled_dot_product_attention(qq, ke, ve, **kw)
                dq, dk, dv = torch.autograd.grad(o, (qq, kk, vv), dout)
            return {"out": o.detach(), "dq": dq, "dk": dk, "dv": dv}, "native" if native or rep == 1 else "repeat"
        except (RuntimeError, TypeError) as e:  # the backend does not run this case
            last = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    raise RuntimeError(last)


def max_err(x, ref):
    return (x.double() - ref).abs().max().item() if x.numel() else 0.0


def run_srlm(args, jobs):
    """Writes the inputs and the case list, runs bench_backend --attention-io."""
    os.makedirs(args.dir, exist_ok=True)
    with open(os.path.join(args.dir, "cases.txt"), "w") as f:
        f.write("# NAME B L NH NKV HS window non_causal (bench/attention_error.py)\n")
        for (name, B, L, NH, NKV, HS, W, nc), t in jobs:
            f.write(f"{name} {B} {L} {NH} {NKV} {HS} {W} {nc}\n")
            for ext, x in zip(("q", "k", "v", "dout"), t):
                write_raw(os.path.join(args.dir, f"{name}.{ext}"), packed(x))
    cmd = [args.bench, "--backend", args.backend, "--dtype", "bf16", "--attention-io", args.dir]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(r.stderr)
    print(f"# {' '.join(cmd)}: exit {r.returncode}, {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return r.returncode


def srlm_outputs(args, c):
    name, B, L, NH, NKV, HS = c[:6]
    T = B * L
    shp = {"out": (T, NH, HS), "dq": (T, NH, HS), "dk": (T, NKV, HS), "dv": (T, NKV, HS)}
    return {t: unpacked(read_raw(os.path.join(args.dir, f"{name}.{t}"), torch.bfloat16, shp[t]), B, L)
            for t in TENSORS}


def run(args):
    dev = "cpu" if args.dry_run else "cuda"
    jobs = [(c, inputs(1000 + i, *c[1:6])) for i, c in enumerate(cases(args.dry_run))]
    rc = run_srlm(args, jobs)
    if rc != 0:
        print(f"attention_error: bench_backend --attention-io failed (exit {rc}); no comparison", file=sys.stderr)
        return None, 2
    res = []
    for c, t in jobs:
        name, B, L, NH, NKV, HS, W, nc = c
        q, k, v, dout = (x.to(dev) for x in t)
        mask = visible(L, W, nc, dev)
        ref = reference(q, k, v, dout, mask, 1.0 / math.sqrt(HS))
        got = {"srlm": srlm_outputs(args, c)}
        row = {"case": name, "B": B, "L": L, "NH": NH, "NKV": NKV, "HS": HS, "window": W,
               "causal": not nc, "errors": {}, "sdpa": {}}
        for bname, be in sdpa_backends(dev):
            try:
                got[bname], how = sdpa(be, q, k, v, dout, mask, nc, W)
                row["sdpa"][bname] = "ran" + (f" (gqa {how})" if NH != NKV else "")
            except RuntimeError as e:
                row["sdpa"][bname] = f"not run: {e}"
        for tn in TENSORS:
            e = {who: max_err(g[tn].to(dev), ref[tn]) for who, g in got.items()}
            e["ref_max"] = ref[tn].abs().max().item()
            fused = [e[b] for b in FUSED if b in e and not math.isnan(e[b])]  # a NaN backend is no yardstick
            best = min(fused) if fused else e.get("math")
            e["sdpa_best"] = best
            e["ratio"] = e["srlm"] / best if best else (0.0 if e["srlm"] == 0 else None)  # None: JSON has no inf
            e["pass"] = e["srlm"] <= 2 * best if best is not None else False
            row["errors"][tn] = e
        row["pass"] = all(row["errors"][tn]["pass"] for tn in TENSORS)
        res.append(row)
        if dev == "cuda":
            torch.cuda.empty_cache()
    device = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    return {"torch": torch.__version__, "device": device, "srlm_backend": args.backend, "rule": "srlm <= 2 x the "
            "smallest error of the fused SDPA backends that ran (math when none)", "results": res}, 0


def table(res, md):
    bes = [b for b in ("flash", "cudnn", "efficient", "math") if any(b in r["errors"]["out"] for r in res["results"])]
    head = ["case", "tensor", "ref_max", "srlm"] + bes + ["srlm/best", "ok"]
    rows = []
    for r in res["results"]:
        for tn in TENSORS:
            e = r["errors"][tn]
            rows.append([r["case"], tn, f"{e['ref_max']:.3g}", f"{e['srlm']:.3e}"] +
                        [f"{e[b]:.3e}" if b in e else "-" for b in bes] +
                        [f"{e['ratio']:.2f}" if e["ratio"] is not None else "inf", "ok" if e["pass"] else "FAIL"])
    out = [f"# srlm {res['srlm_backend']} bf16 attention vs torch {res['torch']} SDPA bf16 on {res['device']}: "
           f"max |err| against float64; rule: {res['rule']}"]
    if md:
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    else:
        w = [max(len(x), *(len(r[i]) for r in rows)) if rows else len(x) for i, x in enumerate(head)]
        out += ["  ".join(x.ljust(w[i]) for i, x in enumerate(head))] + \
               ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    notrun = sorted({f"{b}: {s}" for r in res["results"] for b, s in r["sdpa"].items() if s.startswith("not run")})
    out += [f"# {n} (cases: {sum(1 for r in res['results'] for b, s in r['sdpa'].items() if f'{b}: {s}' == n)})"
            for n in notrun]
    n_ok = sum(r["pass"] for r in res["results"])
    worst = max(((e["ratio"] if e["ratio"] is not None else math.inf, r["case"], tn) for r in res["results"]
                 for tn, e in r["errors"].items()),
                default=(0, "-", "-"))
    out.append(f"attention_error: {n_ok} of {len(res['results'])} cases within 2x SDPA's error; worst srlm/best "
               f"{worst[0]:.2f} ({worst[1]} {worst[2]})")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", help="bench_backend built with the srlm backend to check")
    ap.add_argument("--backend", default="cuda", help="srlm backend (default cuda)")
    ap.add_argument("--dir", help="scratch directory for the inputs and srlm's outputs")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--from-json", help="print the table of an earlier --json instead of running")
    ap.add_argument("--md", action="store_true", help="a markdown table (for bench/RESULTS.md)")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes, PyTorch on the CPU")
    args = ap.parse_args()
    if args.from_json:
        res = json.load(open(args.from_json))
        rc = 0 if all(r["pass"] for r in res["results"]) else 1
    else:
        if not args.bench or not args.dir:
            ap.error("--bench and --dir are needed to run")
        if not args.dry_run and not torch.cuda.is_available():
            sys.exit("attention_error: no CUDA device (use --dry-run to check the script on a CPU)")
        res, rc = run(args)
        if res is None:
            return rc
        rc = 0 if all(r["pass"] for r in res["results"]) else 1
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
    print(table(res, args.md))
    return rc


if __name__ == "__main__":
    sys.exit(main())
