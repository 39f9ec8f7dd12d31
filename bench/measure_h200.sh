#!/usr/bin/env bash
# The one prepared `memwall measure` run on a lent NVIDIA H200, and what to commit after it.
#
# 1. On the device machine, as ONE call of the device tool, from the repository root:
#        run(command="bash bench/measure_h200.sh device", timeout_s=390)
#    It checks the kernels and the decoder on the GPU (cuda.self_check), then measures for
#    --budget-s 270 (microbenchmarks, then the model runs) into a local folder and leaves two
#    files in $OUT (the tool returns at most 8): measure.log (nvidia-smi, the checks, the
#    progress, the summary) and h200.tgz with everything measured: hierarchy.yaml,
#    runtime_eager.yaml, runtime_graphs.yaml, measurements.csv, models.csv, profile.csv,
#    l2_resident.json, measure.log and errors.log if a case failed. About 5.5 minutes with the
#    machine's start, so a 15-minute lease leaves room for one rerun; give the machine back
#    after. The image has python3 with torch, triton, numpy, networkx and pyyaml, all that
#    `memwall measure` imports (not simpy or dask, which only the simulator needs), so the
#    checkout runs as it is, by PYTHONPATH, without installing.
# 2. Back on this machine, with the archive the tool returned (in its files_at):
#        bash bench/measure_h200.sh install FILES_AT/h200.tgz
#    copies the files to hierarchies/h200_measured.yaml, runtimes/h200_measured_eager.yaml,
#    runtimes/h200_measured_graphs.yaml, validation/measured_h200.csv (models.csv, file names
#    rewritten to the bundled ones), validation/h200_l2_resident.json and
#    validation/h200_microbenchmarks.csv, then
#    prints `memwall validate` on them: memwall calibrated on the microbenchmarks alone, the
#    model runs held out. Commit those files with measure.log's first lines as provenance,
#    and report the table in README.md (Measuring your own GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
device)
    : "${OUT:?run this through the device tool, which sets OUT}"
    out="$(mktemp -d)/h200"
    mkdir -p "$out"
    trap 'tar czf "$OUT/h200.tgz" -C "$(dirname "$out")" h200; cp "$out/measure.log" "$OUT/"' EXIT
    export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
    {
        date -u +"%Y-%m-%dT%H:%M:%SZ"
        git log -1 --format="commit %H" 2>/dev/null || true
        nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,driver_version --format=csv || true
        python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
    } 2>&1 | tee "$out/measure.log"
    # correct first (METHOD.md): wrong kernels would make every figure below meaningless
    set +e
    python3 -c "from memwall.measure.cuda import self_check; print('\n'.join(self_check()))" \
        2>&1 | tee -a "$out/measure.log"
    if [ "${PIPESTATUS[0]}" != 0 ]; then
        echo "self-check failed: not measuring (fix the kernel or decoder it names)" \
            | tee -a "$out/measure.log"
        exit 1
    fi
    timeout 345 python3 -m memwall measure --out "$out" --models --budget-s 270 2>&1 \
        | tee -a "$out/measure.log"
    echo "exit status ${PIPESTATUS[0]}" | tee -a "$out/measure.log"
    ;;
install)
    archive="${2:?usage: bench/measure_h200.sh install FILES_AT/h200.tgz}"
    tmp="$(mktemp -d)"
    tar xzf "$archive" -C "$tmp"
    src="$tmp/h200"
    for f in hierarchy.yaml runtime_eager.yaml runtime_graphs.yaml measurements.csv models.csv \
             l2_resident.json; do
        [ -f "$src/$f" ] || { echo "$src/$f: missing; rerun the device step" >&2; exit 2; }
    done
    grep -q "^# NVIDIA H200, measured by" "$src/hierarchy.yaml" \
        || { echo "$src/hierarchy.yaml: not an H200 measurement" >&2; exit 2; }
    sed -e 's/^runtime: runtime_eager /runtime: h200_measured_eager /' \
        "$src/hierarchy.yaml" > hierarchies/h200_measured.yaml
    cp "$src/runtime_eager.yaml" runtimes/h200_measured_eager.yaml
    cp "$src/runtime_graphs.yaml" runtimes/h200_measured_graphs.yaml
    cp "$src/l2_resident.json" validation/h200_l2_resident.json
    cp "$src/measurements.csv" validation/h200_microbenchmarks.csv
    sed -e 's/,hierarchy\.yaml,/,h200_measured.yaml,/' \
        -e 's/,runtime_eager\.yaml,/,h200_measured_eager,/' \
        -e 's/,runtime_graphs\.yaml,/,h200_measured_graphs,/' \
        -e 's/,l2_resident\.json,/,h200_l2_resident.json,/g' \
        "$src/models.csv" > validation/measured_h200.csv
    python -m memwall validate --csv validation/measured_h200.csv
    ;;
*)
    echo "usage: bash bench/measure_h200.sh device | install FOLDER" >&2
    exit 2
    ;;
esac
