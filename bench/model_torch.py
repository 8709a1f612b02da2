#!/usr/bin/env python3
"""PyTorch side of the model bench: a transformers LlamaForCausalLM of the given shape
(random init, fp32 or --dtype bfloat16, CPU) or a model directory, timed the way srlm's model bench times
itself, so the two can be put side by side at the same thread count.

Measures, after warm-up:
  fwd_bwd_tokens_per_s   training step: batch x seq random tokens, loss = mean next-token NLL
                         (labels = inputs), loss.backward(), gradients cleared before each
                         step as a training loop does (zero_grad), no optimizer
  prefill_tokens_per_s   the prompt forward of decode-batch sequences of prompt-len tokens
                         that fills the KV cache (last-position logits only, as generate does)
  decode_tokens_per_s    batched greedy decode with the KV cache: decode-batch sequences,
                         decode-tokens single-token steps after the prefill; generated tokens /
                         time of those steps (prefill excluded)
  generate_tokens_per_s  the same through model.generate (prefill included), for reference
  peak_rss_mb            resource.getrusage maxrss (torch itself is baseline_rss_mb of it)

Attention: "sdpa" by default (faster than "eager" on CPU for training and decode at these
sizes: see --attn). Threads: OMP_NUM_THREADS and torch.set_num_threads(--threads),
one inter-op thread.

Prints ONE JSON object on stdout; progress goes to stderr.

With --ids FILE (bench_ids.json, written by bench_model --save DIR next to the model in DIR)
the training batch and the decode prompts are srlm's token ids, so that with --model DIR both
sides compute the same model on the same tokens: "loss" in the output is then comparable
with bench_model's (bench/model.sh checks it).

usage: model_torch.py [--model DIR | --hidden C --layers L --heads NH --kv-heads NKV --ff FF --vocab V]
                      [--ids FILE] [--seq T] [--batch B] [--threads N] [--steps S] [--warmup W]
                      [--decode-batch B] [--decode-tokens N] [--prompt-len P] [--attn sdpa|eager]
                      [--dtype float32|bfloat16]
"""
import argparse
import inspect
import os
import resource
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description="transformers CPU reference for the srlm model bench")
    p.add_argument("--model", help="a Hugging Face model directory (instead of the shape options)")
    p.add_argument("--ids", help="bench_ids.json of bench_model --save: the training and prompt token ids")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--ff", type=int, default=768)
    p.add_argument("--vocab", type=int, default=10000)
    p.add_argument("--seq", type=int, default=256, help="training sequence length")
    p.add_argument("--batch", type=int, default=4, help="training sequences per step")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed training steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps / decode runs first")
    p.add_argument("--decode-batch", type=int, default=8)
    p.add_argument("--decode-tokens", type=int, default=32)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="parameters and activations (bfloat16: the model cast, no autocast; oneDNN's "
                        "bf16 kernels where the CPU has them)")
    return p.parse_args()


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main():
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["MKL_NUM_THREADS"] = str(args.threads)
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        sys.exit(f"model_torch: {e.name} is missing: pip install torch transformers (CPU is enough), "
                 f"or run with a Python that has them")

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    transformers.logging.set_verbosity_error()
    torch.manual_seed(args.seed)
    baseline = rss_mb()
    dtype = getattr(torch, args.dtype)

    def log(msg):
        print(f"model_torch: {msg}", file=sys.stderr, flush=True)

    if args.model:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, attn_implementation=args.attn)
    else:
        cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.ff,
                          num_hidden_layers=args.layers, num_attention_heads=args.heads,
                          num_key_value_heads=args.kv_heads, max_position_embeddings=max(4096, args.seq),
                          tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=0)
        model = LlamaForCausalLM._from_config(cfg, attn_implementation=args.attn, dtype=dtype)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    V = model.config.vocab_size
    nparams = sum(p.numel() for p in model.parameters())
    log(f"{nparams / 1e6:.2f}M params, attn {args.attn}, {args.threads} threads")

    # ---- training step ----
    model.train()
    g = torch.Generator().manual_seed(args.seed)
    given = None
    if args.ids:
        with open(args.ids) as f:
            given = __import__("json").load(f)
        ids = torch.tensor(given["train"], dtype=torch.long)
        if tuple(ids.shape) != (args.batch, args.seq):
            sys.exit(f"model_torch: {args.ids}: train ids are {tuple(ids.shape)}, --batch/--seq say "
                     f"{(args.batch, args.seq)}")
    else:
        ids = torch.randint(0, V, (args.batch, args.seq), generator=g)

    def step():
        model.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=ids, use_cache=False)
        out.loss.backward()
        return float(out.loss.detach())

    first_loss = None
    for _ in range(args.warmup):
        first_loss = step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    train_s = time.perf_counter() - t0
    fwd_bwd = args.steps * args.batch * args.seq / train_s
    log(f"train: {fwd_bwd:.0f} tokens/s ({1000 * train_s / args.steps:.1f} ms/step, loss {loss:.3f})")
    model.zero_grad(set_to_none=True)

    # ---- prefill + decode with the KV cache ----
    model.eval()
    if given is not None:
        prompt = torch.tensor(given["prompt"], dtype=torch.long)
        if tuple(prompt.shape) != (args.decode_batch, args.prompt_len):
            sys.exit(f"model_torch: {args.ids}: prompt ids are {tuple(prompt.shape)}, --decode-batch/--prompt-len "
                     f"say {(args.decode_batch, args.prompt_len)}")
    else:
        prompt = torch.randint(0, V, (args.decode_batch, args.prompt_len), generator=g)
    mask = torch.ones_like(prompt)

    # transformers 5.x renames forward's past_key_values to cache
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def greedy():
        """Returns (prefill seconds, decode seconds, new tokens [B, decode_tokens])."""
        from transformers import DynamicCache
        with torch.inference_mode():
            t0 = time.perf_counter()
            cache = DynamicCache(config=model.config)
            out = model(input_ids=prompt, attention_mask=mask, use_cache=True, logits_to_keep=1,
                        **{cache_kw: cache})
            nxt = out.logits[:, -1].argmax(-1)
            t1 = time.perf_counter()
            am = mask
            toks = []
            for _ in range(args.decode_tokens):
                am = torch.cat([am, am.new_ones(am.shape[0], 1)], dim=1)
                out = model(input_ids=nxt[:, None], attention_mask=am, use_cache=True, **{cache_kw: cache})
                nxt = out.logits[:, -1].argmax(-1)
                toks.append(nxt)
            t2 = time.perf_counter()
        return t1 - t0, t2 - t1, torch.stack(toks, 1)

    for _ in range(args.warmup):
        greedy()
    prefill_s, decode_s, toks = greedy()
    prefill = args.decode_batch * args.prompt_len / prefill_s
    decode = args.decode_batch * args.decode_tokens / decode_s
    log(f"prefill: {prefill:.0f} tokens/s ({1000 * prefill_s:.1f} ms); decode: {decode:.0f} tokens/s "
        f"({1000 * decode_s / args.decode_tokens:.2f} ms/step of {args.decode_batch} sequences)")

    with torch.inference_mode():
        t0 = time.perf_counter()
        gen = model.generate(input_ids=prompt, attention_mask=mask, do_sample=False,
                             max_new_tokens=args.decode_tokens + 1, min_new_tokens=args.decode_tokens + 1)
        gen_s = time.perf_counter() - t0
    new = gen[:, args.prompt_len:]
    # generate's first new token comes from the prefill, the rest from decode steps.
    same = bool(torch.equal(new[:, 1:], toks))
    generate_tps = new.numel() / gen_s
    log(f"generate: {generate_tps:.0f} tokens/s incl. prefill; tokens equal to the manual loop: {same}")

    print(__import__("json").dumps({
        "torch": torch.__version__, "transformers": transformers.__version__, "attn": args.attn,
        "dtype": args.dtype,
        "threads": args.threads, "params": nparams,
        "shape": {"hidden": model.config.hidden_size, "layers": model.config.num_hidden_layers,
                  "heads": model.config.num_attention_heads, "kv_heads": model.config.num_key_value_heads,
                  "ff": model.config.intermediate_size, "vocab": V},
        "seq": args.seq, "batch": args.batch, "steps": args.steps,
        "decode_batch": args.decode_batch, "decode_tokens": args.decode_tokens, "prompt_len": args.prompt_len,
        "model_type": model.config.model_type, "tie": bool(model.config.tie_word_embeddings),
        "loss": round(loss, 5), "first_loss": None if first_loss is None else round(first_loss, 5),
        "fwd_bwd_tokens_per_s": round(fwd_bwd, 1),
        "decode_tokens_per_s": round(decode, 1),
        "prefill_tokens_per_s": round(prefill, 1),
        "generate_tokens_per_s": round(generate_tps, 1),
        "generate_matches_loop": same,
        "peak_rss_mb": round(rss_mb(), 1),
        "baseline_rss_mb": round(baseline, 1),
    }))


if __name__ == "__main__":
    main()
