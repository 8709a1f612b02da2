#!/usr/bin/env python3
"""Hugging Face `tokenizers` reference for bench/tokenizer.sh: the same texts and passes
as bench_tokenizer, on one thread (RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false).

Cases: load (Tokenizer.from_file), encode (each text with Tokenizer.encode,
add_special_tokens=False), encode_batch (all texts in one encode_batch call, one
thread), encode_concat (all texts joined, one encode), decode (each text's ids).
MB/s = input bytes (output bytes for decode) / median pass. Warm-up passes excluded.

usage: tokenizer_hf.py --tokenizer DIR [--texts FILE] [--passes N] [--warmup N]
                       [--json FILE] [--ids-out FILE]
"""
import os

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def timed(fn, passes, warmup):
    for _ in range(warmup):
        fn()
    times = []
    out = None
    for _ in range(passes):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--texts")
    ap.add_argument("--passes", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json")
    ap.add_argument("--ids-out")
    a = ap.parse_args()
    path = os.path.join(a.tokenizer, "tokenizer.json") if os.path.isdir(a.tokenizer) else a.tokenizer
    texts_path = a.texts or os.path.join(a.tokenizer, "golden.jsonl")
    texts = []
    with open(texts_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                v = json.loads(line)
                texts.append(v["text"] if isinstance(v, dict) else v)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    concat = "".join(texts)

    tok = Tokenizer.from_file(path)
    ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    if a.ids_out:
        with open(a.ids_out, "w") as f:
            for v in ids:
                f.write('{"ids":[' + ",".join(map(str, v)) + "]}\n")
    ntok = sum(len(v) for v in ids)
    out_bytes = sum(len(tok.decode(v).encode("utf-8")) for v in ids)

    def enc():
        return [tok.encode(t, add_special_tokens=False) for t in texts]

    def enc_batch():
        return tok.encode_batch(texts, add_special_tokens=False)

    def enc_concat():
        return [tok.encode(concat, add_special_tokens=False)]

    def dec():
        return [tok.decode(v) for v in ids]

    rows = []
    best, med, _ = timed(lambda: Tokenizer.from_file(path), 5, 0)
    rows.append(("load", 1, 0, 0, 5, best, med))
    for name, fn, items, b in (("encode", enc, len(texts), nbytes), ("encode_batch", enc_batch, len(texts), nbytes),
                               ("encode_concat", enc_concat, 1, len(concat.encode("utf-8")))):
        best, med, out = timed(fn, a.passes, a.warmup)
        rows.append((name, items, b, sum(len(e.ids) for e in out), a.passes, best, med))
    best, med, _ = timed(dec, a.passes, a.warmup)
    rows.append(("decode", len(texts), out_bytes, ntok, a.passes, best, med))

    print("# HF tokenizers %s, Python %s, 1 thread (RAYON_NUM_THREADS=1)" % (tokenizers.__version__,
                                                                            platform.python_version()))
    print("# tokenizer: %s; texts: %s: %d texts, %d bytes; passes %d, warm-up %d"
          % (path, texts_path, len(texts), nbytes, a.passes, a.warmup))
    print("#\n# %-14s %6s %10s %9s %6s %10s %10s %9s %9s"
          % ("case", "items", "bytes", "tokens", "passes", "best_s", "median_s", "MB/s", "Mtok/s"))
    results = []
    for name, items, b, nt, passes, best, med in rows:
        mbs = b / med / 1e6 if b else 0.0
        mtoks = nt / med / 1e6 if nt else 0.0
        if name == "load":
            print("  %-14s %6d %10s %9s %6d %10.4f %10.4f %9s %9s" % (name, items, "-", "-", passes, best, med, "-", "-"))
        else:
            print("  %-14s %6d %10d %9d %6d %10.4f %10.4f %9.2f %9.3f"
                  % (name, items, b, nt, passes, best, med, mbs, mtoks))
        results.append({"case": name, "items": items, "bytes": b, "tokens": nt, "passes": passes, "best_s": best,
                        "median_s": med, "mb_per_s": mbs, "mtokens_per_s": mtoks})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"bench": "tokenizer_hf", "tokenizers_version": tokenizers.__version__, "tokenizer": path,
                       "texts_file": texts_path, "texts": len(texts), "bytes": nbytes, "passes": a.passes,
                       "warmup": a.warmup, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
