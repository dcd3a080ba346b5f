"""Error heads: a learned model of where a world model is wrong, fitted after training.

* :class:`ErrorHeads` read an input vector ``x [B, F]`` that describes one predicted transition
  (the RSSM's deterministic state; the ensemble's input, mean prediction and spreads) and
  predict the world model's expected squared one-step observation error for it.
* :func:`fit_error_heads` draws uniformly many one-step transitions of a batch provider's
  training split, asks the model for each transition's ``(x, squared error)`` and fits the
  heads to them, on the frozen model.
* :class:`HasErrorHeads` gives a world model ``fit_error_heads`` and the ``after_training``
  hook that runs it when the Trainer's steps end.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core.batch_provider import BatchProviderV2, BatchRequest, Split
from ..core.errors import ConfigError, ContractError
from ..core.payloads import Batch
from .ensemble.nets import EnsembleMLP

#: ``batch -> (x [N, F], squared error [N])`` for the N real one-step transitions of a batch
StepErrors = Callable[[Batch], tuple[torch.Tensor, torch.Tensor]]

#: the heads are fitted on this many uniformly drawn training transitions per Adam step of the
#: fit (288k for 12k steps), in requests of ``FIT_ROWS``, and scored on ``SCORE_TRANSITIONS``
#: validation transitions
FIT_PER_STEP, FIT_ROWS, SCORE_TRANSITIONS = 24, 4096, 16_384
#: base of the seeds of the requests that fit the heads (apart from other fixed batches)
FIT_SEED = 1_000_000


class ErrorHeads(nn.Module):
    """K heads ``x [B, F] -> log e [K, B]``, each an estimate of the expected squared one-step
    observation error ``e`` (averaged over the observation's dimensions) of the transition that
    ``x`` describes.

    :meth:`fit` standardises ``x`` with the fitting data's per-feature mean and std (buffers
    ``shift``, ``scale`` ``[F]``, saved with the weights) and trains each head on its own random
    minibatches with the Gaussian negative log-likelihood of the observed errors,
    ``sq_error / e + log e`` per row, whose minimum is at ``e = E[sq_error | x]``: a model of
    where the world model is wrong, also on the data. Independently initialised, the heads agree
    where they were fitted and not elsewhere; the largest of their estimates is the expected
    error (:meth:`expected`), so it also grows away from the data. ``fitted`` (a saved bool)
    says whether :meth:`fit` has run; the models leave unfitted heads out of their uncertainty.
    """

    #: each log-error is kept in ``[LOG_MIN, LOG_MAX]`` (an RMS error of about 3e-4 to 55)
    LOG_MIN, LOG_MAX = -16.0, 8.0
    #: rows per head in each of :meth:`fit`'s Adam steps, and its learning rate
    BATCH, LR = 512, 1e-3

    shift: torch.Tensor
    scale: torch.Tensor
    fitted: torch.Tensor

    def __init__(self, heads: int, features: int, hidden: int) -> None:
        super().__init__()
        self.heads = heads
        self.net = EnsembleMLP(heads, features, hidden, 2, 1)
        self.register_buffer("shift", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))
        self.register_buffer("fitted", torch.tensor(False))
        #: ``fitted`` as a Python bool, kept in step on ``fit`` and ``load_state_dict`` so that
        #: callers can branch on it while a graph is traced for export
        self.is_fitted = False
        self.register_load_state_dict_post_hook(_read_fitted)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, F] -> [K, B]`` log expected squared errors."""
        z = (x.float() - self.shift) / self.scale
        z = z.unsqueeze(0).expand(self.heads, -1, -1)
        return self.net(z).squeeze(-1).clamp(self.LOG_MIN, self.LOG_MAX)

    def expected(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, F] -> [B]``: the largest of the heads' expected squared errors."""
        return torch.exp(self(x).amax(0))

    def nll(self, x: torch.Tensor, sq_error: torch.Tensor) -> torch.Tensor:
        """``[K, B]``: each head's negative log-likelihood (up to constants) of the squared
        errors ``sq_error [B]`` of the transitions ``x [B, F]``."""
        log_e = self(x)
        return sq_error.float() * torch.exp(-log_e) + log_e

    def fit(
        self,
        x: torch.Tensor,
        sq_error: torch.Tensor,
        steps: int,
        generator: torch.Generator,
    ) -> float:
        """Fit the heads to the errors ``sq_error [N]`` (finite, >= 0) of the transitions
        ``x [N, F]``: ``steps`` Adam steps, each head on its own ``BATCH`` rows drawn with
        ``generator`` (on ``x``'s device). Sets ``shift`` / ``scale`` from ``x`` first and
        ``fitted`` at the end; returns the mean NLL over the last tenth of the steps."""
        n, width = x.shape[0], self.shift.shape[0]
        if x.shape != (n, width) or sq_error.shape != (n,) or n < 2:
            raise ContractError(
                f"ErrorHeads.fit: expected x [N, {width}] and sq_error [N] with N >= 2, got "
                f"{list(x.shape)} and {list(sq_error.shape)}."
            )
        bad = int((~torch.isfinite(sq_error) | (sq_error < 0)).sum())
        if bad:
            raise ContractError(
                f"ErrorHeads.fit: expected finite squared errors >= 0, got {bad} of {n} that "
                f"are not (is the model's prediction finite?)."
            )
        if steps < 1:
            raise ContractError(f"ErrorHeads.fit: expected steps >= 1, got {steps}.")
        x, sq_error = x.detach().float(), sq_error.detach().float()
        with torch.no_grad():
            self.shift.copy_(x.mean(0))
            self.scale.copy_(x.std(0).clamp(min=1e-3))
        opt = torch.optim.Adam(self.net.parameters(), self.LR)
        tail: list[torch.Tensor] = []
        with torch.enable_grad():
            for step in range(steps):
                rows = torch.randint(
                    n, (self.heads, self.BATCH), generator=generator, device=generator.device
                ).to(x.device)
                z = (x[rows] - self.shift) / self.scale
                log_e = self.net(z).squeeze(-1).clamp(self.LOG_MIN, self.LOG_MAX)
                loss = (sq_error[rows] * torch.exp(-log_e) + log_e).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step >= steps - max(steps // 10, 1):
                    tail.append(loss.detach())
        self.fitted.fill_(True)
        self.is_fitted = True
        return float(torch.stack(tail).mean())

    def upgrade_weights(self, weights: dict[str, torch.Tensor], prefix: str) -> None:
        """Weights saved when the loss trained the heads (before ``shift``, ``scale`` and
        ``fitted`` existed) hold jointly trained heads on the raw state: add an identity
        standardisation and mark them fitted, in place."""
        if prefix + "net.out.weight" in weights and prefix + "fitted" not in weights:
            weights[prefix + "shift"] = torch.zeros_like(self.shift)
            weights[prefix + "scale"] = torch.ones_like(self.scale)
            weights[prefix + "fitted"] = torch.tensor(True)


def _read_fitted(module: nn.Module, incompatible: object) -> None:
    assert isinstance(module, ErrorHeads)
    module.is_fitted = bool(module.fitted)


def _requested_errors(
    step_errors: StepErrors,
    data: BatchProviderV2,
    split: Split,
    transitions: int,
    seed: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``step_errors`` of ``transitions`` (rounded up to ``FIT_ROWS``) transitions of ``split``,
    drawn in seeded one-step requests: ``(x [N, F], squared error [N])``."""
    pairs = [
        step_errors(
            data.get_batch(
                BatchRequest(FIT_ROWS, 1, split, str(device), seed=FIT_SEED + seed * 65_536 + i)
            )
        )
        for i in range(-(-transitions // FIT_ROWS))
    ]
    return torch.cat([x for x, _ in pairs]), torch.cat([e for _, e in pairs])


def fit_error_heads(
    model: nn.Module,
    heads: ErrorHeads,
    step_errors: StepErrors,
    data: BatchProviderV2,
    *,
    steps: int,
    seed: int,
    validation: bool,
) -> dict[str, float]:
    """Fit ``heads`` to ``model``'s one-step errors on ``FIT_PER_STEP x steps`` training
    transitions of ``data``, drawn uniformly (seeded), by ``steps`` Adam steps; ``step_errors``
    (run in eval mode, without gradients) gives each transition's heads input and squared
    error. With ``validation``, also score them on ``SCORE_TRANSITIONS`` validation
    transitions.

    Returns ``error_heads/train_nll`` (the fit's final NLL), ``error_heads/train_rmse`` (the RMS
    error they were fitted to) and, with ``validation``, ``error_heads/val_nll`` and
    ``error_heads/val_spearman`` (Spearman correlation of the expected with the observed errors
    on the validation transitions)."""
    from ..eval.fidelity import spearman

    device = next(model.parameters()).device
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x, sq_error = _requested_errors(
                step_errors, data, "train", FIT_PER_STEP * steps, seed, device
            )
        generator = torch.Generator(device=x.device).manual_seed(seed)
        nll = heads.fit(x, sq_error, steps, generator)
        metrics = {
            "error_heads/train_nll": nll,
            "error_heads/train_rmse": float(sq_error.mean().sqrt()),
        }
        if validation:
            with torch.no_grad():
                x, sq_error = _requested_errors(
                    step_errors, data, "validation", SCORE_TRANSITIONS, seed, device
                )
                metrics["error_heads/val_nll"] = float(heads.nll(x, sq_error).mean())
                expected = heads.expected(x)
            metrics["error_heads/val_spearman"] = spearman(
                expected.cpu().numpy(), sq_error.cpu().numpy()
            )
    finally:
        model.train(training)
    return metrics


class HasErrorHeads(ABC):
    """Mixin (before :class:`~worldflux.core.model.WorldModel` in the bases) for families with
    error heads: :meth:`fit_error_heads`, run by the ``after_training`` hook. The family
    implements the two abstract methods; its config has ``error_heads`` and
    ``error_head_steps``."""

    config: Any

    @abstractmethod
    def error_heads_module(self) -> ErrorHeads | None:
        """The model's error heads, or None when it has none."""

    @abstractmethod
    def step_errors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """For every real one-step transition of ``batch`` (N of them): what the error heads
        read, ``x [N, F]``, and the squared error they estimate, ``[N]``."""

    def fit_error_heads(
        self,
        data: BatchProviderV2,
        *,
        seed: int = 0,
        validation: bool = False,
        steps: int | None = None,
    ) -> dict[str, float]:
        """Fit the error heads to this model's one-step errors (:meth:`step_errors`) by
        ``steps`` Adam steps (default ``config.error_head_steps``), as
        :func:`fit_error_heads` does; returns its metrics. The rest of the model is
        unchanged."""
        heads = self.error_heads_module()
        if heads is None:
            raise ConfigError(
                f"{type(self).__name__}.fit_error_heads: expected a model with error heads "
                f"(error_heads >= 1), got error_heads={self.config.error_heads}."
            )
        assert isinstance(self, nn.Module)
        return fit_error_heads(
            self,
            heads,
            self.step_errors,
            data,
            steps=self.config.error_head_steps if steps is None else steps,
            seed=seed,
            validation=validation,
        )

    def after_training(
        self, data: BatchProviderV2, *, seed: int, validation: bool
    ) -> dict[str, float]:
        """Fit the error heads, when the model has them (:meth:`fit_error_heads`)."""
        if self.error_heads_module() is None:
            return {}
        return self.fit_error_heads(data, seed=seed, validation=validation)
