"""`memwall serve`: parse, run memwall.serve, write (the command line's serving part).

    memwall serve --workload llama2-7b --hier h100_sxm.yaml --requests 1000 --rate 20 \\
        --prompt-len 512 --gen-len 256 [--scheduler continuous|chunked|static] [--json -]
"""

from __future__ import annotations

import sys

from ..cli import (
    DTYPE_CHOICES,
    ENGINE_CHOICES,
    FUSION_CHOICES,
    Parser,
    _count,
    _outputs,
    write_json,
)
from .server import serve


def parser() -> Parser:
    p = Parser(prog="memwall serve",
               description="Serve requests arriving over time with a batching scheduler and a "
                           "paged KV cache; every iteration runs on the hierarchy.")
    p.add_argument("--workload", required=True, help="preset name or config.json (a decoder)")
    p.add_argument("--hier", required=True, help="hierarchy file: a bundled name or a path")
    g = p.add_argument_group("requests")
    g.add_argument("--requests", type=_count, default=100, metavar="N",
                   help="requests to serve (default 100)")
    g.add_argument("--rate", metavar="R",
                   help="Poisson arrivals, requests per second (inf: all at time 0)")
    g.add_argument("--seed", type=int, default=0, help="seed of arrivals and lengths (default 0)")
    g.add_argument("--prompt-len", default="128", metavar="LEN",
                   help="prompt tokens: N, uniform:LOW:HIGH or lognormal:MEAN:SIGMA (default 128)")
    g.add_argument("--gen-len", default="128", metavar="LEN",
                   help="output tokens, the same forms (default 128)")
    g.add_argument("--requests-file", metavar="F.csv",
                   help="requests from CSV: arrival_s,prompt_tokens,output_tokens, or the Azure "
                        "trace's TIMESTAMP,ContextTokens,GeneratedTokens")
    s = p.add_argument_group("scheduler and KV cache")
    s.add_argument("--scheduler", choices=("continuous", "chunked", "static"), default=None,
                   help="continuous batching, prefill first (default); chunked prefill mixed with "
                        "decode; static batching")
    s.add_argument("--chunked-prefill", type=_count, metavar="TOKENS",
                   help="chunked prefill with this token budget per iteration")
    s.add_argument("--max-seqs", type=_count, default=256, help="sequences at once (default 256)")
    s.add_argument("--max-batched-tokens", type=_count, metavar="TOKENS",
                   help="tokens per iteration (default: the model's positions, at least 2048)")
    s.add_argument("--kv-block", type=_count, default=16, metavar="POSITIONS",
                   help="positions per KV block (default 16)")
    s.add_argument("--preempt", choices=("recompute", "swap"), default="recompute",
                   help="when the KV cache runs out: recompute the youngest sequence later, or "
                        "swap it to the next KV level of the placement (default recompute)")
    s.add_argument("--slo-ttft", type=float, metavar="S", help="TTFT target (s), for goodput")
    s.add_argument("--slo-tpot", type=float, metavar="S", help="TPOT target (s), for goodput")
    d = p.add_argument_group("device and runtime (as the main command)")
    d.add_argument("--engine", choices=ENGINE_CHOICES, default="des")
    d.add_argument("--runtime", metavar="NAME", help="software stack (default: the hierarchy's)")
    d.add_argument("--prefetch-depth", type=int, default=None, metavar="N")
    d.add_argument("--fusion", choices=FUSION_CHOICES, default=None)
    d.add_argument("--no-overlap", action="store_true")
    d.add_argument("--weight-dtype", choices=DTYPE_CHOICES, default=None)
    d.add_argument("--act-dtype", choices=DTYPE_CHOICES, default="bf16")
    d.add_argument("--kv-dtype", choices=DTYPE_CHOICES, default="bf16")
    d.add_argument("--tp", type=int, default=1)
    d.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", dest="overrides")
    o = p.add_argument_group("output")
    o.add_argument("--json", metavar="PATH", help="write the summary as JSON ('-' for stdout)")
    o.add_argument("--trace", metavar="PATH.h5",
                   help="write the op records and the per-request and per-iteration tables")
    o.add_argument("--top", type=_count, default=5, help="op types listed (default 5)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    _outputs(("--json", args.json), ("--trace", args.trace))
    result = serve(
        args.workload, args.hier, requests=args.requests, rate=args.rate, seed=args.seed,
        prompt_len=args.prompt_len, gen_len=args.gen_len, requests_file=args.requests_file,
        scheduler=args.scheduler or "continuous", chunked_prefill=args.chunked_prefill,
        max_seqs=args.max_seqs, max_batched_tokens=args.max_batched_tokens,
        kv_block=args.kv_block, preempt=args.preempt, slo_ttft=args.slo_ttft,
        slo_tpot=args.slo_tpot, engine=args.engine, runtime=args.runtime, fusion=args.fusion,
        prefetch_depth=args.prefetch_depth, overlap=not args.no_overlap,
        weight_dtype=args.weight_dtype, act_dtype=args.act_dtype, kv_dtype=args.kv_dtype,
        tp=args.tp, overrides=args.overrides, trace=args.trace,
        progress=sys.stderr.isatty(), command_line=["memwall", "serve", *argv])
    if args.json:
        write_json(result.to_dict(), args.json)
    if args.json != "-":
        print(result.report(top=args.top))
    return 0
