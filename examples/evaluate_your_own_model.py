"""Score your own text VAE with the suite's evaluation: IW-NLL, KL, mutual information, active units.

The model below is defined here, not taken from `papers/`: an LSTM encoder giving a diagonal
Gaussian q(z|x), a standard normal prior, and an LSTM decoder that starts from z and sees it at
every step. It trains for a few hundred steps on the synthetic corpus (He et al. 2019's
construction, generated on the fly, no download) and `repro.evaluate.evaluate` scores it; the
numbers go to MLflow (the store `repro ui` shows), with the estimator settings beside them.
Trained on the plain ELBO, it collapses: here KL 0.01, MI 0.01, AU 0 (IW-NLL 46.9) -- the
posterior collapse the suite's papers remedy.

What `evaluate` needs of a model -- the methods this file implements:
  posterior(batch)         -> DiagonalGaussian(mu, logvar), mu/logvar (B, d): q(z|x)
  prior(batch)             -> StandardNormal((d,)): p(z)
  log_likelihood(batch, z) -> (n, B) log p(x|z) summed over tokens (<eos> included), z (n, B, d)
Subclassing `repro.model.LatentVariableModel` supplies the rest: `has_latent = True`, `kl`
(analytic for Gaussian pairs, Monte Carlo otherwise) and `log_prior`. `loss` is only needed by
the suite's trainer; this file trains with its own loop.

    python examples/evaluate_your_own_model.py                     # 2 CPU-minutes, measured
    python examples/evaluate_your_own_model.py --steps 20 --iw-samples 10 --test-examples 64
"""
from __future__ import annotations

import argparse
import itertools

import mlflow
import torch
from torch import nn

from repro.config import DataConfig
from repro.data import bucketed_batches, load_corpus
from repro.evaluate import evaluate
from repro.model import LatentVariableModel
from repro.nn.distributions import DiagonalGaussian, StandardNormal
from repro.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, tracking_uri


class TinyTextVAE(LatentVariableModel):
    def __init__(self, vocab_size: int, pad_id: int, latent_size: int = 8, hidden: int = 64):
        super().__init__()
        self.latent_size, self.pad_id = latent_size, pad_id
        self.embed = nn.Embedding(vocab_size, 32, padding_idx=pad_id)
        self.encoder = nn.LSTM(32, hidden, batch_first=True)
        self.to_posterior = nn.Linear(hidden, 2 * latent_size)
        self.z_to_state = nn.Linear(latent_size, 2 * hidden)
        self.decoder = nn.LSTM(32 + latent_size, hidden, batch_first=True)
        self.to_vocab = nn.Linear(hidden, vocab_size)

    def posterior(self, batch) -> DiagonalGaussian:
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(batch.tokens), batch.lengths.cpu(),
                                                   batch_first=True, enforce_sorted=False)
        _, (h, _) = self.encoder(packed)
        mu, logvar = self.to_posterior(h[-1]).chunk(2, dim=-1)
        return DiagonalGaussian(mu, logvar)

    def prior(self, batch) -> StandardNormal:
        return StandardNormal((self.latent_size,))

    def log_likelihood(self, batch, z: torch.Tensor) -> torch.Tensor:
        """`z (n, B, d)` -> `(n, B)`: the n samples of every sentence decoded as one batch."""
        n, b, _ = z.shape
        inputs, targets = batch.inputs.repeat(n, 1), batch.targets.repeat(n, 1)
        z = z.reshape(n * b, -1)
        h0, c0 = torch.tanh(self.z_to_state(z)).chunk(2, dim=-1)
        steps = inputs.shape[1]
        x = torch.cat([self.embed(inputs), z.unsqueeze(1).expand(-1, steps, -1)], dim=-1)
        out, _ = self.decoder(x, (h0.unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous()))
        log_p = -nn.functional.cross_entropy(self.to_vocab(out).transpose(1, 2), targets,
                                             ignore_index=self.pad_id, reduction="none")
        return log_p.sum(-1).view(n, b)

    def negative_elbo(self, batch) -> torch.Tensor:
        q = self.posterior(batch)
        z, _ = q.rsample(1)
        return (-self.log_likelihood(batch, z)[0] + self.kl(batch, q)).mean()


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--iw-samples", type=int, default=500, help="K of the IW-NLL")
    parser.add_argument("--test-examples", type=int, default=1000, help="a prefix of the test split")
    parser.add_argument("--experiment", default="my-text-vae")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    corpus = load_corpus(DataConfig(dataset="synthetic"))
    model = TinyTextVAE(len(corpus.vocab), corpus.vocab.pad)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    epochs = itertools.count()
    batches = itertools.chain.from_iterable(
        corpus.batches("train", 32, shuffle=True, seed=0, epoch=e) for e in epochs)
    for batch in itertools.islice(batches, args.steps):
        loss = model.negative_elbo(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    # The test split's first examples in stored order; `mi_pool="dataset"` pools all of them.
    test = corpus.split("test").subset(args.test_examples)
    test_batches = bucketed_batches(test, 64, corpus.vocab, shuffle=False)
    result = evaluate(model, test_batches, iw_samples=args.iw_samples, mi_pool="dataset", seed=0)

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(args.experiment)
    mlflow.set_experiment_tags({EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})   # the UI opens on runs
    with mlflow.start_run(run_name="tiny-text-vae") as run:
        mlflow.log_params({"steps": args.steps, "latent_size": model.latent_size,
                           **{f"eval.{k}": v for k, v in result.options.items()}})
        mlflow.log_metrics(result.prefixed("test"))
    for name in ("nll", "kl", "mi", "au", "elbo", "ppl"):
        print(f"test/{name} = {result.metrics[name]:.3f}")
    print(f"MLflow run {run.info.run_id} in experiment {args.experiment!r} ({tracking_uri()})")
    return result.metrics


if __name__ == "__main__":
    main()
