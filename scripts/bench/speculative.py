#!/usr/bin/env python3
"""Speculative decoding against plain greedy, batch 1 (docs/bench/speculative/README.md).

Runs `lightreasoner generate` once per prompt and setting (plain, then --draft with each K), reads the
throughput line on stderr and the ids on stdout, and prints a markdown table: decode tok/s, draft
acceptance, tokens per expert forward, and whether the ids equal plain greedy's. Standard library only.

    python3 scripts/bench/speculative.py --expert models/real/qwen2.5-coder-1.5b-instruct \
        --draft models/real/qwen2.5-coder-0.5b-instruct --prompts 3 --tokens 128 --ks 2,4,6
"""
import argparse
import json
import os
import re
import subprocess
import sys

PLAIN = re.compile(r"decode (\d+) tok in ([\d.]+)s")
SPEC = re.compile(r"decode (\d+) tok in ([\d.]+)s .*draft acceptance ([\d.]+)%, ([\d.]+) tok per model forward")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=".build/release/lightreasoner")
    parser.add_argument("--expert", required=True)
    parser.add_argument("--draft", required=True)
    parser.add_argument("--questions", default="data/gsm8k/test.jsonl")
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--ks", default="2,4,6")
    parser.add_argument("--extra", default="", help="more generate flags, e.g. '--weights stored'")
    args = parser.parse_args()

    with open(args.questions) as f:
        questions = [json.loads(line)["question"] for line in f][: args.prompts]
    settings = [("plain", [])] + [(f"K={k}", ["--draft", args.draft, "--draft-tokens", k]) for k in args.ks.split(",")]
    rows, plain_ids = [], {}
    for name, flags in settings:
        tokens = seconds = 0.0
        acceptance, per_forward, same = [], [], []
        for index, question in enumerate(questions):
            command = [args.binary, "generate", "--model", args.expert, "--prompt", question, "--max-new-tokens",
                       str(args.tokens), "--json", *flags, *args.extra.split()]
            run = subprocess.run(command, capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"{' '.join(command)} failed:\n{run.stderr}")
            ids = json.loads(run.stdout.strip().splitlines()[-1])["ids"]
            if name == "plain":
                plain_ids[index] = ids
                match = PLAIN.search(run.stderr)
            else:
                match = SPEC.search(run.stderr)
                acceptance.append(float(match.group(3)))
                per_forward.append(float(match.group(4)))
                same.append(ids == plain_ids[index])
                if ids != plain_ids[index]:
                    step = next((i for i, (a, b) in enumerate(zip(ids, plain_ids[index])) if a != b), min(len(ids), len(plain_ids[index])))
                    print(f"{name} prompt {index}: ids differ from plain at step {step}", file=sys.stderr)
            tokens += int(match.group(1))
            seconds += float(match.group(2))
            print(f"{name} prompt {index}: {run.stderr.strip().splitlines()[-1]}", file=sys.stderr)
        rows.append((name, tokens, seconds, acceptance, per_forward, same))
        load = os.getloadavg()
        print(f"{name} done, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", file=sys.stderr)

    plain_rate = rows[0][1] / rows[0][2]
    print("| setting | tokens | decode s | tok/s | vs plain | acceptance | tok per expert forward | ids = plain |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, tokens, seconds, acceptance, per_forward, same in rows:
        rate = tokens / seconds
        accept = f"{sum(acceptance) / len(acceptance):.1f} %" if acceptance else "—"
        forward = f"{sum(per_forward) / len(per_forward):.2f}" if per_forward else "1"
        equal = f"{sum(same)}/{len(same)}" if same else "—"
        print(f"| {name} | {tokens:.0f} | {seconds:.1f} | {rate:.2f} | {rate / plain_rate:.2f}× | {accept} | {forward} | {equal} |")


if __name__ == "__main__":
    main()
