"""The one model interface shared by every paper, so the trainer and the evaluation never
special-case a method.

A latent-variable model implements:
  posterior(batch)          -> an object with rsample(n) -> (z (n, B, ...), log_q (n, B)),
                               log_prob(z), mean(n_samples) and, for Gaussians, mu/logvar
  prior(batch)              -> an object with log_prob(z) -> (n, B) (N(0, I), p(z|c), a flow)
  log_likelihood(batch, z)  -> (n, B): sum of token (or pixel) log-probabilities of x given z
  loss(batch, step)         -> dict of named scalar terms, `loss` among them
and may override selectable(step) -> bool (default True): whether the epoch ending after `step`
updates may supply the best checkpoint; train_step(batch, step, updater) -> terms (default: one
optimiser step on `loss`): the update itself; validated(metrics) (default: nothing): told each
epoch's validation metrics, with `validation_metrics` naming any beyond the trainer's own.

The default `loss` is the single-sample negative ELBO, assembled here once from pieces a model
may override:
  elbo_pieces(batch)             -> (rec (B,), kl_dims (B, *event)): the reconstruction NLL and
                                    the KL per latent dimension at one reparameterised posterior
                                    draw (default: posterior, prior, log_likelihood and
                                    `repro.nn.flows.sample_kl_dims`)
  kl_schedule, free_bits         -> the KL weight's `KLScheduleConfig` (or a `LinearRate`) and
                                    the `FreeBitsConfig` (default: the model config's `kl` and
                                    `free_bits`, no free bits when it has none)
  elbo_terms(rec, kl_dims, step) -> `repro.objectives.elbo_loss` at `step`'s KL weight
loss = elbo_terms(*elbo_pieces(batch), step). A model with terms beyond the ELBO (a bag-of-words
loss, an auxiliary cost) overrides `loss`, computes rec and kl_dims with them, and adds its
terms to what `elbo_terms` returns.

A model whose latent has no density (an implicit one: noise through a network) narrows
`shared_metrics` to the shared metrics defined for it, and reports its own per-example values
through evaluation_terms(batch) -> {name: (B,)}, `objective` among them when neither `elbo` nor
`nll` is shared (validation selects checkpoints by it).
A plain language model sets `has_latent = False` and takes `z=None` in `log_likelihood`.

A batch is any object with `size` (examples), `num_targets` ((B,) tokens scored per example
for perplexity, `<eos>` included; None for images) and `to(device)`.
"""
from __future__ import annotations

import torch
from torch import nn

from repro import schedules
from repro.config import FreeBitsConfig, KLScheduleConfig
from repro.nn.distributions import kl_divergence
from repro.nn.flows import sample_kl_dims
from repro.objectives import elbo_loss


class LatentVariableModel(nn.Module):
    has_latent = True
    # The names of `repro.evaluate.METRIC_NAMES` defined for this model; None: all of them.
    shared_metrics: tuple[str, ...] | None = None
    # Metrics beyond `repro.train.VALIDATION_METRICS` that `validated` reads (He et al.: "mi").
    validation_metrics: tuple[str, ...] = ()

    def posterior(self, batch):
        raise NotImplementedError

    def prior(self, batch):
        raise NotImplementedError

    def log_prior(self, z: torch.Tensor, batch) -> torch.Tensor:
        return self.prior(batch).log_prob(z)

    def log_likelihood(self, batch, z: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, batch, step: int) -> dict[str, torch.Tensor]:
        """The single-sample negative ELBO and its parts (module docstring)."""
        return self.elbo_terms(*self.elbo_pieces(batch), step)

    def elbo_pieces(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The reconstruction NLL `(B,)` and the KL per latent dimension `(B, *event)` at one
        reparameterised draw from the posterior: analytic KL for a Gaussian pair, else that
        draw's Monte Carlo split (`sample_kl_dims`)."""
        z, kl_dims = sample_kl_dims(self.posterior(batch), self.prior(batch))
        return -self.log_likelihood(batch, z)[0], kl_dims

    def elbo_terms(self, rec: torch.Tensor, kl_dims: torch.Tensor,
                   step: int) -> dict[str, torch.Tensor]:
        """`elbo_loss` of the pieces at `step`'s KL weight under `kl_schedule`, with `free_bits`."""
        return elbo_loss(rec, kl_dims, schedules.kl_weight(step, self.kl_schedule), self.free_bits)

    @property
    def kl_schedule(self) -> KLScheduleConfig:
        return self.cfg.kl

    @property
    def free_bits(self) -> FreeBitsConfig:
        # A model config without a free-bits rule trains on the plain ELBO.
        return getattr(self.cfg, "free_bits", FreeBitsConfig())

    def selectable(self, step: int) -> bool:
        """Whether the parameters after `step` updates may become the best checkpoint. A model
        whose first epochs train something other than the final model (a two-phase schedule)
        says no for them: validation there is logged but neither selects a checkpoint nor counts
        toward early stopping or learning-rate decay."""
        return True

    def train_step(self, batch, step: int, updater) -> dict[str, torch.Tensor]:
        """One update of the training loop on `batch`, the update after `step` updates, returning
        the terms to log. `updater` (`repro.train.Updater`) gives `loss(batch, step)` under the
        run's precision, `step(terms, only=parameters)` (backward, clip, optimiser step of
        those parameters alone) and `random_batch()`. Default: one step on the loss; He et al.
        2019's aggressive training trains the encoder alone first."""
        return updater.step(updater.loss(batch, step))

    def validated(self, metrics: dict[str, float]) -> None:
        """Called with each epoch's validation metrics (unprefixed: `elbo`, `kl`, ... and those
        named in `validation_metrics`), and on a resume once for every epoch already trained, in
        order, before the next update: a model whose training changes phase on validation (He
        et al.'s aggressive phase ends when validation MI falls) keeps that phase as a function
        of these calls, so it needs nothing of its own in the checkpoint. Default: nothing."""

    def evaluation_terms(self, batch) -> dict[str, torch.Tensor]:
        """The model's own metrics, `name -> (B,)` per example, scored in the evaluation pass
        (validation and test) and reported as their mean over examples; none by default."""
        return {}

    def kl(self, batch, posterior=None, n_samples: int = 1) -> torch.Tensor:
        """KL(q(z|x) || p(z)) per example at weight 1, `(B,)`."""
        posterior = posterior if posterior is not None else self.posterior(batch)
        return kl_divergence(posterior, self.prior(batch), n_samples)


class LanguageModel(LatentVariableModel):
    """A model of x alone: log p(x) is exact, so the evaluation reports it directly."""

    has_latent = False

    def loss(self, batch, step: int) -> dict[str, torch.Tensor]:
        nll = -self.log_likelihood(batch, None)[0]
        return {"loss": nll.mean(), "rec": nll.mean()}
