"""Regenerate every committed fixture under tests/data, byte for byte.

    tools/reference/.venv/bin/python tools/reference/make_fixtures.py [--out DIR] [--check]

Runs, in order:
  make_tokenizer_goldens.main(out_dir/tokenizer)   tokenizer goldens (not hf_speed.json: a timing)
  make_image_goldens.main(out_dir/images)          image tiling goldens and the test images
  make_model_goldens.main(out_dir)                 weights.json, vision and chat goldens

Determinism: fixed seeds, torch.set_num_threads(2), deterministic algorithms, stable JSON and
safetensors writers. `--check` regenerates into a temporary directory and compares the SHA-256
of every file with the committed tests/data (exit 1 and a list on any difference).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DATA = REPO / "tests" / "data"
sys.path.insert(0, str(HERE))

# (module, sub-directory of tests/data it writes, extra keyword arguments)
STEPS = (("make_tokenizer_goldens", "tokenizer", {"speed": False}),
         ("make_image_goldens", "images", {}),
         ("make_model_goldens", "", {}))


def generate(out_dir: Path) -> list[str]:
    os.environ.setdefault("PYTHONHASHSEED", "0")
    import torch
    torch.set_num_threads(2)
    ran = []
    for mod_name, sub, kwargs in STEPS:
        dest = out_dir / sub if sub else out_dir
        print(f"[make_fixtures] {mod_name}.main({dest})", file=sys.stderr)
        importlib.import_module(mod_name).main(str(dest), **kwargs)
        ran.append(mod_name)
    return ran


def digests(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if (p.is_file() and "sailvl-tokenizer" not in p.parts and "configs" not in p.parts
                and p.name != "hf_speed.json"):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DATA, help="tests/data directory to write (default: the repo's)")
    ap.add_argument("--check", action="store_true", help="regenerate into a temp dir and compare with --out")
    a = ap.parse_args()
    if not a.check:
        generate(a.out)
        return 0
    with tempfile.TemporaryDirectory(prefix="sailvl_fixtures_") as tmp:
        generate(Path(tmp))
        new, old = digests(Path(tmp)), digests(a.out)
        diff = sorted(k for k in new if new[k] != old.get(k))
        for k in diff:
            print(f"differs: {k}" if k in old else f"not committed: {k}")
        print(f"[make_fixtures] {len(new)} files regenerated, {len(diff)} differ", file=sys.stderr)
        return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
