#!/usr/bin/env python3
"""The PyTorch + transformers half of bench/e2e.sh: the same DPO step and generation as
bench_e2e (same shapes, random weights, same counts), the way people run them today:
transformers model with sdpa attention, bf16 on the GPU (fp32 on a CPU), DPO loss from
precomputed reference log-probs, torch.optim.AdamW (fused=True on CUDA), and
model.generate (sampling at temperature 1, exactly T new tokens; static cache on CUDA).
Prints one table row per work and writes --json like bench_e2e."""
import argparse, json, math, time

SHAPES = {  # config.json of each model (as bench_e2e.c)
    "qwen3-0.6b": ("qwen3", 151936, 1024, 3072, 28, 16, 8, 128, True),
    "qwen3-1.7b": ("qwen3", 151936, 2048, 6144, 28, 16, 8, 128, True),
    "llama3.2-1b": ("llama", 128256, 2048, 8192, 16, 32, 8, 64, True),
    "llama3.2-3b": ("llama", 128256, 3072, 8192, 28, 24, 8, 128, True),
    "llama3.1-8b": ("llama", 128256, 4096, 14336, 32, 32, 8, 128, False),
    "tiny": ("llama", 1000, 64, 128, 2, 4, 2, 16, False),
}


def build(a, torch, device, dtype):
    import transformers
    fam, V, C, FF, L, NH, NKV, HS, tied = SHAPES[a.shape]
    if a.layers and a.layers < L:
        L = a.layers
    kw = dict(vocab_size=V, hidden_size=C, intermediate_size=FF, num_hidden_layers=L, num_attention_heads=NH,
              num_key_value_heads=NKV, head_dim=HS, tie_word_embeddings=tied,
              max_position_embeddings=a.prompt_len + 2 * a.response_len + a.new_tokens + 8, attn_implementation="sdpa")
    cfg = transformers.Qwen3Config(**kw) if fam == "qwen3" else transformers.LlamaConfig(**kw)
    torch.manual_seed(1234)
    m = (transformers.Qwen3ForCausalLM if fam == "qwen3" else transformers.LlamaForCausalLM)(cfg)
    return m.to(device=device, dtype=dtype), cfg, L


def sync(torch, device):
    if device == "cuda":
        torch.cuda.synchronize()


def seq_logps(torch, model, ids, P):
    logits = model(ids).logits[:, P - 1:-1].float()
    return torch.gather(torch.log_softmax(logits, -1), 2, ids[:, P:, None]).squeeze(2).sum(1)


def dpo(a, torch, model, cfg, device):
    N, P, R = a.pairs, a.prompt_len, a.response_len
    g = torch.Generator().manual_seed(1)
    chosen = torch.randint(0, cfg.vocab_size, (N, P + R), generator=g).to(device)
    rejected = torch.cat([chosen[:, :P], torch.randint(0, cfg.vocab_size, (N, R), generator=g).to(device)], 1)
    with torch.no_grad():
        ref_c = torch.cat([seq_logps(torch, model, chosen[i:i + a.micro], P) for i in range(0, N, a.micro)])
        ref_r = torch.cat([seq_logps(torch, model, rejected[i:i + a.micro], P) for i in range(0, N, a.micro)])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0, fused=device == "cuda")
    beta = 0.1

    def step():
        loss_sum = 0.0
        for i in range(0, N, a.micro):
            j = min(N, i + a.micro)
            lc = seq_logps(torch, model, chosen[i:j], P)
            lr = seq_logps(torch, model, rejected[i:j], P)
            h = (lc - ref_c[i:j]) - (lr - ref_r[i:j])
            loss = -torch.nn.functional.logsigmoid(beta * h).sum() / N
            loss.backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss_sum

    for _ in range(a.warmup):
        step()
    sync(torch, device)
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync(torch, device)
    per = (time.perf_counter() - t0) / a.steps
    tokens = 2 * N * (P + R)
    return {"work": "dpo_step", "tokens": tokens, "seconds": per, "tokens_per_s": tokens / per, "loss": loss}


def gen(a, torch, model, cfg, device):
    g = torch.Generator().manual_seed(2)
    prompts = torch.randint(0, cfg.vocab_size, (a.gen_prompts, a.prompt_len), generator=g).to(device)
    ids = prompts.repeat_interleave(a.samples, 0)
    kw = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=a.new_tokens,
              min_new_tokens=a.new_tokens, pad_token_id=0, eos_token_id=None)
    if device == "cuda":
        kw["cache_implementation"] = "static"
    model.eval()
    produced, t0 = 0, None
    with torch.no_grad():
        model.generate(ids[: min(len(ids), a.gen_batch)], **dict(kw, max_new_tokens=2, min_new_tokens=2))  # warm-up
        sync(torch, device)
        t0 = time.perf_counter()
        for i in range(0, len(ids), a.gen_batch):
            out = model.generate(ids[i:i + a.gen_batch], **kw)
            produced += (out.shape[1] - a.prompt_len) * out.shape[0]
        sync(torch, device)
    secs = time.perf_counter() - t0
    return {"work": "generate", "tokens": produced, "seconds": secs, "tokens_per_s": produced / secs}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
    p.add_argument("--layers", type=int, default=0)
    p.add_argument("--dtype", default="fp32", choices=["bf16", "fp32"])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--work", default="dpo,gen")
    for k, d in [("steps", 3), ("warmup", 1), ("pairs", 8), ("micro", 4), ("prompt-len", 32), ("response-len", 32),
                 ("gen-prompts", 8), ("samples", 2), ("new-tokens", 16), ("gen-batch", 16), ("threads", 0)]:
        p.add_argument("--" + k, type=int, default=d)
    p.add_argument("--json")
    a = p.parse_args()
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    model, cfg, L = build(a, torch, a.device, dtype)
    t0 = time.perf_counter()
    rs = []
    if "dpo" in a.work:
        rs.append(dpo(a, torch, model, cfg, a.device))
    if "gen" in a.work:
        rs.append(gen(a, torch, model, cfg, a.device))
    n_params = sum(x.numel() for x in model.parameters())
    print("# e2e_torch: PyTorch %s, %s (%d layers, %.3g B parameters), %s, %s, %.1f s" %
          (torch.__version__, a.shape, L, n_params / 1e9, a.device, a.dtype, time.perf_counter() - t0))
    for r in rs:
        print("  %-10s %12d %12.4f %14.1f %10s" % (r["work"], r["tokens"], r["seconds"], r["tokens_per_s"],
                                                  "%.4f" % r["loss"] if "loss" in r else "-"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"side": "torch", "torch": torch.__version__, "shape": a.shape, "layers": L, "params": n_params,
                       "device": a.device, "dtype": a.dtype, "results": rs}, f)


if __name__ == "__main__":
    main()
