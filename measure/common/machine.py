"""The machine an output was computed on, as every provenance block records it.

Why: float32 results are bit-identical only on the same CPU build, torch thread count and math libraries.
Another CPU (another vector width: AVX2 vs AVX-512), another thread split or another BLAS/oneDNN build
rounds reductions differently, and over ~1000 training steps the weights -- and so every sampled answer --
drift apart. Two reports whose `machine` blocks differ are expected to differ in their last digits (and,
after training, in their samples); two that agree here and in seed, settings and commit should be equal.
"""
from __future__ import annotations

import os
import platform
import re
import sys
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _torch_block() -> dict[str, Any]:
    """torch's side: threads, the SIMD level its kernels dispatch to, and its BLAS / oneDNN build. Only when
    torch is already loaded: an output that did no torch arithmetic (compare, cascade) records that instead
    of paying for the import."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {"loaded": False}
    config = torch.__config__.show()
    grab = lambda pattern: (m.group(1).strip() if (m := re.search(pattern, config)) else None)  # noqa: E731
    return {"loaded": True, "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "blas": grab(r"BLAS_INFO=([^,\n]+)"), "mkl": grab(r"(Intel\(R\) oneAPI Math Kernel Library[^\n]*)"),
            "onednn": grab(r"(?:MKL-DNN|oneDNN) (v[\d.]+)"), "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
            "cuda": torch.cuda.is_available() and torch.cuda.get_device_name(0) or None}


def _numpy_blas() -> list[dict[str, Any]]:
    """numpy/scipy's BLAS and OpenMP pools (threadpoolctl, a scikit-learn dependency)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "architecture", "num_threads")
    pools = [{k: pool.get(k) for k in keys} for pool in threadpool_info()]
    # threadpoolctl lists pools in library load order, which varies between runs: a sorted set of pools
    return sorted(pools, key=lambda p: tuple(str(p[k]) for k in keys))


def machine_info() -> dict[str, Any]:
    """CPU model, cores, OS, the thread-count variables, torch's kernels and BLAS, numpy's BLAS."""
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "OPENBLAS_CORETYPE", "ATEN_CPU_CAPABILITY") if k in os.environ}
    return {"cpu": _cpu_model(), "arch": platform.machine(), "cores": os.cpu_count(),
            "os": f"{platform.system()} {platform.release()}", "env": env,
            "torch": _torch_block(), "numpy_blas": _numpy_blas()}
