"""Online monitor of an SSL run: kNN accuracy of the encoder's embeddings on a small labelled set.

The weighted kNN classifier of DINO (Caron et al. 2021, arXiv:2104.14294, ``eval_knn.py``; after Wu et al. 2018,
"Unsupervised Feature Learning via Non-Parametric Instance Discrimination"): embeddings are L2-normalised, the ``k``
most cosine-similar training embeddings vote for their label with weight ``exp(similarity / temperature)``.
An optional linear probe (logistic regression, scikit-learn) is reported beside it.

The monitor runs the exported encoder in eval mode under ``no_grad`` and restores every module's train/eval flag
afterwards; it runs inside ``torch.random.fork_rng`` so the training's random streams are untouched (an exact resume
stays exact with the monitor attached). Under DDP every rank evaluates the same small sets (no collective), so a
handler keyed on ``knn_accuracy`` (``EarlyStopHandler``) decides the same on every rank.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.utils import optional_import

from monai_transfer.utils.distributed import unwrap
from monai_transfer.utils.knn import knn_accuracy as _cv_knn_accuracy

LogisticRegression, has_sklearn = optional_import("sklearn.linear_model", name="LogisticRegression")

__all__ = ["KNNMonitor", "knn_predict", "weighted_knn_accuracy", "embed", "monitor_sets"]

logger = logging.getLogger(__name__)


def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Class predicted for each query by temperature-weighted cosine kNN (DINO's ``knn_classifier``).

    Args:
        train_features: ``(N, D)``; train_labels: ``(N,)`` class indices; query_features: ``(M, D)``.
        k: neighbours (capped at ``N``).
        temperature: vote weight ``exp(cos / temperature)``.
        num_classes: default ``max(label) + 1``.

    Returns:
        ``(M,)`` predicted class indices.
    """
    if train_features.ndim != 2 or query_features.ndim != 2 or train_features.shape[1] != query_features.shape[1]:
        raise ValueError(
            f"features must be (N, D) and (M, D), got {tuple(train_features.shape)} and {tuple(query_features.shape)}."
        )
    if len(train_features) != len(train_labels) or len(train_labels) == 0:
        raise ValueError(f"{len(train_features)} train features but {len(train_labels)} labels.")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    labels = train_labels.long().view(-1)
    n_cls = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    train = F.normalize(train_features.float(), dim=1)
    query = F.normalize(query_features.float(), dim=1)
    kk = min(int(k), len(train))
    sim, idx = (query @ train.T).topk(kk, dim=1)
    weights = (sim / temperature).exp()
    votes = torch.zeros(len(query), n_cls, dtype=weights.dtype)
    votes.scatter_add_(1, labels[idx], weights)
    return votes.argmax(1)


def weighted_knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Top-1 accuracy of :func:`knn_predict` on the validation set."""
    n_cls = int(max(int(train_labels.max()), int(val_labels.max()))) + 1
    pred = knn_predict(train_features, train_labels, val_features, k, temperature, n_cls)
    return float((pred == val_labels.long().view(-1)).float().mean())


def _linear_probe(train_f: np.ndarray, train_y: np.ndarray, val_f: np.ndarray, val_y: np.ndarray) -> float:
    if not has_sklearn:
        raise ImportError("the linear probe of KNNMonitor needs scikit-learn (pip install scikit-learn).")
    mu, sd = train_f.mean(0), train_f.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    clf = LogisticRegression(max_iter=1000)
    clf.fit((train_f - mu) / sd, train_y)
    return float((clf.predict((val_f - mu) / sd) == val_y).mean())


def _batches(data: Any, batch_size: int, image_key: str, label_key: str) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, torch.utils.data.DataLoader) or (not isinstance(data, Sequence) and isinstance(data, Iterable)):
        for batch in data:
            yield torch.as_tensor(batch[image_key]), torch.as_tensor(batch[label_key]).view(-1)
        return
    for start in range(0, len(data), batch_size):
        chunk = data[start : start + batch_size]
        images = torch.stack([torch.as_tensor(d[image_key]) for d in chunk])
        labels = torch.as_tensor([int(torch.as_tensor(d[label_key]).reshape(-1)[0]) for d in chunk])
        yield images, labels


@torch.no_grad()
def embed(
    encoder: torch.nn.Module,
    data: Any,
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    image_key: str = "image",
    label_key: str = "label",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings ``(N, D)`` (on the CPU) and labels ``(N,)`` of a labelled set, with ``forward_features`` if present.

    Args:
        encoder: a registry backbone (``forward_features``) or any module returning ``(B, ...)`` features.
        data: a list of ``{"image", "label"}`` dicts (arrays or tensors, channel first) or an iterable of batches.
        device, batch_size, image_key, label_key: as named.
    """
    forward = getattr(encoder, "forward_features", encoder)
    feats, labels = [], []
    for images, y in _batches(data, batch_size, image_key, label_key):
        x = images.as_tensor() if hasattr(images, "as_tensor") else images
        f = forward(x.to(device=device, dtype=torch.float32))
        if isinstance(f, (list, tuple)):
            f = f[-1]
        feats.append(f.reshape(len(x), -1).float().cpu())
        labels.append(y.long())
    if not feats:
        raise ValueError("the monitor set is empty.")
    return torch.cat(feats), torch.cat(labels)


class KNNMonitor:
    """Every ``every`` epochs (and at the end of the run), the kNN accuracy of the method's exported encoder.

    Writes ``engine.state.metrics[metric_name]`` (and ``"linear_probe_accuracy"`` with ``linear_probe``) and appends
    ``{"epoch", "iteration", metric_name, ...}`` to ``history``.

    Args:
        method: the SSL method (possibly DDP-wrapped); ``None``: ``engine.method`` at ``attach``. Its
            ``export_encoder()`` is evaluated.
        train_data: labelled reference set (list of ``{"image", "label"}`` dicts, or an iterable of batches).
        val_data: labelled query set; ``None``: 5-fold cross-validated kNN on ``train_data``
            (:func:`monai_transfer.utils.knn.knn_accuracy`, unweighted votes).
        every: epochs between evaluations.
        k: neighbours (DINO uses 20).
        temperature: vote temperature (DINO uses 0.07).
        device: default the engine's device.
        batch_size: embedding batch size for list data.
        image_key, label_key: keys of the dicts / batches.
        linear_probe: also fit a logistic regression on the train embeddings and score the val set (scikit-learn).
        metric_name: the metric key.
        on_completed: also evaluate at ``COMPLETED`` when the last epoch was not an evaluation epoch.
    """

    def __init__(
        self,
        method: torch.nn.Module | None,
        train_data: Any,
        val_data: Any = None,
        every: int = 1,
        k: int = 20,
        temperature: float = 0.07,
        device: torch.device | str | None = None,
        batch_size: int = 32,
        image_key: str = "image",
        label_key: str = "label",
        linear_probe: bool = False,
        metric_name: str = "knn_accuracy",
        on_completed: bool = True,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1 epoch, got {every}.")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        if linear_probe and val_data is None:
            raise ValueError("linear_probe needs val_data.")
        if linear_probe and not has_sklearn:
            raise ImportError("the linear probe of KNNMonitor needs scikit-learn (pip install scikit-learn).")
        self.method = method
        self.train_data = train_data
        self.val_data = val_data
        self.every = int(every)
        self.k = int(k)
        self.temperature = float(temperature)
        self.device = None if device is None else torch.device(device)
        self.batch_size = int(batch_size)
        self.image_key, self.label_key = image_key, label_key
        self.linear_probe = linear_probe
        self.metric_name = metric_name
        self.on_completed = on_completed
        self.history: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        """Register at ``EPOCH_COMPLETED(every=...)`` and, with ``on_completed``, at ``COMPLETED``."""
        if self.method is None:
            self.method = engine.method
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.every), self)
        if self.on_completed:
            engine.add_event_handler(Events.COMPLETED, self._completed)

    def _completed(self, engine: Engine) -> None:
        if not self.history or self.history[-1]["iteration"] != engine.state.iteration:
            self(engine)

    def evaluate(self, device: torch.device | str | None = None) -> dict[str, float]:
        """Embed both sets and compute the accuracies now; the encoder's train/eval flags are restored."""
        if self.method is None:
            raise ValueError("KNNMonitor has no method: pass one or attach to an SSLTrainer first.")
        encoder = unwrap(self.method).export_encoder()
        if device is None:
            first = next(iter(encoder.parameters()), None)
            device = self.device or (first.device if first is not None else torch.device("cpu"))
        flags = [(m, m.training) for m in encoder.modules()]
        cuda = [torch.cuda.current_device()] if torch.device(device).type == "cuda" else []
        try:
            encoder.eval()
            # the monitor must not shift the training's random streams (DataLoader draws seeds from them)
            with torch.random.fork_rng(devices=cuda), torch.no_grad():
                kw = {"device": device, "batch_size": self.batch_size, "image_key": self.image_key,
                      "label_key": self.label_key}  # fmt: skip
                tr_f, tr_y = embed(encoder, self.train_data, **kw)
                if self.val_data is None:
                    result = {self.metric_name: float(_cv_knn_accuracy(tr_f, tr_y, k=self.k))}
                else:
                    va_f, va_y = embed(encoder, self.val_data, **kw)
                    result = {self.metric_name: weighted_knn_accuracy(tr_f, tr_y, va_f, va_y, self.k, self.temperature)}
                    if self.linear_probe:
                        result["linear_probe_accuracy"] = _linear_probe(
                            tr_f.numpy(), tr_y.numpy(), va_f.numpy(), va_y.numpy()
                        )
        finally:
            for m, was_training in flags:
                m.train(was_training)
        return result

    def __call__(self, engine: Engine) -> None:
        result = self.evaluate(self.device or getattr(engine.state, "device", None))
        engine.state.metrics.update(result)
        self.history.append({"epoch": int(engine.state.epoch), "iteration": int(engine.state.iteration), **result})
        logger.info("epoch %d: %s", engine.state.epoch, ", ".join(f"{k} {v:.4f}" for k, v in result.items()))

    def state_dict(self) -> dict[str, Any]:
        """The history, to store in a training checkpoint (``RunCheckpoint(extra_state=...)``)."""
        return {"history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = [dict(h) for h in state.get("history", [])]


def monitor_sets(
    datalist: str | os.PathLike,
    spatial_dims: int,
    roi_size: Sequence[int],
    modality: str = "ct",
    train_key: str = "training",
    val_key: str = "validation",
    intensity: str | Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Load a labelled datalist into monitor sets: images read, channel first, intensity-normalised, resized.

    Args:
        datalist: JSON datalist whose ``train_key`` (and optionally ``val_key``) entries have ``image`` and an
            integer ``label``.
        spatial_dims: 2 or 3: the images must have that many spatial dimensions (the pretraining's).
        roi_size: the size every image is resized to (the SSL views' crop size).
        modality: ``ct``, ``mr`` or ``xr``: the pretraining views' default intensity preset
            (``monai_transfer.ssl.views.DEFAULT_INTENSITY``), unless ``intensity`` is given.
        train_key, val_key: datalist sections; without ``val_key`` the monitor cross-validates on the train set.
        intensity: the pretraining's intensity mapping: a spec of ``monai_transfer.transforms.preprocessing``
            (``{"name": "minmax"}``) or a ``monai_transfer.transforms.intensity_preset`` name.

    Returns:
        ``(train, val)`` lists of ``{"image": tensor (C, *roi_size), "label": int}``; ``val`` is ``None`` when the
        datalist has no ``val_key`` section.

    Raises:
        ValueError: an image whose dimensions are not ``spatial_dims`` (a 3-D datalist for 2-D pretraining), named.
    """
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Resized

    from monai_transfer.data.datalist import load_datalist, load_datalist_file
    from monai_transfer.transforms import intensity_preset

    if len(tuple(roi_size)) != spatial_dims:
        raise ValueError(f"roi_size {tuple(roi_size)} does not have spatial_dims={spatial_dims} values.")
    # the same intensity mapping as the pretraining views, so the monitor embeds what the encoder was trained on
    if isinstance(intensity, Mapping):
        from monai_transfer.ssl.images import intensity_transforms

        scale = intensity_transforms(intensity, "image")
    else:
        from monai_transfer.ssl.views import DEFAULT_INTENSITY

        preset, preset_kwargs = (intensity, {}) if intensity else DEFAULT_INTENSITY.get(modality, (modality, {}))
        scale = [intensity_preset(preset, keys="image", **preset_kwargs)]
    read_image = Compose([LoadImaged(keys="image", image_only=True), EnsureChannelFirstd(keys="image"), *scale])
    resize = Resized(keys="image", spatial_size=tuple(roi_size))
    sections = load_datalist_file(datalist)

    def read(key: str) -> list[dict[str, Any]]:
        rows = load_datalist(datalist, key=key, required_keys=("image", "label"))
        out = []
        for r in rows:
            item = read_image({"image": r["image"]})
            dims = torch.as_tensor(item["image"]).ndim - 1
            if dims != spatial_dims:
                raise ValueError(
                    f"{datalist}: monitor image {os.path.basename(str(r['image']))} has {dims} spatial dimensions but "
                    f"pretraining is {spatial_dims}-D; give --monitor-data a {spatial_dims}-D labelled datalist"
                )
            out.append(
                {
                    "image": torch.as_tensor(resize(item)["image"]).float(),
                    "label": int(np.asarray(r["label"]).ravel()[0]),
                }
            )
        return out

    return read(train_key), (read(val_key) if sections.get(val_key) else None)
