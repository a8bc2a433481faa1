"""MNIST-feature FID/KID for the generative experiments, from the runtime's trained classifier.

`mnist_evaluator(ctx)` finds the classifier trained by `experiments/mnist_classifier.py` beside
the experiment's own run directory (`<workdir>/../mnist_classifier/classifier.msgpack`: that is
`runs/mnist_classifier` for a single run and `runs/tour/mnist_classifier` in the tour, which runs
the classifier first). If it is not there it trains it there first (the quick config when the
experiment runs with `--quick`), so an experiment never silently scores against another model.

The scores are "MNIST-feature FID/KID": the Frechet distance and KID between classifier features
of generated digits and of the 1,000 held-out real digits. They rank models evaluated with the
same classifier; they are not comparable with Inception-feature FIDs from papers. As a floor,
`real_fid` is the same distance between 1,000 training digits and the held-out digits.
`scores` adds precision and recall (Kynkaanniemi et al. 2019) and density and coverage (Naeem et
al. 2020) on the same features, k = 3 (`genjax.metrics.prdc`); `real_prdc` is their value for
the 1,000 training digits, the same floor.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np

from experiments._framework import Context


@dataclasses.dataclass(frozen=True)
class MnistEvaluator:
    feature_fn: Callable[[Any], np.ndarray]
    classifier_dir: Path
    reference_features: np.ndarray  # held-out real digits [N, D]
    real_fid: float  # FID(train digits, held-out digits): what a perfect model would get here
    real_prdc: dict[str, float] = dataclasses.field(default_factory=dict)  # the same for `prdc`

    def fid(self, images: Any) -> float:
        from genjax import metrics

        return metrics.fid(self.feature_fn(images), self.reference_features)

    def kid(self, images: Any, seed: int = 0) -> tuple[float, float]:
        """KID (mean, std over 50 subsets). The subsets hold half of the smaller set (at most
        1,000 rows): subsets as large as a whole set would all be that set, and the std 0."""
        return _kid(self.feature_fn(images), self.reference_features, seed)

    def scores(self, images: Any) -> dict[str, float]:
        """`fid`, `kid`, `kid_std`, and `precision`, `recall`, `density`, `coverage` (k = 3) of
        `images` against the held-out digits, from one pass of the classifier."""
        from genjax import metrics

        features = self.feature_fn(images)
        kid, kid_std = _kid(features, self.reference_features, 0)
        return {"fid": metrics.fid(features, self.reference_features), "kid": kid, "kid_std": kid_std,
                **metrics.prdc(self.reference_features, features, k=PRDC_K)}


PRDC_K = 3  # Kynkaanniemi et al. 2019's k for the k-NN manifolds (Naeem et al. 2020 use 5)


def _kid(features, reference, seed):
    from genjax import metrics

    size = max(2, min(1000, len(features) // 2, len(reference) // 2))
    return metrics.kid(features, reference, seed=seed, num_subsets=50, subset_size=size)


def mnist_evaluator(ctx: Context, data_source: str = "auto", data_dir: str | None = None) -> MnistEvaluator:
    """The evaluator of the classifier trained beside this run (trained there first if missing)."""
    from experiments._framework import prerequisite_run
    from genjax import data, metrics, train

    directory = prerequisite_run(ctx, "mnist_classifier", ["classifier.msgpack"], data_source=data_source,
                                 data_dir=data_dir)
    feature_fn = metrics.classifier_feature_fn(train.load_params(directory / "classifier.msgpack"))
    test = data.load_images("mnist", "test", source=data_source, data_dir=data_dir)
    trn = data.load_images("mnist", "train", source=data_source, data_dir=data_dir)
    reference = feature_fn(test.images)
    real_features = feature_fn(trn.images[: len(test.images)])
    real = metrics.fid(real_features, reference)
    return MnistEvaluator(feature_fn, directory, reference, real, metrics.prdc(reference, real_features, k=PRDC_K))


def generator_record(label: str, *, fid: float, kid: float, train_seconds: float, seconds_per_1000: float,
                     real_fid: float, num_samples: int, note: str = "", samples: str = "",
                     scores: dict | None = None, curve: list[dict] | None = None) -> dict:
    """One image generator's entry in its experiment's summary (`summary["generators"]`, a list of
    these): the tour's closing figure plots every generator's MNIST-feature FID against the CPU
    seconds it cost, `train_seconds` (training, including any model it builds on, e.g. the
    autoencoder of a latent model) plus `seconds_per_1000` (sampling 1,000 images, decoding
    included). `real_fid` is the floor of the same classifier and sample count. `samples`, if
    given, is the file (relative to the experiment's run directory) of its scored samples, a
    float [N, 28, 28, 1] array in [0, 1] saved with `np.save`: the closing comparison shows them
    side by side. `scores` (`MnistEvaluator.scores`) adds its precision, recall, density and
    coverage. `curve` (`experiments._diffusion_common.fid_curve`: `{"step", "seconds", "fid"}`
    points, the last one this record's) is its FID against seconds during training, drawn as a
    line in the closing figure."""
    prdc = {k: float(scores[k]) for k in PRDC_NAMES if scores and k in scores}
    return {"label": label, "fid": float(fid), "kid": float(kid), "train_seconds": float(train_seconds),
            "seconds_per_1000": float(seconds_per_1000), "real_fid": float(real_fid),
            "num_samples": int(num_samples), "note": note, "samples": samples, **prdc,
            **({"curve": [dict(p) for p in curve]} if curve else {})}


PRDC_NAMES = ("precision", "recall", "density", "coverage")


def fit_seconds(fit, metrics_path) -> float:
    """The training seconds of a fit: `fit.seconds` without the time spent evaluating during it
    (`fit.eval_seconds`) when this call trained it from the start, else the chunk times of its
    whole log (`metrics.jsonl`: every call's chunks, those after the checkpoint it resumed from
    dropped), so that a resumed or finished run still reports them."""
    from genjax import report

    if fit.resumed_from is None:
        return float(fit.seconds - fit.eval_seconds)
    records = [r for r in report.read_jsonl(metrics_path) if "steps_per_s" in r] if metrics_path.exists() else []
    steps = [0] + [r["step"] for r in records]
    return float(sum((b - a) / r["steps_per_s"] for a, b, r in zip(steps, steps[1:], records)))
