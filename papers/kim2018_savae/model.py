"""Kim et al. 2018: the semi-amortized VAE (SA-VAE), an LSTM-VAE whose encoder output is refined
per example by stochastic variational inference (SVI), with the encoder trained through the
refinement.

Implementation details, each with its source (docs/papers/kim2018_savae.md, the section named):

- Model: the core `TextVAE`: a one-layer LSTM encoder whose last state gives (mu, log sigma^2)
  of a diagonal Gaussian; prior N(0, I); an LSTM decoder with z appended to every input and
  mapped into the initial state (`z_mode="both"`, He et al.'s protocol decoder; Kim's code maps
  z to h0 and starts c at 0), dropout on the decoder's inputs and outputs (`decoder_dropout`).
  §Architecture
- Initialisation: every parameter uniform in [-0.1, 0.1] (Kim's `train_text.py`; the core's
  `init_range`, set by the presets). §Training
- Refinement (Kim's `optim_n2n.py`): from the encoder's (mu, logvar), `svi_steps` steps of SGD
  with momentum on each example's negative ELBO, for mu and logvar alike:
  g = gradient, clipped; m <- svi_momentum * m - g; x <- x + svi_lr * m (m starts at 0). Each
  step draws one fresh reparameterised z, and the decoder runs in its current mode (dropout on
  while training, as in Kim's code). §Method
- Per-example scale (ours, from Kim's arithmetic): Kim's SVI descends the batch *mean* of the
  negative ELBO, so an example moves by svi_lr / B times its own gradient, and clips the (B, d)
  gradient of mu (and that of logvar) jointly at norm 5. Here each example is refined on its
  own, with B fixed at `svi_reference_batch` (32, Kim's batch size): its gradient is divided by
  32 and clipped at norm svi_grad_clip / sqrt(32), which equals Kim's joint clip when the
  batch's gradients have equal norms. Apart from its noise draws, an example's refinement then
  depends neither on its batch mates nor on the batch size, in training or evaluation. §Pitfalls
- Training: the loss is the single-sample negative ELBO at the refined parameters, so the
  decoder trains on them; its gradient reaches the encoder through all the SVI updates.
  Second-order term, computed exactly by autograd: every SVI gradient is taken with
  `create_graph=True`, so backpropagating the final loss differentiates through each update:
  the Hessian of the step's objective in (mu, logvar) times the carried gradient, and its mixed
  derivative in the decoder's weights, which therefore also receive the refinement's term (as
  with Kim's `acc_param_grads`). Kim's code estimates these products by one-sided finite
  differences (eps 1e-5) and clips the backward quantities at 5; ours is the derivative of the
  forward map, clipping included. `tests/test_kim2018_savae.py` checks it against central finite
  differences in float64. §Method
- Twice-differentiable steps (ours): while training, the SVI steps score tokens through a
  plain log-softmax, because the core's fused output layer (`repro.nn.lstm.OutputLayer`) has a
  first-order backward only; and every SVI step runs the decoder's LSTM without cuDNN, which
  has no double backward (and no backward at all in eval mode). The final pass uses both.
- KL annealing: the SVI steps weight the KL like the loss does, by the schedule's weight at
  this update (Kim's `variational_loss` reads the annealed beta). §Training
- Evaluation: `posterior(batch)` is the refined posterior, as in Kim's test-time `eval`: the
  same SVI steps from the encoder's output, decoder in eval mode, KL weight 1. Every metric
  (IW-NLL, ELBO, KL, MI, AU) reads it. `repro.evaluate` calls it under `torch.inference_mode`,
  so the refinement re-enables gradients on copies of the batch and keeps no graph between
  steps. Its noise comes from the global RNG, which the evaluation seeds: deterministic given the
  evaluation's seed and its batches (the metrics' own draws stay per example). §Evaluation
- `svi_steps=0` is the plain VAE (`vae-anneal`): loss and posterior are `TextVAE`'s exactly.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass

import torch

from repro import schedules
from repro.config import bounded
from repro.nn.distributions import DiagonalGaussian
from repro.nn.flows import sample_kl_dims
from repro.sentence_models import TextVAE, TextVAEConfig


@dataclass
class SAVAEConfig(TextVAEConfig):
    svi_steps: int = bounded(20, lo=0)                     # 0: the plain VAE
    svi_lr: float = bounded(1.0, lo=0.0)
    svi_momentum: float = bounded(0.5, lo=0.0, hi=1.0)
    svi_grad_clip: float | None = bounded(5.0, lo=0.0)     # None: no clipping
    svi_reference_batch: int = bounded(32, lo=1)           # the B of Kim's batch-mean SVI loss


@dataclass
class Refinement:
    """The refined (mu, logvar) `(B, d)` and the objective at the starting point `(B,)`."""

    mu: torch.Tensor
    logvar: torch.Tensor
    start_objective: torch.Tensor


def clip_rows(grad: torch.Tensor, max_norm: float | None) -> torch.Tensor:
    """Each row scaled to norm at most `max_norm` (Kim's coefficient max_norm / (norm + 1e-6));
    differentiable, so the refinement's derivative includes the clipping."""
    if max_norm is None:
        return grad
    norms = grad.norm(dim=-1, keepdim=True)
    return grad * torch.clamp(max_norm / (norms + 1e-6), max=1.0)


def svi_refine(objective, mu: torch.Tensor, logvar: torch.Tensor, cfg: SAVAEConfig,
               create_graph: bool) -> Refinement:
    """`cfg.svi_steps` steps of SGD with momentum on `objective(mu, logvar) -> (B,)`, one value
    per example, which must depend on row i of mu and logvar alone. With `create_graph` the
    result stays a differentiable function of the start (and of whatever `objective` reads)
    through every step; without it no graph outlives a step."""
    scale, max_norm = cfg.svi_reference_batch, cfg.svi_grad_clip
    row_clip = None if max_norm is None else max_norm / math.sqrt(scale)
    params = [p if p.requires_grad else p.detach().requires_grad_() for p in (mu, logvar)]
    velocity = [torch.zeros_like(p) for p in params]
    start = None
    for _ in range(cfg.svi_steps):
        if not create_graph:
            params = [p.detach().requires_grad_() for p in params]
        values = objective(*params)
        start = values.detach() if start is None else start
        # Rows do not interact, so the gradient of the sum is each example's own gradient.
        grads = torch.autograd.grad(values.sum() / scale, params, create_graph=create_graph)
        velocity = [cfg.svi_momentum * v - clip_rows(g, row_clip) for v, g in zip(velocity, grads)]
        params = [p + cfg.svi_lr * v for p, v in zip(params, velocity)]
    return Refinement(params[0], params[1], start)


@contextlib.contextmanager
def _without_cudnn():
    """cuDNN's LSTM has no double backward and no backward in eval mode (no effect on a CPU)."""
    enabled = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = False
    try:
        yield
    finally:
        torch.backends.cudnn.enabled = enabled


def _gradient_ready(batch):
    """The batch with its tensors copied outside inference mode: tensors made under
    `torch.inference_mode` cannot be saved for a backward pass."""
    return dataclasses.replace(batch, tokens=batch.tokens.clone(), lengths=batch.lengths.clone())


class SAVAE(TextVAE):
    """`TextVAE` whose posterior is the encoder's output refined by SVI (module docstring)."""

    def amortized_posterior(self, batch) -> DiagonalGaussian:
        """The encoder's q(z|x), where the refinement starts."""
        return super().posterior(batch)

    def refine(self, batch, start: DiagonalGaussian, kl_weight: float,
               create_graph: bool) -> Refinement:
        """The SVI steps from `start` on each example's negative ELBO at `kl_weight`."""
        log_likelihood = self.twice_differentiable_log_likelihood if create_graph else self.log_likelihood

        def negative_elbo(mu, logvar):
            q = DiagonalGaussian(mu, logvar)
            z, _ = q.rsample(1)
            return -log_likelihood(batch, z)[0] + kl_weight * q.kl_per_dim(self._prior).sum(-1)

        with _without_cudnn():
            return svi_refine(negative_elbo, start.mu, start.logvar, self.cfg, create_graph)

    def twice_differentiable_log_likelihood(self, batch, z):
        """`log_likelihood` through autograd's own log-softmax, whose backward is itself
        differentiable (the fused output layer's is not): `(1, B)` for z `(1, B, d)`."""
        inputs = self.decoder_inputs(batch.inputs, self.training)
        hidden, _ = self.decoder.hidden_states(inputs, z)
        logits = self.decoder.out.proj(hidden)
        log_probs = torch.log_softmax(logits, -1, dtype=torch.promote_types(logits.dtype, torch.float32))
        token = log_probs.gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)
        return (token * batch.target_mask).sum(1).unsqueeze(0)

    def loss(self, batch, step: int) -> dict[str, torch.Tensor]:
        """The negative ELBO at the refined parameters, differentiable through the refinement;
        `svi_gain` (logged) is how much the refinement lowered the objective, in nats."""
        if self.cfg.svi_steps == 0:
            return super().loss(batch, step)
        weight = schedules.kl_weight(step, self.kl_schedule)
        refined = self.refine(batch, self.amortized_posterior(batch), weight, create_graph=True)
        z, kl_dims = sample_kl_dims(DiagonalGaussian(refined.mu, refined.logvar), self.prior(batch))
        rec = -self.log_likelihood(batch, z)[0]
        terms = self.elbo_terms(rec, kl_dims, step)
        final = (rec + weight * kl_dims.sum(-1)).detach()
        terms["svi_gain"] = (refined.start_objective - final).mean()
        return terms

    def posterior(self, batch) -> DiagonalGaussian:
        """The refined q(z|x) at KL weight 1, for evaluation (no graph to the parameters)."""
        amortized = self.amortized_posterior(batch)
        if self.cfg.svi_steps == 0:
            return amortized
        with torch.inference_mode(False), torch.enable_grad():
            start = DiagonalGaussian(amortized.mu.clone(), amortized.logvar.clone())
            refined = self.refine(_gradient_ready(batch), start, 1.0, create_graph=False)
        return DiagonalGaussian(refined.mu.detach(), refined.logvar.detach())


def build(cfg, corpus) -> SAVAE:
    return SAVAE(cfg.model, corpus.vocab)
