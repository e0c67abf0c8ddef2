"""Decoding sentences from latent codes: samples from the prior, greedy and beam reconstructions,
and homotopies (Bowman et al. 2016's qualitative outputs), for models with an `LSTMDecoder`.

A model opts in by exposing `decoder` (an `LSTMDecoder`), `decoder_inputs` (the word-dropout
rule, so an inputless decoder is fed `<unk>` as in training) and `vocab`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch


def _feed(model, tokens: torch.Tensor) -> torch.Tensor:
    return model.decoder_inputs(tokens, training=False)


@torch.no_grad()
def decode(model, z: torch.Tensor, max_len: int = 30, sample: bool = False,
           generator: torch.Generator | None = None) -> list[list[int]]:
    """Greedy (or ancestral, `sample=True`) decoding of `z (B, d)` -> token ids per sentence."""
    vocab, decoder = model.vocab, model.decoder
    batch = z.shape[0]
    token = torch.full((batch, 1), vocab.bos, dtype=torch.long, device=z.device)
    state, out = None, []
    finished = torch.zeros(batch, dtype=torch.bool, device=z.device)
    for _ in range(max_len):
        hidden, state = decoder.hidden_states(_feed(model, token), z.unsqueeze(0), state)
        logits = decoder.out.logits(hidden[:, -1])
        if sample:
            # Drawn where the generator lives (the CPU for `qualitative`), so a seed gives the
            # same sentences on every device; one row of probabilities per sentence is cheap to move.
            probs = torch.softmax(logits, -1)
            if generator is not None:
                probs = probs.to(generator.device)
            token = torch.multinomial(probs, 1, generator=generator).to(z.device)
        else:
            token = logits.argmax(-1, keepdim=True)
        out.append(token)
        finished |= token.squeeze(1) == vocab.eos
        if finished.all():
            break
    return torch.cat(out, 1).tolist()


@torch.no_grad()
def beam_decode(model, z: torch.Tensor, beam_size: int = 5, max_len: int = 30) -> list[list[int]]:
    """Beam search for each row of `z (B, d)`; returns the best finished hypothesis per row."""
    return [_beam_one(model, z[i:i + 1], beam_size, max_len) for i in range(z.shape[0])]


def _beam_one(model, z, beam_size, max_len):
    vocab, decoder = model.vocab, model.decoder
    beams = [([vocab.bos], 0.0, None)]
    finished = []
    for _ in range(max_len):
        tokens = torch.tensor([[b[0][-1]] for b in beams], device=z.device)
        states = None if beams[0][2] is None else tuple(
            torch.cat([b[2][k] for b in beams], 1) for k in range(2))
        hidden, state = decoder.hidden_states(_feed(model, tokens), z.expand(len(beams), -1).unsqueeze(0), states)
        logp = torch.log_softmax(decoder.out.logits(hidden[:, -1]), -1)
        top = torch.topk((logp + torch.tensor([b[1] for b in beams], device=z.device)[:, None]).view(-1), beam_size)
        candidates = []
        for score, flat in zip(top.values.tolist(), top.indices.tolist()):
            row, word = divmod(flat, logp.shape[1])
            hyp = beams[row][0] + [word]
            row_state = (state[0][:, row:row + 1], state[1][:, row:row + 1])
            (finished if word == vocab.eos else candidates).append((hyp, score, row_state))
        if len(finished) >= beam_size or not candidates:
            break
        beams = candidates
    best = max(finished or beams, key=lambda b: b[1] / len(b[0]))
    return best[0][1:]


def homotopy(z_start: torch.Tensor, z_end: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Evenly spaced points on the segment between two codes, `(d,), (d,) -> (steps, d)`."""
    weights = torch.linspace(0, 1, steps, device=z_start.device)[:, None]
    return (1 - weights) * z_start + weights * z_end


def qualitative(model, corpus, num: int = 5, seed: int = 0, split: str = "test") -> dict:
    """Samples from the model's own prior (N(0, I), or a flow), reconstructions (greedy and beam)
    and one homotopy, as text. For models whose prior does not depend on the input."""
    model.eval()
    words = lambda ids: " ".join(corpus.vocab.decode(ids))  # noqa: E731
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    batch = next(iter(corpus.batches(split, num, shuffle=True, seed=seed))).to(device)
    with torch.no_grad():
        z_prior = model.prior(None).sample(num, device=device, generator=gen)
        mu = model.posterior(batch).mean()
    return {
        "prior_samples_greedy": [words(s) for s in decode(model, z_prior)],
        "prior_samples_sampled": [words(s) for s in decode(model, z_prior, sample=True, generator=gen)],
        "reconstructions": [{"input": words(batch.tokens[i].tolist()),
                             "greedy": words(g), "beam": words(b)}
                            for i, (g, b) in enumerate(zip(decode(model, mu), beam_decode(model, mu)))],
        "homotopy": {"from": words(batch.tokens[0].tolist()), "to": words(batch.tokens[1].tolist()),
                     "path": [words(s) for s in decode(model, homotopy(mu[0], mu[1], 7))]},
    }


def write_qualitative(model, corpus, cfg, run_dir: Path) -> list[Path]:
    """The `Variant.artifacts` hook: write `samples.json` (and a readable `samples.txt`)."""
    result = qualitative(model, corpus, seed=cfg.seed)
    json_path, text_path = Path(run_dir) / "samples.json", Path(run_dir) / "samples.txt"
    json_path.write_text(json.dumps(result, indent=2))
    text_path.write_text(format_qualitative(result))
    return [json_path, text_path]


def format_qualitative(result: dict) -> str:
    lines = ["Samples from the prior (greedy):"] + [f"  {s}" for s in result["prior_samples_greedy"]]
    lines += ["Samples from the prior (sampled):"] + [f"  {s}" for s in result["prior_samples_sampled"]]
    lines += ["Reconstructions (posterior mean):"]
    for r in result["reconstructions"]:
        lines += [f"  input : {r['input']}", f"  greedy: {r['greedy']}", f"  beam  : {r['beam']}"]
    h = result["homotopy"]
    lines += ["Homotopy:", f"  from: {h['from']}", f"  to  : {h['to']}"] + [f"  {s}" for s in h["path"]]
    return "\n".join(lines) + "\n"
