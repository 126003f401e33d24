"""Training throughput, arithmetic rate and peak memory of SkorchCNNFeaturizer against skorch.

For each backbone, fusion mode and batch size, trainings of the same torch module on the same
crops along these paths:

- ``tf32``: "skorch defaults: fp32 with TF32 convolutions": a plain
  :class:`skorch.NeuralNetClassifier` (a DataLoader collating sample by sample, NCHW, AdamW,
  the same module, augmentation included) with PyTorch's default flags, under which cuDNN runs
  float32 convolutions on TF32 tensor cores (``torch.backends.cudnn.allow_tf32``). The baseline.
- ``fp32``: the same with TF32 refused (``allow_tf32`` off for cuDNN and cuBLAS): strict float32.
- ``ours``: :class:`p53radiomics.deep.SkorchCNNFeaturizer` (on CUDA: the training step captured
  as a CUDA graph and replayed, bf16 autocast, channels-last, FF branches on concurrent streams,
  crops uploaded once, fused AdamW, losses read once per epoch).
- ``ours-eager``: ours without the CUDA graph (``CNNNet(cuda_graph=False)``); ``ours-compile``:
  ours with ``compile=True``.

Reported per training: samples/s (crops per second), backbone images/s (samples/s times the
branches: 3 in FF, 1 in MC), achieved TFLOP/s (the forward and backward FLOPs of one sample,
counted by :class:`torch.utils.flop_counter.FlopCounterMode` on matrix products and convolutions,
times samples/s) and its share of the bf16 matrix-product rate measured on the same device at
start (8192^3 products on CUDA; float32 on a CPU), and peak memory (``max_memory_allocated`` on
CUDA; on a CPU the process's peak resident size, a running maximum). Throughput is taken over the
epochs after the first, which pays for cuDNN autotuning, the upload, the graph's warm-up and
capture (and compilation), from skorch's per-epoch durations.

``--profile`` trains ``ours`` and ``ours-eager`` (first backbone, mode and batch size) for two
epochs of ten steps under :mod:`torch.profiler` and prints, for the second epoch's ten steps,
the share of the time the GPU was busy and the kernels that took most of it.

Usage::

    python benchmarks/bench_cnn.py                       # the grid: 6 backbones x FF/MC x 32/64
    python benchmarks/bench_cnn.py --backbones resnet101 --modes ff --paths tf32 ours
    python benchmarks/bench_cnn.py --profile --backbones resnet101 --modes ff
    python benchmarks/bench_cnn.py --smoke --profile     # seconds on a CPU: a dry run
    python benchmarks/bench_cnn.py --summary DIR         # one table of every run in DIR

With ``--out DIR`` the runs are added to ``DIR/bench_cnn.json`` (several invocations add to one
file, e.g. ``gpu_check.sh``'s), the table is written to ``DIR/bench_cnn.txt`` and the profile to
``DIR/profile.txt``.
"""

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
import traceback
import warnings

import numpy as np
import torch
from skorch import NeuralNetClassifier

try:
    import p53radiomics.deep  # noqa: F401 - installed, or on PYTHONPATH
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from p53radiomics.deep import BACKBONES, CUDAGraphWarning, SkorchCNNFeaturizer  # noqa: E402
from p53radiomics.deep._modules import FeatureFusionNet, MultiChannelNet  # noqa: E402

# ResNet101-FF first: it is the study's final model and the target figure.
ORDER = ["resnet101", "resnet18", "resnet34", "resnet50", "resnet152", "densenet121"]
PATHS = {
    "tf32": "skorch defaults: fp32 with TF32 convolutions",
    "fp32": "skorch, strict fp32 (no TF32)",
    "ours": "SkorchCNNFeaturizer (CUDA graph)",
    "ours-eager": "SkorchCNNFeaturizer without the CUDA graph",
    "ours-compile": "SkorchCNNFeaturizer with compile=True",
}
BASELINE = "tf32"


def crops(n, size, n_phases=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_phases, size, size)).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.int64)
    X[y == 1, :, size // 4 : size // 2, size // 4 : size // 2] += 2.0
    return X, y


def is_cuda(device):
    return torch.device(device).type == "cuda"


def peak_memory_mb(device):
    if is_cuda(device):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset(device):
    gc.collect()
    if is_cuda(device):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()


def matmul_tflops(device, n=None, repeats=10):
    """Measured matrix-product rate: bf16 on CUDA, float32 on a CPU (TFLOP/s, dtype name)."""
    cuda = is_cuda(device)
    dtype = torch.bfloat16 if cuda else torch.float32
    n = n or (8192 if cuda else 512)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / repeats
    del a, b
    return 2 * n**3 / seconds / 1e12, str(dtype).replace("torch.", "")


def train_flops_per_sample(backbone, mode, X, device):
    """Forward and backward FLOPs of one sample (matrix products and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    module = make_module(backbone, mode, X).to(device).train()
    x = torch.as_tensor(X[:2], device=device)
    with FlopCounterMode(display=False) as counter:
        module(x).sum().backward()
    del module
    return counter.get_total_flops() / 2


def make_module(backbone, mode, X):
    return (FeatureFusionNet if mode == "ff" else MultiChannelNet)(
        backbone,
        n_phases=X.shape[1],
        channel_mean=X.mean(axis=(0, 2, 3)).tolist(),
        channel_std=X.std(axis=(0, 2, 3)).tolist(),
    )


class _EagerFeaturizer(SkorchCNNFeaturizer):
    """Ours without the CUDA graph, for the ``ours-eager`` row and the profile."""

    def _make_net(self, *args, **kwargs):
        net = super()._make_net(*args, **kwargs)
        net.cuda_graph = False
        return net


@contextlib.contextmanager
def strict_fp32():
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def train_ours(path, backbone, mode, X, y, args, batch_size, epochs=None):
    cls = _EagerFeaturizer if path == "ours-eager" else SkorchCNNFeaturizer
    cnn = cls(
        backbone,
        mode,
        n_components=None,
        max_epochs=epochs or args.epochs,
        batch_size=batch_size,
        lr=1e-4,
        lr_schedule="constant",
        compile=path == "ours-compile",
        device=args.device,
        random_state=0,
    )
    cnn.fit(X, y)
    return cnn.net_


def train_skorch(path, backbone, mode, X, y, args, batch_size):
    net = NeuralNetClassifier(
        FeatureFusionNet if mode == "ff" else MultiChannelNet,
        module__backbone=backbone,
        module__n_phases=X.shape[1],
        module__channel_mean=X.mean(axis=(0, 2, 3)).tolist(),
        module__channel_std=X.std(axis=(0, 2, 3)).tolist(),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.AdamW,
        lr=1e-4,
        max_epochs=args.epochs,
        batch_size=batch_size,
        train_split=None,
        iterator_train__shuffle=True,
        iterator_train__drop_last=True,  # batch norm cannot train on a last batch of one
        device=args.device,
        verbose=0,
    )
    torch.manual_seed(0)
    with strict_fp32() if path == "fp32" else contextlib.nullcontext():
        net.fit(X, y)
    return net


def measure(path, backbone, mode, batch_size, X, y, args, flops, peak_tflops):
    reset(args.device)
    start = time.perf_counter()
    train = train_skorch if path in ("tf32", "fp32") else train_ours
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CUDAGraphWarning)
        try:
            net = train(path, backbone, mode, X, y, args, batch_size)
        except Exception as exc:  # one failed run (out of memory...) must not end the grid
            traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0]
            return {"error": f"{type(exc).__name__}: {first}"[:200]}
    history = net.history
    durations = history[:, "dur"]
    timed = durations[1:] if len(durations) > 1 else durations
    samples = sum(history[-1, "batches", :, "train_batch_size"])
    seconds = statistics.median(timed)
    samples_per_s = samples / seconds
    branches = X.shape[1] if mode == "ff" else 1
    tflops = flops * samples_per_s / 1e12
    result = {
        "samples_per_s": samples_per_s,
        "backbone_images_per_s": samples_per_s * branches,
        "tflops": tflops,
        "peak_share": tflops / peak_tflops,
        "epoch_s": seconds,
        "epochs_s": [round(d, 4) for d in durations],
        "peak_memory_mb": peak_memory_mb(args.device),
        "wall_s": time.perf_counter() - start,
        "graph_replays": getattr(net, "graph_replays_", None),
        "graph_warnings": [str(w.message) for w in caught if w.category is CUDAGraphWarning],
    }
    del net
    return result


def environment(device):
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if is_cuda(device):
        info["gpu"] = torch.cuda.get_device_name()
        info["bf16"] = torch.cuda.is_bf16_supported()
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


HEADER = (
    f"{'backbone':<12} {'mode':<4} {'batch':>5} {'path':<12} {'samples/s':>9} {'img/s':>8} "
    f"{'TFLOP/s':>8} {'of peak':>7} {'peak MB':>8} {'speed-up':>8} {'memory':>7} {'graph':>5}"
)


def row_line(r, base=None):
    head = f"{r['backbone']:<12} {r['mode']:<4} {r['batch_size']:>5} {r['path']:<12}"
    if "error" in r:
        return f"{head} {r['error']}"
    ratio = f"{'':>8} {'':>7}"
    if base is not None and "samples_per_s" in base and r is not base:
        ratio = (
            f"{r['samples_per_s'] / base['samples_per_s']:>7.2f}x "
            f"{r['peak_memory_mb'] / base['peak_memory_mb']:>6.2f}x"
        )
    graph = "" if r.get("graph_replays") is None else str(r["graph_replays"])
    if r.get("graph_warnings"):
        graph += "!"  # the step could not be captured: see the JSON's graph_warnings
    return (
        f"{head} {r['samples_per_s']:>9.1f} {r['backbone_images_per_s']:>8.1f} "
        f"{r['tflops']:>8.2f} {100 * r['peak_share']:>6.1f}% {r['peak_memory_mb']:>8.0f} "
        f"{ratio} {graph:>5}"
    )


def table(runs):
    """The runs as table lines, each configuration's baseline first, speed-ups against it."""
    keys = list(dict.fromkeys((r["backbone"], r["mode"], r["batch_size"]) for r in runs))
    rank = {p: i for i, p in enumerate(PATHS)}
    lines = [HEADER]
    for key in sorted(keys, key=lambda k: (k[2], ORDER.index(k[0]) if k[0] in ORDER else 99, k[1])):
        group = [r for r in runs if (r["backbone"], r["mode"], r["batch_size"]) == key]
        group.sort(key=lambda r: rank.get(r["path"], 99))
        base = next((r for r in group if r["path"] == BASELINE and "error" not in r), None)
        lines.extend(row_line(r, base) for r in group)
    return lines


def legend(env, args_like):
    return [
        f"bench_cnn: {env}",
        "paths: " + "; ".join(f"{k} = {v}" for k, v in PATHS.items()),
        f"matrix rate measured at start: {env.get('matmul_tflops', float('nan')):.1f} TFLOP/s "
        f"({env.get('matmul_dtype', '?')}); 'of peak' = achieved TFLOP/s over it; speed-up and "
        f"memory against {BASELINE}; graph = steps replayed from the CUDA graph ('!' = fallback)",
        args_like,
    ]


def load_runs(folder):
    path = os.path.join(folder, "bench_cnn.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def save(folder, env, args=None, run=None):
    """Add an invocation's arguments or one run to ``folder/bench_cnn.json`` (written after
    every run, so that a run killed by a time limit keeps the ones before it) and rewrite the
    table."""
    os.makedirs(folder, exist_ok=True)
    data = load_runs(folder) or {"environment": env, "invocations": [], "results": []}
    if args is not None:
        data["invocations"].append(vars(args))
    if run is not None:
        data["results"].append(run)
    path = os.path.join(folder, "bench_cnn.json")
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".tmp", path)
    write_summary(folder, data)


def write_summary(folder, data):
    lines = legend(data["environment"], f"{len(data['invocations'])} invocation(s)")
    lines += table(data["results"])
    with open(os.path.join(folder, "bench_cnn.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return lines


# ----------------------------------------------------------------------------- profile


def _busy_share(intervals, start, end):
    """Share of [start, end] covered by the union of intervals (all in microseconds)."""
    covered, cursor = 0.0, start
    for a, b in sorted((max(a, start), min(b, end)) for a, b in intervals if b > start and a < end):
        if b > cursor:
            covered += b - max(a, cursor)
            cursor = b
    return covered / (end - start) if end > start else float("nan")


def profile(path, backbone, mode, batch_size, args):
    """Two epochs of ten steps under torch.profiler; report on the second epoch."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    X, y = crops(10 * batch_size, args.size)
    cuda = is_cuda(args.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    reset(args.device)
    with torch_profile(activities=activities) as prof:
        net = train_ours(path, backbone, mode, X, y, args, batch_size, epochs=2)
    events = prof.events()
    epochs = sorted(
        (e for e in events if e.name == "train_epoch"), key=lambda e: e.time_range.start
    )
    lines = [f"-- profile: {backbone}-{mode.upper()} batch {batch_size}, {path} ({PATHS[path]})"]
    if len(epochs) < 2:
        return lines + ["   no 'train_epoch' ranges found (is the training loop CNNNet's?)"]
    window = epochs[-1].time_range
    start, end = window.start, window.end
    steps = sum(net.history[-1, "batches", :, "train_batch_size"]) // batch_size
    lines.append(
        f"   second epoch: {steps} steps in {(end - start) / 1e3:.1f} ms "
        f"({(end - start) / 1e3 / max(steps, 1):.2f} ms per step), "
        f"{net.graph_replays_} steps of the fit replayed from the CUDA graph"
    )
    kernels = [
        e
        for e in events
        if e.device_type == DeviceType.CUDA
        and e.time_range.end > start
        and e.time_range.start < end
    ]
    if not cuda:
        top = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8)
        return lines + ["   (CPU: no GPU to keep busy; top CPU ops of the whole run)", top]
    if not kernels:
        return lines + ["   no GPU kernel events recorded in the window"]
    busy = _busy_share([(e.time_range.start, e.time_range.end) for e in kernels], start, end)
    lines.append(f"   GPU busy {100 * busy:.1f}% of the epoch (kernels, copies, memsets)")
    totals = {}
    for e in kernels:
        total, count = totals.get(e.name, (0.0, 0))
        totals[e.name] = (total + e.time_range.end - e.time_range.start, count + 1)
    gpu_time = sum(t for t, _ in totals.values())
    lines.append(f"   top kernels of {gpu_time / 1e3:.1f} ms GPU time ({len(kernels)} launches):")
    for name, (total, count) in sorted(totals.items(), key=lambda kv: -kv[1][0])[: args.top]:
        lines.append(
            f"   {100 * total / gpu_time:5.1f}% {total / 1e3:8.2f} ms {count:5d}x  {name[:90]}"
        )
    return lines


# ----------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", "--quick", action="store_true", help="tiny CPU dry run")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=384, help="training crops per epoch")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--epochs", type=int, default=3, help="the first one is not timed")
    parser.add_argument("--backbones", nargs="+", default=ORDER, choices=sorted(BACKBONES))
    parser.add_argument("--modes", nargs="+", default=["ff", "mc"], choices=["ff", "mc"])
    parser.add_argument("--paths", nargs="+", default=["tf32", "ours"], choices=list(PATHS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget-s", type=float, default=None, help="start no run after this")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--profile", action="store_true", help="profile, then no grid")
    parser.add_argument("--top", type=int, default=12, help="kernels listed by --profile")
    parser.add_argument("--out", default=None, help="folder for bench_cnn.json/.txt, profile.txt")
    parser.add_argument("--summary", default=None, metavar="DIR", help="print DIR's table")
    args = parser.parse_args(argv)
    if args.summary:
        data = load_runs(args.summary)
        if data is None:
            parser.error(f"no bench_cnn.json in {args.summary}")
        print("\n".join(write_summary(args.summary, data)))
        return data["results"]
    if args.smoke:
        args.size, args.n_train, args.epochs = 64, 16, 2
        args.batch_sizes, args.backbones = [4], ["resnet18"]
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment(args.device)
    env["matmul_tflops"], env["matmul_dtype"] = matmul_tflops(
        args.device, n=256 if args.smoke else None
    )

    if args.profile:
        lines = legend(env, f"profile: {args.size}x{args.size} crops")
        print("\n".join(lines), flush=True)
        for path in ("ours", "ours-eager"):
            part = profile(path, args.backbones[0], args.modes[0], args.batch_sizes[0], args)
            print("\n".join(part), flush=True)
            lines += part
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "profile.txt"), "w") as f:
                f.write("\n".join(lines) + "\n")
        return lines

    X, y = crops(args.n_train, args.size)
    grid = f"crops {args.n_train}x3x{args.size}x{args.size}, {args.epochs} epochs (first untimed)"
    print("\n".join(legend(env, grid)), flush=True)
    print(HEADER, flush=True)
    if args.out:
        save(args.out, env, args=args)
    runs = []
    start = time.perf_counter()
    flops_cache = {}
    for batch_size in args.batch_sizes:
        for backbone in args.backbones:
            for mode in args.modes:
                if (backbone, mode) not in flops_cache:
                    flops_cache[backbone, mode] = train_flops_per_sample(
                        backbone, mode, X, args.device
                    )
                base = None
                for path in args.paths:
                    if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
                        skipped = f"{backbone:<12} {mode:<4} {batch_size:>5} {path:<12} skipped"
                        print(f"{skipped}: time budget spent", flush=True)
                        continue
                    result = measure(
                        path,
                        backbone,
                        mode,
                        batch_size,
                        X,
                        y,
                        args,
                        flops_cache[backbone, mode],
                        env["matmul_tflops"],
                    )
                    run = {"backbone": backbone, "mode": mode, "batch_size": batch_size}
                    run.update(path=path, flops_per_sample=flops_cache[backbone, mode], **result)
                    runs.append(run)
                    if args.out:
                        save(args.out, env, run=run)
                    if path == BASELINE and "error" not in run:
                        base = run
                    print(row_line(run, base), flush=True)
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)
    return runs


if __name__ == "__main__":
    main()
