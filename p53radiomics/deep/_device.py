"""Torch devices for the deep branch: resolving ``device="auto"``, cuDNN settings, seeding."""

import contextlib

import torch

__all__ = ["cuda_flags", "is_cuda", "resolve_device", "seeded"]


def resolve_device(device):
    """Turn ``"auto"`` into ``"cuda"`` when CUDA is available, else ``"cpu"``; check the rest."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device: {exc}") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available on this machine; use device='auto' "
            "(CUDA when present, else the CPU) or device='cpu'."
        )
    return device


def is_cuda(device):
    """Whether ``device`` (a string or :class:`torch.device`) is a CUDA device."""
    return torch.device(device).type == "cuda"


def cuda_flags(device, *, training):
    """cuDNN settings for one fit or one inference pass on ``device`` (no-op off CUDA).

    Autotuning is on (inputs have a fixed size). TF32 convolutions are allowed while training
    (autocast runs them in bf16 anyway) and refused for inference, so that predictions on CUDA
    match those of the same network on a CPU.
    """
    if not is_cuda(device):
        return contextlib.nullcontext()
    return torch.backends.cudnn.flags(
        enabled=True, benchmark=True, deterministic=False, allow_tf32=training
    )


@contextlib.contextmanager
def seeded(seed, device):
    """Seed torch (CPU, and ``device`` if CUDA) for the block, restoring the global state after."""
    cuda = is_cuda(device)
    devices = [torch.device(device).index or torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
