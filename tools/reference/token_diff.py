#!/usr/bin/env python3
"""Compare the tokens of two `sailvl run --json` outputs (e.g. --device cuda vs --device cpu).

    token_diff.py A.json B.json      exit 0 when the token lists are identical, 1 otherwise
"""
import json
import sys

a, b = (json.load(open(p)) for p in sys.argv[1:3])
print("A:", a["tokens"])
print("B:", b["tokens"])
print("A timings:", a.get("timings"))
n = next((i for i, (x, y) in enumerate(zip(a["tokens"], b["tokens"])) if x != y), None)
if n is None and len(a["tokens"]) == len(b["tokens"]):
    print("identical")
    sys.exit(0)
print(f"first difference at token {n if n is not None else min(len(a['tokens']), len(b['tokens']))}")
sys.exit(1)
