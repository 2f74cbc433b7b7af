"""Compute accounting: multiply-accumulates per second of audio, and parameter counts.

Counting uses `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention), with
MACs = FLOPs / 2. Elementwise work (bias adds, activations, norms, softmax) is not counted, as is
usual for GMAC budgets. Two CPU gaps in FlopCounterMode are closed here, both checked by tests:
- `scaled_dot_product_attention` on CPU runs `aten._scaled_dot_product_flash_attention_for_cpu`,
  which FlopCounterMode does not know (it would count 0): it is mapped to the same formula as the
  GPU kernels, 2 matmuls of (L x E) @ (E x S) per head.
- `nn.MultiheadAttention` / `nn.TransformerEncoderLayer` in eval mode take a fused "fast path"
  whose ops are not counted at all: the fast path is switched off while counting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def _sdpa_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward(grad_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kw):
    return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


def _cpu_attention_formulas() -> dict[Any, Callable]:
    """FLOP formulas (on shapes) for the CPU attention kernels FlopCounterMode leaves out."""
    ops = {
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_forward,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_backward,
    }
    return {getattr(aten, name): f for name, f in ops.items() if hasattr(aten, name)}


_EXTRA_FORMULAS = _cpu_attention_formulas()


def count_flops(fn: Callable, *args: Any, **kwargs: Any) -> int:
    """FLOPs of one call `fn(*args, **kwargs)` (forward only, under `torch.no_grad`)."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
        with torch.no_grad(), counter:
            fn(*args, **kwargs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.get_total_flops())


def count_macs(fn: Callable, *args: Any, **kwargs: Any) -> int:
    """Multiply-accumulates of one call `fn(*args, **kwargs)`: FLOPs / 2."""
    return count_flops(fn, *args, **kwargs) // 2


def macs_per_second(
    module: Callable,
    inputs: Callable[[int], Any] | torch.Tensor | Sequence[Any] | Mapping[str, Any],
    seconds: float = 1.0,
    sample_rate: int | None = None,
) -> float:
    """MACs per second of audio for one call of `module` (a module, or any callable such as
    `codec.encode`) on inputs that span `seconds` of audio (use batch size 1).

    `inputs` is either the inputs themselves (a tensor, a tuple of positional arguments, or a
    dict of keyword arguments), or a function `inputs(n_samples)` that builds them for
    `n_samples = round(seconds * sample_rate)`; `sample_rate` is needed only then.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if callable(inputs):
        if sample_rate is None:
            raise ValueError("sample_rate is needed when inputs is a function of n_samples")
        inputs = inputs(round(seconds * sample_rate))
    if isinstance(inputs, torch.Tensor):
        macs = count_macs(module, inputs)
    elif isinstance(inputs, Mapping):
        macs = count_macs(module, **inputs)
    else:
        macs = count_macs(module, *inputs)
    return macs / seconds


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once); `trainable_only` skips frozen ones."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

