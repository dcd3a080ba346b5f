"""The RSSM's uncertainty heads, both reading only the deterministic state ``deter [B, D]``.

* :class:`DisagreementHeads` predict the observation; their spread is high where the model saw
  little data (Plan2Explore). Trained jointly with the model, from detached inputs.
* :class:`ErrorHeads` predict the model's own expected one-step observation error; fitted after
  training, on the frozen model (:meth:`ErrorHeads.fit`), so they describe the final model
  rather than the moving target of a model in training.
"""

from __future__ import annotations

import torch
from torch import nn

from ...core.errors import ContractError
from ..ensemble.nets import EnsembleMLP


class DisagreementHeads(nn.Module):
    """K heads ``deter [B, D] -> target [K, B, O]``; their spread is an epistemic uncertainty.

    As in Plan2Explore (Sekar et al., 2020): independently initialised predictors agree where
    they were trained and disagree elsewhere. ``uncertainty = sqrt(mean_o var_k(pred))`` ``[B]``.
    """

    def __init__(self, heads: int, deter: int, hidden: int, target_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.net = EnsembleMLP(heads, deter, hidden, 1, target_dim)

    def forward(self, deter: torch.Tensor) -> torch.Tensor:
        """``[B, D] -> [K, B, O]``."""
        return self.net(deter.float().unsqueeze(0).expand(self.heads, -1, -1))

    def variance(self, deter: torch.Tensor) -> torch.Tensor:
        """``[B, D] -> [B]``: the heads' variance, averaged over the target's dimensions."""
        return self(deter).var(0, unbiased=False).mean(-1)

    def uncertainty(self, deter: torch.Tensor) -> torch.Tensor:
        """``[B, D] -> [B]``."""
        return self.variance(deter).sqrt()

    def loss(self, deter: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-row squared error ``[B]`` (summed over the target, averaged over the heads) of
        predicting ``target [B, O]`` from ``deter [B, D]``; neither input gets a gradient."""
        pred = self(deter.detach())
        return ((pred - target.detach().float().unsqueeze(0)) ** 2).sum(-1).mean(0)


class ErrorHeads(nn.Module):
    """K heads ``deter [B, D] -> log e [K, B]``, each an estimate of the expected squared
    one-step observation error ``e`` (averaged over the observation's dimensions) of the
    state's prediction.

    :meth:`fit` standardises ``deter`` with the fitting data's per-dimension mean and std
    (buffers ``shift``, ``scale`` ``[D]``, saved with the weights) and trains each head on its
    own random minibatches with the Gaussian negative log-likelihood of the observed errors,
    ``sq_error / e + log e`` per row, whose minimum is at ``e = E[sq_error | deter]``: a model of
    where the world model is wrong, also on the data. Independently initialised, the heads agree
    where they were fitted and not elsewhere; the largest of their estimates is the expected
    error (:meth:`expected`), so it also grows away from the data. ``fitted`` (a saved bool)
    says whether :meth:`fit` has run; the decoder leaves unfitted heads out of its uncertainty.
    """

    #: each log-error is kept in ``[LOG_MIN, LOG_MAX]`` (an RMS error of about 3e-4 to 55)
    LOG_MIN, LOG_MAX = -16.0, 8.0
    #: rows per head in each of :meth:`fit`'s Adam steps, and its learning rate
    BATCH, LR = 512, 1e-3

    shift: torch.Tensor
    scale: torch.Tensor
    fitted: torch.Tensor

    def __init__(self, heads: int, deter: int, hidden: int) -> None:
        super().__init__()
        self.heads = heads
        self.net = EnsembleMLP(heads, deter, hidden, 2, 1)
        self.register_buffer("shift", torch.zeros(deter))
        self.register_buffer("scale", torch.ones(deter))
        self.register_buffer("fitted", torch.tensor(False))
        #: ``fitted`` as a Python bool, kept in step on ``fit`` and ``load_state_dict`` so that
        #: callers can branch on it while a graph is traced for export
        self.is_fitted = False
        self.register_load_state_dict_post_hook(_read_fitted)

    def forward(self, deter: torch.Tensor) -> torch.Tensor:
        """``[B, D] -> [K, B]`` log expected squared errors."""
        x = (deter.float() - self.shift) / self.scale
        x = x.unsqueeze(0).expand(self.heads, -1, -1)
        return self.net(x).squeeze(-1).clamp(self.LOG_MIN, self.LOG_MAX)

    def expected(self, deter: torch.Tensor) -> torch.Tensor:
        """``[B, D] -> [B]``: the largest of the heads' expected squared errors."""
        return torch.exp(self(deter).amax(0))

    def nll(self, deter: torch.Tensor, sq_error: torch.Tensor) -> torch.Tensor:
        """``[K, B]``: each head's negative log-likelihood (up to constants) of the squared
        errors ``sq_error [B]`` made from ``deter [B, D]``."""
        log_e = self(deter)
        return sq_error.float() * torch.exp(-log_e) + log_e

    def fit(
        self,
        deter: torch.Tensor,
        sq_error: torch.Tensor,
        steps: int,
        generator: torch.Generator,
    ) -> float:
        """Fit the heads to the errors ``sq_error [N]`` (finite, >= 0) made from the
        deterministic states ``deter [N, D]``: ``steps`` Adam steps, each head on its own
        ``BATCH`` rows drawn with ``generator`` (on ``deter``'s device). Sets ``shift`` /
        ``scale`` from ``deter`` first and ``fitted`` at the end; returns the mean NLL over the
        last tenth of the steps."""
        n, width = deter.shape[0], self.shift.shape[0]
        if deter.shape != (n, width) or sq_error.shape != (n,) or n < 2:
            raise ContractError(
                f"ErrorHeads.fit: expected deter [N, {width}] and sq_error [N] with N >= 2, got "
                f"{list(deter.shape)} and {list(sq_error.shape)}."
            )
        bad = int((~torch.isfinite(sq_error) | (sq_error < 0)).sum())
        if bad:
            raise ContractError(
                f"ErrorHeads.fit: expected finite squared errors >= 0, got {bad} of {n} that "
                f"are not (is the model's prediction finite?)."
            )
        if steps < 1:
            raise ContractError(f"ErrorHeads.fit: expected steps >= 1, got {steps}.")
        deter, sq_error = deter.detach().float(), sq_error.detach().float()
        with torch.no_grad():
            self.shift.copy_(deter.mean(0))
            self.scale.copy_(deter.std(0).clamp(min=1e-3))
        opt = torch.optim.Adam(self.net.parameters(), self.LR)
        tail: list[torch.Tensor] = []
        with torch.enable_grad():
            for step in range(steps):
                rows = torch.randint(
                    n, (self.heads, self.BATCH), generator=generator, device=generator.device
                ).to(deter.device)
                x = ((deter[rows] - self.shift) / self.scale).to(deter.dtype)
                log_e = self.net(x).squeeze(-1).clamp(self.LOG_MIN, self.LOG_MAX)
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
