"""Shen et al. 2018: train a dialog variational encoder-decoder (VED) in two phases, so the
reconstruction and KL losses no longer fight while the RNNs are still learning.

Phase 1, an autoencoder: each response x -> a continuous code e -> x again. Phase 2, a VED over
those codes: from the context c it learns to produce e (z from a posterior given (c, e) and a
prior given c, ê = g(c, z)), never scoring words. A response is generated as c -> z from the
prior -> ê -> the phase-1 decoder -> words. In the paper's phase 2, z is Gaussian noise passed
through multi-layer perceptrons, an implicit latent, more flexible than a diagonal Gaussian. The
baselines are the plain dialog VED (one ELBO from the first update: it collapses) and the VED
with KL annealing.

Only the paper's abstract was retrieved. Facts from it are marked "abstract"; every other
architectural and training choice is the suite's and is marked "suite" (a reader of the full
paper should correct those, in `presets.py` where they are settings).

Implementation details:
- Data: DailyDialog, one example per response turn after the first, context = up to 10
  previous turns, vocabulary of the top 10k lower-cased train words, utterances cut at 40 words
  (suite, mirroring the kgCVAE setup for comparability; `repro.data.dialog`).
- Context c: the shared hierarchical encoder (`repro.dialog_models.HierarchicalContextEncoder`: a
  bidirectional GRU per turn, a floor bit, a GRU over turns) (suite, as for kgCVAE).
- VED baselines: q(z|x, c) = one linear layer on [c, x] -> diagonal Gaussian, x the response
  through the context's utterance encoder; p(z|c) = a tanh layer then a linear one; decoder: a
  GRU whose initial state is linear in [c, z] (`repro.dialog_models.ResponseDecoder`); loss = rec +
  w_KL KL, KL analytic between the two Gaussians. "ved": w_KL = 1 throughout; "ved-kl-anneal":
  w_KL linear from 0 to 1 (kgCVAE's schedule; suite).
- Phase 1 (`ResponseAutoencoder`): a GRU over `<bos> x <eos>` (bidirectional, like the
  context's utterance encoder), its last states -> linear -> a deterministic code e; a GRU
  decoder whose initial state is linear in e reconstructs x by teacher forcing; loss = the
  response NLL (suite). It reads only training responses (the trainer feeds it the train
  split), so no test response shapes the codes. Its word embedding is its own. Initialisation:
  PyTorch's defaults for every part (suite; the kgCVAE package uses U(-0.08, 0.08)).
- Phase 2, with the autoencoder frozen (suite): its own word embedding and context encoder;
  ê = g(c, z), a tanh MLP; the matching term -log N(e; ê, diag sigma^2) (suite: a Gaussian
  likelihood in code space) with sigma^2 per dimension at its maximum-likelihood value, the
  batch's mean squared residual (suite; Rybkin et al. 2021's calibrated decoder). The codes'
  scale is arbitrary: a fixed sigma would set the match's weight against the regulariser by
  accident, and a learned one lags (in a short run the codes' variance was 0.08 per dimension
  while a learned sigma^2 was still 0.9 after 78 updates, and z collapsed).
- The latent and its regulariser are a named option, `AuxAEConfig.regulariser`, because the
  paper's regulariser between the implicit posterior and prior is not known:
  - "mmd" (`ImplicitAuxAutoencoderVED`, the "aux-ae-two-phase" row): z = MLP_post([c, e, eps])
    under the posterior and z = MLP_prior([c, eps]) under the prior, eps ~ N(0, I_d), each MLP
    a tanh layer (`prior_hidden` units) then a linear one (abstract: noise through MLPs; sizes
    suite). z is non-linear in eps, so neither distribution has a density we can evaluate.
    The regulariser is MMD^2 between the two (`mmd_squared`), per example: `latent_samples` draws
    of z from each sampler for the same context, the unbiased estimate, a Gaussian RBF kernel
    whose bandwidth is the median squared distance among the pooled draws (suite). Per example
    because the prior is conditional: it is the counterpart of the per-example KL of the
    Gaussian form, and pooling draws across a batch would match z's marginal while ignoring
    which context each draw belongs to. The median bandwidth makes the value invariant to z's
    scale, which the samplers are free to change (with a fixed width both could spread z until
    every kernel value is ~0 and the MMD vanishes without matching anything). Loss = match
    (averaged over the posterior draws) + w MMD^2, w = `regulariser_weight_per_code_dim` x
    code size: the match is a sum over the code's dimensions while MMD^2 is at most 2, so w
    grows with the code size to keep their balance (suite; the per-dimension weight is not tuned). The prior
    sampler learns only through the MMD.
  - "adversarial" (the same model; an option, no table row): the same samplers, held together
    by a discriminator D(c, z), a tanh layer then a linear one, that tells posterior draws from
    prior draws. D minimises its cross-entropy, the samplers (and the context encoder through
    them) maximise it: one loss, the gradient reversed where z enters D (`ReverseGradient`),
    so the shared trainer's single optimiser runs the game; D reads c without gradient. Its
    value is reported as `adv_js` = log 2 - cross-entropy / 2, the Jensen-Shannon divergence
    the discriminator implies (exact for the best one), with `adv_loss` itself; same weight
    rule and draws as "mmd" (suite, untuned, not run beyond the smoke preset).
  - "gaussian_kl" (`AuxAutoencoderVED`, the "aux-ae-two-phase-gaussian" ablation, suite):
    q(z|c, e) = linear on [c, e] -> diagonal Gaussian, p(z|c) = tanh then linear; loss = match
    + KL(q || p) at weight 1, analytic.
- Both phases are one run of the shared trainer with one Adam optimiser: updates before
  `autoencoder_steps` = `autoencoder_epochs` x (train batches per epoch) train phase 1, every
  later one phase 2 (`build` counts the batches, so the switch falls on an epoch boundary and
  no epoch mixes the two objectives). In each phase only that phase's parameters enter the loss,
  so the other's get no gradient and Adam leaves them untouched; the codes phase 2 matches are
  computed without gradient, so the autoencoder never drifts under them.
- Generation: N = 10 prior samples per context, greedy decoding (suite).
- Evaluation of the Gaussian models: each is a latent-variable model of the response given the
  context, so the shared evaluation reports IW-NLL, PPL, ELBO, KL, MI and AU. For the Gaussian
  two-phase model the likelihood is p(x | c, z) = the phase-1 decoder fed ê = g(c, z), and its
  KL is the phase-2 KL between two Gaussians.
- Evaluation of the implicit latent: no density, so no IW-NLL, PPL, ELBO, KL or MI (the model's
  `shared_metrics` is AU alone). AU counts units over two independent Monte Carlo estimates of
  E[z|x] (100 posterior draws each, `repro.evaluate`); z's scale is learned here, not fixed by
  an N(0, I) prior, so the 0.01 threshold is relative to that scale. Its own metrics
  (`evaluation_terms`): the regulariser's value (`mmd`, or `adv_js` and `adv_loss`; never
  reported as a KL), `match`, and `objective` = match + w x that value, by which validation
  selects the best checkpoint.
- Dialog metrics, every variant (`repro.dialog_models.write_dialog_evaluation`, the kgCVAE package's
  driver): Zhao BLEU precision/recall over N prior samples (one reference), sacreBLEU corpus
  BLEU of the first sample, distinct-1/2, and `rc_ppl_posterior` (z from the posterior, the
  regulariser left out: defined for the implicit latent too).

Deviations (beyond the paper's unretrieved details, all listed above):
- The decoder is not fine-tuned on ê (an optional ablation).
- Phase 1 runs a fixed number of epochs, not "to convergence". Validation during it scores
  an untrained phase 2, so those epochs are not `selectable`: the best checkpoint is the
  phase-2 epoch with the best validation word ELBO (Gaussian form) or phase-2 objective
  (implicit form) (suite: the paper gives no rule). The word ELBO is not what phase 2
  optimises, so it can favour an early phase-2 epoch. Sizes, epochs: `presets.py`.
- The Gaussian phase 2 has KL weight 1 from its first update (suite: nothing on annealing);
  `model.kl` gives it a schedule, counted from the switch. The MMD weight is constant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from repro.config import ConfigError, KLScheduleConfig, bounded
from repro.dialog_models import (DialogModelConfig, GaussianNetwork, HierarchicalContextEncoder,
                          ResponseDecoder, SampledResponses, UtteranceEncoder, decode_responses)
from repro.model import LatentVariableModel
from repro.sentence_models import DecoderInputs
from repro.nn.distributions import DiagonalGaussian
from repro.nn.flows import sample_kl_dims
from repro.data import updates_per_epoch

VARIANCE_FLOOR = 1e-6
BANDWIDTH_FLOOR = 1e-12


@dataclass
class DialogVEDConfig(DialogModelConfig):
    latent_size: int = bounded(200, lo=1)
    prior_hidden: int = bounded(400, lo=1)
    kl: KLScheduleConfig = field(default_factory=KLScheduleConfig)


@dataclass
class AuxAEConfig(DialogVEDConfig):
    code_size: int = bounded(200, lo=1)              # the autoencoder's response code e
    generator_hidden: int = bounded(400, lo=1)       # g: [c, z] -> ê
    autoencoder_epochs: int = bounded(1, lo=1)       # phase 1; every later epoch is phase 2
    # The phase-2 latent and the regulariser between its posterior and prior, by name (the
    # paper's regulariser is unknown, so it is never picked silently): "mmd" or "adversarial",
    # an implicit latent (noise through MLPs) held to the prior by MMD^2 or by a discriminator;
    # "gaussian_kl", a diagonal Gaussian latent and the analytic KL.
    regulariser: str = bounded("mmd", choices=("mmd", "adversarial", "gaussian_kl"))
    # Implicit latents only: draws of z per example from each sampler, and the regulariser's
    # weight per code dimension (the loss adds it x code_size x the regulariser; see
    # `ImplicitAuxAutoencoderVED`).
    latent_samples: int = bounded(8, lo=2)
    regulariser_weight_per_code_dim: float = bounded(1.0, lo=0.0)


def with_context(c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """[c, z]: `c (B, Dc)`, `z (n, B, d)` -> `(n, B, Dc + d)`."""
    return torch.cat([c.unsqueeze(0).expand(z.shape[0], *c.shape).to(z.dtype), z], -1)


class ContextLatent(nn.Module):
    """c from the context turns, and the latent's Gaussians: q(z|c, r) from c and a response
    representation r, p(z|c) from c alone."""

    def __init__(self, cfg: DialogVEDConfig, vocab, embedding: nn.Embedding, response_size: int):
        super().__init__()
        self.encoder = HierarchicalContextEncoder(UtteranceEncoder(embedding, cfg.utterance_hidden),
                                                  cfg.context_hidden, vocab)
        self.recognition = GaussianNetwork(cfg.context_hidden + response_size, cfg.latent_size)
        self.prior_net = GaussianNetwork(cfg.context_hidden, cfg.latent_size, cfg.prior_hidden)

    def context(self, batch) -> torch.Tensor:
        """`DialogBatch` -> c `(B, Dc)`."""
        return self.encoder(batch)

    def posterior(self, c: torch.Tensor, response: torch.Tensor) -> DiagonalGaussian:
        """`c (B, Dc)`, `response (B, Dr)` -> q(z|c, r) over `(B, d)`."""
        return self.recognition(torch.cat([c, response.to(c.dtype)], -1))

    def prior(self, c: torch.Tensor) -> DiagonalGaussian:
        return self.prior_net(c)


class DialogVED(LatentVariableModel):
    """The baseline VED (a CVAE): q(z|x, c), p(z|c), GRU decoder from [c, z]; one ELBO."""

    def __init__(self, cfg: DialogVEDConfig, vocab):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        self.embedding = nn.Embedding(len(vocab), cfg.embed_size, padding_idx=vocab.pad)
        self.latent = ContextLatent(cfg, vocab, self.embedding, 2 * cfg.utterance_hidden)
        self.decoder = ResponseDecoder(self.embedding, cfg.decoder_hidden,
                                       cfg.context_hidden + cfg.latent_size)
        self.decoder_inputs = DecoderInputs(1.0, vocab)

    def posterior(self, batch) -> DiagonalGaussian:
        return self._posterior(batch, self.latent.context(batch))

    def prior(self, batch) -> DiagonalGaussian:
        return self.latent.prior(self.latent.context(batch))

    def log_likelihood(self, batch, z: torch.Tensor) -> torch.Tensor:
        """log p(x|c, z) `(n, B)` for z `(n, B, d)`."""
        return self._log_likelihood(batch, self.latent.context(batch), z)

    def elbo_pieces(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """As the default, with c computed once for q, p and the decoder."""
        c = self.latent.context(batch)
        z, kl_dims = sample_kl_dims(self._posterior(batch, c), self.latent.prior(c))
        return -self._log_likelihood(batch, c, z)[0], kl_dims

    def sample_responses(self, batch, num_samples: int, max_len: int, generator=None) -> SampledResponses:
        """N responses per context: z ~ p(z|c), greedy decoding."""
        c = self.latent.context(batch)
        z, _ = self.latent.prior(c).rsample(num_samples, generator)
        return SampledResponses(decode_responses(self, with_context(c, z), max_len))

    def _posterior(self, batch, c: torch.Tensor) -> DiagonalGaussian:
        response = self.latent.encoder.utterances(batch.response, batch.lengths)
        return self.latent.posterior(c, response)

    def _log_likelihood(self, batch, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        condition = with_context(c, z)
        return self.decoder.log_likelihood(batch.inputs, batch.targets, batch.target_mask, condition)


class ResponseAutoencoder(nn.Module):
    """Phase 1: response -> deterministic code e `(B, E)` -> response (teacher forcing)."""

    def __init__(self, cfg: AuxAEConfig, vocab):
        super().__init__()
        self.embedding = nn.Embedding(len(vocab), cfg.embed_size, padding_idx=vocab.pad)
        self.encoder = UtteranceEncoder(self.embedding, cfg.utterance_hidden)
        self.to_code = nn.Linear(self.encoder.output_size, cfg.code_size)
        self.decoder = ResponseDecoder(self.embedding, cfg.decoder_hidden, cfg.code_size)

    def encode(self, batch) -> torch.Tensor:
        """The response's code e `(B, E)`."""
        return self.to_code(self.encoder(batch.response, batch.lengths))

    def log_likelihood(self, batch, code: torch.Tensor) -> torch.Tensor:
        """log p(x | e) `(n, B)` for codes `(n, B, E)`."""
        return self.decoder.log_likelihood(batch.inputs, batch.targets, batch.target_mask, code)


class CodeVED(nn.Module):
    """Phase 2: a VED whose data are the autoencoder's codes: q(z|c, e), p(z|c), ê = g(c, z),
    and e ~ N(ê, diag sigma^2) (see `code_nll`)."""

    def __init__(self, cfg: AuxAEConfig, vocab):
        super().__init__()
        # Its own embedding: sharing the autoencoder's would move the codes it is matching.
        self.embedding = nn.Embedding(len(vocab), cfg.embed_size, padding_idx=vocab.pad)
        self.latent = ContextLatent(cfg, vocab, self.embedding, cfg.code_size)
        self.generator = nn.Sequential(
            nn.Linear(cfg.context_hidden + cfg.latent_size, cfg.generator_hidden), nn.Tanh(),
            nn.Linear(cfg.generator_hidden, cfg.code_size))

    def context(self, batch) -> torch.Tensor:
        return self.latent.context(batch)

    def posterior(self, c: torch.Tensor, code: torch.Tensor) -> DiagonalGaussian:
        return self.latent.posterior(c, code)

    def prior(self, c: torch.Tensor) -> DiagonalGaussian:
        return self.latent.prior(c)

    def generate(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """ê = g(c, z): `c (B, Dc)`, `z (n, B, d)` -> `(n, B, E)`."""
        return self.generator(with_context(c, z))


def code_nll(code: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """The matching term -log N(e; ê, diag sigma^2), sigma^2 per dimension = the mean squared
    residual over the batch and samples (its maximum-likelihood value): `code (B, E)`,
    `predicted (n, B, E)` -> `(n, B)`. Scaling e and ê by a shifts it by E log a only."""
    code, predicted = code.float(), predicted.float()  # a variance of small residuals: fp32
    residual = (code - predicted).pow(2)
    # The floor only guards log 0 when a dimension is matched exactly across the whole batch.
    variance = residual.flatten(0, 1).mean(0).clamp(min=VARIANCE_FLOOR)
    return -DiagonalGaussian(predicted, variance.log().expand_as(predicted)).log_prob(code)


class AuxAutoencoderVED(LatentVariableModel):
    """Two-phase training: updates `< autoencoder_steps` train the autoencoder on the response
    NLL, later ones the code VED on match + KL. As a model of x given c: q(z|c, e(x)), p(z|c),
    p(x|c, z) = the autoencoder's decoder fed g(c, z)."""

    code_ved = CodeVED

    def __init__(self, cfg: AuxAEConfig, vocab, autoencoder_steps: int):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        self.autoencoder_steps = autoencoder_steps
        self.autoencoder = ResponseAutoencoder(cfg, vocab)
        self.ved = self.code_ved(cfg, vocab)
        self.decoder_inputs = DecoderInputs(1.0, vocab)

    @property
    def decoder(self) -> ResponseDecoder:
        """The phase-1 decoder, which `repro.generate.decode` drives."""
        return self.autoencoder.decoder

    def phase(self, step: int) -> int:
        return 1 if step < self.autoencoder_steps else 2

    def selectable(self, step: int) -> bool:
        """Only after a phase-2 update: until then the code VED that generates is untrained."""
        return step > self.autoencoder_steps

    def posterior(self, batch):
        return self.ved.posterior(self.ved.context(batch), self.autoencoder.encode(batch))

    def prior(self, batch):
        return self.ved.prior(self.ved.context(batch))

    def log_likelihood(self, batch, z: torch.Tensor) -> torch.Tensor:
        """log p(x | ê = g(c, z)) `(n, B)` for z `(n, B, d)`."""
        return self.autoencoder.log_likelihood(batch, self.ved.generate(self.ved.context(batch), z))

    def loss(self, batch, step: int) -> dict[str, torch.Tensor]:
        if self.phase(step) == 1:
            rec = -self.autoencoder.log_likelihood(batch, self.autoencoder.encode(batch).unsqueeze(0))[0]
            return {"loss": rec.mean(), "rec": rec.mean()}
        return self.code_loss(batch, step - self.autoencoder_steps)

    def code_loss(self, batch, step: int) -> dict[str, torch.Tensor]:
        """Phase 2 at its own `step` (0 at the first phase-2 update): `match` + w_KL `kl`, and
        `code_elbo`, the bound on log p(e|c) in code space at the batch's sigma^2."""
        with torch.no_grad():  # the codes are targets: the frozen autoencoder must not drift
            code = self.autoencoder.encode(batch)
        c = self.ved.context(batch)
        z, kl_dims = sample_kl_dims(self.ved.posterior(c, code), self.ved.prior(c))
        match = code_nll(code, self.ved.generate(c, z))[0]
        terms = self.elbo_terms(match, kl_dims, step)
        terms["match"], terms["code_elbo"] = terms.pop("rec"), terms.pop("elbo")
        return terms

    def sample_responses(self, batch, num_samples: int, max_len: int, generator=None) -> SampledResponses:
        """N responses per context: z ~ p(z|c) -> ê -> the phase-1 decoder, greedy."""
        c = self.ved.context(batch)
        z, _ = self.ved.prior(c).rsample(num_samples, generator)
        return SampledResponses(decode_responses(self, self.ved.generate(c, z), max_len))


# --- the implicit latent ------------------------------------------------------------------------

class ImplicitSampler(nn.Module):
    """z = MLP([condition, eps]), eps ~ N(0, I_d): a tanh layer, then a linear one. z is a
    non-linear function of the noise, so its distribution given the condition is not Gaussian
    and has no density we can evaluate: only samples."""

    def __init__(self, condition_size: int, latent_size: int, hidden: int):
        super().__init__()
        self.latent_size = latent_size
        self.net = nn.Sequential(nn.Linear(condition_size + latent_size, hidden), nn.Tanh(),
                                 nn.Linear(hidden, latent_size))

    def forward(self, condition: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """`condition (B, D)`, `noise (n, B, d)` -> z `(n, B, d)`."""
        return self.net(with_context(condition, noise))

    def noise(self, n: int, condition: torch.Tensor, generator=None) -> torch.Tensor:
        return torch.randn((n, condition.shape[0], self.latent_size), device=condition.device,
                           dtype=condition.dtype, generator=generator)


class ImplicitLatent:
    """The latent of one batch under an `ImplicitSampler` and its condition, with the part of
    the posterior interface (`repro.model`) that needs samples only: `rsample` gives z and no
    log-density (None), `mean` a Monte Carlo estimate of E[z]."""

    def __init__(self, sampler: ImplicitSampler, condition: torch.Tensor):
        self.sampler, self.condition = sampler, condition

    @property
    def batch_size(self) -> int:
        return self.condition.shape[0]

    def rsample(self, n: int = 1, generator=None) -> tuple[torch.Tensor, None]:
        """z `(n, B, d)`, differentiable in the sampler's parameters; log q is not defined."""
        return self.sampler(self.condition, self.sampler.noise(n, self.condition, generator)), None

    def mean(self, n_samples: int = 100) -> torch.Tensor:
        """E[z] `(B, d)` estimated from `n_samples` draws (the global RNG: the evaluation seeds it)."""
        return self.rsample(n_samples)[0].mean(0)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        raise TypeError("an implicit latent has no density: IW-NLL, KL and MI are not defined for it")


class ImplicitCodeVED(nn.Module):
    """Phase 2 with an implicit latent: z = MLP_post(c, e, eps) under q, z = MLP_prior(c, eps)
    under p, ê = g(c, z) as in `CodeVED`."""

    def __init__(self, cfg: AuxAEConfig, vocab):
        super().__init__()
        self.embedding = nn.Embedding(len(vocab), cfg.embed_size, padding_idx=vocab.pad)
        self.encoder = HierarchicalContextEncoder(UtteranceEncoder(self.embedding, cfg.utterance_hidden),
                                                  cfg.context_hidden, vocab)
        self.posterior_sampler = ImplicitSampler(cfg.context_hidden + cfg.code_size, cfg.latent_size,
                                                 cfg.prior_hidden)
        self.prior_sampler = ImplicitSampler(cfg.context_hidden, cfg.latent_size, cfg.prior_hidden)
        self.generator = nn.Sequential(
            nn.Linear(cfg.context_hidden + cfg.latent_size, cfg.generator_hidden), nn.Tanh(),
            nn.Linear(cfg.generator_hidden, cfg.code_size))

    def context(self, batch) -> torch.Tensor:
        return self.encoder(batch)

    def posterior(self, c: torch.Tensor, code: torch.Tensor) -> ImplicitLatent:
        return ImplicitLatent(self.posterior_sampler, torch.cat([c, code.to(c.dtype)], -1))

    def prior(self, c: torch.Tensor) -> ImplicitLatent:
        return ImplicitLatent(self.prior_sampler, c)

    def generate(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """ê = g(c, z): `c (B, Dc)`, `z (n, B, d)` -> `(n, B, E)`."""
        return self.generator(with_context(c, z))


def median_bandwidth(sq_distances: torch.Tensor) -> torch.Tensor:
    """sigma^2 = the median squared distance between distinct members of each pooled sample
    set (the median heuristic): `(B, N, N) -> (B,)`, without gradient."""
    n = sq_distances.shape[-1]
    rows, cols = torch.triu_indices(n, n, 1, device=sq_distances.device)
    # The floor only guards 0/0 when every member coincides (then the MMD is 0 at any width).
    return sq_distances.detach()[:, rows, cols].median(-1).values.clamp(min=BANDWIDTH_FLOOR)


def mmd_squared(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The unbiased estimate of MMD^2 between the distributions that drew `x (n, B, d)` and
    `y (m, B, d)`, per example `(B,)`: mean k(x, x') over distinct pairs + the same for y -
    2 mean k(x, y). Kernel k(a, b) = exp(-|a - b|^2 / (2 sigma^2)), a Gaussian RBF, with sigma^2
    the median squared distance within the pooled n + m draws of the example (`median_bandwidth`),
    so the value does not change when z is rescaled. Zero in expectation for equal
    distributions (single estimates can be slightly negative), at most 2."""
    n, m = x.shape[0], y.shape[0]
    pooled = torch.cat([x, y]).float().transpose(0, 1)          # (B, n + m, d); fp32 for exp
    # Differences, not the |a|^2 + |b|^2 - 2ab expansion: exact zeros on the diagonal and no
    # cancellation when draws nearly coincide.
    sq = (pooled.unsqueeze(2) - pooled.unsqueeze(1)).pow(2).sum(-1)
    k = torch.exp(-sq / (2 * median_bandwidth(sq))[:, None, None])
    k_xx, k_yy, k_xy = k[:, :n, :n], k[:, n:, n:], k[:, :n, n:]
    within_x = (k_xx.sum((1, 2)) - k_xx.diagonal(dim1=1, dim2=2).sum(-1)) / (n * (n - 1))
    within_y = (k_yy.sum((1, 2)) - k_yy.diagonal(dim1=1, dim2=2).sum(-1)) / (m * (m - 1))
    return within_x + within_y - 2 * k_xy.mean((1, 2))


class ReverseGradient(torch.autograd.Function):
    """Identity forward, negated gradient backward: one loss then trains the discriminator to
    lower it and everything upstream of its input to raise it (Ganin and Lempitsky 2015), so the
    shared single-optimiser trainer can run the min-max game."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class LatentDiscriminator(nn.Module):
    """D(c, z): the logit that z was drawn from the posterior rather than the prior, a tanh
    layer then a linear one: `c (B, Dc)`, `z (n, B, d)` -> `(n, B)`."""

    def __init__(self, context_size: int, latent_size: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(context_size + latent_size, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 1))

    def forward(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(with_context(c, z)).squeeze(-1)


def discriminator_loss(logit_q: torch.Tensor, logit_p: torch.Tensor) -> torch.Tensor:
    """The discriminator's cross-entropy with posterior draws labelled 1 and prior draws 0,
    per example, each side averaged over its draws: `(n, B), (m, B) -> (B,)`. For the best
    discriminator it equals 2 log 2 - 2 JS(q, p) (Goodfellow et al. 2014)."""
    return nn.functional.softplus(-logit_q.float()).mean(0) + nn.functional.softplus(logit_p.float()).mean(0)


def js_estimate(loss: torch.Tensor) -> torch.Tensor:
    """The Jensen-Shannon divergence (nats, 0 to log 2) that a discriminator's cross-entropy
    implies: log 2 - loss / 2. A lower bound in expectation, exact for the best discriminator;
    negative where the discriminator does worse than chance."""
    return math.log(2) - loss / 2


class ImplicitAuxAutoencoderVED(AuxAutoencoderVED):
    """Two-phase training with the implicit phase-2 latent: phase 1 as in `AuxAutoencoderVED`;
    phase 2 minimises match + w R(q(z|c, e), p(z|c)), w = `regulariser_weight_per_code_dim` x E,
    R the MMD^2 ("mmd") or the Jensen-Shannon divergence a discriminator D(c, z) estimates
    ("adversarial": D minimises its cross-entropy, the samplers maximise it through
    `ReverseGradient`; D reads c without gradient, so the context encoder is not trained to
    help it).

    Of the shared metrics only AU is defined (E[z|x] estimated by sampling); `evaluation_terms`
    reports `match`, the regulariser's value under its own name (`mmd`, or `adv_js` with the
    discriminator's cross-entropy `adv_loss`; never a KL) and `objective` = match + w x that
    value (what validation selects by)."""

    code_ved = ImplicitCodeVED
    shared_metrics = ("au",)

    def __init__(self, cfg: AuxAEConfig, vocab, autoencoder_steps: int):
        super().__init__(cfg, vocab, autoencoder_steps)
        if cfg.regulariser == "adversarial":
            self.discriminator = LatentDiscriminator(cfg.context_hidden, cfg.latent_size, cfg.prior_hidden)

    @property
    def regulariser_weight(self) -> float:
        return self.cfg.regulariser_weight_per_code_dim * self.cfg.code_size

    def code_terms(self, batch) -> dict[str, torch.Tensor]:
        """Per example `(B,)`, from `latent_samples` draws of each sampler: `match` (-log N(e;
        g(c, z), sigma^2) averaged over the posterior draws), the regulariser's value (`mmd`, or
        `adv_js` and `adv_loss`) and `penalty`, what the loss adds before weighting (MMD^2, or
        the discriminator's cross-entropy behind a reversed gradient)."""
        with torch.no_grad():  # the codes are targets: the frozen autoencoder must not drift
            code = self.autoencoder.encode(batch)
        c = self.ved.context(batch)
        n = self.cfg.latent_samples
        z_q, _ = self.ved.posterior(c, code).rsample(n)
        z_p, _ = self.ved.prior(c).rsample(n)
        terms = {"match": code_nll(code, self.ved.generate(c, z_q)).mean(0)}
        if self.cfg.regulariser == "mmd":
            terms["mmd"] = terms["penalty"] = mmd_squared(z_q, z_p)
            return terms
        context = c.detach()
        loss = discriminator_loss(self.discriminator(context, ReverseGradient.apply(z_q)),
                                  self.discriminator(context, ReverseGradient.apply(z_p)))
        terms.update(adv_loss=loss, adv_js=js_estimate(loss), penalty=loss)
        return terms

    @property
    def regulariser_value(self) -> str:
        return "mmd" if self.cfg.regulariser == "mmd" else "adv_js"

    def code_loss(self, batch, step: int) -> dict[str, torch.Tensor]:
        """Phase 2: `match` + w x the penalty; the weight is constant (nothing is annealed)."""
        terms = self.code_terms(batch)
        loss = terms["match"] + self.regulariser_weight * terms.pop("penalty")
        return {"loss": loss.mean(), **{name: value.mean() for name, value in terms.items()}}

    def evaluation_terms(self, batch) -> dict[str, torch.Tensor]:
        terms = self.code_terms(batch)
        terms.pop("penalty")
        terms["objective"] = terms["match"] + self.regulariser_weight * terms[self.regulariser_value]
        return terms


def build(cfg, corpus):
    m = cfg.model
    if not isinstance(m, AuxAEConfig):
        return DialogVED(m, corpus.vocab)
    if cfg.train.epochs <= m.autoencoder_epochs:
        raise ConfigError(f"train.epochs={cfg.train.epochs} leaves no phase-2 epoch after "
                          f"model.autoencoder_epochs={m.autoencoder_epochs}; raise train.epochs")
    model = AuxAutoencoderVED if m.regulariser == "gaussian_kl" else ImplicitAuxAutoencoderVED
    return model(m, corpus.vocab, m.autoencoder_epochs * updates_per_epoch(cfg, corpus))
