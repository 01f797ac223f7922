"""Train K models that share an architecture in one process and one optimiser loop (hyperparameter sweeps).

The K models' parameters and buffers are stacked along a new leading axis
(:func:`torch.func.stack_module_state`) and one step runs the model's own ``loss`` for all K at
once with :func:`torch.func.vmap` over :func:`torch.func.functional_call` (convolutions become
grouped convolutions, linear layers batched matmuls). Each model keeps what a separate
:func:`vaebook.train.fit` run would have:

* its own minibatch order — one :class:`vaebook.data.BatchIterator` per model, seeded with its
  ``TrainConfig.seed``;
* its own loss noise — z ~ q(z|x) is drawn outside ``vmap`` from one ``torch.Generator`` per model,
  seeded ``seed + 1`` like :class:`~vaebook.train.Trainer`'s, in the same order and shape, and fed
  to :meth:`Posterior.rsample` through its thread-local noise hook (see :func:`noise_feed`);
* its own batch-norm running statistics and MLE running σ̂x² (stacked buffers, updated in place
  inside ``vmap``);
* its own Adam: Adam is elementwise, so one ``torch.optim.Adam`` over the stacked tensors is K
  independent Adams (no global gradient-norm clipping is used anywhere).

The K models run through ``vmap`` in chunks of ``chunk_size`` models (default: all K on CUDA, 4 on
CPU); all chunks share one optimiser step. On CPU, larger chunks leave the caches and make oneDNN
run grouped convolutions with one input channel per group, so a K = 11 step measured 0.75× the
speed of 11 single-model steps in one chunk and 1.0× in chunks of 4
(``results/benchmarks/cpu/``). On a GPU the single chunk is what removes the per-model kernel
launches.

Memory grows with K by the parameters, their gradients, the Adam states and one chunk's
activations: a dataset passed once (or the same tensor object K times) is held once; during
training each model's ``nn.Parameter``s and buffers are views of the stacked tensors (no second
copy), and at the end each model gets its own storage back, holding its trained values as after
``fit``. Measured on CPU (App. I.1 net): +216 MB per model = 4 × 13.3 M float32 values.

What may differ within a batched group: values of parameters/buffers (fixed σx², fixed σz²,
initial weights), the seed and the training images. What must agree (else :func:`train_many`
trains sequentially): the module structure — parameter/buffer names, shapes, dtypes, module
types and their non-tensor attributes (Σx shape and mode, ε, β, …) — and the optimisation
settings (epochs, batch size, max_steps, lr, weight decay, schedule, ``log_every``; no plateau
schedule, validation, early stopping or checkpoints, which are per-run features of :class:`Trainer`).
Each model gets the loss curve ``fit`` would log (its own ``"curve"`` points in its epoch records).
Sweeps over ``lr`` therefore form one group per ``lr``.

Results equal K separate ``fit`` runs up to float rounding (grouped vs. plain convolution
kernels sum in a different order); ``tests/test_batched.py`` checks this for K = 3.
"""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from vaebook.checks import check_fit
from vaebook.data.batching import BatchIterator
from vaebook.models.base import posterior_noise
from vaebook.train.trainer import History, NonFiniteLossError, TrainConfig, fit, resolve_device

# Config fields that must be equal inside one batched group (``seed`` may differ).
_SHARED_CONFIG_FIELDS = ("epochs", "batch_size", "lr", "device", "max_steps", "weight_decay", "lr_schedule",
                         "log_every")
# Models per vmapped call on CPU (``chunk_size`` default): larger chunks leave the caches and make
# oneDNN run grouped convolutions with one input channel per group (measured in benchmarks/).
CPU_CHUNK = 4
# Non-tensor module attributes that do not change the computation.
_IGNORED_ATTRS = {"label", "registry_name", "training"}


# --- the loss noise ------------------------------------------------------------------------------
class _QueueNoise:
    """A :data:`vaebook.models.base.NoiseSource` serving the ε tensors of ``queue`` in call order (or, with
    ``record=True``, appending ``(shape, dtype)`` of each request and serving zeros: no RNG is touched)."""

    def __init__(self, queue: list, record: bool = False):
        self.queue, self.record = queue, record

    def __call__(self, shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        if self.record:
            self.queue.append((tuple(shape), dtype))
            return torch.zeros(shape, dtype=dtype, device=device)
        if not self.queue:
            raise RuntimeError("batched training: the model drew more z samples than its probe step did; "
                               "its loss must draw the same noise shapes at every step")
        eps = self.queue.pop(0)
        if tuple(eps.shape) != tuple(shape):
            raise RuntimeError(f"batched training: fed noise has shape {tuple(eps.shape)}, the model asked for "
                               f"{tuple(shape)}")
        return eps


@contextlib.contextmanager
def noise_feed(queue: list, record: bool = False):
    """While active (in the calling thread only), :meth:`Posterior.rsample` takes its standard-normal noise
    from ``queue`` (in call order) instead of drawing it, so draws made outside ``vmap`` by per-model
    generators reach the right model. With ``record=True`` it instead appends ``(shape, dtype)`` of every
    draw to ``queue`` (and samples z = mean). Scoped through :func:`vaebook.models.base.posterior_noise`:
    the ``Posterior`` class is never modified, and other threads draw as usual."""
    with posterior_noise(_QueueNoise(queue, record)):
        yield queue


# --- grouping ------------------------------------------------------------------------------------
def _attr_signature(value):
    if isinstance(value, (torch.Tensor, nn.Module)) or callable(value):
        return None
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


def module_signature(model: nn.Module) -> tuple:
    """Everything about ``model`` that must agree for two models to share one vmapped step: module
    types, non-tensor attributes, and parameter/buffer names, shapes and dtypes (not their values)."""
    mods = []
    for name, mod in model.named_modules():
        attrs = tuple(sorted((k, _attr_signature(v)) for k, v in vars(mod).items()
                             if not k.startswith("_") and k not in _IGNORED_ATTRS and _attr_signature(v) is not None))
        mods.append((name, type(mod).__qualname__, attrs))
    tensors = tuple((kind, n, tuple(t.shape), t.dtype, bool(getattr(t, "requires_grad", False)))
                    for kind, it in (("p", model.named_parameters()), ("b", model.named_buffers())) for n, t in it)
    return (tuple(mods), tensors, hasattr(model, "param_groups"))


def batch_key(model: nn.Module, images: torch.Tensor, config: TrainConfig) -> tuple:
    """Models with equal keys can be trained in one batched loop (see the module docstring)."""
    cfg = {k: getattr(config, k) for k in _SHARED_CONFIG_FIELDS}
    return (module_signature(model), len(images), tuple(images.shape[1:]), images.dtype, tuple(sorted(cfg.items())))


def batch_blockers(model: nn.Module, config: TrainConfig) -> list[str]:
    """Reasons a model/config cannot be batched at all (empty when it can)."""
    why = []
    if config.lr_schedule == "plateau":
        why.append("lr_schedule='plateau' follows each model's own loss")
    if config.early_stopping_patience is not None:
        why.append("early stopping is per model")
    if config.checkpoint_dir or config.resume:
        why.append("checkpoints/resume are per run")
    if hasattr(model, "param_groups"):
        why.append(f"{type(model).__name__}.param_groups gives per-group optimiser settings")
    return why


def _as_lists(models, datasets, configs):
    models = list(models)
    k = len(models)
    if k == 0:
        raise ValueError("fit_many/train_many need at least one model")
    datasets = [datasets] * k if isinstance(datasets, torch.Tensor) else list(datasets)
    configs = [configs] * k if isinstance(configs, TrainConfig) else list(configs)
    if len(datasets) != k or len(configs) != k:
        raise ValueError(f"got {k} models, {len(datasets)} datasets and {len(configs)} configs; pass one dataset/"
                         "config for all models or one per model")
    return models, datasets, [c.validate() for c in configs]


def _dense(shape, strides, perm) -> bool:
    """Whether ``strides`` lay out ``shape`` densely in the dimension order ``perm`` (outermost first)."""
    expect = 1
    for d in reversed(perm):
        if shape[d] != 1 and strides[d] != expect:
            return False
        expect *= shape[d]
    return True


# --- the batched loop ------------------------------------------------------------------------------
@dataclass
class _Out:
    total: torch.Tensor
    terms: dict
    sigma2: Optional[torch.Tensor]


class _LossCall(nn.Module):
    """``forward`` = the wrapped model's ``loss`` (``functional_call`` calls ``forward``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.m = model

    def forward(self, x):
        out = self.m.loss(x, generator=None)
        return out.total, out.terms, out.sigma2


class BatchedTrainer:
    """One optimiser loop for K structurally identical models; see the module docstring."""

    def __init__(self, models: Sequence[nn.Module], datasets, configs, fused_adam: bool = True,
                 chunk_size: Optional[int] = None):
        models, datasets, configs = _as_lists(models, datasets, configs)
        for m, d, c in zip(models, datasets, configs):
            check_fit(m, d, c, where="fit_many")
        keys = [batch_key(m, d, c) for m, d, c in zip(models, datasets, configs)]
        for i, (m, c) in enumerate(zip(models, configs)):
            why = batch_blockers(m, c)
            if why:
                raise ValueError(f"model {i} ({getattr(m, 'label', type(m).__name__)}) cannot be batched: "
                                 f"{'; '.join(why)}. Use train_many(), which falls back to fit().")
        for i, key in enumerate(keys[1:], 1):
            if key != keys[0]:
                raise ValueError(f"model {i} differs from model 0 in structure, dataset size/shape or shared "
                                 f"TrainConfig fields {_SHARED_CONFIG_FIELDS}; group them with train_many().")
        self.k = len(models)
        self.models, self.configs = models, configs
        cfg = self.cfg = configs[0]
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)  # as Trainer does (nothing in the loop uses the global RNG)
        for m in models:
            m.to(self.device).train()
        # datasets: one device copy per distinct tensor object
        uniq: dict[int, torch.Tensor] = {}
        self.data_ix = []
        for d in datasets:
            if id(d) not in uniq:
                uniq[id(d)] = d.to(self.device)
            self.data_ix.append(list(uniq).index(id(d)))
        self.data = list(uniq.values())
        n = len(self.data[0])
        if n < cfg.batch_size:
            raise ValueError(f"{n} training images but batch_size={cfg.batch_size}")
        self.iters = [BatchIterator(n, cfg.batch_size, seed=c.seed, drop_last=True, device=self.device)
                      for c in configs]
        self.template = _LossCall(copy.deepcopy(models[0]).to("meta"))
        self._vstep = vmap(self._one, in_dims=(0, 0, 0, 0), randomness="error")
        self.noise_plan = self._probe_noise()
        c = chunk_size or (self.k if self.device.type == "cuda" else min(self.k, CPU_CHUNK))
        if c <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.chunks = [(s, min(s + c, self.k)) for s in range(0, self.k, c)]
        # stacked state; each model's tensors become views of it (no duplicate memory)
        self.buffers = stack_module_state(list(models))[1]
        self.perms = self._grad_layout(models[:c])
        self.leaves = [self._stack_leaves(models[s:e]) for s, e in self.chunks]
        for (s, e), leaves in zip(self.chunks, self.leaves):
            stacked = self.forward_params(leaves)
            for k in range(s, e):
                for name, p in models[k].named_parameters():
                    p.data = stacked[name].data[k - s]
        for k, m in enumerate(models):
            for name, _ in m.named_buffers():
                mod, _, leaf = name.rpartition(".")
                (m.get_submodule(mod) if mod else m)._buffers[leaf] = self.buffers[name][k]
        # fused=True: the same Adam update in one kernel per tensor list (no K×-sized temporaries);
        # it differs from Trainer's default single-tensor Adam only by float rounding
        self.opt = torch.optim.Adam([t for leaves in self.leaves for t in leaves.values()], lr=cfg.lr,
                                    weight_decay=cfg.weight_decay, fused=bool(fused_adam))
        self.sched = (torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(1, cfg.epochs))
                      if cfg.lr_schedule == "cosine" else None)
        self.steps_per_epoch = self.iters[0].steps_per_epoch
        total = cfg.epochs * self.steps_per_epoch
        self.total_steps = total if cfg.max_steps is None else min(total, cfg.max_steps)
        self.gens = [torch.Generator(device=self.device).manual_seed(c.seed + 1) for c in configs]
        self.nan_every = cfg.nan_check_every or (1 if self.device.type == "cpu" else cfg.log_every)
        self.histories = [History() for _ in models]
        self.curves_open: list[list] = [[] for _ in models]  # each model's curve points of the open epoch
        self.step = 0

    # -- pieces -----------------------------------------------------------------------------------
    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx`` is ``K×B`` → images ``K×B×C×H×W`` (float in [0, 1])."""
        if len(self.data) == 1:
            x = self.data[0].index_select(0, idx.reshape(-1)).reshape(*idx.shape, *self.data[0].shape[1:])
        else:
            x = torch.stack([self.data[j].index_select(0, i) for j, i in zip(self.data_ix, idx)])
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x

    def _probe_noise(self) -> list:
        """Shapes of the z draws one loss call makes (recorded on a throw-away copy of model 0)."""
        probe = copy.deepcopy(self.models[0])
        x = self._gather(torch.arange(self.cfg.batch_size, device=self.device).unsqueeze(0))[0]
        plan: list = []
        with torch.no_grad(), noise_feed(plan, record=True):
            probe.loss(x, generator=None)
        return plan

    def _grad_layout(self, models: Sequence[nn.Module]) -> dict:
        """For each parameter, the dimension order in which its stacked gradient arrives (None: as is).

        Under ``vmap`` a linear layer's weight gradient comes out of a batched matmul transposed
        (strides ``(·, 1, out)``). Autograd would copy it into the parameter's layout at every step, and
        fused Adam would copy non-contiguous tensors again — strided copies of K×(weight size) that cost
        more than the matmul itself on CPU. One probe step of the first chunk (on copies of its buffers,
        zero noise, no optimiser step) records the gradient strides; the optimiser then owns contiguous
        tensors in that order (``self.leaves``) and the forward pass uses their permuted views, whose
        gradients reach the leaves without any copy."""
        params, bufs = stack_module_state(list(models))
        k = len(models)
        strides: dict = {}
        hooks = [t.register_hook(lambda g, n=n: strides.__setitem__(n, g.stride())) for n, t in params.items()]
        try:
            idx = torch.arange(self.cfg.batch_size, device=self.device).expand(k, -1)
            noise = [torch.zeros((k, *shape), dtype=dtype, device=self.device) for shape, dtype in self.noise_plan]
            total = self._vstep(params, bufs, self._gather(idx)[:k], noise)[0]
            total.sum().backward()
        finally:
            for h in hooks:
                h.remove()
        perms = {}
        for name, p in params.items():
            st = strides.get(name, p.stride())
            perm = sorted(range(p.dim()), key=lambda d: (-st[d], d))
            perms[name] = None if perm == list(range(p.dim())) or not _dense(p.shape, st, perm) else perm
        return perms

    def _stack_leaves(self, models: Sequence[nn.Module]) -> dict:
        """The optimiser's tensors for one chunk of models (see :meth:`_grad_layout`)."""
        leaves = {}
        for name, p in stack_module_state(list(models))[0].items():
            perm = self.perms[name]
            leaf = p.detach() if perm is None else p.detach().permute(perm).contiguous()
            leaves[name] = leaf.requires_grad_(True)
        return leaves

    def forward_params(self, leaves: dict) -> dict:
        """One chunk's stacked parameters in their ``k×(parameter shape)`` form (views of ``leaves``)."""
        out = {}
        for n, t in leaves.items():
            perm = self.perms[n]
            out[n] = t if perm is None else t.permute([perm.index(d) for d in range(t.dim())])
        return out

    def _draw_noise(self) -> list:
        """One ``K×shape`` tensor per draw of the plan; model k's slice comes from its own generator."""
        return [torch.stack([torch.randn(shape, generator=g, device=self.device, dtype=dtype) for g in self.gens])
                for shape, dtype in self.noise_plan]

    def _one(self, params, buffers, x, noise):
        try:
            return self._call(params, buffers, x, noise)
        except RuntimeError as err:
            if ".item()" in str(err) or "data-dependent" in str(err):
                raise RuntimeError(
                    f"batched training cannot vmap {type(self.models[0]).__name__}.loss: it reads a tensor value "
                    "in Python (int()/float()/.item()/if on a tensor), which vmap cannot batch. Rewrite that line "
                    "as a tensor operation (e.g. torch.where), or train these models with train_many(..., "
                    f"batched=False). vmap said: {err}") from err
            raise

    def _call(self, params, buffers, x, noise):
        with noise_feed(list(noise)):
            out = functional_call(self.template, ({f"m.{n}": t for n, t in params.items()},
                                                  {f"m.{n}": t for n, t in buffers.items()}), (x,), strict=True)
        return out

    def _nonfinite(self, out: _Out, offset: int = 0) -> None:
        bad = [k for k in range(len(out.total)) if not bool(torch.isfinite(out.total[k]))]
        desc = "; ".join(f"model {k + offset} ({getattr(self.models[k + offset], 'label', '?')}, seed "
                         f"{self.configs[k + offset].seed}): { {n: float(v[k]) for n, v in out.terms.items()} }"
                         for k in bad)
        raise NonFiniteLossError(f"non-finite loss at step {self.step} of the batched run: {desc}. Try a smaller "
                                 "lr or a larger eps for the MLE variance; the other models can be rerun alone.")

    def train_step(self, idx: torch.Tensor) -> _Out:
        """One optimiser step of all K models on the ``K×B`` minibatch indices ``idx``."""
        x = self._gather(idx)
        noise = self._draw_noise()
        check = self.step % self.nan_every == 0
        self.opt.zero_grad(set_to_none=True)
        outs = []
        for (s, e), leaves in zip(self.chunks, self.leaves):
            bufs = {n: b[s:e] for n, b in self.buffers.items()}  # views: in-place updates reach self.buffers
            total, terms, sigma2 = self._vstep(self.forward_params(leaves), bufs, x[s:e], [z[s:e] for z in noise])
            if check and not bool(torch.isfinite(total).all()):
                self._nonfinite(_Out(total, terms, sigma2), offset=s)
            total.sum().backward()  # losses are independent: d(sum)/dθ_k = dL_k/dθ_k
            outs.append(_Out(total.detach(), terms, sigma2))
        self.opt.step()
        self.step += 1
        if len(outs) == 1:
            return outs[0]
        terms = {n: torch.cat([o.terms[n] for o in outs]) for n in outs[0].terms}
        sigma2 = None if outs[0].sigma2 is None else torch.cat([o.sigma2 for o in outs])
        return _Out(torch.cat([o.total for o in outs]), terms, sigma2)

    def fit(self) -> list[History]:
        cfg = self.cfg
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, desc=f"{self.k} models", leave=False)
        accum: dict = {}
        win: dict = {}  # sums of the open loss-curve window (as Trainer's), K values per term
        accum_n, win_n, epoch, t0, last = 0, 0, 0, time.perf_counter(), None
        while self.step < self.total_steps:
            idx = torch.stack([it.next_batch() for it in self.iters])
            last = self.train_step(idx)
            for name, v in last.terms.items():
                v = v.detach().float()
                accum[name] = accum[name] + v if name in accum else v.clone()
                win[name] = win[name] + v if name in win else v.clone()
            accum_n += 1
            win_n += 1
            if self.step % cfg.log_every == 0:  # one host read per window: a K-column table of term means
                cols = torch.stack(list(win.values())).T.tolist()
                for pts, sums in zip(self.curves_open, cols):
                    pts.append({"step": self.step, **{name: v / win_n for name, v in zip(win, sums)}})
                win, win_n = {}, 0
            if bar is not None:
                bar.update(1)
            if self.step % self.steps_per_epoch == 0 or self.step >= self.total_steps:
                self._end_epoch(epoch, accum, accum_n, last, time.perf_counter() - t0)
                epoch, accum, accum_n, t0 = epoch + 1, {}, 0, time.perf_counter()
        if bar is not None:
            bar.close()
        self._detach_models()
        return self.histories

    def _detach_models(self) -> None:
        """Give each model its own storage again (the stacked tensors can then be freed)."""
        for m in self.models:
            for p in m.parameters():
                p.data = p.data.clone(memory_format=torch.contiguous_format)
            for mod in m.modules():
                for leaf, b in mod._buffers.items():
                    if b is not None:
                        mod._buffers[leaf] = b.clone(memory_format=torch.contiguous_format)

    def _end_epoch(self, epoch: int, accum: dict, n: int, last: _Out, dt: float) -> None:
        sums = {name: v.tolist() for name, v in accum.items()}
        s2 = None
        if last.sigma2 is not None:
            flat = last.sigma2.detach().float().reshape(self.k, -1)
            s2 = (flat.min(1).values.tolist(), flat.max(1).values.tolist())
        lr = self.opt.param_groups[0]["lr"]
        for k, h in enumerate(self.histories):
            rec = {"epoch": epoch + 1, "step": self.step, "time_s": dt, "lr": lr}
            rec.update({name: float(v[k]) / max(1, n) for name, v in sums.items()})
            if s2 is not None:
                rec.update({"sigma2_min": s2[0][k], "sigma2_max": s2[1][k]})
            rec["curve"], self.curves_open[k] = self.curves_open[k], []
            h.epochs.append(rec)
        if self.sched is not None:
            self.sched.step()


def fit_many(models: Sequence[nn.Module], datasets, configs, fused_adam: bool = True,
             chunk_size: Optional[int] = None) -> list[History]:
    """Train K structurally identical models in one batched loop; returns the K histories ``fit`` would.

    ``datasets``: one tensor for all or one per model; ``configs``: one :class:`TrainConfig` or one per
    model (only ``seed`` may differ). Raises ``ValueError`` naming the mismatch when the models cannot
    share a loop — use :func:`train_many` to group automatically."""
    return BatchedTrainer(models, datasets, configs, fused_adam=fused_adam, chunk_size=chunk_size).fit()


def train_many(models: Sequence[nn.Module], datasets, configs, batched: bool = True,
               max_group: Optional[int] = None, fused_adam: bool = True) -> list[History]:
    """Train every model; groups with equal :func:`batch_key` go through :func:`fit_many` (in chunks
    of at most ``max_group`` models), the rest through :func:`fit` one by one. Histories come back in
    input order."""
    models, datasets, configs = _as_lists(models, datasets, configs)
    out: list[Optional[History]] = [None] * len(models)
    groups: dict = {}
    for i, (m, d, c) in enumerate(zip(models, datasets, configs)):
        if not batched or batch_blockers(m, c):
            out[i] = fit(m, d, c)
        else:
            groups.setdefault(batch_key(m, d, c), []).append(i)
    for members in groups.values():
        step = max_group or len(members)
        for s in range(0, len(members), step):
            chunk = members[s:s + step]
            if len(chunk) == 1:
                i = chunk[0]
                out[i] = fit(models[i], datasets[i], configs[i])
                continue
            hs = fit_many([models[i] for i in chunk], [datasets[i] for i in chunk], [configs[i] for i in chunk],
                          fused_adam=fused_adam)
            for i, h in zip(chunk, hs):
                out[i] = h
    return out  # type: ignore[return-value]


__all__ = ["BatchedTrainer", "batch_blockers", "batch_key", "fit_many", "module_signature", "noise_feed",
           "train_many"]
