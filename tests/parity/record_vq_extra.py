"""Records the peer libraries' outputs that tests/test_vq_extra.py and tests/test_metrics_prdc.py
compare with (dev-only; CI reads the recording, tests/parity/vq_extra_peers.npz).

Run it in an environment with torch, vector-quantize-pytorch and prdc (none is a dependency of
genjax), from the repository root:

    python tests/parity/record_vq_extra.py

It does not import genjax or JAX. The inputs are drawn here with NumPy and stored next to the
outputs, so the tests never regenerate them:

- ``FSQ(levels)`` of vector-quantize-pytorch (no projections: ``dim = len(levels)``), eval mode:
  the codes and indices of ``fsq_z_<name>``, and its ``implicit_codebook``;
- ``LFQ(dim=d, entropy_loss_weight=1, commitment_loss_weight=0)`` in training mode at
  ``inv_temperature``: the quantized output, the indices and the ``LossBreakdown``'s
  ``per_sample_entropy`` and ``batch_entropy``. The inputs are chosen so that every soft
  assignment probability is above 1e-5, where LFQ's ``log(max(p, 1e-5))`` clamp is inactive
  (asserted below), so its entropies are the exact ones;
- ``prdc.compute_prdc(real, fake, nearest_k=k)`` of the ``prdc`` package (float64, sklearn
  distances).
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import numpy as np
import torch
from prdc import compute_prdc
from vector_quantize_pytorch import FSQ, LFQ

OUT = Path(__file__).with_name("vq_extra_peers.npz")
FSQ_LEVELS = {"odd_even": (8, 5, 5, 5), "mixed": (3, 4, 7, 6)}
LFQ_CASES = {"d5": (5, 1.0, 0.3), "d3": (3, 1.5, 0.25)}  # name: (d, inv_temperature, input scale)
PRDC_CASES = {"k3": 3, "k5": 5}


def main() -> None:
    rng = np.random.default_rng(20)
    rec: dict[str, np.ndarray] = {}
    for name, levels in FSQ_LEVELS.items():
        z = (rng.normal(size=(64, len(levels))) * 1.5).astype(np.float32)
        z[:4] = [[0.0] * len(levels), [9.0] * len(levels), [-9.0] * len(levels), [0.3] * len(levels)]
        fsq = FSQ(list(levels)).eval()
        with torch.no_grad():
            codes, idx = fsq(torch.from_numpy(z)[None])
        rec[f"fsq_levels_{name}"] = np.asarray(levels)
        rec[f"fsq_z_{name}"] = z
        rec[f"fsq_codes_{name}"] = codes[0].numpy()
        rec[f"fsq_indices_{name}"] = idx[0].numpy().astype(np.int32)
        rec[f"fsq_codebook_{name}"] = fsq.implicit_codebook.numpy()
    for name, (d, inv_t, scale) in LFQ_CASES.items():
        z = (rng.normal(size=(40, d)) * scale).astype(np.float32)
        lfq = LFQ(dim=d, entropy_loss_weight=1.0, commitment_loss_weight=0.0).train()
        (quantized, idx, _), breakdown = lfq(torch.from_numpy(z)[None], inv_temperature=inv_t,
                                             return_loss_breakdown=True)
        logits = 2.0 * inv_t * (z.astype(np.float64) @ lfq.codebook.numpy().T.astype(np.float64))
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        assert p.min() > 1e-5 and p.mean(0).min() > 1e-5, "LFQ's log clamp would be active"
        rec[f"lfq_z_{name}"] = z
        rec[f"lfq_inv_temperature_{name}"] = np.float64(inv_t)
        rec[f"lfq_quantized_{name}"] = quantized[0].detach().numpy()
        rec[f"lfq_indices_{name}"] = idx[0].numpy().astype(np.int32)
        rec[f"lfq_per_sample_entropy_{name}"] = np.float64(breakdown.per_sample_entropy.item())
        rec[f"lfq_batch_entropy_{name}"] = np.float64(breakdown.batch_entropy.item())
    real = rng.normal(size=(120, 6))
    fake = rng.normal(size=(90, 6)) * 1.2 + 0.4
    rec["prdc_real"], rec["prdc_fake"] = real, fake
    for name, k in PRDC_CASES.items():
        out = compute_prdc(real, fake, nearest_k=k)
        for metric in ("precision", "recall", "density", "coverage"):
            rec[f"prdc_{metric}_{name}"] = np.float64(out[metric])
    versions = {p: md.version(p) for p in ("vector-quantize-pytorch", "prdc", "torch", "scikit-learn", "numpy")}
    rec["versions"] = np.asarray([f"{p}=={v}" for p, v in versions.items()])
    np.savez_compressed(OUT, **rec)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): {versions}")


if __name__ == "__main__":
    main()
