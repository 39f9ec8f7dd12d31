"""memwall's command line: parse, load, build, run, write.

    memwall --workload gpt2 --hier hbm_accel.yaml [--json out.json]
    memwall describe|list|inspect|export|plot|sweep|validate|calibrate|paper|measure|serve ...

Every command calls the library (memwall.simulate, memwall.sweep, memwall.validate,
memwall.paper, memwall.measure) as a notebook would. The library is imported by each
command, not here, so that `memwall --version` and `-h` start at once. Every error is one
line on stderr and exit status 2; output paths are checked before any work starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from sim.errors import MemwallError, cut
from sim.outfile import check_target, figure_format, memwall_version, write_figure, write_text

DTYPE_CHOICES = ("fp32", "bf16", "fp16", "fp8", "int8", "int4")  # sim.opgraph.DTYPES
ENGINE_CHOICES = ("des", "analytic")  # memwall.inputs.ENGINES (tests keep them equal)
FUSION_CHOICES = ("none", "fused")  # sim.opgraph.FUSIONS
COMMANDS_HELP = ("subcommands: describe (counts only), list (presets, hierarchies, runtimes), "
                 "serve (requests arriving, continuous batching, a paged KV cache), "
                 "inspect, export, plot (traces), sweep (many designs, on Dask), validate "
                 "(against published measurements), calibrate (fit the declared runtime "
                 "figures), paper (the paper's figures), measure "
                 "(microbenchmarks on a local GPU: a hierarchy file); "
                 "'memwall SUBCOMMAND -h' for its flags")


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like every other memwall error."""

    def error(self, message: str) -> NoReturn:
        raise MemwallError(f"{message} (see '{self.prog} -h')")


class _Version(argparse.Action):
    """--version, reading the installed version only when asked (not for -h or a run)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        print(f"memwall {memwall_version()}")
        parser.exit()


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
                   help="preset name (gpt2, llama2-7b, ...; 'memwall list') or path to a "
                        "Hugging Face config.json")
    p.add_argument("--batch", type=int, default=1, help="sequences per batch (default 1)")
    p.add_argument("--prompt-len", type=int, default=128, help="prompt tokens (default 128)")
    p.add_argument("--gen-len", type=int, default=None,
                   help="tokens to generate (default 128 for decoders, 0 for encoders)")
    p.add_argument("--weight-dtype", choices=DTYPE_CHOICES, default=None,
                   help="every weight's dtype (default: a quantized checkpoint's own, else "
                        "bf16)")
    p.add_argument("--act-dtype", choices=DTYPE_CHOICES, default="bf16")
    p.add_argument("--kv-dtype", choices=DTYPE_CHOICES, default="bf16")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel devices (default 1)")
    p.add_argument("--routing", default="uniform", metavar="uniform|zipf:S",
                   help="mixture of experts: which experts routers pick; uniform (the expected "
                        "number of distinct experts) or zipf:S (skewed, exponent S); default "
                        "uniform")
    p.add_argument("--routing-file", metavar="TRACE.csv", default=None,
                   help="mixture of experts: a recorded routing trace (step,layer,token,"
                        "expert...) in place of --routing")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random routing draws (default 0)")
    p.add_argument("--json", metavar="PATH", help="write the summary as JSON ('-' for stdout)")


def build_parser() -> Parser:
    p = Parser(prog="memwall", epilog=COMMANDS_HELP,
               description="Simulate Transformer inference on a memory hierarchy; show where "
                           "it stalls.")
    p.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    _workload_args(p)
    p.add_argument("--hier", required=True,
                   help="hierarchy file: a bundled name (hbm_accel.yaml; 'memwall list') or a "
                        "path")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="des",
                   help="des: discrete-event (default); analytic: per-op roofline")
    p.add_argument("--runtime", metavar="NAME",
                   help="software stack: a bundled runtime (tensorrt-llm, vllm, gpt-fast, "
                        "eager, ...; 'memwall list') or a path (default: the hierarchy's)")
    p.add_argument("--prefetch-depth", type=int, default=None, metavar="N",
                   help="ops ahead whose weights are fetched early (default: the runtime's)")
    p.add_argument("--fusion", choices=FUSION_CHOICES, default=None,
                   help="none: one kernel per op, as eager PyTorch runs; fused: attention and "
                        "each matmul with its elementwise epilogue as one kernel, as compiled "
                        "inference stacks run (default: the runtime's)")
    p.add_argument("--decode-samples", type=int, default=None, metavar="N",
                   help="run N of the decode steps, each standing for its neighbours, and "
                        "report the estimated error (default: every step)")
    p.add_argument("--no-overlap", action="store_true",
                   help="what-if: no streaming under compute (reads, then compute, then writes)")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", dest="overrides",
                   help="override a hierarchy value, e.g. --set 'memory.l2.capacity=256 MiB', "
                        "or a runtime value, e.g. --set 'runtime.kernels.launch=2 us'")
    p.add_argument("--top", type=_count, default=5, help="ops listed in the report (default 5)")
    p.add_argument("--max-ops", type=_count, default=None, metavar="N",
                   help="refuse, before any work, a run of more than N op executions "
                   "(a run estimated over a minute prints its size first)")
    p.add_argument("--trace", metavar="PATH.h5",
                   help="write every op execution to an HDF5 trace (see 'memwall inspect')")
    p.add_argument("--ops", metavar="FILE.csv",
                   help="write the per-op-type table (calls, time, stalls, bytes per level) "
                        "as CSV; no trace needed")
    return p


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings of parsed workload flags, as memwall.inputs takes them."""
    return {"batch": args.batch, "prompt_len": args.prompt_len, "gen_len": args.gen_len,
            "weight_dtype": args.weight_dtype, "act_dtype": args.act_dtype,
            "kv_dtype": args.kv_dtype, "tp": args.tp, "routing": args.routing,
            "routing_file": args.routing_file, "seed": args.seed}


def _outputs(*given: tuple[str, str | None]) -> None:
    """Refuse, before any work, output paths that cannot be written or that collide."""
    seen: dict[str, str] = {}
    for flag, path in given:
        if path is None or path == "-" and flag == "--json":
            continue
        if path == "-":
            raise MemwallError(f"{flag} -: not a file path; only --json writes to stdout")
        real = str(check_target(path, flag))
        if real in seen:
            raise MemwallError(f"{flag} {path}: the same file as {seen[real]}; expected "
                               "different paths")
        seen[real] = f"{flag} {path}"


def write_json(data: Any, path: str) -> None:
    """Write `data` as JSON to `path` (whole or not at all), or to stdout for '-'."""
    text = json.dumps(data, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
    else:
        write_text(path, text)


def cmd_run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)  # before the library loads: -h, --version
    _outputs(("--json", args.json), ("--trace", args.trace), ("--ops", args.ops))
    from .inputs import request
    from .simulation import LONG_RUN_S, duration, run, run_size

    req = request(args.workload, args.hier, engine=args.engine, runtime=args.runtime,
                  fusion=args.fusion,
                  prefetch_depth=args.prefetch_depth, overlap=not args.no_overlap,
                  decode_samples=args.decode_samples,
                  overrides=args.overrides, **_settings(args))
    n, secs = run_size(req)
    if secs > LONG_RUN_S and (args.max_ops is None or n <= args.max_ops):
        print(f"memwall: this run simulates {n:,} op executions, about {duration(secs)} "
              "(--max-ops caps a run; --decode-samples shortens one)", file=sys.stderr)
    result = run(req, trace=args.trace, ops=args.ops, progress=sys.stderr.isatty(),
                 command_line=["memwall", *argv], max_ops=args.max_ops)
    if args.json:
        write_json(result.to_dict(), args.json)
    if args.json != "-":
        print(result.report(top=args.top))
    return 0


def cmd_describe(argv: list[str]) -> int:
    p = Parser(prog="memwall describe",
               description="Parameters, FLOPs, MOPs and arithmetic intensity (no hardware).")
    _workload_args(p)
    args = p.parse_args(argv)
    _outputs(("--json", args.json))
    import workloads

    from .inputs import as_workload, run_spec

    d = workloads.describe(run_spec(as_workload(args.workload).model, **_settings(args)))
    if args.json:
        write_json(d, args.json)
    if args.json != "-":
        print(workloads.format_describe(d))
    return 0


def cmd_list(argv: list[str]) -> int:
    Parser(prog="memwall list", description="Workload presets, bundled hierarchies and "
           "runtimes, one line each.").parse_args(argv)
    import workloads

    from . import bundled

    print("workloads (--workload NAME, or a Hugging Face config.json path)")
    for name, m in workloads.PRESETS.items():
        moe = (f" ({m.n_experts} experts, top {m.top_k}; {m.active_params:,} active)"
               if m.n_experts else "")
        print(f"  {name:<17} {m.arch}, {m.n_layers} layers, d_model {m.d_model}, "
              f"{m.n_params:,} parameters{moe}")
    print("hierarchies (--hier NAME, or a path)")
    for path in bundled.hierarchy_files():
        print(f"  {path.name:<24} {bundled.describe_file(path)}")
    print("runtimes (--runtime NAME, or a path)")
    for path in bundled.runtime_files():
        print(f"  {path.stem:<24} {bundled.describe_file(path)}")
    return 0


def _trace_parser(command: str) -> Parser:
    what = {"inspect": "The run's report rebuilt from a trace, then the most-stalled ops and "
                       "per-layer and per-token breakdowns.",
            "export": "A Chrome/Perfetto timeline (ui.perfetto.dev) of a window of tokens.",
            "plot": "A figure (png, pdf or svg, by the file's extension): roofline, time "
                    "breakdown per token, or timeline of a token window."}
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
        p.add_argument("--kind", required=True,
                       choices=("roofline", "breakdown", "timeline", "latency", "occupancy"),
                       help="roofline, breakdown, timeline; a serving trace also latency (CDFs) "
                            "and occupancy (KV cache, batch and queue over time)")
        p.add_argument("-o", "--output", metavar="FILE.png", required=True,
                       help="the figure; its extension (.png, .pdf, .svg) sets the format")
    return p


def cmd_inspect(argv: list[str]) -> int:
    args = _trace_parser("inspect").parse_args(argv)
    _outputs(("--json", args.json))
    from sim import Selection, format_inspection, inspect_trace, read_trace, token_range

    sel = Selection(token_range(args.tokens) if args.tokens else None, args.layer, args.op_kind)
    result = inspect_trace(args.trace, sel, top=args.top)
    if args.json:
        write_json(result, args.json)
    if args.json != "-":
        trace = read_trace(args.trace, records=False)
        header = None
        if "scheduler" in trace.summary:  # a serving run's trace: its own report first
            from .serving.result import format_serve_report

            header = format_serve_report(trace.summary, trace.hierarchy, top=args.top)
        print(format_inspection(result, trace.hierarchy, top=args.top, header=header))
    return 0


def cmd_export(argv: list[str]) -> int:
    args = _trace_parser("export").parse_args(argv)
    _outputs(("--perfetto", args.perfetto))
    from sim import export_perfetto, token_range

    tokens = token_range(args.tokens) if args.tokens else None
    n = export_perfetto(args.trace, args.perfetto, tokens)
    print(f"memwall: wrote {n} op executions to {args.perfetto} (open in ui.perfetto.dev)")
    return 0


def cmd_plot(argv: list[str]) -> int:
    args = _trace_parser("plot").parse_args(argv)
    figure_format(args.output, "-o")
    _outputs(("-o", args.output))
    if args.kind in ("latency", "occupancy"):
        from .serving.plots import plot_serving

        plot_serving(args.trace, args.kind, args.output)
        return 0
    from sim import plot_trace, token_range

    plot_trace(args.trace, args.kind, args.output,
               token_range(args.tokens) if args.tokens else None)
    return 0


def cmd_sweep(argv: list[str]) -> int:
    p = Parser(prog="memwall sweep", description="Run every point of a sweep file on Dask.")
    p.add_argument("sweep", help="sweep file (YAML), e.g. sweeps/l2_vs_bandwidth.yaml")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="results directory: points/, results.csv, sweep.png")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="worker processes of the embedded cluster (default: the cores)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="use an existing Dask cluster instead of an embedded one")
    args = p.parse_args(argv)
    from .sweeps import sweep

    res = sweep(args.sweep, args.out, workers=args.workers, scheduler=args.scheduler,
                command_line=["memwall", "sweep", *argv])
    print(res.verdict)
    png = res.out / "sweep.png"
    print(f"{len(res.rows)} of {res.points} points in {res.out / 'results.csv'} ({res.ran} run "
          f"now, {len(res.rows) - res.ran} before; {res.failed} failed)"
          f"{', plot ' + str(png) if res.plotted else ', no plot'}")
    code = 0
    if res.failed:
        why = "; ".join(f"{n} x {cut(error, 240)}" for error, n in res.failures[:3])
        more = len(res.failures) - 3
        why += f"; and {more} other errors (the error column of results.csv)" if more > 0 else ""
        print(f"memwall: error: {res.failed} of {res.points} points failed: {why}",
              file=sys.stderr)
        code = 1
    if res.missing:
        print(f"memwall: warning: {res.missing} points not finished; rerun the same command "
              "to complete them", file=sys.stderr)
        code = 1
    return code


def cmd_validate(argv: list[str]) -> int:
    p = Parser(prog="memwall validate", description="Predicted vs published measurements.")
    p.add_argument("--csv", default=None,
                   help="measurements (default: the bundled validation/measured.csv)")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="des")
    p.add_argument("--json", metavar="PATH", help="write the result as JSON ('-' for stdout)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="write the parity chart (png, pdf or svg, by the extension)")
    args = p.parse_args(argv)
    _outputs(("--json", args.json), ("--plot", args.plot))
    if args.plot:
        figure_format(args.plot, "--plot")
    from .validation import format_table, load_points, measured_csv, parity_plot, validate

    result = validate(load_points(args.csv or measured_csv()), args.engine,
                      progress=sys.stderr.isatty())
    if args.json:
        write_json(result, args.json)
    if args.json != "-":
        print(format_table(result))
    if args.plot:
        parity_plot(result, args.plot)
        if args.json != "-":
            print(f"parity chart: {args.plot}", file=sys.stderr)
    return 0


def cmd_calibrate(argv: list[str]) -> int:
    p = Parser(prog="memwall calibrate",
               description="Fit the figures of validation/calibration.yaml on their rows, "
               "write them into the runtime files, and refit them without each source for "
               "leave-one-source-out (validation/calibration_results.json).")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="des")
    p.add_argument("--dry-run", action="store_true",
                   help="fit and print the values; write nothing")
    args = p.parse_args(argv)
    from .validation import run_calibration

    values, files = run_calibration(args.engine, write=not args.dry_run,
                                    on_step=lambda line: print(line, file=sys.stderr))
    for name, text in values.items():
        print(f"{name:<60} {text}")
    for f in files:
        print(f"wrote {f}", file=sys.stderr)
    return 0


def cmd_paper(argv: list[str]) -> int:
    p = Parser(prog="memwall paper", description="The paper's figures.")
    sub = p.add_subparsers(dest="figure", required=True, parser_class=Parser)
    p3 = sub.add_parser("fig3", help="BERT vs GPT-2 FLOPs, MOPs, intensity, latency")
    p3.add_argument("--engine", choices=ENGINE_CHOICES, default="des")
    p1 = sub.add_parser("fig1", help="hardware trends with fitted growth per two years")
    pp = sub.add_parser("projection", help="a hierarchy scaled along the trends")
    pp.add_argument("--hier", required=True, help="bundled name or path")
    pp.add_argument("--workload", required=True, help="preset or config.json")
    pp.add_argument("--years", type=int, default=10, help="horizon, in years (default 10)")
    pp.add_argument("--prompt-len", type=int, default=128)
    pp.add_argument("--gen-len", type=int, default=32)
    pp.add_argument("--dtype", choices=DTYPE_CHOICES, default="bf16",
                    help="weights, activations and KV (default bf16)")
    pp.add_argument("--engine", choices=ENGINE_CHOICES, default="des")
    pp.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                    dest="overrides", help="override the base hierarchy (repeatable)")
    for q in (p3, p1, pp):
        q.add_argument("--out", required=True, help="output directory")
    args = p.parse_args(argv)
    from . import paper

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise MemwallError(f"--out {out}: not a directory; expected an output directory")
    out.mkdir(parents=True, exist_ok=True)
    meta = {"Description": json.dumps({"memwall_version": memwall_version(),
                                       "command_line": ["memwall", "paper", *argv]})}
    if args.figure == "fig3":
        rows = paper.fig3(engine=args.engine, progress=sys.stderr.isatty())
        paper.write_csv(rows, out / "fig3.csv")
        write_figure(paper.plot_fig3(rows), out / "fig3.png", {"Title": "Fig. 3", **meta},
                     dpi=110)
        for r in rows:
            print(f"{r['model']:<11}{r['seq_len']:>6}  FLOPs {r['flops']:.3e}  MOPs "
                  f"{r['mops_bytes']:.3e}  AI {r['arithmetic_intensity']:8.2f}  latency "
                  f"{r['latency_s'] * 1e3:10.2f} ms  x{r['latency_normalized']:.2f}")
    elif args.figure == "fig1":
        data = paper.load_fig1()
        fits = paper.fig1(data)
        write_figure(paper.plot_fig1(data, fits), out / "fig1.png", {"Title": "Fig. 1", **meta},
                     dpi=110)
        paper.write_csv([{"group": g, **f} for g, f in fits.items()], out / "fig1_fits.csv")
        for g, f in fits.items():
            print(f"{g:<16} {f['rate_per_2y']:.2f}x per 2 years (paper {f['paper']}x, "
                  f"{int(f['points'])} points)")
    else:
        from .inputs import as_workload

        w = as_workload(args.workload)
        rows = paper.projection(args.hier, w, args.years, args.engine, args.overrides,
                                prompt_len=args.prompt_len, gen_len=args.gen_len,
                                dtype=args.dtype, progress=sys.stderr.isatty())
        paper.write_csv(rows, out / "projection.csv")
        title = f"{w.name} on {Path(args.hier).stem}, scaled along the Fig. 1 trends"
        write_figure(paper.plot_projection(rows, title), out / "projection.png",
                     {"Title": title, **meta}, dpi=110)
        for r in rows:
            print(f"year {r['year']:>3}: {r['decode_s_per_token'] * 1e3:9.3f} ms/token  compute "
                  f"{100 * r['compute_utilization']:5.1f}%  memory stall "
                  f"{100 * r['memory_stall_share']:5.1f}%  bound by {r['bound_by']}")
    print(f"wrote {out}/", file=sys.stderr)
    return 0


def cmd_serve(argv: list[str]) -> int:
    from .serving.command import main as serve_main

    return serve_main(argv)


def cmd_measure(argv: list[str]) -> int:
    p = Parser(prog="memwall measure",
               description="Microbenchmarks on the first CUDA GPU (needs memwall-sim[gpu]): a "
                           "hierarchy file whose every figure says how it was measured.")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory: hierarchy.yaml, runtime_eager.yaml, "
                        "runtime_graphs.yaml, measurements.csv; with --models also "
                        "models.csv, profile.csv and l2_resident.json")
    p.add_argument("--models", nargs="?", const="", default=None, metavar="PRESETS",
                   help="also time decode and prefill of models with random weights: an "
                        "L2-resident model, its HBM twin and comma-separated presets (default "
                        "gpt2,llama2-7b,llama3-8b); models.csv scores memwall on them")
    p.add_argument("--budget-s", type=float, default=300.0, metavar="S",
                   help="seconds to measure (default 300); each stage stops between cases when "
                        "its share is spent, and the files hold what was measured")
    args = p.parse_args(argv)
    from . import measure

    models: bool | list[str] = False
    if args.models is not None:
        models = [m.strip() for m in args.models.split(",") if m.strip()] or True
    result = measure.run(args.out, models=models, budget_s=args.budget_s,
                         log=lambda line: print(line, file=sys.stderr, flush=True))
    print(result.summary())
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "describe": cmd_describe, "list": cmd_list, "sweep": cmd_sweep, "inspect": cmd_inspect,
    "export": cmd_export, "plot": cmd_plot, "validate": cmd_validate,
    "calibrate": cmd_calibrate, "paper": cmd_paper, "measure": cmd_measure, "serve": cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = COMMANDS.get(argv[0], cmd_run) if argv else cmd_run
    if argv and argv[0] in COMMANDS:
        argv = argv[1:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = command(argv)
            sys.stdout.flush()
        except BrokenPipeError:  # the reader went away (| head): stop quietly
            _silence_stdout()
            code = 0
        except MemwallError as e:
            code = _fail(str(e))
        except OSError as e:
            code = _fail(f"{e.filename or 'output'}: {e.strerror or e}")
        except KeyboardInterrupt:
            code = _fail("interrupted")
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"memwall: warning: {w.message}", file=sys.stderr)
    return code


def _silence_stdout() -> None:
    """Point stdout at the null device so that the interpreter's final flush cannot fail
    again (the Python documentation's recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _fail(message: str) -> int:
    print(f"memwall: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
