#!/usr/bin/env python3
"""Side by side: srlm's bench_backend JSON (one backend and dtype) against gpu_torch.py's
JSON of the same shapes on the same machine. Per (op, model): both times, the speedup
(torch time / srlm time: above 1 srlm is faster), srlm's GB/s as a share of the card's
measured copy bandwidth for the memory-bound ops, and its TFLOP/s as a share of torch's for
the GEMMs (the issue's goals: GEMM >= 95% of torch, memory-bound ops >= 80% of copy
bandwidth, the fused LM-head log-prob faster than torch with no (T x V) buffer).

  python3 bench/gpu_compare.py SRLM.json TORCH.json [--md]   (--md: a table for RESULTS.md)
"""
import json
import sys

MEMORY_BOUND = {"rmsnorm_forward", "rmsnorm_backward", "rope_forward", "rope_backward", "swiglu_forward",
                "swiglu_backward", "add", "cast", "adamw", "grad_sumsq", "embedding_forward", "colsum", "kv_append"}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    srlm = json.load(open(sys.argv[1]))
    torch = json.load(open(sys.argv[2]))
    md = "--md" in sys.argv
    copy = torch["copy_gbps"]
    t = {(r["op"], r["model"]): r for r in torch["results"]}
    head = ["op", "model", "srlm_us", "torch_us", "speedup", "srlm_GB/s", "%copy", "srlm_TF/s", "%torch_TF", "torch_peak_MiB"]
    rows = []
    lm = {}
    for r in srlm["results"]:
        k = (r["op"], r["model"])
        if k not in t or not r.get("ok"):
            continue
        x = t[k]
        mem = r["op"] in MEMORY_BOUND and r["gbps"] > 0
        gemm = r["op"] == "matmul" and x["tflops"] > 0
        rows.append([r["op"], r["model"], f"{r['time_us']:.1f}", f"{x['time_us']:.1f}", f"{x['time_us'] / r['time_us']:.2f}",
                     f"{r['gbps']:.0f}" if mem else "", f"{100 * r['gbps'] / copy:.0f}%" if mem else "",
                     f"{r['tflops']:.1f}" if r["tflops"] else "", f"{100 * r['tflops'] / x['tflops']:.0f}%" if gemm else "",
                     f"{x['peak_bytes'] / 2**20:.0f}" if x.get("peak_bytes") else ""])
        if r["op"].startswith("lmhead_"):
            s = lm.setdefault(r["model"], [0.0, 0.0, x.get("peak_bytes", 0)])
            s[0] += r["time_us"]
            s[1] += x["time_us"]
    for model, (us, tus, peak) in lm.items():
        rows.append(["lmhead fwd+bwd", model, f"{us:.1f}", f"{tus:.1f}", f"{tus / us:.2f}", "", "", "", "",
                     f"{peak / 2**20:.0f}"])
    print(f"# srlm {srlm.get('backend')} {srlm.get('dtype')} vs torch {torch['torch']} on {torch['device']}; "
          f"copy bandwidth {copy:.1f} GB/s")
    if md:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w[i]) for i, h in enumerate(head)))
        for r in rows:
            print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))


if __name__ == "__main__":
    main()
