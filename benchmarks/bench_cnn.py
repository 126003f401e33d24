"""Training throughput and peak memory of SkorchCNNFeaturizer against a plain fp32 skorch baseline.

For each backbone and fusion mode, two trainings of the same torch module on the same crops:

- ``ours``: :class:`p53radiomics.deep.SkorchCNNFeaturizer` (on CUDA: bf16 autocast, channels-last,
  crops uploaded once from pinned memory, batches cut on the GPU, fused AdamW, cuDNN autotuning);
- ``baseline``: a plain :class:`skorch.NeuralNetClassifier` with skorch's defaults (fp32, NCHW,
  a DataLoader collating sample by sample, AdamW), the same module, augmentation included.

Throughput is training images per second over the epochs after the first (which pays for cuDNN
autotuning and the upload), from skorch's per-epoch durations; peak memory is
``torch.cuda.max_memory_allocated`` on CUDA and the process's peak resident size on the CPU (a
running maximum, so only its growth means anything there).

Usage::

    python benchmarks/bench_cnn.py                 # 256x256 crops, six backbones, both modes
    python benchmarks/bench_cnn.py --quick --threads 1   # small CPU version (64x64, resnet18)
    python benchmarks/bench_cnn.py --backbones resnet101 --modes ff --batch-size 64

Results are printed and, with ``--out DIR``, written to ``DIR/bench_cnn.json`` and
``DIR/bench_cnn.txt``.
"""

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np
import torch
from skorch import NeuralNetClassifier

try:
    import p53radiomics.deep  # noqa: F401 - installed, or on PYTHONPATH (gpu_check.sh's shim)
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from p53radiomics.deep import BACKBONES, SkorchCNNFeaturizer  # noqa: E402
from p53radiomics.deep._modules import FeatureFusionNet, MultiChannelNet  # noqa: E402

# ResNet101-FF first: it is the study's final model and the target figure.
ORDER = ["resnet101", "resnet18", "resnet34", "resnet50", "resnet152", "densenet121"]


def crops(n, size, n_phases=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_phases, size, size)).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.int64)
    X[y == 1, :, size // 4 : size // 2, size // 4 : size // 2] += 2.0
    return X, y


def peak_memory_mb(device):
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset(device):
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()


def train_ours(backbone, mode, X, y, args):
    cnn = SkorchCNNFeaturizer(
        backbone,
        mode,
        n_components=None,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-4,
        lr_schedule="constant",
        device=args.device,
        random_state=0,
    )
    cnn.fit(X, y)
    return cnn.net_.history


def train_baseline(backbone, mode, X, y, args):
    mean = X.mean(axis=(0, 2, 3)).tolist()
    std = X.std(axis=(0, 2, 3)).tolist()
    net = NeuralNetClassifier(
        FeatureFusionNet if mode == "ff" else MultiChannelNet,
        module__backbone=backbone,
        module__n_phases=X.shape[1],
        module__channel_mean=mean,
        module__channel_std=std,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.AdamW,
        lr=1e-4,
        max_epochs=args.epochs,
        batch_size=args.batch_size,
        train_split=None,
        iterator_train__shuffle=True,
        iterator_train__drop_last=True,  # batch norm cannot train on a last batch of one
        device=args.device,
        verbose=0,
    )
    torch.manual_seed(0)
    net.fit(X, y)
    return net.history


def measure(path, backbone, mode, X, y, args):
    reset(args.device)
    start = time.perf_counter()
    train = train_ours if path == "ours" else train_baseline
    try:
        history = train(backbone, mode, X, y, args)
    except torch.OutOfMemoryError as exc:
        return {"error": f"out of memory: {str(exc).splitlines()[0]}"}
    durations = history[:, "dur"]
    timed = durations[1:] if len(durations) > 1 else durations
    images = sum(history[-1, "batches", :, "train_batch_size"])
    seconds = statistics.median(timed)
    return {
        "images_per_s": images / seconds,
        "epoch_s": seconds,
        "epochs_s": [round(d, 4) for d in durations],
        "peak_memory_mb": peak_memory_mb(args.device),
        "wall_s": time.perf_counter() - start,
    }


def environment(device):
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["bf16"] = torch.cuda.is_bf16_supported()
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small CPU version")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=384, help="training crops per epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="the first one is not timed")
    parser.add_argument("--backbones", nargs="+", default=ORDER, choices=sorted(BACKBONES))
    parser.add_argument("--modes", nargs="+", default=["ff", "mc"], choices=["ff", "mc"])
    parser.add_argument("--paths", nargs="+", default=["baseline", "ours"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget-s", type=float, default=None, help="start no run after this")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--out", default=None, help="folder for bench_cnn.json and .txt")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.n_train, args.batch_size, args.epochs = 64, 32, 8, 3
        if args.backbones == ORDER:
            args.backbones = ["resnet18"]
    if args.threads:
        torch.set_num_threads(args.threads)

    X, y = crops(args.n_train, args.size)
    env = environment(args.device)
    lines = [
        f"bench_cnn: {env}",
        f"crops {args.n_train}x3x{args.size}x{args.size}, batch {args.batch_size}, "
        f"{args.epochs} epochs (first untimed)",
        f"{'backbone':<12} {'mode':<4} {'path':<9} {'img/s':>9} {'epoch s':>8} "
        f"{'peak MB':>9} {'speed-up':>9} {'memory':>7}",
    ]
    print("\n".join(lines), flush=True)
    results = []
    start = time.perf_counter()
    for backbone in args.backbones:
        for mode in args.modes:
            row = {}
            for path in args.paths:
                if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
                    line = f"{backbone:<12} {mode:<4} {path:<9} skipped: time budget spent"
                    print(line, flush=True)
                    lines.append(line)
                    continue
                result = measure(path, backbone, mode, X, y, args)
                row[path] = result
                results.append({"backbone": backbone, "mode": mode, "path": path, **result})
                if "error" in result:
                    line = f"{backbone:<12} {mode:<4} {path:<9} {result['error']}"
                else:
                    ratio = ""
                    if path != "baseline" and "images_per_s" in row.get("baseline", {}):
                        base = row["baseline"]
                        results[-1]["speedup"] = result["images_per_s"] / base["images_per_s"]
                        results[-1]["memory_ratio"] = (
                            result["peak_memory_mb"] / base["peak_memory_mb"]
                        )
                        ratio = (
                            f"{results[-1]['speedup']:>8.2f}x {results[-1]['memory_ratio']:>6.2f}x"
                        )
                    line = (
                        f"{backbone:<12} {mode:<4} {path:<9} {result['images_per_s']:>9.1f} "
                        f"{result['epoch_s']:>8.3f} {result['peak_memory_mb']:>9.0f} {ratio}"
                    )
                print(line, flush=True)
                lines.append(line)
    lines.append(f"total {time.perf_counter() - start:.0f} s")
    print(lines[-1])
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "bench_cnn.json"), "w") as f:
            json.dump({"environment": env, "args": vars(args), "results": results}, f, indent=1)
        with open(os.path.join(args.out, "bench_cnn.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return results


if __name__ == "__main__":
    main()
