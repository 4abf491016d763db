"""ONNX Runtime sessions for rtsep's graphs: provider choice, session options, warm-up, metadata.

This is the inference runtime: it needs numpy and onnxruntime only (no torch).

CUDA is used only when it really works. onnxruntime-gpu lists `CUDAExecutionProvider` even on a
machine without a GPU and then prints a red "Failed to load library" error when a session asks
for it (DESIGN.md §5), so before asking we check, silently, that the CUDA driver loads and sees a
device, and that ONNX Runtime's CUDA provider library loads with its CUDA/cuDNN dependencies.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError, RtsepError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
CHOICES = ("auto", "cpu", "cuda")

# Metadata values stored as plain strings (everything else is JSON).
_STRING_KEYS = {"rtsep_version", "graph", "source"}
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
           "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def _driver_has_device() -> tuple[bool, str]:
    """Whether the CUDA driver library loads and reports at least one device."""
    name = "nvcuda.dll" if platform.system() == "Windows" else "libcuda.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return False, f"no CUDA driver ({name} not found)"
    try:
        if lib.cuInit(0) != 0:
            return False, "the CUDA driver found no usable GPU (cuInit failed)"
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
            return False, "the CUDA driver reports no GPU"
    except AttributeError:
        return False, f"{name} is not a CUDA driver"
    return True, f"{count.value} GPU(s)"


def _provider_library_loads(ort: Any) -> tuple[bool, str]:
    """Whether onnxruntime's CUDA provider library and its CUDA/cuDNN dependencies load."""
    if hasattr(ort, "preload_dlls") and "torch" not in sys.modules:
        # Loads CUDA/cuDNN from the nvidia-* wheels when present; it prints what it cannot find.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            with contextlib.suppress(Exception):
                ort.preload_dlls()
    capi = Path(ort.__file__).parent / "capi"
    name = "onnxruntime_providers_cuda.dll" if platform.system() == "Windows" else "libonnxruntime_providers_cuda.so"
    try:
        ctypes.CDLL(str(capi / name))
    except OSError as exc:
        return False, f"onnxruntime's CUDA provider does not load ({str(exc).splitlines()[0]})"
    return True, "ok"


@functools.lru_cache(maxsize=1)
def cuda_status() -> tuple[bool, str]:
    """(usable, reason): whether ONNX Runtime can run on a GPU here; checked once per process."""
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return False, f"this onnxruntime build ({ort.__version__}) has no CUDA provider; install onnxruntime-gpu"
    ok, why = _driver_has_device()
    if not ok:
        return False, why
    return _provider_library_loads(ort)


def providers(requested: str = "auto") -> list[str]:
    """ONNX Runtime providers for `requested` in {"auto", "cpu", "cuda"}, best first.

    "auto" gives CUDA (with CPU as fallback) when a GPU really works, else CPU; "cuda" raises
    RtsepError when no GPU works; "cpu" is always CPU.
    """
    req = (requested or "auto").lower()
    if req not in CHOICES:
        raise RtsepError(f"unknown provider {requested!r}; choose one of: {', '.join(CHOICES)}")
    if req == "cpu":
        return [CPU]
    ok, why = cuda_status()
    if ok:
        return [CUDA, CPU]
    if req == "cuda":
        raise RtsepError(f"CUDA was requested but cannot be used: {why}")
    return [CPU]


def metadata(sess: Any) -> dict[str, Any]:
    """The metadata rtsep embeds in a graph, JSON values decoded (sources, sigmas, window ...)."""
    out: dict[str, Any] = {}
    for key, value in sess.get_modelmeta().custom_metadata_map.items():
        if key in _STRING_KEYS:
            out[key] = value
            continue
        try:
            out[key] = json.loads(value)
        except (TypeError, ValueError):
            out[key] = value
    return out


def warmup_inputs(sess: Any, length: int | None = None) -> dict[str, np.ndarray]:
    """Zeros of each input's shape: free batch axes 1, a free time axis `length` (default: the
    graph's `window` metadata, in samples; a last axis named "frames" gets that window's STFT frames,
    not `length` frames, which ran the spectral encoder on 64x the audio and kept a 600 MB arena);
    an input named "sigma" (a noise level) is filled with 0.1."""
    meta = metadata(sess)
    if length is None:
        length = int(meta.get("window", 1024))
    frames = length // int(meta.get("stride", 1)) + 1
    feeds = {}
    for arg in sess.get_inputs():
        last = len(arg.shape) - 1
        shape = [d if isinstance(d, int) and d > 0 else
                 ((frames if d == "frames" else length) if i == last and i > 0 else 1)
                 for i, d in enumerate(arg.shape)]
        dtype = _DTYPES.get(arg.type, np.float32)
        feeds[arg.name] = np.full(shape, 0.1 if arg.name == "sigma" else 0, dtype=dtype)
    return feeds


def session(path: Path | str, provider: str = "auto", threads: int | None = None,
            warmup: bool = True) -> Any:
    """An InferenceSession for one graph: full graph optimisation, `threads` intra-op threads
    (None: onnxruntime's default), quiet logging, one warm-up run unless `warmup` is False."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise BundleError(f"missing graph {path}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads is not None:
        if threads < 1:
            raise RtsepError(f"threads must be at least 1, not {threads}")
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    provs = providers(provider)
    try:
        sess = ort.InferenceSession(os.fspath(path), sess_options=opts, providers=provs)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BundleError(f"cannot load graph {path}: {str(exc).splitlines()[0]}") from None
    if warmup:
        sess.run(None, warmup_inputs(sess))
    return sess
