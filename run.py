"""memwall command line: parse, load, build, run, write.

    python run.py --workload gpt2 --hier hbm_accel.yaml [--json out.json]
    python run.py describe --workload gpt2 [--json -]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NoReturn

HIER_DIR = Path(__file__).resolve().parent / "hierarchies"
DTYPE_CHOICES = ("fp32", "bf16", "fp16", "fp8", "int8", "int4")


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like every other memwall error."""

    def error(self, message: str) -> NoReturn:
        from sim import MemwallError

        raise MemwallError(f"{message} (see '{self.prog} -h')")


def _count(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return n


def _workload_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload", required=True,
                   help="preset name (gpt2, llama2-7b, ...) or path to a Hugging Face config.json")
    p.add_argument("--batch", type=int, default=1, help="sequences per batch (default 1)")
    p.add_argument("--prompt-len", type=int, default=128, help="prompt tokens (default 128)")
    p.add_argument("--gen-len", type=int, default=None,
                   help="tokens to generate (default 128 for decoders, 0 for encoders)")
    p.add_argument("--weight-dtype", choices=DTYPE_CHOICES, default="bf16")
    p.add_argument("--act-dtype", choices=DTYPE_CHOICES, default="bf16")
    p.add_argument("--kv-dtype", choices=DTYPE_CHOICES, default="bf16")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel devices (default 1)")
    p.add_argument("--json", metavar="PATH", help="write the summary as JSON ('-' for stdout)")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="memwall",
        description="Simulate Transformer inference on a memory hierarchy; show where it stalls.",
        epilog="subcommands: describe (counts only), inspect, export, plot (traces), "
               "sweep (many designs, on Dask). "
               "'memwall describe -h' for its flags.",
    )
    _workload_args(p)
    p.add_argument("--hier", required=True,
                   help="hierarchy file: a bundled name (hbm_accel.yaml) or a path")
    p.add_argument("--engine", choices=("des", "analytic"), default="des",
                   help="des: discrete-event (default); analytic: per-op roofline")
    p.add_argument("--prefetch-depth", type=int, default=None, metavar="N",
                   help="ops ahead whose weights are fetched early (default: the hierarchy's)")
    p.add_argument("--fusion", choices=("none", "fused"), default=None,
                   help="none: one kernel per op, as eager PyTorch runs; fused: attention and "
                        "each matmul with its elementwise epilogue as one kernel, as compiled "
                        "inference stacks run (default: the hierarchy's compute.fusion)")
    p.add_argument("--no-overlap", action="store_true",
                   help="what-if: no streaming under compute (reads, then compute, then writes)")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", dest="overrides",
                   help="override a hierarchy value, e.g. --set 'memory.l2.capacity=256 MiB'")
    p.add_argument("--top", type=_count, default=5, help="ops listed in the report (default 5)")
    p.add_argument("--trace", metavar="PATH.h5",
                   help="write every op execution to an HDF5 trace (see 'memwall inspect')")
    return p


def build_describe_parser() -> argparse.ArgumentParser:
    p = Parser(prog="memwall describe",
                                description="Parameters, FLOPs, MOPs and arithmetic intensity.")
    _workload_args(p)
    return p


def make_spec(args: argparse.Namespace) -> Any:
    import workloads

    model = workloads.load_workload(args.workload)
    gen = args.gen_len if args.gen_len is not None else (0 if model.arch == "encoder" else 128)
    return workloads.RunSpec(
        model, batch=args.batch, prompt_len=args.prompt_len, gen_len=gen,
        precision=workloads.Precision(args.weight_dtype, args.act_dtype, args.kv_dtype),
        tp=args.tp,
    )


def simulate_run(spec: Any, hier: Any, engine: str = "des", prefetch_depth: int | None = None,
                 overlap: bool = True, sinks: tuple = (), progress: bool = False,
                 fusion: str | None = None) -> dict[str, Any]:
    """Simulate one run end to end and return its JSON summary (computed from the trace).
    `prefetch_depth` and `fusion` default to the hierarchy's."""
    import workloads
    from sim import EngineOptions, Summary, cost, simulate, simulate_analytic, tensor_footprint

    options = EngineOptions(prefetch_depth=prefetch_depth, overlap=overlap, tp=spec.tp)
    fusion = hier.compute.fusion if fusion is None else fusion
    footprint = tensor_footprint(workloads.final_phase(spec))
    summary = Summary(hier)

    def fan_out(record: Any) -> None:
        summary.add(record)
        for s in sinks:
            s(record)

    sink = fan_out if sinks else summary.add

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=spec.n_phases, unit="step", delay=2.0, file=sys.stderr, leave=False)
    run = simulate if engine == "des" else simulate_analytic
    try:
        run(workloads.phases(spec, fusion), hier, footprint, sink, options,
            on_phase=(lambda G: bar.update()) if bar else None)
    finally:
        if bar is not None:
            bar.close()
    p = spec.precision
    mm_dtype = workloads.compute_dtype(p.weights, p.activations)
    home = hier.level(hier.placement.weights[0])
    meta = {
        "workload": spec.model.name,
        "hierarchy": hier.name,
        "engine": engine,
        "arch": spec.model.arch,
        "batch": spec.batch,
        "prompt_len": spec.prompt_len,
        "gen_len": spec.gen_len,
        "tp": spec.tp,
        "fusion": fusion,
        "precision": {"weights": p.weights, "activations": p.activations, "kv_cache": p.kv_cache},
        "prefetch_depth": hier.compute.prefetch_depth if prefetch_depth is None else prefetch_depth,
        "overlap": overlap,
        "params": spec.model.n_params,
        "machine_balance": cost.matmul_rate(mm_dtype, hier.compute) / home.sustained_bytes_per_s,
    }
    return summary.result(meta)


def write_json(data: dict[str, Any], path: str) -> None:
    """Write `data` as JSON to `path` (whole or not at all), or to stdout for '-'."""
    from sim.outfile import write_text

    text = json.dumps(data, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
    else:
        write_text(path, text)


def cmd_run(argv: list[str]) -> int:
    from sim import MemwallError, format_report, load_hierarchy

    args = build_parser().parse_args(argv)
    spec = make_spec(args)
    hier = load_hierarchy(args.hier, search_dirs=[HIER_DIR], overrides=args.overrides)
    if args.json and args.json != "-" and not Path(args.json).resolve().parent.is_dir():
        raise MemwallError(f"--json {args.json}: no such directory; expected a path in an "
                           "existing directory, or - for stdout")
    trace = None
    if args.trace:
        from sim import TraceWriter  # loads h5py

        trace = TraceWriter(args.trace, hier, ["memwall", *argv])
    with trace or nullcontext() as tw:
        summary = simulate_run(spec, hier, args.engine, args.prefetch_depth, not args.no_overlap,
                               sinks=(tw.add,) if tw else (), progress=sys.stderr.isatty(),
                               fusion=args.fusion)
        if tw:
            tw.finish(summary)
    if args.json:
        write_json(summary, args.json)
    if args.json != "-":
        print(format_report(summary, hier, top=args.top))
    return 0


def cmd_describe(argv: list[str]) -> int:
    import workloads

    args = build_describe_parser().parse_args(argv)
    d = workloads.describe(make_spec(args))
    if args.json:
        write_json(d, args.json)
    if args.json != "-":
        print(workloads.format_describe(d))
    return 0


def cmd_sweep(argv: list[str]) -> int:
    import sweep

    return sweep.main(argv, search_dirs=[HIER_DIR])


def build_trace_parser(command: str) -> argparse.ArgumentParser:
    what = {"inspect": "The run's report rebuilt from a trace, then the most-stalled ops and "
                       "per-layer and per-token breakdowns.",
            "export": "A Chrome/Perfetto timeline (ui.perfetto.dev) of a window of tokens.",
            "plot": "A PNG: roofline, time breakdown per token, or timeline of a token window."}
    p = Parser(prog=f"memwall {command}", description=what[command])
    p.add_argument("trace", metavar="TRACE.h5", help="a trace written by --trace")
    p.add_argument("--tokens", metavar="A:B", help="steps A to B-1 (0 = prefill; A:, :B, or A)")
    if command == "inspect":
        p.add_argument("--layer", type=int, help="only the ops of this layer (-1: outside layers)")
        p.add_argument("--op-kind", choices=("matmul", "vector", "collective"))
        p.add_argument("--top", type=_count, default=10, help="ops listed (default 10)")
        p.add_argument("--json", metavar="PATH", help="write the result as JSON ('-' for stdout)")
    elif command == "export":
        p.add_argument("--perfetto", metavar="OUT.json", required=True,
                       help="Chrome trace-event JSON (default window: the first 3 decode steps)")
    else:
        p.add_argument("--kind", choices=("roofline", "breakdown", "timeline"), required=True)
        p.add_argument("-o", "--output", metavar="FILE.png", required=True)
    return p


def cmd_inspect(argv: list[str]) -> int:
    from sim import Selection, format_inspection, inspect_trace, read_trace, token_range

    args = build_trace_parser("inspect").parse_args(argv)
    sel = Selection(token_range(args.tokens) if args.tokens else None, args.layer, args.op_kind)
    result = inspect_trace(args.trace, sel, top=args.top)
    if args.json:
        write_json(result, args.json)
    if args.json != "-":
        hier = read_trace(args.trace, records=False).hierarchy
        print(format_inspection(result, hier, top=args.top))
    return 0


def cmd_export(argv: list[str]) -> int:
    from sim import export_perfetto, token_range

    args = build_trace_parser("export").parse_args(argv)
    tokens = token_range(args.tokens) if args.tokens else None
    n = export_perfetto(args.trace, args.perfetto, tokens)
    print(f"memwall: wrote {n} op executions to {args.perfetto} (open in ui.perfetto.dev)")
    return 0


def cmd_plot(argv: list[str]) -> int:
    from sim import plot_trace, token_range

    args = build_trace_parser("plot").parse_args(argv)
    plot_trace(args.trace, args.kind, args.output,
               token_range(args.tokens) if args.tokens else None)
    return 0


def cmd_validate(argv: list[str]) -> int:
    import validate

    return validate.main(argv)


def cmd_paper(argv: list[str]) -> int:
    import paper

    return paper.main(argv)


COMMANDS = {"describe": cmd_describe, "sweep": cmd_sweep,
            "inspect": cmd_inspect, "export": cmd_export, "plot": cmd_plot,
            "validate": cmd_validate, "paper": cmd_paper}


def main(argv: list[str] | None = None) -> int:
    from sim import MemwallError

    argv = sys.argv[1:] if argv is None else argv
    command = COMMANDS.get(argv[0], cmd_run) if argv else cmd_run
    if argv and argv[0] in COMMANDS:
        argv = argv[1:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = command(argv)
        except MemwallError as e:
            code = _fail(str(e))
        except OSError as e:
            code = _fail(f"{e.filename or ''}: {e.strerror or e}")
        except KeyboardInterrupt:
            code = _fail("interrupted")
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"memwall: warning: {w.message}", file=sys.stderr)
    return code


def _fail(message: str) -> int:
    print(f"memwall: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
