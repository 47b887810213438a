#!/usr/bin/env python3
"""Side-by-side: `lightreasoner bench` against the PyTorch baseline on the same settings, then ratios.

Runs the Swift bench, then (one after the other, never together) scripts/bench/pytorch_baseline.py with
--python, and prints a markdown table of the ratios against their targets. Writes DIR/swift.json,
DIR/torch.json and DIR/compare.md. Stdlib only.

Usage: LR_PYTHON=/work/venv/bin/python python3 scripts/bench/compare.py --layers 2 --new-tokens 16
       python3 scripts/bench/compare.py --skip-swift --skip-torch --out bench-results   # re-tabulate
"""
import argparse, json, os, shlex, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPERT, AMATEUR = "qwen2.5-math-1.5b", "qwen2.5-0.5b"
# The numbers that FLOP counts need; must agree with SHAPES in pytorch_baseline.py.
SHAPES = {
    "qwen2.5-0.5b": dict(hidden=896, inter=4864, layers=24, heads=14, kv_heads=2, vocab=151936),
    "qwen2.5-math-1.5b": dict(hidden=1536, inter=8960, layers=28, heads=12, kv_heads=2, vocab=151936),
    "qwen2.5-math-7b": dict(hidden=3584, inter=18944, layers=28, heads=28, kv_heads=4, vocab=152064),
}


def layer_linear_flops(s):
    """2 × weights of one layer's matmuls per token: q, k, v, o and the gated MLP (biases ignored)."""
    h, kv = s["hidden"], s["kv_heads"] * s["hidden"] // s["heads"]
    return 2 * (2 * h * h + 2 * h * kv + 3 * h * s["inter"])


def flops_model(layers):
    """Per-token FLOPs of the linears and of one lm_head row, for both models cut to `layers`."""
    e, am = SHAPES[EXPERT], SHAPES[AMATEUR]
    le, la = min(layers or e["layers"], e["layers"]), min(layers or am["layers"], am["layers"])
    return dict(expert_tok=le * layer_linear_flops(e), expert_head=2 * e["hidden"] * e["vocab"],
                amateur_tok=la * layer_linear_flops(am), amateur_head=2 * am["hidden"] * am["vocab"],
                expert_layers=le, amateur_layers=la)


def flops_per_question(f, P, N):
    """Matmul FLOPs of one question's one-pass sampling; attention scores (QKᵀ, PV) are not counted.
    Expert: prefill of P tokens with lm_head at the last only, then N−1 decode steps (the Nth token's
    logits come from step N−1; the Nth token itself is never fed back). Amateur: one pass over the
    P+N−1 tokens of prompt + generated[:-1], lm_head at the N generated positions."""
    expert = P * f["expert_tok"] + f["expert_head"] + (N - 1) * (f["expert_tok"] + f["expert_head"])
    amateur = (P + N - 1) * f["amateur_tok"] + N * f["amateur_head"]
    return expert + amateur


def find(report, test, shape=None, prefix=None):
    """Mean of the first row with this test and shape (exact, or starting with prefix); None if absent."""
    for r in (report or {}).get("results", []):
        if r["test"] == test and (shape is None or r["shape"] == shape) \
                and (prefix is None or r["shape"].startswith(prefix)):
            return r["mean"], r["shape"]
    return None, None


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def fmt(x, unit=""):
    if x is None:
        return "n/a"
    s = f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{s} {unit}".strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--python", default=os.environ.get("LR_PYTHON", "python3"), help="runs the PyTorch baseline")
    p.add_argument("--binary", default=str(ROOT / ".build/release/lightreasoner"))
    p.add_argument("--layers", type=int, help="cut both models to N layers (CUT)")
    p.add_argument("--threads", type=int)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--prompt-tokens", type=int, default=100)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--sample-batch", type=int, default=8)
    p.add_argument("--decode-batch", type=int, default=128)
    p.add_argument("--decode-tokens", type=int, default=16, help="decode steps timed at --decode-batch")
    p.add_argument("--train-tokens", type=int, default=200)
    p.add_argument("--out", default="bench-results")
    p.add_argument("--skip-torch", action="store_true", help="reuse OUT/torch.json")
    p.add_argument("--skip-swift", action="store_true", help="reuse OUT/swift.json")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    P, N, B, D, T = a.prompt_tokens, a.new_tokens, a.sample_batch, a.decode_batch, a.train_tokens

    common = ["--repeats", str(a.repeats), "--prompt-tokens", str(P), "--new-tokens", str(N),
              "--sample-batch", str(B), "--train-tokens", str(T)]
    tail = (["--layers", str(a.layers)] if a.layers else []) + (["--threads", str(a.threads)] if a.threads else [])
    swift_cmd = [a.binary, "bench", "--shape", EXPERT, "--amateur-shape", AMATEUR, "--dtype", "f32",
                 "--tests", "gemm,sample,decode,train", *common, "--batch-sizes", str(D), "--decode-tokens", str(a.decode_tokens),
                 "--json", str(out / "swift.json"), *tail]
    torch_cmd = [a.python, str(ROOT / "scripts/bench/pytorch_baseline.py"), "--shape", EXPERT,
                 "--amateur-shape", AMATEUR, "--dtype", "f32", "--tests", "gemm,original,onepass,decode,train",
                 *common, "--decode-batch", str(D), "--decode-tokens", str(a.decode_tokens), "--json", str(out / "torch.json"), *tail]

    # Sequential on purpose: both use every core, so running them together would halve each.
    commands = []
    for name, cmd, skip in (("swift", swift_cmd, a.skip_swift), ("torch", torch_cmd, a.skip_torch)):
        line = shlex.join(cmd)
        if skip:
            commands.append(f"{name}: skipped, reused {out / (name + '.json')} (would run: {line})")
            continue
        print(f"$ {line}", flush=True)
        if subprocess.run(cmd).returncode != 0:
            sys.exit(f"{name} bench failed: {line}")
        commands.append(f"{name}: {line}")

    def load(name):
        path = out / f"{name}.json"
        if not path.exists():
            print(f"warning: {path} missing", file=sys.stderr)
            return None
        return json.loads(path.read_text())
    sw, pt = load("swift"), load("torch")

    sample = f"B={B} P={P} N={N}"
    pt_orig, _ = find(pt, "sample original", f"B=1 P={P} N={N}")
    pt_one, _ = find(pt, "sample one-pass", sample)
    sw_one, _ = find(sw, "sample one-pass", sample)
    sw_gemm, _ = find(sw, "sgemm", "2048³")
    pt_gemm, _ = find(pt, "sgemm", "2048³")
    pt_dec, _ = find(pt, "greedy decode", f"B={D}")
    sw_dec, _ = find(sw, "greedy decode", f"B={D}")
    pt_train, _ = find(pt, "train step", f"per-sample T={T}")
    sw_train, _ = find(sw, "train step", f"per-sample T={T}")
    sw_packed, packed_shape = find(sw, "train step", prefix="packed")

    div = lambda x, y: x / y if x is not None and y else None
    f = flops_model(a.layers)
    q_flops = flops_per_question(f, P, N)
    floor_s = div(q_flops, sw_gemm * 1e9 if sw_gemm else None)
    tok_flops = f["expert_tok"] + f["expert_head"]
    dec_frac = div(sw_dec * tok_flops if sw_dec else None, sw_gemm * 1e9 if sw_gemm else None)

    rows = []  # quantity, PyTorch, Swift, ratio, target, met

    def row(q, pt_v, sw_v, ratio, target=None, unit_ratio="×", pct=False):
        if target is None:
            met = "—"
        else:
            met = "n/a" if ratio is None else ("yes" if ratio >= target else "no")
        shown = "n/a" if ratio is None else (f"{ratio * 100:.1f} %" if pct else f"{ratio:.2f}{unit_ratio}")
        tgt = "—" if target is None else (f"≥ {target * 100:.0f} %" if pct else f"≥ {target:g}×")
        rows.append((q, pt_v, sw_v, shown, tgt, met))

    row(f"sampling vs original ({sample})", fmt(pt_orig, "s/question") + " (original, B=1)",
        fmt(sw_one, "s/question"), div(pt_orig, sw_one), 25)
    row("sampling vs PyTorch one-pass", fmt(pt_one, "s/question"), fmt(sw_one, "s/question"), div(pt_one, sw_one), 2)
    row(f"compute floor: {q_flops / 1e12:.3g} TFLOP/question at Swift sgemm {fmt(sw_gemm, 'GFLOP/s')} "
        f"= {fmt(floor_s, 's')}", "—", fmt(sw_one, "s/question"), div(floor_s, sw_one), pct=True)
    row(f"decode B={D}: Swift tok/s × {tok_flops / 1e9:.3g} GFLOP/token ÷ Swift sgemm", "—",
        fmt(sw_dec, "tok/s"), dec_frac, 0.5, pct=True)
    row(f"decode B={D}: Swift ÷ PyTorch", fmt(pt_dec, "tok/s"), fmt(sw_dec, "tok/s"), div(sw_dec, pt_dec))
    row(f"training per-sample T={T}", fmt(pt_train, "samples/s"), fmt(sw_train, "samples/s"),
        div(sw_train, pt_train), 1.2)
    row(f"training {packed_shape or 'packed'} vs PyTorch per-sample", fmt(pt_train, "samples/s"),
        fmt(sw_packed, "samples/s"), div(sw_packed, pt_train), 10)
    row("sgemm 2048³", fmt(pt_gemm, "GFLOP/s"), fmt(sw_gemm, "GFLOP/s"), div(sw_gemm, pt_gemm))
    mib = lambda r, k: fmt(r[k] / 2**20, "MiB") if r and r.get(k) else "n/a"
    rows.append(("peak RSS", mib(pt, "peak_rss_bytes"), mib(sw, "peakResidentBytes"), "", "", ""))

    full = SHAPES[EXPERT]["layers"]
    layers = f"expert {f['expert_layers']} of {full} layers, amateur {f['amateur_layers']} of " \
             f"{SHAPES[AMATEUR]['layers']}" + (" (CUT)" if f["expert_layers"] < full else "")
    threads = [f"{n} {r.get('threads')}" for n, r in (("Swift", sw), ("PyTorch", pt)) if r]
    lines = [
        f"# Swift vs PyTorch: {EXPERT} expert, {AMATEUR} amateur, f32",
        "",
        f"Machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}. Threads: {', '.join(threads) or 'n/a'}. "
        f"{layers}. P={P} N={N}, sample batch {B}, decode batch {D}, train T={T}, repeats {a.repeats}.",
        "",
        "| quantity | PyTorch | Swift | ratio | target | met |",
        "|---|---:|---:|---:|---|---|",
        *[f"| {' | '.join(r)} |" for r in rows],
        "",
        "Ratios are Swift's speed-up (time ratios PyTorch ÷ Swift, throughput ratios Swift ÷ PyTorch). "
        "FLOP counts are 2 × weights of the matmuls (q, k, v, o, MLP, lm_head) per token, attention scores "
        "not counted; the layer counts above are the ones run.",
        "",
        "Commands:",
        "",
        *[f"    {c}" for c in commands],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (out / "compare.md").write_text(text)


if __name__ == "__main__":
    main()
