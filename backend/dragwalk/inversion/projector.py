"""Projection of a target image into a generator's latent space, one step at a time.

:class:`Inversion` is an iterator object rather than a loop so that the server
can interleave its steps with other sessions' work, stream frames and cancel
between any two steps. Three phases, each a plain Adam optimisation:

1. *code*: ``restarts`` latent codes, started from the best of ``init_samples``
   random samples, are optimised together (one batched forward); the best wins.
   Several starts avoid the poor local minima a single start often lands in.
2. *offsets*: the winner's code plus the spatial offset of a drag mode (the
   generator's ``drag_variables``), lightly regularised so the offset stays small.
3. *pti* (optional): a private copy of the generator is fine-tuned with the
   latent fixed (see :mod:`.pti`).

Only the :class:`~dragwalk.models.base.Generator` interface is used. Gradients are
taken with ``torch.autograd.grad`` on the optimised tensors only, so even a
generator whose weights require gradients never collects ``.grad`` here.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch
from torch import Tensor

from ..models.base import Generator, Latent, Settings
from .config import InversionConfig, InversionProgress, InversionResult
from .losses import FeatureNet, psnr, reconstruction_loss, ssim
from .pti import freeze, locality_latents, locality_loss, tunable_copy

#: how many random latents are rendered at once when choosing starting points
_INIT_CHUNK = 16
#: latents in the PTI locality batch
_LOCALITY_COUNT = 4


def _cosine_lr(base: float, step: int, total: int, floor: float = 0.05) -> float:
    """Cosine decay from ``base`` to ``floor * base`` over a phase (fine convergence at the end)."""
    t = min(1.0, step / max(1, total))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def _set_lr(optimizer: torch.optim.Optimizer, scale_groups: list[float]) -> None:
    for group, lr in zip(optimizer.param_groups, scale_groups):
        group["lr"] = lr


class Inversion:
    """A stepwise inversion of ``target`` (``[1, 3, R, R]`` in ``[-1, 1]``) into ``generator``.

    Call :meth:`step` until :attr:`done`, then :meth:`result`. :meth:`result` may
    also be called early (after a cancel) and returns the best latent so far.
    """

    def __init__(self, generator: Generator, target: Tensor, config: InversionConfig | None = None,
                 settings: Settings | None = None):
        self.generator = generator
        self.config = config or InversionConfig()
        #: the session's class, noise and cutoff: every latent tried is rendered with them
        self.settings = generator.check_settings(settings)
        height, width = generator.image_size
        if target.dim() != 4 or target.shape[0] != 1 or tuple(target.shape[1:]) != (3, height, width):
            raise ValueError(f"target must be [1, 3, {height}, {width}], got {list(target.shape)}")
        self.target = target.detach().to(generator.device, torch.float32)
        self.space = self.config.space or generator.default_space
        if self.space not in generator.latent_spaces:
            raise ValueError(f"{generator.name} has no latent space {self.space!r} "
                             f"(it has {', '.join(generator.latent_spaces)})")
        self.mode = self.config.mode or generator.drag_modes[0]
        if self.mode not in generator.drag_modes:
            raise ValueError(f"{generator.name}: unknown mode {self.mode!r} "
                             f"(known: {', '.join(generator.drag_modes)})")
        self.weights = self.config.weights
        self.features = FeatureNet().to(generator.device) if self.weights.features else None
        self.started = time.perf_counter()

        n_code = round(self.config.steps * self.config.code_fraction) if self.config.offsets else self.config.steps
        self._n_code = n_code
        self._n_offsets = self.config.steps - n_code
        self._n_pti = self.config.pti_steps if self.config.pti else 0
        self._step = 0          # steps done in the current stage
        self._phase = "code" if n_code else "offsets"

        self._tuned: Generator | None = None
        self._best_loss = math.inf
        self._best_latent: Latent = self._initial_latents()
        self._psnr_latent: float | None = None
        self._start_phase()

    # ------------------------------------------------------------------ set-up
    @torch.no_grad()
    def _initial_latents(self) -> Latent:
        """The ``restarts`` best of ``init_samples`` random latents, by reconstruction loss."""
        cfg = self.config
        pool = self.generator.sample_codes(cfg.init_samples, seed=cfg.seed, space=self.space,
                                            settings=self.settings)
        losses = []
        for start in range(0, cfg.init_samples, _INIT_CHUNK):
            chunk = pool.derive(pool.code[start:start + _INIT_CHUNK])
            images = self.generator.render(chunk)
            losses.append(reconstruction_loss(images, self.target.expand_as(images), self.weights, self.features))
        order = torch.cat(losses).argsort()[:cfg.restarts]
        return pool.derive(pool.code[order].clone())

    def _start_phase(self) -> None:
        """Create the trainable tensors and optimiser of the current phase."""
        cfg = self.config
        if self._phase == "code":
            self._code = self._best_latent.code.detach().clone().requires_grad_(True)
            self._params = [self._code]
            settings = self._best_latent.settings
            self._build = lambda: Latent(self.space, self._code, settings=settings)
            self._base_lrs = [cfg.lr]
        elif self._phase == "offsets":
            variables = self.generator.drag_variables(self._best_latent, self.mode)
            self._params = list(variables.params)
            self._build = variables.latent
            offset_ids = {id(v) for v in variables.latent().offsets.values()}
            # the code is already close: move it gently, let the offsets do the fine work
            self._base_lrs = [cfg.offset_lr if id(p) in offset_ids else cfg.lr * 0.2 for p in self._params]
            self._best_loss = math.inf
        elif self._phase == "pti":
            self._tuned = tunable_copy(self.generator)
            self._pivot = self._best_latent.detach()
            self._params = list(self._tuned.parameters())
            self._base_lrs = [cfg.pti_lr]
            # the best weights seen: Adam takes lr-sized steps even on tiny gradients, so on an
            # already close reconstruction tuning can end slightly worse than it started
            self._best_weights = [p.detach().clone() for p in self._params]
            if cfg.pti_locality:
                self._local = locality_latents(self.generator, self._pivot, _LOCALITY_COUNT, cfg.seed + 1)
                with torch.no_grad():
                    self._local_images = self.generator.render(self._local)
            self._best_loss = math.inf
        if self._phase == "pti":
            self._optimizer = torch.optim.Adam([{"params": self._params, "lr": cfg.pti_lr}])
        else:
            self._optimizer = torch.optim.Adam([{"params": [p], "lr": lr}
                                                for p, lr in zip(self._params, self._base_lrs)])

    # ------------------------------------------------------------------ stepping
    @property
    def stage(self) -> str:
        return "pti" if self._phase == "pti" else "invert"

    @property
    def done(self) -> bool:
        return self._phase == "done"

    def _phase_total(self) -> int:
        return {"code": self._n_code, "offsets": self._n_offsets, "pti": self._n_pti}.get(self._phase, 0)

    def _stage_step(self) -> tuple[int, int]:
        """(step within the stage, stage total): the code and offsets phases form one stage."""
        if self._phase == "pti":
            return self._step, self._n_pti
        offset = self._n_code if self._phase == "offsets" else 0
        return offset + self._step, self.config.steps

    def step(self, render: bool = False) -> InversionProgress:
        """One optimisation step; ``render`` attaches the current reconstruction."""
        if self.done:
            raise RuntimeError("inversion is finished; call result()")
        stage = self.stage
        lrs = [_cosine_lr(lr, self._step, self._phase_total()) for lr in self._base_lrs]
        _set_lr(self._optimizer, lrs)
        if self._phase == "pti":
            image = self._tuned.render(self._pivot)
            per_item = reconstruction_loss(image, self.target, self.weights, self.features)
            loss = per_item.sum()
            if self.config.pti_locality:
                loss = loss + self.config.pti_locality * locality_loss(self._tuned, self._local_images, self._local)
            current = self._pivot
        else:
            current = self._build()
            image = self.generator.render(current)
            per_item = reconstruction_loss(image, self.target.expand_as(image), self.weights, self.features)
            loss = per_item.sum()
            if self._phase == "offsets" and self.config.offset_reg:
                for offset in current.offsets.values():
                    loss = loss + self.config.offset_reg * offset.pow(2).mean()
        grads = torch.autograd.grad(loss, self._params)

        with torch.no_grad():
            best = int(per_item.argmin())
            value = float(per_item[best])
            quality = float(psnr(image[best:best + 1], self.target)[0])
            if self._phase == "pti" and float(loss) < self._best_loss:
                self._best_loss = float(loss)
                for kept, param in zip(self._best_weights, self._params):
                    kept.copy_(param)
            elif value < self._best_loss and self._phase != "pti":
                # snapshot before the optimiser moves the tensors in place: this latent made this loss
                self._best_loss = value
                self._best_latent = current.derive(current.code[best:best + 1].detach().clone(),
                                                   {k: v[best:best + 1].detach().clone()
                                                    for k, v in current.offsets.items()})
        for param, grad in zip(self._params, grads):
            param.grad = grad
        self._optimizer.step()
        self._step += 1
        step, total = self._stage_step()
        if self._step >= self._phase_total():
            self._advance()
        shown = image[best:best + 1].detach().clone() if render else None
        return InversionProgress(stage, step, total, value, quality, shown)

    def _advance(self) -> None:
        """Move to the next phase with steps (or to done)."""
        order = ["code", "offsets", "pti", "done"]
        counts = {"code": self._n_code, "offsets": self._n_offsets, "pti": self._n_pti, "done": 1}
        index = order.index(self._phase) + 1
        if self._phase == "code":
            self._best_latent = self._top(self._best_latent)
        while counts[order[index]] == 0:
            index += 1
        if self._phase != "pti" and order[index] in ("pti", "done"):
            self._psnr_latent = self._measure(self.generator, self._best_latent)[0]
        self._phase = order[index]
        self._step = 0
        if self._phase != "done":
            self._start_phase()
        else:
            self._finish_tuning()

    def _finish_tuning(self) -> None:
        """Put the best weights seen back into the tuned copy and freeze it."""
        if self._tuned is None:
            return
        with torch.no_grad():
            for kept, param in zip(self._best_weights, self._tuned.parameters()):
                param.copy_(kept)
        self._best_weights = []
        freeze(self._tuned)

    def _top(self, latent: Latent) -> Latent:
        """The single best latent (phase 1 keeps the best element it saw)."""
        return latent.derive(latent.code[:1].detach().clone(),
                             {k: v[:1].detach().clone() for k, v in latent.offsets.items()})

    @torch.no_grad()
    def _measure(self, generator: Generator, latent: Latent) -> tuple[float, float]:
        image = generator.render(latent)
        return float(psnr(image, self.target)[0]), float(ssim(image, self.target)[0])

    # ------------------------------------------------------------------ results
    @property
    def latent(self) -> Latent:
        """The best latent found so far (a detached copy)."""
        return self._top(self._best_latent)

    def result(self) -> InversionResult:
        """The best latent and the generator that renders it (the tuned copy after PTI)."""
        if not self.done:  # an early call cancels the remaining steps
            self._phase = "done"
            self._finish_tuning()
        generator = self._tuned if self._tuned is not None else self.generator
        latent = self.latent
        quality, structure = self._measure(generator, latent)
        psnr_latent = self._psnr_latent
        if psnr_latent is None:
            psnr_latent = self._measure(self.generator, latent)[0] if self._tuned is not None else quality
        return InversionResult(latent=latent, generator=generator, psnr=quality, ssim=structure,
                               seconds=time.perf_counter() - self.started, psnr_latent=psnr_latent,
                               tuned=self._tuned is not None)


def invert(generator: Generator, target: Tensor, config: InversionConfig | None = None,
           progress: Callable[[InversionProgress], None] | None = None,
           render_every: int = 0) -> InversionResult:
    """Run a whole inversion, calling ``progress`` after every step (with an image every
    ``render_every`` steps when that is > 0)."""
    run = Inversion(generator, target, config)
    count = 0
    while not run.done:
        count += 1
        update = run.step(render=bool(render_every) and count % render_every == 0)
        if progress is not None:
            progress(update)
    return run.result()
