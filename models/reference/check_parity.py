"""Measures how far `usq` (release build) is from the reference goldens.

Runs `usq compare/score --json` on every record of tests/golden/golden.json and hc18.json and
prints the largest relative uLPIPS and absolute NRQ differences. Standard library only (no project
imports, so it also runs as a plain file without the venv); after `cargo build --release`:

    models/.venv/bin/python -m usq_reference.check_parity
    python3 models/reference/check_parity.py
"""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("USQ_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))
USQ = os.path.join(REPO, "target", "release", "usq")
MODEL = os.path.join(REPO, "models", "tinyusfm-seeded.onnx")


def resolve(p):
    return os.path.join(SHARED, p[len("../shared/data/"):]) if p.startswith("../shared/data/") else os.path.join(REPO, p)


def usq(args):
    out = subprocess.run([USQ, *args, "--json", "--model", MODEL], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def main():
    for name in ["golden.json", "hc18.json"]:
        g = json.load(open(os.path.join(REPO, "tests", "golden", name)))
        paths = [resolve(u["ref"]) for u in g["ulpips"]] + [resolve(n["path"]) for n in g["nrq"]]
        if not all(os.path.exists(p) for p in paths):
            print(f"{name}: skipped, its frames are not here")
            continue
        rel = 0.0
        for u in g["ulpips"]:
            got = usq(["compare", resolve(u["ref"]), resolve(u["img"])])[0]["ulpips"]
            if u["ulpips"] == 0:
                assert got == 0, f"identical frames gave {got}"
            else:
                rel = max(rel, abs(got - u["ulpips"]) / abs(u["ulpips"]))
        records = [n for n in g["nrq"] + g.get("nrq_published", []) if os.path.exists(resolve(n["manifold"]))]
        ab = 0.0
        for n in records:
            organ = ["--organ", n["organ"]] if n["organ"] else []
            got = usq(["score", resolve(n["path"]), "--manifold", resolve(n["manifold"]), *organ])[0]["nrq"]
            ab = max(ab, abs(got - n["nrq"]))
        print(f"{name}: uLPIPS max rel diff {rel:.2e} over {len(g['ulpips'])} pairs; "
              f"NRQ max abs diff {ab:.2e} over {len(records)} records")


if __name__ == "__main__":
    sys.exit(main())
