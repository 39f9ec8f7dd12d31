"""Validation on both engines, side by side: MAPE in-sample and leave-one-source-out, overall,
per hierarchy and per runtime, on all rows and on the rows no figure was fitted to, and the
time each engine took.

    python bench/validation_table.py            # print
    python bench/validation_table.py --write    # also record tests/golden/validation.json
    python bench/validation_table.py --markdown # the README's table, from the record

The recorded file pins every row's prediction (tests/test_validation_pin.py recomputes a few
rows on both engines against it, and tests/test_readme.py checks the README's figures
against it). Re-record it, and say why in the commit, whenever a change moves a prediction.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memwall import validation  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "validation.json"
ENGINES = ("des", "analytic")
LABELS = {"a100_80gb.yaml": "A100 80GB", "h100_sxm.yaml": "H100 SXM", "h200.yaml": "H200",
          "mi300x.yaml": "MI300X", "tensorrt-llm": "TensorRT-LLM", "vllm": "vLLM",
          "fastertransformer": "FasterTransformer", "eager": "PyTorch eager"}
KEEP = ("id", "hier", "runtime", "role", "source", "measured", "predicted", "predicted_loso")


def summary(points: list[dict]) -> dict[str, dict[str, float]]:
    """MAPE (percent) by group, in-sample and held out, over all rows and the fitted-to-none."""
    out = {}
    for name, rows in (("all", points),
                       ("validation", [p for p in points if p["role"] == "validation"])):
        out[name] = {"in_sample": validation._mapes(rows, "error"),
                     "held_out": validation._mapes(rows, "error_loso"), "rows": len(rows)}
    return out


def markdown(record: dict) -> str:
    """The README's MAPE table (tests/test_readme.py checks it against the record)."""
    engines, points = record["engines"], record["engines"]["des"]["points"]
    lines = ["| rows | count | DES in-sample | DES held out | analytic in-sample | "
             "analytic held out |", "|---|---|---|---|---|---|"]
    groups = [("all rows", "all", "all", "overall"),
              ("rows no figure was fitted to", "validation", "validation", "overall")]
    groups += [(LABELS.get(g, g), g, "all", g) for g in engines["des"]["mape"]["all"]["in_sample"]
               if g != "overall"]
    for label, key, rows, g in groups:
        n = sum(1 for p in points if (rows == "all" or p["role"] == "validation")
                and g in ("overall", p["hier"], p["runtime"]))
        cells = [engines[e]["mape"][rows][k][g] for e in ENGINES for k in ("in_sample", "held_out")]
        lines.append(f"| {label} (`{key}`) | {n} | " + " | ".join(f"{c:.1f}%" for c in cells)
                     + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"record {GOLDEN.relative_to(ROOT)}")
    ap.add_argument("--markdown", action="store_true",
                    help="print the README's table from the record, run nothing")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(GOLDEN.read_text())))
        return 0
    runs, seconds = {}, {}
    for engine in ENGINES:
        t0 = time.perf_counter()
        runs[engine] = validation.validate(engine=engine)
        seconds[engine] = time.perf_counter() - t0
    tables = {e: summary(r["points"]) for e, r in runs.items()}
    groups = list(tables["des"]["all"]["in_sample"])
    print(f"{'MAPE %':<26}" + "".join(f"{e + ' ' + k:>19}" for e in ENGINES
                                      for k in ("in-sample", "held out")) + f"{'rows':>6}")
    for rows in ("all", "validation"):
        print(f"-- {rows} rows")
        counts = {"overall": tables["des"][rows]["rows"]}
        for p in runs["des"]["points"]:
            if rows == "all" or p["role"] == "validation":
                for g in ("hier", "runtime"):
                    counts[p[g]] = counts.get(p[g], 0) + 1
        for g in groups:
            cells = [tables[e][rows][k].get(g) for e in ENGINES for k in ("in_sample", "held_out")]
            if cells[0] is None:
                continue
            print(f"  {g:<24}" + "".join(f"{c:>18.1f}%" for c in cells) + f"{counts[g]:>6}")
    for e in ENGINES:
        print(f"{e}: {len(runs[e]['points'])} rows in {seconds[e]:.1f} s")
    if args.write:
        record = {"decode_samples": validation.DECODE_SAMPLES,
                  "engines": {e: {"points": [{k: p[k] for k in KEEP} for p in r["points"]],
                                  "mape": tables[e]} for e, r in runs.items()}}
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {GOLDEN.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
