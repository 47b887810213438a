"""Report for scripts/bench/real-pair.sh: rates per compute mode and how far bf16 agrees with f32.

Greedy agreement: eval items whose generated text is identical, and the mean fraction of each item's
tokens (whitespace-split words of the prediction) before the first difference. Kept-step agreement:
the sample folders' kept (question_id, step) pairs, |f32 ∩ bf16| / |f32 ∪ bf16|, on the questions
whose expert trajectories are identical and on all questions. Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def common_prefix_fraction(a: str, b: str) -> float:
    wa, wb = a.split(), b.split()
    n = 0
    for x, y in zip(wa, wb):
        if x != y:
            break
        n += 1
    return n / max(1, max(len(wa), len(wb)))


def main(out: Path) -> None:
    modes = ["f32", "bf16"]
    print(f"# f32 vs --compute bf16 ({out})\n")
    steps = (out / "steps.log").read_text() if (out / "steps.log").exists() else ""
    print("```\n" + steps.strip() + "\n```\n")

    print("| mode | bench decode tok/s (B=1, 16, 64) | eval s | eval generated tokens | eval tok/s | eval accuracy | sample s | sample s/question |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    evals, samples = {}, {}
    for mode in modes:
        bench = out / f"bench-{mode}.json"
        rates = "-"
        if bench.exists():
            results = json.loads(bench.read_text())["results"]
            rates = ", ".join(f"{r['mean']:.1f}" for r in results if r["name"] == "decode")
        items = load_jsonl(out / f"eval-{mode}" / "gsm8k.jsonl")
        evals[mode] = {item["id"]: item for item in items}
        seconds = lambda name: float((out / f"{name}.seconds").read_text()) if (out / f"{name}.seconds").exists() else float("nan")
        gen = sum(int(item.get("generated_tokens", 0)) for item in items)
        correct = sum(1 for item in items if item.get("correct"))
        summary = out / f"sample-{mode}" / "summary.json"
        questions = json.loads(summary.read_text())["questions_this_run"] if summary.exists() else 0
        samples[mode] = load_jsonl(out / f"sample-{mode}" / "samples.jsonl")
        es, ss = seconds(f"eval-{mode}"), seconds(f"sample-{mode}")
        print(f"| {mode} | {rates} | {es:.0f} | {gen} | {gen / es if es == es and es > 0 else float('nan'):.1f} | "
              f"{correct}/{len(items)} | {ss:.0f} | {ss / questions if questions else float('nan'):.2f} |")

    a, b = evals["f32"], evals["bf16"]
    shared = sorted(set(a) & set(b), key=str)
    if shared:
        same = sum(1 for i in shared if a[i]["prediction"] == b[i]["prediction"])
        prefix = sum(common_prefix_fraction(a[i]["prediction"], b[i]["prediction"]) for i in shared) / len(shared)
        graded_same = sum(1 for i in shared if a[i].get("correct") == b[i].get("correct"))
        print(f"\nGreedy agreement (eval, {len(shared)} items): identical output {same}/{len(shared)}; "
              f"mean fraction of words before the first difference {prefix:.3f}; same grade {graded_same}/{len(shared)}.")

    kept = {m: {(r["question_id"], r["step"]) for r in samples[m]} for m in modes}
    if kept["f32"] or kept["bf16"]:
        inter, union = kept["f32"] & kept["bf16"], kept["f32"] | kept["bf16"]
        print(f"\nKept-step agreement (sample): f32 kept {len(kept['f32'])}, bf16 kept {len(kept['bf16'])}, "
              f"both {len(inter)}; |∩|/|∪| = {len(inter) / max(1, len(union)):.3f}.")
        # Questions whose expert trajectory is the same in both modes (same prefixes at every kept step).
        def trajectory(mode):
            longest = {}
            for r in samples[mode]:
                q = r["question_id"]
                if q not in longest or len(r["prefix_ids"]) > len(longest[q]):
                    longest[q] = r["prefix_ids"]
            return longest
        ta, tb = trajectory("f32"), trajectory("bf16")
        same_q = {q for q in set(ta) & set(tb) if ta[q][:min(len(ta[q]), len(tb[q]))] == tb[q][:min(len(ta[q]), len(tb[q]))]}
        ka = {s for s in kept["f32"] if s[0] in same_q}
        kb = {s for s in kept["bf16"] if s[0] in same_q}
        print(f"On the {len(same_q)} questions whose expert prefixes agree: |∩|/|∪| = "
              f"{len(ka & kb) / max(1, len(ka | kb)):.3f} ({len(ka & kb)} of {len(ka | kb)}).")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/real-pair"))
