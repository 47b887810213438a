#!/usr/bin/env python3
"""PyTorch/HF baseline for `lightreasoner bench`: same shapes, random weights (nothing downloaded),
or real checkpoints with --model/--amateur-model (HF folders, e.g. models/real/*).

Tests (--tests, comma list) and the result rows they produce (test, shape, unit):
  gemm      ("sgemm", "S³", "GFLOP/s")                        square x @ y.T, S = --gemm-size
  prefill   ("prefill", "B=1 T=P", "tok/s")                   one prompt through the expert
  original  ("sample original", "B=1 P=.. N=..", "s/question") LightReasoner's LightR_sampling.py for one
            question: expert HF generate, then the amateur re-run on every prefix in --amateur-batch chunks
  onepass   ("sample one-pass", "B=.. P=.. N=..", "s/question") batched expert generate, then ONE amateur
            forward over the full sequences, logits at the N generated positions
  decode    ("greedy decode", "B=b", "tok/s")                 N cached decode steps after a prefill of b prompts
  train     ("train step", "per-sample T=..", "samples/s")    HF + PEFT LoRA step (forward, backward, AdamW)
  eval      ("eval generate", "B=.. N<=..", "tok/s")           --model only: HF batched generate (left-padded,
            stops at the model's eos) on the first --eval-limit GSM8K questions of --eval-data, the
            `eval` command's qwen25-math-cot prompt; generated tokens (up to each row's eos) per second
Each row is the mean ± sd over --repeats timed runs after one warm-up. Prints a markdown table; --json
writes the rows plus peak RSS. --layers N cuts both models to their first N layers (marked CUT).

Usage: python scripts/bench/pytorch_baseline.py --layers 1 --prompt-tokens 16 --new-tokens 8 --tests gemm,onepass
Needs: torch, transformers, peft (for train).
"""
import argparse, json, math, os, resource, statistics, time

import torch
import torch.nn.functional as F

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
TEXT_VOCAB = 151643  # ids below this are ordinary tokens; 151643 is <|endoftext|> (Qwen's pad token)
PAD = 151643
ALPHA, BETA = 0.2, 0.4  # plausibility factor and KL threshold of LightR_sampling.py


def timed(fn, device):
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def measure(fn, repeats, warmup=None):
    """One warm-up (a cheaper `warmup` where a full run would double a long test), then `repeats` samples."""
    (warmup or fn)()
    return [fn() for _ in range(repeats)]


def load(directory, layers, dtype, device):
    """A real checkpoint (HF folder) as `build` returns it: eos cleared, so generation runs to the limit."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype).to(device)
    full = model.config.num_hidden_layers
    if layers and layers < full:
        model.model.layers = model.model.layers[:layers]
        model.config.num_hidden_layers = layers
    model.generation_config.eos_token_id = None
    model.eval()
    return model, full


def build(shape, layers, dtype, device, seed=1):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    kw = dict(SHAPES[shape])
    full = kw["num_hidden_layers"]
    if layers:
        kw["num_hidden_layers"] = min(layers, full)
    cfg = Qwen2Config(**kw, hidden_act="silu", rms_norm_eps=1e-6, use_sliding_window=False,
                      eos_token_id=PAD, pad_token_id=PAD)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(dtype)
    # generate() fills unset options from here: without an eos it never stops early and no processor
    # masks the eos logit to -inf (which would make the full-vocab KL NaN), so scores stay raw logits.
    model.generation_config.eos_token_id = None
    model.eval()
    return model, full


def greedy_config(n, **outputs):
    """Greedy for exactly n tokens: with no eos the generation cannot stop early (random weights would
    otherwise hit <|endoftext|> at some point and shorten the run)."""
    from transformers import GenerationConfig
    return GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None,
                            pad_token_id=PAD, bos_token_id=None, use_cache=True, return_dict_in_generate=True,
                            **outputs)


def cached_forward(model):
    """model(ids, cache) -> (last-position logits, cache); transformers 5.x renamed past_key_values to cache."""
    import inspect
    new = "cache" in inspect.signature(model.forward).parameters
    def fwd(ids, cache=None):
        kw = {"cache" if new else "past_key_values": cache} if cache is not None else {}
        out = model(ids, use_cache=True, logits_to_keep=1, **kw)
        return out.logits[:, -1], out.cache if new else out.past_key_values
    return fwd


def contrast_step(expert_logp, amateur_logp):
    """One step of LightR_sampling.py: full-vocab KL(expert ‖ amateur), skip below β, else the
    contrastive softmax of log p_E − log p_A over the plausible set {p_E ≥ α · max p_E}."""
    v = min(expert_logp.size(0), amateur_logp.size(0))
    le, la = expert_logp[:v], amateur_logp[:v]
    kl = torch.sum(le.exp() * (le - la)).item()
    if kl < BETA:
        return None
    mask = le >= le.max() + math.log(ALPHA)
    weights = torch.softmax((le - la)[mask], -1)
    return dict(token_ids=torch.nonzero(mask)[:, 0].tolist(), weights=weights.tolist(), kl=kl)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", default="qwen2.5-math-1.5b", choices=sorted(SHAPES), help="expert shape")
    p.add_argument("--amateur-shape", default="qwen2.5-0.5b", choices=sorted(SHAPES))
    p.add_argument("--model", help="expert checkpoint folder (real weights) instead of --shape")
    p.add_argument("--amateur-model", help="amateur checkpoint folder instead of --amateur-shape")
    p.add_argument("--eval-data", default="data/gsm8k/test.jsonl", help="JSONL with a `question` field (eval)")
    p.add_argument("--eval-limit", type=int, default=16, help="questions in the eval test")
    p.add_argument("--eval-batch", type=int, default=16, help="rows per generate call in the eval test")
    p.add_argument("--eval-tokens", type=int, default=512, help="max new tokens in the eval test")
    p.add_argument("--layers", type=int, help="keep only the first N layers of both models (CUT)")
    p.add_argument("--dtype", default="f32", choices=["bf16", "f32"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int)
    p.add_argument("--json")
    p.add_argument("--tests", default="gemm,prefill,original,onepass,decode,train")
    p.add_argument("--prompt-tokens", type=int, default=100)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--sample-batch", type=int, default=8, help="questions per one-pass run")
    p.add_argument("--amateur-batch", type=int, default=8,
                   help="prefixes per amateur forward in `original` (the original's 64 runs out of memory "
                        "at a 152k vocab on 24 GiB)")
    p.add_argument("--decode-batch", default="128", help="batch size(s) for decode, comma list")
    p.add_argument("--decode-tokens", type=int, help="decode steps timed in `decode` (default: --new-tokens)")
    p.add_argument("--train-tokens", type=int, default=200)
    p.add_argument("--train-batch", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=3, help="optimizer steps per timed train sample")
    p.add_argument("--gemm-size", type=int, default=2048)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    tests = set(a.tests.split(","))
    unknown = tests - {"gemm", "prefill", "original", "onepass", "decode", "train", "eval"}
    if unknown:
        p.error(f"unknown tests: {', '.join(sorted(unknown))}")
    if "eval" in tests and not a.model:
        p.error("the eval test needs --model (a tokenizer and real weights)")
    if a.model and a.layers:
        p.error("--layers cuts random-weight shapes only")
    expert_name = os.path.basename(os.path.normpath(a.model)) if a.model else a.shape
    amateur_name = os.path.basename(os.path.normpath(a.amateur_model)) if a.amateur_model else a.amateur_shape
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    dev = a.device
    P, N, B = a.prompt_tokens, a.new_tokens, a.sample_batch
    rows = []

    def add(test, shape, unit, samples):
        sd = statistics.stdev(samples) if len(samples) > 1 else 0.0
        rows.append(dict(test=test, shape=shape, unit=unit, mean=statistics.mean(samples), sd=sd, samples=samples))
        print(f"  {test} {shape}: {statistics.mean(samples):.4g} {unit}", flush=True)

    if "gemm" in tests:
        s = a.gemm_size
        x, y = torch.randn(s, s, device=dev), torch.randn(s, s, device=dev)
        add("sgemm", f"{s}³", "GFLOP/s", measure(lambda: 2 * s**3 / timed(lambda: x @ y.T, dev) / 1e9, a.repeats))

    full = SHAPES[a.shape]["num_hidden_layers"]
    layers = min(a.layers, full) if a.layers else full
    if tests - {"gemm"}:
        if a.model:
            expert, full = load(a.model, None, dtype, dev)
            layers = full
        else:
            expert, _ = build(a.shape, a.layers, dtype, dev)
        gen = torch.Generator().manual_seed(0)
        # Random prompt ids from the ordinary tokens (a real checkpoint may have a smaller vocabulary).
        text_vocab = min(TEXT_VOCAB, expert.config.vocab_size)
        tok = lambda b, t: torch.randint(0, text_vocab, (b, t), generator=gen).to(dev)

        if "prefill" in tests:
            @torch.no_grad()
            def prefill():
                ids = tok(1, P)
                # logits_to_keep=1: lm_head only at the last position, as a prefill for generation needs.
                return P / timed(lambda: expert(ids, use_cache=True, logits_to_keep=1).logits[:, -1], dev)
            add("prefill", f"B=1 T={P}", "tok/s", measure(prefill, a.repeats))

        amateur = None
        if tests & {"original", "onepass"}:
            amateur = (load(a.amateur_model, None, dtype, dev) if a.amateur_model
                       else build(a.amateur_shape, a.layers, dtype, dev, seed=2))[0]

        if "original" in tests:
            @torch.no_grad()
            def original(n=N):
                # LightR_sampling.py for one question. The original works on text: it decodes each prefix
                # and re-tokenises chat template + prefix; we use token ids directly (no tokenizer), which
                # gives the same sequence lengths up to re-tokenisation effects.
                prompt = tok(1, P)
                samples = []
                def run():
                    out = expert.generate(prompt, attention_mask=torch.ones_like(prompt),
                                          generation_config=greedy_config(n, output_scores=True))
                    targets = out.sequences[0, P:]
                    assert targets.numel() == n, targets.numel()
                    expert_logp = [s[0].float().log_softmax(-1) for s in out.scores]
                    prefixes = [torch.cat([prompt[0], targets[:s]]) for s in range(1, n)]
                    amateur_logp = []
                    for i in range(0, len(prefixes), a.amateur_batch):
                        chunk = prefixes[i:i + a.amateur_batch]
                        padded = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True, padding_value=PAD)
                        logits = amateur(padded, attention_mask=(padded != PAD).long()).logits
                        for j, c in enumerate(chunk):
                            amateur_logp.append(logits[j, c.numel() - 1].float().log_softmax(-1))
                    for step in range(1, n):
                        samples.append(contrast_step(expert_logp[step], amateur_logp[step - 1]))
                return timed(run, dev)
            add("sample original", f"B=1 P={P} N={N}", "s/question",
                measure(original, a.repeats, warmup=lambda: original(min(N, 4))))

        if "onepass" in tests:
            @torch.no_grad()
            def onepass(n=N):
                prompts = tok(B, P)
                def run():
                    out = expert.generate(prompts, attention_mask=torch.ones_like(prompts),
                                          generation_config=greedy_config(n, output_logits=True))
                    assert out.sequences.shape == (B, P + n), out.sequences.shape
                    expert_logp = torch.stack(out.logits, 1).float().log_softmax(-1)       # (B, n, V)
                    # The token at position P+s is predicted at position P+s-1: hidden states of
                    # prompt + generated[:-1], lm_head only at the n positions P-1 .. P+n-2.
                    h = amateur.model(out.sequences[:, :P + n - 1]).last_hidden_state[:, P - 1:]
                    amateur_logp = amateur.lm_head(h).float().log_softmax(-1)
                    v = min(expert_logp.size(-1), amateur_logp.size(-1))
                    le, la = expert_logp[..., :v], amateur_logp[..., :v]
                    kl = (le.exp() * (le - la)).sum(-1)                                      # (B, n)
                    plausible = le >= le.max(-1, keepdim=True).values + math.log(ALPHA)
                    weights = torch.softmax((le - la).masked_fill(~plausible, -math.inf), -1)
                    keep = (kl >= BETA).unsqueeze(-1) & plausible
                    idx = keep.nonzero()                                  # (question, step, token id)
                    return idx, weights[keep], kl
                return timed(run, dev) / B
            add("sample one-pass", f"B={B} P={P} N={N}", "s/question",
                measure(onepass, a.repeats, warmup=lambda: onepass(min(N, 4))))
        del amateur

        fwd = cached_forward(expert)
        for b in [int(x) for x in a.decode_batch.split(",")] if "decode" in tests else []:
            @torch.no_grad()
            def decode(b=b):
                logits, cache = fwd(tok(b, P))  # prefill, untimed
                nxt = logits.argmax(-1, keepdim=True)
                steps = a.decode_tokens or N
                def run():
                    nonlocal cache, nxt
                    for _ in range(steps):
                        logits, cache = fwd(nxt, cache)
                        nxt = logits.argmax(-1, keepdim=True)
                return b * steps / timed(run, dev)
            add("greedy decode", f"B={b}", "tok/s", measure(decode, a.repeats))

        if "eval" in tests:
            from transformers import AutoTokenizer, GenerationConfig
            tokenizer = AutoTokenizer.from_pretrained(a.model)
            tokenizer.padding_side = "left"
            stops = GenerationConfig.from_pretrained(a.model).eos_token_id
            stops = stops if isinstance(stops, list) else [stops]
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.convert_ids_to_tokens(stops[0])
            with open(a.eval_data) as f:
                questions = [json.loads(line)["question"] for line in f if line.strip()][:a.eval_limit]
            system = "Please reason step by step, and put your final answer within \\boxed{}."
            texts = [f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
                     for q in questions]

            @torch.no_grad()
            def evaluate(limit=a.eval_tokens):
                generated, seconds = 0, 0.0
                for i in range(0, len(texts), a.eval_batch):
                    batch = tokenizer(texts[i:i + a.eval_batch], return_tensors="pt", padding=True).to(dev)
                    config = GenerationConfig(max_new_tokens=limit, do_sample=False, eos_token_id=stops,
                                              pad_token_id=tokenizer.pad_token_id, use_cache=True)
                    out = []
                    seconds += timed(lambda: out.append(expert.generate(**batch, generation_config=config)), dev)
                    for row in out[0][:, batch["input_ids"].shape[1]:].tolist():
                        ends = [k for k, t in enumerate(row) if t in stops]
                        generated += ends[0] + 1 if ends else len(row)
                return generated / seconds
            add("eval generate", f"B={a.eval_batch} N<={a.eval_tokens} ({len(texts)} questions)", "tok/s",
                measure(evaluate, a.repeats, warmup=lambda: evaluate(4)))

        if "train" in tests:
            # Last: PEFT wraps the expert in place.
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(expert, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                                                      target_modules=["q_proj", "v_proj"]))
            model.train()  # dropout on; gradient checkpointing stays off (HF default)
            opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=5e-5)
            T, TB = a.train_tokens, a.train_batch
            ids = tok(TB, T)
            label = torch.softmax(torch.randn(TB, TEXT_VOCAB, generator=gen), -1).to(dev)

            def step():
                # logits_to_keep=1: only the last position goes through lm_head (the loss needs no more).
                logits = model(input_ids=ids, logits_to_keep=1).logits[:, -1, :TEXT_VOCAB].float()
                loss = F.kl_div(logits.log_softmax(-1), label, reduction="batchmean")  # KL(label ‖ q)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            def steps():
                return TB * a.train_steps / timed(lambda: [step() for _ in range(a.train_steps)], dev)
            add("train step", f"per-sample T={T}", "samples/s", measure(steps, a.repeats, warmup=step))

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    cut = layers < full
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {dev}, dtype {a.dtype}, "
          f"expert {expert_name}, amateur {amateur_name}"
          + (f", {layers} of {full} layers (CUT)" if cut else ""))
    print("| test | shape | value | unit |\n|---|---|---:|---|")
    for r in rows:
        print(f"| {r['test']} | {r['shape']} | {r['mean']:.4g} ± {r['sd']:.2g} | {r['unit']} |")
    print(f"| peak RSS | ru_maxrss | {peak / 2**20:.1f} | MiB |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(shape=expert_name, amateur_shape=amateur_name,
                           layers=layers, full_layers=full,
                           dtype=a.dtype, threads=torch.get_num_threads(), results=rows, peak_rss_bytes=peak),
                      f, indent=2)


if __name__ == "__main__":
    main()
