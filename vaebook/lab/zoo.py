"""The model zoo: trained models cached on disk, keyed by everything that determines them.

A :class:`Job` names a registered model, a registered dataset (and its variant), the training settings
and the seed. Its cache key adds the training images' content hash and the **code version** of *that* model
(:func:`job_code_version`: the files that define the built model's classes, its nets, its Σx and rescue, and the
trainer; :mod:`vaebook.lab.codekey`), so a changed objective or trainer retrains instead of reusing a stale model,
and adding a file (a new Σx, a new dataset) retrains nothing. Entries live in
``<root>/<dataset>/<model>-<key hash>/`` (``model.pt``, ``history.json``, ``meta.json`` written last).

:meth:`Zoo.train` trains the jobs that are not cached (batched through ``torch.func.vmap`` on CUDA, one by
one elsewhere), writes each model when it finishes (a re-run skips it), resumes a model cut short from
its epoch checkpoint, and records a model whose loss became non-finite as failed and goes on. A batched
group (models that can share one vmapped loop) is written when the group finishes, so an interrupted
run keeps every finished group; the group cut short starts again (batched loops keep no checkpoints), and
a model that fits no group trains alone, with checkpoints.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional, Sequence

import torch

from vaebook.checks import check_fit
from vaebook.io import CorruptCacheError, atomic_torch_save, atomic_write_text, discard, load_torch_file
from vaebook.lab.codekey import files_hash, model_files

FORMAT = 3  # 3: the code version is the model's own files (was: every file of models/, nets/, variance/, train/)
_MODEL_FILES: dict = {}  # (model, arch, builder kwargs) -> its source files


def job_files(job: "Job") -> list:
    """The source files that define ``job``'s model (:func:`vaebook.lab.codekey.model_files` of the built model;
    the model is built once per model, architecture and builder arguments)."""
    from vaebook.data import dataset_spec

    k = (job.model, dataset_spec(job.dataset).arch, repr(sorted(job.builder_kwargs().items())))
    if k not in _MODEL_FILES:
        state = torch.random.get_rng_state()
        try:
            _MODEL_FILES[k] = model_files(job.build())
        finally:
            torch.random.set_rng_state(state)  # building seeds the global generator: leave it as it was
    return _MODEL_FILES[k]


def job_code_version(job: "Job") -> str:
    """Hash of the source files that determine ``job``'s trained model (:func:`job_files`)."""
    return files_hash(job_files(job))


@dataclass(frozen=True)
class Job:
    """One model to train. ``train``: :class:`~vaebook.train.TrainConfig` fields (epochs, lr, batch_size,
    max_steps, ...); ``model_kwargs``: builder arguments (e.g. a fixed σx²); ``variant``: dataset loader
    arguments (e.g. a noise pattern); ``tag``: a free label for logs."""

    model: str
    dataset: str
    train: tuple  # sorted (field, value) pairs
    seed: int = 0
    model_kwargs: tuple = ()
    variant: tuple = ()
    tag: str = ""

    @staticmethod
    def make(model: str, dataset: str, train: dict, seed: int = 0, model_kwargs: Optional[dict] = None,
             variant: Optional[dict] = None, tag: str = "") -> "Job":
        return Job(model, dataset, tuple(sorted(train.items())), int(seed),
                   tuple(sorted((model_kwargs or {}).items())), tuple(sorted((variant or {}).items())), tag)

    @property
    def train_dict(self) -> dict:
        return dict(self.train)

    @property
    def label(self) -> str:
        return self.tag or f"{self.model} on {self.dataset}"

    def build(self):
        """The untrained model (initialisation seeded by the job, not by training order). A ``rescue`` model kwarg
        (:mod:`vaebook.variance.rescue`) is left out of the seed: jobs that differ only in how Σx trains start from
        the same weights (a paired comparison), and pinning ``rescue="none"`` kept the experiments' models (#29)."""
        from vaebook.data import dataset_spec, mix_seed
        from vaebook.models import build_model

        spec = dataset_spec(self.dataset)
        seeded = tuple(kv for kv in self.model_kwargs if kv[0] != "rescue")
        torch.manual_seed(mix_seed("zoo", self.seed, self.dataset, self.model, repr(seeded),
                                   repr(self.variant)) % (2**63 - 1))
        return build_model(self.model, spec.arch, **self.builder_kwargs())

    def config(self, device: str = "auto"):
        from vaebook.train import TrainConfig

        return TrainConfig(**{**self.train_dict, "seed": self.seed, "device": device}).validate()

    def check(self, images) -> None:
        """Refuse, before any training, a setting or training images ``fit`` cannot use: a non-finite or
        non-positive lr, images of another shape than the dataset's, NaN/inf pixels (:func:`vaebook.checks.check_fit`)."""
        from vaebook.data import dataset_spec

        check_fit(SimpleNamespace(x_shape=dataset_spec(self.dataset).x_shape), images, self.config("cpu"),
                  where=self.label)

    def builder_kwargs(self) -> dict:
        """The builder's arguments: the dataset's per-model defaults, then the job's own."""
        from vaebook.data import dataset_spec

        return {**dataset_spec(self.dataset).model_defaults.get(self.model, {}), **dict(self.model_kwargs)}

    def key(self, train_hash: str, n_train: int) -> dict:
        return {"format": FORMAT, "model": self.model, "dataset": self.dataset, "model_kwargs": self.builder_kwargs(),
                "variant": dict(self.variant), "train": self.train_dict, "seed": self.seed, "n_train": int(n_train),
                "train_hash": train_hash, "code": job_code_version(self)}


@dataclass
class TrainedModel:
    """A job's model after training or loading; ``model`` is None when it did not train (``reason`` says why)."""

    job: Job
    model: Optional[torch.nn.Module]
    history: list = field(default_factory=list)
    from_cache: bool = False
    meta: dict = field(default_factory=dict)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.model is not None


def _key_hash(key: dict) -> str:
    return hashlib.blake2b(json.dumps(key, sort_keys=True, default=str).encode(), digest_size=6).hexdigest()


class Zoo:
    """Trained models under ``root``; ``data_fn(job) -> training tensor`` supplies each job's images."""

    def __init__(self, root, data_fn: Callable, device: str = "auto", log: Optional[Callable] = print):
        self.root = Path(root)
        self.data_fn = data_fn
        self.device = device
        self.log = log or (lambda *_: None)

    def _entry(self, job: Job) -> tuple[Path, dict]:
        from vaebook.lab.data import tensor_hash

        x = self.data_fn(job)
        key = job.key(getattr(x, "_vaebook_hash", None) or tensor_hash(x), len(x))
        return self.root / job.dataset / f"{job.model}-{_key_hash(key)}", key

    def load(self, job: Job) -> Optional[TrainedModel]:
        """The cached model of ``job`` (None when absent, stale or unreadable)."""
        from vaebook.train import resolve_device

        d, key = self._entry(job)
        meta_p = d / "meta.json"
        if not meta_p.is_file():
            return None
        try:
            meta = json.loads(meta_p.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(meta, dict):
            return None
        if meta.get("key") != json.loads(json.dumps(key, default=str)):
            return None
        try:
            hist = json.loads((d / "history.json").read_text()) if (d / "history.json").is_file() else []
        except (OSError, ValueError):
            self.log(f"corrupt cache entry {d / 'history.json'}: not JSON. Delete it or re-run: "
                     f"{job.label} is trained again (discarded)")
            discard(meta_p)
            return None
        if meta.get("status") != "ok":
            return TrainedModel(job, None, hist, True, meta, meta.get("reason", "training failed"))
        model = job.build()
        try:
            state = load_torch_file(d / "model.pt", fix=f"re-run: {job.label} is trained again")
            model.load_state_dict(state)
        except (CorruptCacheError, RuntimeError, ValueError, KeyError, TypeError) as e:
            # a damaged, planted or mismatched entry is never used: say so, discard it, train again
            msg = str(e) if isinstance(e, CorruptCacheError) else (
                f"corrupt cache entry {d / 'model.pt'}: its weights do not fit {job.label} ({type(e).__name__}). "
                "Delete it or re-run: the model is trained again")
            self.log(f"{msg} (discarded)")
            discard(d / "meta.json")
            discard(d / "model.pt")
            return None
        except OSError:
            return None
        return TrainedModel(job, model.to(resolve_device(self.device)).eval(), hist, True, meta)

    def cached(self, job: Job) -> bool:
        """Whether ``job`` has a complete, current entry (trained or recorded as failed); weights not read."""
        d, key = self._entry(job)
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return meta.get("key") == json.loads(json.dumps(key, default=str)) and (
            meta.get("status") != "ok" or (d / "model.pt").is_file())

    def _save(self, job: Job, tm: TrainedModel, wall_s: float) -> None:
        d, key = self._entry(job)
        d.mkdir(parents=True, exist_ok=True)
        if tm.model is not None:
            atomic_torch_save({k: v.detach().cpu().clone() for k, v in tm.model.state_dict().items()}, d / "model.pt")
        atomic_write_text(d / "history.json", json.dumps(tm.history, indent=1, default=str))
        meta = {"key": key, "status": "ok" if tm.model is not None else "did not train", "reason": tm.reason,
                "rescue": getattr(tm.model, "rescue", None), "train_wall_s": round(wall_s, 3), "device": str(self.device), "torch": torch.__version__,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        atomic_write_text(d / "meta.json", json.dumps(meta, indent=1, default=str))  # last: entry complete
        shutil.rmtree(d / "checkpoint", ignore_errors=True)
        tm.meta = meta

    def _drop_corrupt_checkpoint(self, path: Path, job: Job) -> None:
        """A checkpoint that cannot be read (cut short, damaged, planted) is reported and removed, so the
        model trains from the start instead of failing on PyTorch's raw zip/unpickling error."""
        if not path.is_file():
            return
        try:
            load_torch_file(path, fix="re-run: the model trains from the start")
        except CorruptCacheError as e:
            self.log(f"{e} ({job.label}: discarded, training from the start)")
            discard(path)

    def train(self, jobs: Sequence[Job], batched: Optional[bool] = None) -> dict:
        """``{job: TrainedModel}`` for every job: cached ones loaded, the rest trained and cached one by one."""
        from vaebook.train import NonFiniteLossError, resolve_device
        from vaebook.train import fit
        from vaebook.train import train_many as batched_train

        dev = resolve_device(self.device)
        out: dict = {}
        todo = []
        for job in dict.fromkeys(jobs):
            hit = self.load(job)
            if hit is not None:
                out[job] = hit
            else:
                todo.append(job)
        if not todo:
            return out
        for job in todo:  # every job's settings and images, before the first step of any
            job.check(self.data_fn(job))
        if batched is None:
            batched = dev.type == "cuda" and len(todo) > 1
        self.log(f"training {len(todo)} model(s) on {dev}: " + ", ".join(j.label for j in todo))
        if batched:  # one vmapped loop per group of models that can share it, each group saved when it ends
            from vaebook.train.batched import batch_blockers, batch_key

            groups: dict = {}
            for j in todo:
                m, cfg = j.build(), j.config(str(dev))
                if not batch_blockers(m, cfg):
                    groups.setdefault(batch_key(m, self.data_fn(j), cfg), []).append((j, m, cfg))
            for members in groups.values():
                if len(members) < 2:  # a single model: the one-by-one loop below (epoch checkpoints, resume)
                    continue
                try:
                    t0 = time.perf_counter()
                    hs = batched_train([m for _, m, _ in members], [self.data_fn(j) for j, _, _ in members],
                                       [cfg for _, _, cfg in members])
                    per = (time.perf_counter() - t0) / len(members)
                    for (j, m, _), h in zip(members, hs):
                        tm = TrainedModel(j, m.eval(), list(getattr(h, "epochs", h) or []))
                        self._save(j, tm, per)
                        out[j] = tm
                    self.log(f"batched group of {len(members)} ({members[0][0].model}): trained in "
                             f"{time.perf_counter() - t0:.0f} s")
                except NonFiniteLossError:
                    self.log(f"a batched model diverged: training its group of {len(members)} one by one to find it")
            groups.clear()
        for i, job in enumerate(todo):
            if job in out:
                continue
            d, _ = self._entry(job)
            cfg = job.config(str(dev))
            cfg.checkpoint_dir, cfg.resume = str(d / "checkpoint"), True
            self._drop_corrupt_checkpoint(d / "checkpoint" / "checkpoint.pt", job)
            model = job.build()
            t0 = time.perf_counter()
            try:
                h = fit(model, self.data_fn(job), cfg)
                tm = TrainedModel(job, model.eval(), list(getattr(h, "epochs", h) or []))
                last = tm.history[-1] if tm.history else {}
                self.log(f"[{i + 1}/{len(todo)}] {job.label}: trained in {time.perf_counter() - t0:.0f} s"
                         + (f", loss {last['loss']:.4g}" if isinstance(last.get("loss"), (int, float)) else ""))
            except NonFiniteLossError as e:
                tm = TrainedModel(job, None, reason="did not train: the loss became non-finite (" +
                                  str(e).split(". Last good")[0] + ")")
                self.log(f"[{i + 1}/{len(todo)}] {job.label}: {tm.reason}")
            self._save(job, tm, time.perf_counter() - t0)
            out[job] = tm
        return out


__all__ = ["Job", "TrainedModel", "Zoo", "job_code_version", "job_files"]
