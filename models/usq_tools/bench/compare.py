"""Side-by-side CPU benchmark of the same ONNX model(s) under usq/tract and onnxruntime.

For every model, in one run on one machine, and interleaved per model (usq, then onnxruntime,
then the Python reference, then the next model) so that load on the machine hits all alike:

  (a) usq/tract       `usq bench --json` as a subprocess: the encoder forward on a [B,1,224,224]
                      input, and one full NRQ frame of IMG (all patches of its grid, B per encoder
                      run, decode excluded), with the load time and peak RSS usq reports.
  (b) onnxruntime     the same model file in Python (CPUExecutionProvider, intra_op = THREADS,
                      inter_op = 1, all graph optimisations): forward latency on a fixed random
                      [B,1,224,224] float32 input over N iterations after a warm-up; session
                      creation time as load_ms.
  (c) Python NRQ      the project's independent reference (usq_reference, models/reference/:
                      the paper's metric semantics, NumPy + onnxruntime) scoring IMG end to end
                      with the default manifold folder models/nrq: patch grid, encoder (B patches
                      per run, same session options as (b)), GMM log-likelihoods, worst-15% mean.
                      Decode and manifold loading are outside the timed region.

  (d) onnxruntime int8 the peer a scanner engineer would pick instead of usq: onnxruntime running its
                      *own* int8 quantisations of the fp32 model (the first --models file), made
                      here in a temporary folder with onnxruntime.quantization: `dynamic`
                      (quantize_dynamic, int8 weights per channel, activations quantised at run
                      time) and `static QDQ` (quantize_static, QDQ format, int8 weights per
                      channel and int8 activations, MinMax-calibrated on the same 64 HC18 training
                      patches as usq's int8 model: usq_tools.quantise.int8's sample_patches, seed
                      20261129). Forward latency as in (b). --no-ort-int8 skips them.

(b), (c) and (d) each run in a fresh child process, so that their peak RSS (getrusage ru_maxrss of
that process, Python and its imports included) does not carry over from one model to the next.
Latencies are in ms; p50/p99 are linearly interpolated percentiles. Ratios are tract/onnxruntime
(below 1: tract is faster); the NRQ ratio is usq's nrq_frame p50 over the Python reference's p50.

Run from anywhere (paths default to this repository), after `cargo build --release`:

    models/.venv/bin/python -m usq_tools.bench.compare
    models/.venv/bin/python -m usq_tools.bench.compare --threads 4 --batch 8 --out bench.json
    models/.venv/bin/python -m usq_tools.bench.compare --skip-usq --iterations 5   # no usq needed
"""
import argparse
import concurrent.futures
import importlib.metadata
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time

# The parent process stays light (no numpy/onnxruntime import; usq_tools.paths is standard library
# only): the children measure RSS, and a heavy parent could leak into their ru_maxrss through fork/exec.
from ..paths import MODELS, ROOT, USQ as DEFAULT_USQ

DEFAULT_MODELS = [os.path.join(MODELS, "tinyusfm.onnx"), os.path.join(MODELS, "tinyusfm-int8.onnx")]
DEFAULT_IMAGE = os.path.join(ROOT, "tests", "fixtures", "sim_sector_800x540.png")
DEFAULT_MANIFOLD = os.path.join(MODELS, "nrq")
USQ_TIMEOUT_S = 3600


# ---------------------------------------------------------------- arguments and machine
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--usq", default=DEFAULT_USQ, help="usq binary (default: %(default)s)")
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="ONNX model file(s)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads, both engines (default 1)")
    ap.add_argument("--batch", type=int, default=1, help="images per encoder run (default 1)")
    ap.add_argument("--iterations", type=int, default=50, help="timed forward iterations (default 50)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed onnxruntime forward runs first (default 3)")
    ap.add_argument("--nrq-iterations", type=int, default=5,
                    help="timed Python-reference NRQ frames, after one untimed (default 5)")
    ap.add_argument("--image", default=DEFAULT_IMAGE, help="frame for the NRQ timing (default: %(default)s)")
    ap.add_argument("--out", help="write all numbers as JSON here")
    ap.add_argument("--skip-usq", action="store_true", help="measure onnxruntime and the reference only")
    ap.add_argument("--no-ort-int8", action="store_true", help="skip onnxruntime's own int8 peers (d)")
    args = ap.parse_args(argv)
    for name in ("threads", "batch", "iterations", "nrq_iterations"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        ap.error("--warmup must not be negative")
    for path in [*args.models, args.image]:
        if not os.path.isfile(path):
            ap.error(f"no such file: {path}")
    return args


def cpu_model():
    """The first 'model name' line of /proc/cpuinfo (None where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(usq_version):
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": package_version("onnxruntime"),
        "numpy": package_version("numpy"),
        "usq": usq_version,
    }


# ---------------------------------------------------------------- (a) usq through tract
def check_usq(usq):
    """Exit with a clear message unless `usq` exists and has the `bench` subcommand. -> version."""
    if not (os.path.isfile(usq) and os.access(usq, os.X_OK)):
        sys.exit(f"bench_compare: no usq binary at {usq} (build it with `cargo build --release`, "
                 "pass --usq PATH, or --skip-usq to measure onnxruntime only)")
    probe = subprocess.run([usq, "bench", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        detail = (probe.stderr or probe.stdout).strip().splitlines()
        sys.exit(f"bench_compare: {usq} has no usable `bench` subcommand "
                 f"({detail[0] if detail else f'exit status {probe.returncode}'}); rebuild it from a "
                 "tree that has `usq bench`, or pass --skip-usq to measure onnxruntime only")
    version = subprocess.run([usq, "--version"], capture_output=True, text=True)
    return version.stdout.strip() or None


def run_usq_bench(usq, model, args):
    """`usq bench ... --json` -> {"forward": {...}, "nrq_frame": {...}} as usq printed them."""
    cmd = [usq, "bench", "--model", model, "--threads", str(args.threads), "--batch", str(args.batch),
           "--iterations", str(args.iterations), "--image", args.image, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=USQ_TIMEOUT_S)
    if proc.returncode != 0:
        sys.exit(f"bench_compare: `{' '.join(cmd)}` failed with status {proc.returncode}:\n{proc.stderr.strip()}")
    records = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            sys.exit(f"bench_compare: usq bench printed a line that is not JSON: {line!r}")
        records[rec.get("kind")] = rec
    missing = {"forward", "nrq_frame"} - records.keys()
    if missing:
        sys.exit(f"bench_compare: usq bench output lacks {sorted(missing)}; stdout was:\n{proc.stdout}")
    return records


# ---------------------------------------------------------------- (b), (c): run in child processes
def percentile(sorted_values, q):
    """Linear interpolation between closest ranks (numpy's default), q in 0..100."""
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarise(times_ms):
    s = sorted(times_ms)
    return {"p50_ms": percentile(s, 50), "p99_ms": percentile(s, 99), "mean_ms": sum(s) / len(s),
            "min_ms": s[0], "max_ms": s[-1], "iterations": len(s)}


def timed_ms(fn, iterations):
    """Wall time of each of `iterations` calls of fn(), in ms."""
    out = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def peak_rss_mb():
    """ru_maxrss of this (child) process in MiB: Python, NumPy and onnxruntime included."""
    import resource
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 1024.0 / 1024.0


def ort_session(model, threads):
    """-> (session, creation time in ms) with the benchmark's session options."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    return sess, (time.perf_counter() - t0) * 1e3


def ort_forward_worker(model, threads, batch, iterations, warmup):
    """(b) in a fresh process: forward latency of one [batch,1,224,224] input."""
    import numpy as np
    sess, load_ms = ort_session(model, threads)
    feed = {sess.get_inputs()[0].name:
            np.random.default_rng(0).uniform(0, 255, (batch, 1, 224, 224)).astype(np.float32)}
    for _ in range(warmup):
        sess.run(None, feed)
    stats = summarise(timed_ms(lambda: sess.run(None, feed), iterations))
    return {**stats, "load_ms": load_ms, "peak_rss_mb": peak_rss_mb(), "warmup": warmup}


def reference_nrq_worker(model, threads, batch, image, manifold, iterations):
    """(c) in a fresh process: the Python reference's full NRQ score of one decoded frame."""
    import usq_reference as ref

    class SessionEncoder(ref.Encoder):
        """The reference encoder on a session we built (its own __init__ fixes 4 threads)."""

        def __init__(self, sess, batch):
            self.sess, self.batch = sess, batch
            self.names = [o.name for o in sess.get_outputs()]

    sess, load_ms = ort_session(model, threads)
    enc = SessionEncoder(sess, batch)
    gray = ref.load_gray(image)
    manifolds = ref.load_manifold_set(manifold)
    score, k, patches = ref.nrq(enc, gray, manifolds)          # warm-up, and the score to report
    stats = summarise(timed_ms(lambda: ref.nrq(enc, gray, manifolds), iterations))
    return {**stats, "load_ms": load_ms, "peak_rss_mb": peak_rss_mb(), "patches": len(patches),
            "worst_k": k, "nrq": score, "organs": list(manifolds), "warmup": 1}


def make_ort_int8_peers(model, out_dir, seed=20261129):
    """(d) onnxruntime's own int8 quantisations of the fp32 model, written into out_dir:
    {"dynamic": path, "static QDQ": path}."""
    import numpy as np
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from ..quantise.int8 import sample_patches, training_frames

    x, _ = sample_patches(training_frames(), np.random.default_rng(seed), 48, 16)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(x[i:i + 1] for i in range(len(x)))

        def get_next(self):
            batch = next(self.it, None)
            return None if batch is None else {"image": batch}

    out = {"dynamic": os.path.join(out_dir, "ort-int8-dynamic.onnx"),
           "static QDQ": os.path.join(out_dir, "ort-int8-static-qdq.onnx")}
    quantize_dynamic(model, out["dynamic"], weight_type=QuantType.QInt8, per_channel=True)
    # onnxruntime's recommended pre-processing (shape inference, graph optimisation) first, and only
    # the MatMuls quantised (the Linear layers and attention's two products), as its guide does for
    # transformers; quantising LayerNormalization's vectors too measured slower.
    pre = os.path.join(out_dir, "preprocessed.onnx")
    quant_pre_process(model, pre)
    quantize_static(pre, out["static QDQ"], Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    return out


def in_fresh_process(fn, *fn_args):
    """Run fn(*fn_args) in a newly spawned Python process and return its result."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *fn_args).result()


# ---------------------------------------------------------------- one model, all engines
def ratio(a, b):
    return a / b if a is not None and b else None


def bench_model(model, args):
    name = os.path.basename(model)
    print(f"[{name}] ", end="", flush=True)
    usq = None
    if not args.skip_usq:
        print("usq bench ... ", end="", flush=True)
        usq = run_usq_bench(args.usq, model, args)
    print("onnxruntime forward ... ", end="", flush=True)
    ort_fwd = in_fresh_process(ort_forward_worker, model, args.threads, args.batch, args.iterations, args.warmup)
    print("python reference NRQ ... ", end="", flush=True)
    ref_nrq = in_fresh_process(reference_nrq_worker, model, args.threads, args.batch, args.image,
                               DEFAULT_MANIFOLD, args.nrq_iterations)
    print("done", flush=True)
    g = lambda kind, key: usq[kind].get(key) if usq else None  # noqa: E731
    ratios = {
        "forward_p50": ratio(g("forward", "p50_ms"), ort_fwd["p50_ms"]),
        "forward_p99": ratio(g("forward", "p99_ms"), ort_fwd["p99_ms"]),
        "forward_mean": ratio(g("forward", "mean_ms"), ort_fwd["mean_ms"]),
        "nrq_frame_p50": ratio(g("nrq_frame", "p50_ms"), ref_nrq["p50_ms"]),
    }
    return {"model": os.path.abspath(model), "model_bytes": os.path.getsize(model), "usq": usq,
            "onnxruntime_forward": ort_fwd, "python_reference_nrq": ref_nrq, "ratios_tract_over_ort": ratios}


# ---------------------------------------------------------------- report
def bench_ort_int8(model, args):
    """(d) for the fp32 model: onnxruntime's own int8 peers, forward only."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="usq-ort-int8-") as tmp:
        print(f"[{os.path.basename(model)}] onnxruntime int8 peers: quantising ... ", end="", flush=True)
        peers = in_fresh_process(make_ort_int8_peers, model, tmp)
        out = {}
        for name, path in peers.items():
            print(f"{name} forward ... ", end="", flush=True)
            out[name] = {**in_fresh_process(ort_forward_worker, path, args.threads, args.batch, args.iterations,
                                            args.warmup), "model_bytes": os.path.getsize(path)}
        print("done", flush=True)
    return out


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def table_rows(result):
    usq, fwd, nrq = result["usq"], result["onnxruntime_forward"], result["python_reference_nrq"]
    name = os.path.basename(result["model"])
    rows = []
    if usq is not None:
        f, n = usq["forward"], usq["nrq_frame"]
        rows.append((name, "usq/tract", f.get("p50_ms"), f.get("p99_ms"), n.get("p50_ms"), n.get("patches"),
                     f.get("load_ms"), f.get("peak_rss_mb"), n.get("peak_rss_mb")))
    rows.append((name, "onnxruntime", fwd["p50_ms"], fwd["p99_ms"], nrq["p50_ms"], nrq["patches"],
                 fwd["load_ms"], fwd["peak_rss_mb"], nrq["peak_rss_mb"]))
    for peer, f in result.get("onnxruntime_int8", {}).items():
        rows.append((name, f"ort int8 {peer}", f["p50_ms"], f["p99_ms"], None, None, f["load_ms"],
                     f["peak_rss_mb"], None))
    return rows


def fastest(results):
    """(engine row label, model name, forward p50) of the fastest forward in the run."""
    rows = [r for res in results for r in table_rows(res) if r[2] is not None]
    best = min(rows, key=lambda r: r[2])
    return best[1], best[0], best[2]


def print_report(results, args):
    head = ("model", "engine", "fwd p50", "fwd p99", "NRQ p50", "patches", "load ms", "RSS fwd", "RSS NRQ")
    rows = [r for res in results for r in table_rows(res)]
    width = max(len(head[0]), *(len(r[0]) for r in rows))
    ew = max(len(head[1]), *(len(r[1]) for r in rows))
    line = lambda cells: f"{cells[0]:<{width}}  {cells[1]:<{ew}}" + "".join(f"{c:>9}" for c in cells[2:])  # noqa
    print(f"\nthreads={args.threads} batch={args.batch} forward iterations={args.iterations} "
          f"(ms; RSS in MiB) image={os.path.basename(args.image)}")
    print("fwd = one encoder run on a [batch,1,224,224] input; NRQ = one full frame score, decode excluded")
    print(line(head))
    for r in rows:
        print(line([r[0], r[1], *(fmt(v) for v in r[2:5]), fmt(r[5], "d"), *(fmt(v) for v in r[6:])]))
    print("onnxruntime NRQ = Python reference (usq_reference) end to end, "
          f"p50 of {args.nrq_iterations}; its RSS counts the Python process (interpreter, NumPy, onnxruntime).")
    peers = [(r[1], r[0], r[2]) for res in results for r in table_rows(res) if r[1] != "usq/tract" and r[2] is not None]
    if peers:
        e, m, p50 = min(peers, key=lambda r: r[2])
        print(f"fastest peer: {e} on {m}, forward p50 {p50:.1f} ms")
    e, m, p50 = fastest(results)
    print(f"fastest overall: {e} on {m}, forward p50 {p50:.1f} ms")
    if args.skip_usq:
        return
    print("\ntract/onnxruntime (below 1: tract faster)")
    for res in results:
        r = res["ratios_tract_over_ort"]
        print(f"  {os.path.basename(res['model']):<{width}}  forward p50 {fmt(r['forward_p50'], '.2f')}x  "
              f"p99 {fmt(r['forward_p99'], '.2f')}x   NRQ frame p50 {fmt(r['nrq_frame_p50'], '.2f')}x")
        pu, pr = res["usq"]["nrq_frame"].get("patches"), res["python_reference_nrq"]["patches"]
        if pu is not None and pu != pr:
            print(f"  warning: usq scored {pu} patches, the reference {pr}: NRQ times are not comparable")


def main(argv=None):
    args = parse_args(argv)
    usq_version = None if args.skip_usq else check_usq(args.usq)
    report = {"machine": machine_info(usq_version),
              "config": {"threads": args.threads, "batch": args.batch, "iterations": args.iterations,
                         "warmup": args.warmup, "nrq_iterations": args.nrq_iterations, "image": args.image,
                         "manifold": DEFAULT_MANIFOLD, "usq": None if args.skip_usq else args.usq,
                         "ort_options": {"providers": ["CPUExecutionProvider"], "intra_op_num_threads": args.threads,
                                         "inter_op_num_threads": 1, "graph_optimization_level": "ORT_ENABLE_ALL"},
                         "ort_int8": None if args.no_ort_int8 else {
                             "of": args.models[0],
                             "dynamic": "quantize_dynamic(weight_type=QInt8, per_channel=True)",
                             "static QDQ": "quant_pre_process; quantize_static(QDQ, per_channel, QInt8 activations "
                                           "and weights, op_types_to_quantize=[MatMul], MinMax on 64 HC18 "
                                           "training patches, seed 20261129)"}},
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "results": [bench_model(m, args) for m in args.models]}
    if not args.no_ort_int8:
        report["results"][0]["onnxruntime_int8"] = bench_ort_int8(args.models[0], args)
    print_report(report["results"], args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
