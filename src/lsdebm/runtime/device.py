"""The one place a device string becomes a :class:`torch.device` (CLI, tasks, evaluation, bench, plugin).

Accepted values, everywhere: ``auto`` (or None: CUDA when available, else the CPU), ``cpu``,
``cuda`` and ``cuda:N`` (N an existing GPU index). Anything else, and any CUDA request on a
machine without CUDA, is a one-line :class:`~lsdebm.errors.InputError` naming the allowed values.
"""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

from lsdebm.errors import InputError

#: What a user may write for a device (``cuda:N`` stands for any GPU index).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(device: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """``auto``/None -> CUDA when available, else CPU; ``cpu``, ``cuda`` or ``cuda:N`` as given.

    Under torchrun pass ``local_rank``: a bare ``cuda`` (or ``auto`` on a GPU machine) then becomes
    ``cuda:<LOCAL_RANK mod #GPUs>``.

    Raises:
        InputError: For any other value, a CUDA request without CUDA, or a GPU index that does not exist.
    """
    text = "auto" if device is None else str(device).strip().lower()
    if not _PATTERN.match(text):
        raise InputError(f"--device {device!r} is not allowed; expected one of {', '.join(DEVICE_CHOICES)}")
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {text}: CUDA is not available on this machine; use cpu or auto")
    dev = torch.device(text)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"indices 0-{torch.cuda.device_count() - 1}")
    if dev.type == "cuda" and dev.index is None and local_rank is not None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", local_rank)) % torch.cuda.device_count())
    return dev


def device_name(device: torch.device) -> str:
    """A readable name of a device, for reports: the GPU's name, or the CPU model and thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"CPU {name}, {threads} thread{'s' if threads != 1 else ''}"


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's parameters live on (the CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))
