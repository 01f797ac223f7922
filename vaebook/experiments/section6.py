"""What the Section-6 drivers share (Tables 4–7): the models of each table, the data of each preset,
one cache of trained models, latent samplers, FID settings and the paper-vs-ours table rows.

Trained models are cached under ``<results_dir>/<preset>/models/<dataset>/<name>/`` (``model.pt``,
``history.json``, ``meta.json``; ``meta.json`` is written last). A model is reused when its
``meta.json`` holds the same key: model name, architecture, the training images (a content hash),
the training configuration and the seed. So ``generation`` trains, and ``interpolation``, ``nll``
(and a re-run) reuse the same models; changing any of those retrains.

Choices the paper does not state (ours, see ``tables/experimental_setup.md``):

* FID reference statistics: the test images of the preset (all of the test split at ``full``);
  interpolation pairs are drawn from the test images too.
* The preset data sizes, FID sample counts / feature sizes and second-stage VAE sizes in
  :data:`PRESET_SETTINGS`. Only ``full`` uses the paper's 10,000 samples and 2048-d features;
  FIDs from other settings are labelled as not comparable with the paper.
* Subsets are the first ``n`` images of a split (file order).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from vaebook.experiments.common import ParameterError, ParamSpec, param_spec, train_config, verdict
from vaebook.io import atomic_torch_save, atomic_write_text

# --------------------------------------------------------------------------------------------
# datasets and the rows of Tables 4–7
# --------------------------------------------------------------------------------------------
DATASETS = ("mnist", "celeba64", "celebahq128")
DATASET_LABELS = {"mnist": "MNIST", "celeba64": "CelebA 64×64", "celebahq128": "CelebA-HQ 128×128"}
#: Table 7 spells the datasets this way.
TABLE7_DATASET = {"mnist": "MNIST", "celeba64": "CelebA", "celebahq128": "CelebAHQ"}
#: latent source -> the paper's column suffix
SOURCE_COLUMN = {"prior": "fid_prior", "2nd-vae": "fid_2nd_vae", "gmm10": "fid_gmm10", "gmm100": "fid_gmm100"}
SOURCE_LABELS = {"prior": "prior", "2nd-vae": "2nd-stage VAE", "gmm10": "GMM-10", "gmm100": "GMM-100"}
SOURCES = tuple(SOURCE_COLUMN)


@dataclass(frozen=True)
class Row:
    """One model row of Tables 4–7: registry ``name``, the paper's ``group`` and row label."""

    name: str
    group: str
    label: str  # as in table4/5/6 CSVs
    nll_label: str = ""  # as in table7 CSV ("" = no Table 7 row)

    @property
    def display(self) -> str:
        pretty = self.label.replace("sigma_x^2", "σx²")
        if self.group == "trainable_Sigma_x":
            return f"{pretty} (trainable Σx)"
        if self.group == "proposed_MLE":
            return f"{pretty} (MLE, ours)"
        return pretty


ROWS: tuple[Row, ...] = (
    Row("vae-gaussian", "baseline", "VAE w/ Gaussian (sigma_x^2=1.0)", "VAE (sigma_x^2=1.0)"),
    Row("vae-bernoulli", "baseline", "VAE w/ Bernoulli"),
    Row("vae-mol", "baseline", "VAE w/ MoL"),
    Row("ae", "baseline", "AE"),
    Row("wae-mmd", "baseline", "WAE-MMD"),
    Row("rae", "baseline", "RAE"),
    Row("rae-gp", "baseline", "RAE-GP"),
    *(Row(f"trainable-{s}", "trainable_Sigma_x", lab) for s, lab in
      [("iso-i", "Iso-I"), ("diag-i", "Diag-I"), ("iso-d", "Iso-D"), ("diag-d", "Diag-D")]),
    *(Row(f"mle-{s}", "proposed_MLE", lab, lab) for s, lab in
      [("iso-i", "Iso-I"), ("diag-i", "Diag-I"), ("iso-d", "Iso-D"), ("diag-d", "Diag-D")]),
)
ROW_BY_NAME = {r.name: r for r in ROWS}
MODEL_NAMES = tuple(r.name for r in ROWS)
#: which paper table lists which datasets (and under which column prefix)
TABLE_DATASETS = {"table4": ("mnist", "celeba64"), "table5": ("mnist", "celeba64"), "table6": ("celebahq128",),
                  "table7": ("mnist", "celeba64", "celebahq128")}


def _paper(name: str) -> pd.DataFrame:
    from vaebook.paper import paper_table

    return paper_table(name)


def _prefix(table: str, dataset: str) -> str:
    if table == "table6":
        return ""
    return {"mnist": "mnist_", "celeba64": "celeba_"}[dataset]


def paper_row(table: str, name: str, dataset: Optional[str] = None) -> Optional[pd.Series]:
    """The paper's row of model ``name`` in ``table`` (None when the table has no such row)."""
    row = ROW_BY_NAME[name]
    df = _paper(table)
    if table == "table7":
        if not row.nll_label:
            return None
        sel = df[(df["dataset"] == TABLE7_DATASET[dataset]) & (df["model"] == row.nll_label)
                 & (df["group"] == row.group)]
    else:
        sel = df[(df["model"] == row.label) & (df["group"] == row.group)]
    return None if sel.empty else sel.iloc[0]


def table_metrics(table: str, dataset: str) -> list[str]:
    """The value columns of ``table`` for ``dataset`` without their dataset prefix (e.g. ``mse``, ``fid_prior``)."""
    if table == "table7":
        return ["nll"]
    pre = _prefix(table, dataset)
    df = _paper(table)
    return [c[len(pre):] for c in df.columns if c.startswith(pre) and c not in ("group", "model", "notes")]


def paper_value(table: str, name: str, dataset: str, metric: str) -> float:
    """The paper's printed value (NaN where it prints '-' or has no row)."""
    row = paper_row(table, name, dataset)
    if row is None:
        return float("nan")
    col = "nll_upper_bound_nats" if table == "table7" else _prefix(table, dataset) + metric
    v = row.get(col, float("nan"))
    return float(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else float("nan")


def models_for(dataset: str, table: str = "table4") -> list[str]:
    """Registry names of the rows ``table`` reports for ``dataset`` (a row counts when the paper prints at
    least one value for that dataset), in Table 4's row order (:data:`ROWS`)."""
    if dataset not in TABLE_DATASETS.get(table, ()):
        raise ParameterError(f"{table} has no {dataset!r} columns; it reports {TABLE_DATASETS.get(table)}.")
    out = []
    for r in ROWS:
        if any(not math.isnan(paper_value(table, r.name, dataset, m)) for m in table_metrics(table, dataset)):
            out.append(r.name)
    return out


# --------------------------------------------------------------------------------------------
# preset settings
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Section6Settings:
    """Data sizes and evaluation sizes of one preset (``None`` = the paper's value / the whole split)."""

    n_train: dict
    n_test: dict
    train_overrides: dict  # dataset -> TrainConfig overrides
    fid_samples: dict  # dataset -> generated images per FID (paper 10,000)
    fid_dims: int
    iwae_k: int
    tsne_points: int
    second_stage: dict  # SecondStageVAE sizes and fit settings
    gmm_max_iter: int
    default_models: dict = field(default_factory=dict)  # dataset -> default model subset (None = all rows)
    eval_batch: int = 500


PRESET_SETTINGS: dict[str, Section6Settings] = {
    # seconds on CPU: a code-path test only. CelebA nets cost ~10 GFLOP (64²) / ~80 GFLOP (128²) per
    # decoded image, so the CelebA smoke runs use a couple of models, tiny batches and a handful of images.
    "smoke": Section6Settings(
        n_train={"mnist": 256, "celeba64": 104, "celebahq128": 16},
        n_test={"mnist": 64, "celeba64": 8, "celebahq128": 4},
        train_overrides={"mnist": dict(max_steps=1, batch_size=32), "celeba64": dict(max_steps=1, batch_size=4),
                         "celebahq128": dict(max_steps=1, batch_size=2)},
        fid_samples={"mnist": 8, "celeba64": 8, "celebahq128": 4},
        fid_dims=64, iwae_k=4, tsne_points=32,
        second_stage=dict(width=32, depth=1, epochs=1, max_steps=3, batch_size_2nd=32),
        gmm_max_iter=20,
        default_models={"celeba64": ["vae-gaussian", "mle-diag-d"], "celebahq128": ["mle-diag-d"]},
        eval_batch=64,
    ),
    # minutes on CPU for MNIST (CelebA needs a GPU at this size); FIDs are trend-only (1,000 samples).
    "medium": Section6Settings(
        n_train={"mnist": 6_000, "celeba64": 6_000, "celebahq128": 3_000},
        n_test={"mnist": 2_000, "celeba64": 1_000, "celebahq128": 300},
        train_overrides={},
        fid_samples={"mnist": 1_000, "celeba64": 1_000, "celebahq128": 300},
        fid_dims=2048, iwae_k=100, tsne_points=1_000,
        second_stage=dict(width=256, depth=2, epochs=20),
        gmm_max_iter=100,
    ),
    # the paper: whole splits, 10,000 FID samples with 2048-d Inception features, k = 500.
    "full": Section6Settings(
        n_train={d: None for d in DATASETS}, n_test={d: None for d in DATASETS},
        train_overrides={},
        fid_samples={d: 10_000 for d in DATASETS},
        fid_dims=2048, iwae_k=500, tsne_points=2_000,
        second_stage=dict(width=1024, depth=3, epochs=50),
        gmm_max_iter=100,
    ),
}
PAPER_FID_SAMPLES, PAPER_FID_DIMS, PAPER_IWAE_K = 10_000, 2048, 500


def settings(preset: str) -> Section6Settings:
    if preset not in PRESET_SETTINGS:
        raise ParameterError(f"parameter 'preset' = {preset!r}; expected one of {tuple(PRESET_SETTINGS)}.")
    return PRESET_SETTINGS[preset]


def fid_comparable(n_samples: int, dims: int) -> bool:
    """Whether an FID is on the paper's scale (10,000 samples, 2048-d pool3 features)."""
    return dims == PAPER_FID_DIMS and n_samples >= PAPER_FID_SAMPLES


def fid_note(n_samples: int, dims: int) -> str:
    if fid_comparable(n_samples, dims):
        return ""
    return (f"FID from {n_samples} samples with {dims}-d Inception features is not comparable with the paper's "
            f"({PAPER_FID_SAMPLES:,} samples, {PAPER_FID_DIMS}-d): only the ordering is compared")


# --------------------------------------------------------------------------------------------
# parameters shared by the Section-6 notebooks
# --------------------------------------------------------------------------------------------
def section_params(datasets_allowed: Sequence[str], **extra: ParamSpec) -> dict:
    """:data:`COMMON_PARAMS` plus the Section-6 knobs (``None`` = the preset's value)."""
    return param_spec(
        datasets=ParamSpec("list", choices=tuple(datasets_allowed), allow_none=True, default=None,
                           doc="datasets to run; None = the notebook's default"),
        models=ParamSpec("list", choices=MODEL_NAMES, allow_none=True, default=None,
                         doc="model rows to run; None = every row the table reports (a small subset at smoke)"),
        n_train=ParamSpec("int", min=2, allow_none=True, default=None, doc="training images; None = preset"),
        n_test=ParamSpec("int", min=2, allow_none=True, default=None, doc="test images; None = preset"),
        **extra,
    )


FID_PARAMS = dict(
    fid_samples=ParamSpec("int", min=2, allow_none=True, default=None,
                          doc="generated images per FID; None = preset (paper: 10,000)"),
    fid_dims=ParamSpec("int", choices=(64, 192, 768, 2048), allow_none=True, default=None,
                       doc="Inception feature size; None = preset (paper: 2048)"),
)


def check_datasets(params: dict, default: Sequence[str]) -> list[str]:
    ds = list(params.get("datasets") or default)
    if not ds:
        raise ParameterError(f"parameter 'datasets' is empty; expected some of {list(default)}.")
    return ds


def resolve_models(dataset: str, requested: Optional[Sequence[str]], preset: str, table: str = "table4") -> list[str]:
    """The rows to run on ``dataset``: ``requested`` ∩ the rows ``table`` reports for it, or (``None``) all
    of them (at ``smoke``, the preset's small default subset)."""
    rows = models_for(dataset, table)
    if requested is None:
        default = settings(preset).default_models.get(dataset)
        return [n for n in rows if default is None or n in default]
    bad = [n for n in requested if n not in MODEL_NAMES]
    if bad:
        raise ParameterError(f"parameter 'models': unknown model(s) {bad}; expected names from {list(MODEL_NAMES)}.")
    return [n for n in rows if n in requested]


def check_models_apply(per_dataset: dict, requested: Optional[Sequence[str]], table: str) -> None:
    """A requested model that no selected dataset's table reports is an error (it would silently vanish)."""
    if requested is None:
        return
    used = {n for names in per_dataset.values() for n in names}
    unused = [n for n in requested if n not in used]
    if unused:
        allowed = sorted({n for d in per_dataset for n in models_for(d, table)})
        raise ParameterError(f"parameter 'models': {unused} not reported by {table} for datasets "
                             f"{list(per_dataset)}; expected some of {allowed}.")


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
@dataclass
class Section6Data:
    """Training images (uint8 or float, CPU), test images (float in [0, 1], CPU), optional labels."""

    dataset: str
    train: torch.Tensor
    test: torch.Tensor
    train_labels: Optional[torch.Tensor]
    test_labels: Optional[torch.Tensor]
    source: str  # "real" or a description of generated stand-in images
    train_hash: str = ""
    test_hash: str = ""

    @property
    def generated(self) -> bool:
        return self.source != "real"

    def describe(self) -> str:
        what = DATASET_LABELS[self.dataset] + ("" if not self.generated else f" ({self.source})")
        return f"{what}: {len(self.train)} training / {len(self.test)} test images"


def tensor_hash(t: torch.Tensor) -> str:
    """BLAKE2b of a tensor's bytes (no copy for contiguous CPU tensors)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.detach().cpu().contiguous().numpy())
    return h.hexdigest()


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()


def float_batches(x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Float batches in [0, 1] of a (possibly uint8) image tensor."""
    for i in range(0, x.shape[0], batch_size):
        yield to_float(x[i:i + batch_size])


def _take(x, n):
    return x if (x is None or n is None) else x[:n]


def celebahq_folder(params: dict) -> Path:
    from vaebook.data.celebahq import celebahq_dir

    return celebahq_dir(params.get("data_root"))


def celebahq_stand_in(n: int, seed: int) -> torch.Tensor:
    """``n`` generated 3×128×128 uint8 images (smooth random colour fields: bicubic upsampling of 8×8
    noise) that stand in for CelebA-HQ at ``smoke`` when it is not installed. They exercise the code path
    only; nothing about faces can be learnt from them."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    img = torch.nn.functional.interpolate(low, size=(128, 128), mode="bicubic", align_corners=False)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def load_data(dataset: str, params: dict) -> Section6Data:
    """The preset's training and test images of ``dataset`` (``params``: preset, data_root, n_train, n_test, seed).

    CelebA-HQ is not distributed with this project: at ``smoke`` without images, generated stand-in images
    run the code path (and every table says so); at ``medium``/``full`` a :class:`MissingDataError` says
    where to put the images.
    """
    from vaebook.data import EmptyImageFolderError, MissingDataError, load_celeba, load_celebahq, load_mnist

    if dataset not in DATASETS:
        raise ParameterError(f"unknown dataset {dataset!r}; expected one of {DATASETS}.")
    s = settings(params["preset"])
    n_train = params.get("n_train") or s.n_train[dataset]
    n_test = params.get("n_test") or s.n_test[dataset]
    root = params.get("data_root")
    ytr = yte = None
    source = "real"
    if dataset == "mnist":
        xtr, ytr = load_mnist("train", root)
        xte, yte = load_mnist("test", root)
    elif dataset == "celeba64":
        xtr, xte = load_celeba("train", root), load_celeba("test", root)
    else:
        try:
            xtr, xte = load_celebahq("train", root), load_celebahq("test", root)
        except (MissingDataError, EmptyImageFolderError) as e:
            if params["preset"] != "smoke":
                raise MissingDataError(
                    f"CelebA-HQ images are needed for preset {params['preset']!r} but none were found: {e} "
                    f"Put the 30,000 CelebA-HQ 1024×1024 images (png/jpg) directly in {str(celebahq_folder(params))!r} "
                    "(or pass data_root= / set VAEBOOK_DATA), then re-run. Only preset 'smoke' runs without them, "
                    "on generated stand-in images.") from e
            nt, ne = n_train or 16, n_test or 4
            x = celebahq_stand_in(nt + ne, seed=int(params.get("seed", 0)))
            xtr, xte = x[:nt], x[nt:]
            source = "generated stand-in images, not CelebA-HQ"
    xtr, ytr = _take(xtr, n_train), _take(ytr, n_train)
    xte, yte = _take(xte, n_test), _take(yte, n_test)
    data = Section6Data(dataset, xtr, to_float(xte), ytr, yte, source)
    data.train_hash, data.test_hash = tensor_hash(xtr), tensor_hash(data.test)
    return data


# --------------------------------------------------------------------------------------------
# trained models (cached)
# --------------------------------------------------------------------------------------------
CACHE_FORMAT = 1
_CONFIG_KEY_FIELDS = ("epochs", "batch_size", "lr", "seed", "max_steps", "weight_decay", "lr_schedule",
                      "early_stopping_patience")


@dataclass
class TrainedModel:
    """A model of one table row after training (or loading): ``model`` is None when it is not available
    (not registered, or training diverged); ``reason`` then says why."""

    name: str
    dataset: str
    model: Optional[torch.nn.Module]
    history: list = field(default_factory=list)
    from_cache: bool = False
    meta: dict = field(default_factory=dict)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.model is not None

    @property
    def row(self) -> Row:
        return ROW_BY_NAME[self.name]


def model_cache_dir(params: dict, dataset: str, name: str) -> Path:
    return Path(params.get("results_dir") or "results") / params["preset"] / "models" / dataset / name


def section_train_config(params: dict, dataset: str):
    """The :class:`TrainConfig` of ``dataset`` at the preset (+ the section's smoke overrides, + ``epochs``)."""
    over = dict(settings(params["preset"]).train_overrides.get(dataset, {}))
    return train_config(params, dataset, **over)


def cache_key(name: str, dataset: str, data: Section6Data, cfg) -> dict:
    """Everything that determines a trained model (device, logging and progress do not)."""
    c = asdict(cfg)
    return {"format": CACHE_FORMAT, "name": name, "arch": dataset, "data": data.source,
            "n_train": int(len(data.train)), "train_hash": data.train_hash,
            "config": {k: c.get(k) for k in _CONFIG_KEY_FIELDS}}


def _build(name: str, dataset: str, seed: int):
    from vaebook.data import mix_seed
    from vaebook.models import build_model

    torch.manual_seed(mix_seed("section6", seed, dataset, name))  # init independent of training order
    return build_model(name, dataset)


def _load_cached(d: Path, key: dict, name: str, dataset: str, seed: int, device) -> Optional[TrainedModel]:
    meta_p = d / "meta.json"
    if not meta_p.is_file():
        return None
    try:
        meta = json.loads(meta_p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("key") != json.loads(json.dumps(key)):
        return None
    history = json.loads((d / "history.json").read_text()) if (d / "history.json").is_file() else []
    if meta.get("status") != "ok":
        return TrainedModel(name, dataset, None, history, True, meta, meta.get("reason", "training failed"))
    if not (d / "model.pt").is_file():
        return None
    model = _build(name, dataset, seed)
    try:
        state = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, EOFError, ValueError, KeyError):
        return None  # unreadable, or the model class changed since it was cached: retrain
    model.to(device).eval()
    return TrainedModel(name, dataset, model, history, True, meta)


def _save(d: Path, key: dict, tm: TrainedModel, wall_s: float, device: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    if tm.model is not None:
        atomic_torch_save({k: v.detach().cpu().clone() for k, v in tm.model.state_dict().items()}, d / "model.pt")
    atomic_write_text(d / "history.json", json.dumps(tm.history, indent=1))
    meta = {"key": key, "status": "ok" if tm.model is not None else "diverged", "reason": tm.reason,
            "train_wall_s": round(wall_s, 3), "device": device, "torch": torch.__version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(d / "meta.json", json.dumps(meta, indent=1))  # last: marks the entry complete
    tm.meta = meta


def _history_records(h) -> list:
    return list(getattr(h, "epochs", h) or [])


def trained_models(dataset: str, names: Sequence[str], params: dict, data: Optional[Section6Data] = None,
                   log: Optional[Callable[[str], None]] = print, train_fn: Optional[Callable] = None) -> dict:
    """``{name: TrainedModel}`` for the rows ``names`` on ``dataset``: loaded from the cache when the key
    matches, else trained together through one :func:`~vaebook.experiments.common.train_many` call (the
    single entry point the batched trainer plugs into) and cached as each finishes.

    Names not registered in :data:`vaebook.models.MODEL_REGISTRY` come back with ``model=None`` and a reason.
    A model whose loss becomes non-finite is recorded (and cached) as diverged; the others still train.
    """
    from vaebook.models import MODEL_REGISTRY
    from vaebook.train import NonFiniteLossError, resolve_device
    from vaebook.experiments import common

    train_fn = train_fn or common.train_many
    data = data or load_data(dataset, params)
    cfg = section_train_config(params, dataset)
    dev = resolve_device(params.get("device", "auto"))
    seed = int(params.get("seed", 0))
    out: dict = {}
    todo = []  # (name, model, dir, key)
    for name in names:
        if name not in ROW_BY_NAME:
            raise ParameterError(f"unknown model {name!r}; expected one of {list(MODEL_NAMES)}.")
        if name not in MODEL_REGISTRY:
            out[name] = TrainedModel(name, dataset, None, reason=f"model {name!r} is not available in "
                                     "vaebook.models (not registered)")
            continue
        key = cache_key(name, dataset, data, cfg)
        d = model_cache_dir(params, dataset, name)
        hit = _load_cached(d, key, name, dataset, seed, dev)
        if hit is not None:
            out[name] = hit
            continue
        todo.append((name, _build(name, dataset, seed), d, key))

    if todo:
        if log:
            log(f"training {len(todo)} model(s) on {data.describe()}: {', '.join(t[0] for t in todo)}")
        t0 = [time.perf_counter()]

        def done(i, model, history):
            name, _, d, key = todo[i]
            tm = TrainedModel(name, dataset, model.eval(), _history_records(history))
            _save(d, key, tm, time.perf_counter() - t0[0], str(dev))
            out[name] = tm
            t0[0] = time.perf_counter()

        try:
            train_fn([t[1] for t in todo], data.train, cfg, on_done=done)
        except NonFiniteLossError:
            # find the diverging model(s): train the rest one by one from a fresh start
            for name, _, d, key in todo:
                if name in out:
                    continue
                model = _build(name, dataset, seed)
                t0[0] = time.perf_counter()
                try:
                    h = train_fn([model], data.train, cfg)[0]
                    tm = TrainedModel(name, dataset, model.eval(), _history_records(h))
                except NonFiniteLossError as e:
                    tm = TrainedModel(name, dataset, None, reason=f"training diverged: {e}".split(". Last good")[0])
                _save(d, key, tm, time.perf_counter() - t0[0], str(dev))
                out[name] = tm
    return {n: out[n] for n in names}


# --------------------------------------------------------------------------------------------
# evaluation helpers
# --------------------------------------------------------------------------------------------
def keep_first(batches, n: int, store: list):
    """Pass image batches through, appending the first ``n`` images to ``store`` (figures from the FID
    samples, so nothing is decoded twice)."""
    kept = 0
    for b in batches:
        if kept < n:
            store.append(b[:n - kept].cpu())
            kept += store[-1].shape[0]
        yield b


def small_threads(n_values: int):
    """One BLAS/OpenMP thread for small scikit-learn fits (their thread pools spin badly on a busy CPU)."""
    import contextlib

    from threadpoolctl import threadpool_limits

    return threadpool_limits(1) if n_values <= 2_000_000 else contextlib.nullcontext()


def fid_batch(device) -> int:
    return 200 if str(device).startswith("cuda") else 50


def reference(dataset: str, data: Section6Data, dims: int, device) -> "object":
    """FID reference statistics of the test images (cached on disk by content hash)."""
    from vaebook.metrics.fid import reference_stats

    key = f"{dataset}-test-{data.test_hash[:16]}"
    return reference_stats(key, data.test, n=len(data.test), dims=dims, batch_size=fid_batch(device), device=device)


def encode_train(model, data: Section6Data, batch_size: int) -> torch.Tensor:
    from vaebook.metrics._util import encode_means

    return encode_means(model, float_batches(data.train, batch_size), batch_size)


def fit_sampler(model, source: str, latents: torch.Tensor, s: Section6Settings, seed: int, device):
    """The ex-post latent density for ``source`` (None for the prior); the 2nd-stage VAE trains on ``device``."""
    from vaebook.posterior import SecondStageVAE, fit_latent_sampler

    if source == "prior":
        return None
    if source == "2nd-vae":
        kw = dict(s.second_stage)
        arch = {k: kw.pop(k) for k in ("width", "depth") if k in kw}
        if "batch_size_2nd" in kw:
            kw["batch_size"] = kw.pop("batch_size_2nd")
        torch.manual_seed(seed)
        vae2 = SecondStageVAE(latents.shape[1], **arch).to(device)
        return vae2.fit(latents, seed=seed, **kw)
    with small_threads(latents.numel()):
        return fit_latent_sampler(model, None, source, latents=latents.cpu(), seed=seed, max_iter=s.gmm_max_iter)


def source_skip_reason(model, source: str, n_codes: int) -> str:
    """Why ``source`` cannot be used with ``model`` ('' when it can)."""
    if source == "prior" and not getattr(model, "has_prior", True):
        return "no prior (deterministic encoder)"
    if source.startswith("gmm") and n_codes < int(source[3:]):
        return f"{source} needs at least {source[3:]} training codes, the preset has {n_codes}"
    return ""


def learned_sigma2(model) -> Optional[float]:
    """Mean learned σx² of the -I variance shapes (MLE: running estimate; trainable: the parameter)."""
    v = getattr(model, "variance", None)
    if v is None or getattr(v, "dependent", True):
        return None
    try:
        return float(v.current().detach().float().mean())
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------------------------
# paper-vs-ours rows
# --------------------------------------------------------------------------------------------
def reference_row(name: str, available: Sequence[str], table: str) -> Optional[str]:
    """The row ``name`` is compared with for the trend: MLE ↔ trainable of the same shape (the paper's
    comparison of the bottom eight rows of Table 4), MLE vs the σx² = 1 VAE where there is no trainable
    row (Tables 6, 7), baselines vs the first available MLE row."""
    mle = [f"mle-{s}" for s in ("iso-i", "iso-d", "diag-i", "diag-d")]
    if name.startswith("mle-"):
        prefs = [name.replace("mle-", "trainable-"), "vae-gaussian"] if table in ("table4", "table5") \
            else ["vae-gaussian"]
    elif name.startswith("trainable-"):
        prefs = [name.replace("trainable-", "mle-")]
    else:
        prefs = mle
    for p in prefs:
        if p != name and p in available:
            return p
    return None


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


TIE = 0.05  # the paper's two values within 5 %: it shows no ordering, only "comparable"


def pairwise_trend(paper_v, paper_ref, ours_v, ours_ref, ref_display: str, tie: float = TIE) -> Optional[tuple]:
    """(holds, why): ours is on the same side of the reference row as the paper's value.

    When the paper's two values are within ``tie`` (relative) it claims no ordering; the trend then holds
    when ours are within ``2·tie`` of each other too.
    """
    vals = [paper_v, paper_ref, ours_v, ours_ref]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
        return None
    rel = {1: ">", -1: "<", 0: "="}

    def close(a, b, t):
        return abs(a - b) <= t * max(abs(a), abs(b), 1e-12)

    if close(paper_v, paper_ref, tie):
        ok = close(ours_v, ours_ref, 2 * tie)
        why = (f"vs {ref_display}: paper {_fmt(paper_v)} ≈ {_fmt(paper_ref)} (within {tie:.0%}), ours "
               f"{_fmt(ours_v)} vs {_fmt(ours_ref)} {'within' if ok else 'not within'} {2 * tie:.0%}")
        return ok, why
    sp, so = np.sign(paper_v - paper_ref), np.sign(ours_v - ours_ref)
    why = (f"vs {ref_display}: paper {_fmt(paper_v)} {rel[int(sp)]} {_fmt(paper_ref)}, "
           f"ours {_fmt(ours_v)} {rel[int(so)]} {_fmt(ours_ref)}")
    return bool(sp == so), why


#: the paper's footnotes that bear on a comparison
PAPER_NOTES = {
    ("table4", "celeba64", "trainable-diag-d"): "paper: this training did not converge; it reports the checkpoint "
                                                "with the best test MSE",
    ("table4", "mnist", "trainable-iso-i"): "trainable Iso-I + 2nd-stage VAE is the two-stage VAE of Dai & Wipf [18]",
    ("table4", "celeba64", "trainable-iso-i"): "trainable Iso-I + 2nd-stage VAE is the two-stage VAE of Dai & Wipf [18]",
}


def _ours(ours: dict, name: str, metric: str) -> float:
    v = ours.get(name, {}).get(metric)
    return float("nan") if v is None else float(v)


def comparison_rows(table: str, dataset: str, ours: dict, reasons: dict, metric_notes: dict,
                    rel_tol: dict, names: Sequence[str], data_note: str = "") -> list[dict]:
    """One row per paper cell of ``table`` for ``dataset``: paper, ours, verdict, reason.

    ``ours[name][metric]`` holds our values (NaN/missing = not computed); ``reasons[name]`` (or
    ``reasons[(name, metric)]``) why a cell has no value; ``metric_notes[metric]`` a note that also rules
    out ``match`` (the value is not on the paper's scale, e.g. a smoke FID), as does ``data_note`` (e.g.
    generated stand-in images); ``rel_tol[metric]`` the relative tolerance of a match (default 10 %).
    The trend compares each row with :func:`reference_row` (:func:`pairwise_trend`).
    """
    rows = []
    metrics = table_metrics(table, dataset)
    for r in ROWS:
        if paper_row(table, r.name, dataset) is None:
            continue
        for m in metrics:
            p = paper_value(table, r.name, dataset, m)
            if math.isnan(p):
                continue
            o = _ours(ours, r.name, m)
            base = {"dataset": dataset, "group": r.group, "model": r.display, "name": r.name, "metric": m,
                    "paper": p, "ours": o}
            if table == "table7":
                base["paper_printed"] = f"< {p:.2f}"
            if r.name not in names:
                rows.append({**base, "verdict": None, "reason": reasons.get(r.name) or
                             "not run (model not selected for this run/preset)"})
                continue
            if math.isnan(o):
                rows.append({**base, "verdict": None, "reason": reasons.get((r.name, m)) or reasons.get(r.name)
                             or "not computed"})
                continue
            ref = reference_row(r.name, [n for n in names if not math.isnan(_ours(ours, n, m))], table)
            trend = None
            if ref is not None:
                trend = pairwise_trend(p, paper_value(table, ref, dataset, m), o, _ours(ours, ref, m),
                                       ROW_BY_NAME[ref].display)
            note = metric_notes.get(m, "")
            notes = "; ".join(x for x in (note, data_note, PAPER_NOTES.get((table, dataset, r.name), "")) if x)
            off_scale = bool(note or data_note)
            v, why = verdict(p, o, rel_tol=0.0 if off_scale else rel_tol.get(m, 0.1), trend=trend, note=notes)
            if off_scale and v == "match":  # equal by chance: a value off the paper's scale cannot "match"
                v = "trend holds" if (trend and trend[0]) else "differs"
            rows.append({**base, "verdict": v, "reason": why})
    return rows


def not_selected_rows(table: str, selected: Sequence[str]) -> list[dict]:
    """Rows for the datasets of ``table`` that a run did not select (so the table keeps every paper row)."""
    out = []
    for d in TABLE_DATASETS[table]:
        if d not in selected:
            why = f"not run: dataset {d!r} not selected (parameter 'datasets')"
            out += comparison_rows(table, d, {}, {n: why for n in MODEL_NAMES}, {}, {}, [])
    return out


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    cols = ["dataset", "group", "model", "name", "metric", "paper", "ours", "verdict", "reason"]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=cols)
    extra = [c for c in df.columns if c not in cols]
    return df[cols + extra]


def verdict_counts(df: pd.DataFrame) -> dict:
    """``{"match": n, "trend holds": n, "differs": n, "not run": n}``."""
    v = df["verdict"] if "verdict" in df else pd.Series(dtype=object)
    out = {k: int((v == k).sum()) for k in ("match", "trend holds", "differs")}
    out["not run"] = int(v.isna().sum())
    return out


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 1) -> np.ndarray:
    """``H×W×C`` array of a torchvision ``make_grid`` of images in [0, 1]."""
    import vaebook  # noqa: F401  (torchvision shim)
    from torchvision.utils import make_grid

    g = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=padding, pad_value=1.0)
    return g.permute(1, 2, 0).numpy()


def grid_figure(blocks: list[tuple[str, Optional[torch.Tensor]]], columns: Sequence[str] = (), title: str = "",
                cell: float = 0.32):
    """One row of image strips per (row label, images ``K×C×H×W`` or None); ``columns`` label the strips
    when a row is the concatenation of several groups of equal size."""
    import matplotlib.pyplot as plt

    n = max(1, len(blocks))
    k = max((b.shape[0] for _, b in blocks if b is not None), default=8)
    fig, axes = plt.subplots(n, 1, figsize=(max(4.0, cell * k + 2.2), 0.42 + cell * 1.25 * n), squeeze=False)
    for ax, (label, imgs) in zip(axes[:, 0], blocks):
        ax.set_xticks([])
        ax.set_yticks([])
        for sp in ax.spines.values():
            sp.set_visible(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
        if imgs is None:
            ax.text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=7, transform=ax.transAxes)
            continue
        g = image_grid(imgs, nrow=imgs.shape[0])
        ax.imshow(g.squeeze(-1) if g.shape[-1] == 1 else g, cmap="gray" if g.shape[-1] == 1 else None)
    if columns:
        axes[0, 0].set_title("   |   ".join(columns), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def epoch_times(history: list, n_train: int, batch_size: int) -> float:
    """Seconds per full epoch from a training history (time per step × steps per epoch, so partial
    epochs of short runs count correctly)."""
    prev, rates = 0, []
    for rec in history:
        steps = int(rec.get("step", 0)) - prev
        prev = int(rec.get("step", prev))
        if steps > 0 and rec.get("time_s") is not None:
            rates.append(float(rec["time_s"]) / steps)
    if not rates:
        return float("nan")
    return float(np.mean(rates)) * max(1, n_train // batch_size)


def display_table(df: pd.DataFrame, dataset: Optional[str] = None) -> pd.DataFrame:
    """A table for reading: one dataset, paper and ours rounded, the reason kept."""
    if df is None or df.empty:
        return pd.DataFrame()
    d = df if dataset is None or "dataset" not in df else df[df["dataset"] == dataset]
    d = d.drop(columns=[c for c in ("name", "group", "dataset") if c in d]).copy()
    if "metric" in d:
        d["metric"] = d["metric"].map(lambda m: METRIC_LABELS.get(m, m))
    for c in ("paper", "ours"):
        if c in d:
            d[c] = d[c].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}")
    d["verdict"] = d["verdict"].fillna("not run")
    return d.reset_index(drop=True)


def side_by_side(df: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The table laid out like the paper's: one row per model, one column per metric, cells
    ``"ours (paper)"`` (``–`` where not run / not printed)."""
    if df is None or df.empty:
        return pd.DataFrame()
    d = df[df["dataset"] == dataset]
    if d.empty:
        return pd.DataFrame()

    def cell(r):
        o = "–" if pd.isna(r["ours"]) else f"{r['ours']:.4g}"
        return f"{o} ({r['paper']:.4g})"

    d = d.assign(cell=d.apply(cell, axis=1))
    order = list(dict.fromkeys(d["model"]))
    cols = list(dict.fromkeys(d["metric"]))
    wide = d.pivot(index="model", columns="metric", values="cell").reindex(index=order, columns=cols)
    wide = wide.fillna("").reset_index().rename(columns={**METRIC_LABELS, "model": "model"})
    wide.columns.name = None
    return wide


METRIC_LABELS = {"mse": "MSE", "fid_prior": "FID prior", "fid_2nd_vae": "FID 2nd VAE", "fid_gmm10": "FID GMM-10",
                 "fid_gmm100": "FID GMM-100", "fid_mid_point": "FID mid-point", "fid_random_point": "FID random-point",
                 "nll": "NLL bound (nats)", "sigma2": "learned σx²"}


__all__ = ["DATASETS", "ROWS", "ROW_BY_NAME", "MODEL_NAMES", "SOURCES", "PRESET_SETTINGS", "Row", "Section6Data",
           "Section6Settings", "TrainedModel", "models_for", "resolve_models", "paper_value", "paper_row",
           "table_metrics", "settings", "load_data", "trained_models", "model_cache_dir", "section_train_config",
           "cache_key", "reference", "fit_sampler", "comparison_rows", "rows_frame", "verdict_counts",
           "grid_figure", "image_grid", "epoch_times", "display_table", "side_by_side", "not_selected_rows",
           "fid_comparable", "fid_note", "section_params", "FID_PARAMS", "celebahq_stand_in", "learned_sigma2",
           "source_skip_reason", "keep_first", "pairwise_trend", "reference_row"]
