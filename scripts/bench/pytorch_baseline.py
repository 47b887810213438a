#!/usr/bin/env python3
"""PyTorch/HF baseline for `lightreasoner bench`, same shapes, random weights (nothing downloaded).

Measures on CPU (or --device cuda):
  sgemm      GFLOP/s, square S^3 and decode shapes M=1/8/64 x K=1536 x N=8960 (x @ W.T)
  prefill    tok/s, one prompt
  sample     the original LightReasoner sampling loop: expert greedy, one token at a time, B=1, with the
             amateur re-run on the same prefix each step (the per-step two-model forward)
  decode     batched greedy decode tok/s at each --batch-sizes (expert, KV cache)
  score      batched one-pass amateur scoring: full sequences in one forward, logits at the new positions
  train      HF + PEFT LoRA (r 8, alpha 16, q_proj+v_proj, dropout 0.05) forward+backward samples/s
Prints a markdown table (mean ± sd over --repeats after one warm-up) and optionally --json.

Usage: python scripts/bench/pytorch_baseline.py --shape qwen2.5-math-1.5b --layers 4 --repeats 3
Needs: torch, transformers, peft (for train).
"""
import argparse, json, statistics, time

import torch

SHAPES = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936, rope_theta=1e6, tie_word_embeddings=True,
                         max_position_embeddings=32768),
    "qwen2.5-math-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                              num_key_value_heads=2, vocab_size=151936, rope_theta=1e4, tie_word_embeddings=True,
                              max_position_embeddings=4096),
    "qwen2.5-math-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                            num_key_value_heads=4, vocab_size=152064, rope_theta=1e4, tie_word_embeddings=False,
                            max_position_embeddings=4096),
}


def measure(fn, repeats):
    fn()
    return [fn() for _ in range(repeats)]


def timed(fn, device):
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def build(shape, layers, dtype, device, seed=1):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    kw = dict(SHAPES[shape])
    full = kw["num_hidden_layers"]
    if layers:
        kw["num_hidden_layers"] = min(layers, full)
    cfg = Qwen2Config(**kw, hidden_act="silu", rms_norm_eps=1e-6, use_sliding_window=False, eos_token_id=151643)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(dtype)
    model.eval()
    return model, full


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", default="qwen2.5-0.5b", choices=sorted(SHAPES))
    p.add_argument("--amateur-shape", default="qwen2.5-0.5b", choices=sorted(SHAPES))
    p.add_argument("--layers", type=int)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-sizes", default="1,8,32,64,128")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--gemm-size", type=int, default=2048)
    p.add_argument("--tests", default="gemm,prefill,sample,decode,score,train")
    p.add_argument("--threads", type=int)
    p.add_argument("--json")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    tests = set(a.tests.split(","))
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    dev = a.device
    rows = []

    def add(test, shape, unit, samples):
        sd = statistics.stdev(samples) if len(samples) > 1 else 0.0
        rows.append(dict(test=test, shape=shape, unit=unit, mean=statistics.mean(samples), sd=sd, samples=samples))

    if "gemm" in tests:
        s = a.gemm_size
        x, y = torch.randn(s, s, device=dev), torch.randn(s, s, device=dev)
        add("sgemm", f"{s}³", "GFLOP/s", measure(lambda: 2 * s**3 / timed(lambda: x @ y.T, dev) / 1e9, a.repeats))
        w = torch.randn(8960, 1536, device=dev)
        for m in (1, 8, 64):
            xm = torch.randn(m, 1536, device=dev)
            add("sgemm", f"M={m} K=1536 N=8960 f32", "GFLOP/s",
                measure(lambda: 2 * m * 1536 * 8960 / timed(lambda: xm @ w.T, dev) / 1e9, a.repeats))

    batches = [int(b) for b in a.batch_sizes.split(",")]
    T, N = a.prompt_tokens, a.new_tokens
    needs = tests & {"prefill", "sample", "decode", "score", "train"}
    if needs:
        expert, full = build(a.shape, a.layers, dtype, dev)
        V = expert.config.vocab_size
        gen = torch.Generator().manual_seed(0)
        tok = lambda b, t: torch.randint(0, 151643, (b, t), generator=gen).to(dev)

        @torch.no_grad()
        def prefill():
            ids = tok(1, T)
            return T / timed(lambda: expert(ids, use_cache=True).logits[:, -1], dev)

        if "prefill" in tests:
            add("prefill", f"B=1 T={T}", "tok/s", measure(prefill, a.repeats))

        if "sample" in tests:
            amateur, _ = build(a.amateur_shape, a.layers, dtype, dev, seed=2)

            @torch.no_grad()
            def original():
                # The original algorithm: per step, expert and amateur each run the full prefix (no cache
                # shared across steps for the amateur), the expert picks greedily, both distributions kept.
                ids = tok(1, T)
                def run():
                    nonlocal ids
                    for _ in range(N):
                        le = expert(ids).logits[:, -1].float()
                        la = amateur(ids).logits[:, -1].float()
                        _ = torch.log_softmax(le, -1) - torch.log_softmax(la, -1)
                        ids = torch.cat([ids, le.argmax(-1, keepdim=True)], 1)
                return N / timed(run, dev)
            add("original sampling", f"B=1 expert+amateur", "tok/s", measure(original, a.repeats))

        for b in batches if "decode" in tests else []:
            @torch.no_grad()
            def decode(b=b):
                ids = tok(b, T)
                out = expert(ids, use_cache=True)
                past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
                def run():
                    nonlocal past, nxt
                    for _ in range(N):
                        o = expert(nxt, past_key_values=past, use_cache=True)
                        past, nxt = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)
                return b * N / timed(run, dev)
            add("greedy decode", f"B={b}", "tok/s", measure(decode, a.repeats))

        for b in batches if "score" in tests else []:
            @torch.no_grad()
            def score(b=b):
                ids = tok(b, T + N)
                def run():
                    h = expert.model(ids).last_hidden_state[:, T - 1:T + N - 1]
                    expert.lm_head(h).float().log_softmax(-1)
                return b * N / timed(run, dev)
            add("one-pass score", f"B={b}", "pos/s", measure(score, a.repeats))

        if "train" in tests:
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(expert, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                                                      target_modules=["q_proj", "v_proj"]))
            model.train()
            ids = tok(1, T + N)
            target = torch.softmax(torch.randn(1, 151643, generator=gen), -1).to(dev)
            def step(samples=4):
                def run():
                    for _ in range(samples):
                        logits = model(ids).logits[:, -1, :151643].float()
                        loss = torch.nn.functional.kl_div(logits.log_softmax(-1), target, reduction="batchmean")
                        loss.backward()
                return samples / timed(run, dev)
            add("train fwd+bwd", f"per-sample T={T + N}", "samples/s", measure(step, a.repeats))

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {dev}, dtype {a.dtype}"
          + (f", {a.layers} of {full} layers (CUT)" if needs and a.layers and a.layers < full else ""))
    print("| test | shape | value | unit |\n|---|---|---:|---|")
    for r in rows:
        print(f"| {r['test']} | {r['shape']} | {r['mean']:.2f} ± {r['sd']:.2f} | {r['unit']} |")
    try:
        import resource
        print(f"| peak RSS | ru_maxrss | {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} | MiB |")
    except ImportError:
        pass
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(shape=a.shape, layers=a.layers, dtype=a.dtype, results=rows), f, indent=2)


if __name__ == "__main__":
    main()
