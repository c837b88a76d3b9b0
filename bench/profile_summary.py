#!/usr/bin/env python
"""Summarise a py-spy ``--format raw`` profile (collapsed stacks), e.g. the
one ``bench/webhook.py --profile`` writes: inclusive and self share of the
samples per function, optionally only stacks through a given frame.

    .venv/bin/python bench/profile_summary.py bench/results/profile-*.txt [--through receive] [--top 40]
"""
from __future__ import annotations

import argparse
import re
from collections import Counter


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--through", default="", help="only stacks with a frame containing this text")
    p.add_argument("--top", type=int, default=40)
    args = p.parse_args()
    total, inclusive, own = 0, Counter(), Counter()
    for name in args.files:
        for line in open(name, encoding="utf-8", errors="replace"):
            stack, _, n = line.rstrip().rpartition(" ")
            if not n.isdigit():
                continue
            frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
            if args.through and not any(args.through in f for f in frames):
                continue
            total += int(n)
            for f in set(frames):
                inclusive[f] += int(n)
            own[frames[-1]] += int(n)
    print(f"{total} samples")
    print("inclusive:")
    for f, n in inclusive.most_common(args.top):
        print(f"  {n / total * 100:5.1f} %  {f[:160]}")
    print("self:")
    for f, n in own.most_common(min(args.top, 25)):
        print(f"  {n / total * 100:5.1f} %  {f[:160]}")


if __name__ == "__main__":
    main()
