"""Training and evaluation speed on this machine, measured side by side in one run.

    REPRO_DATA_DIR=... python benchmarks/speed.py [--threads 1] [--updates 120] [--bf16] \
        [--json FILE] ...

Prints one table (benchmarks/README.md keeps the latest, with its command and the load):

1. the machine's ceilings: fp32 and bf16 matrix-multiply GFLOP/s (best of `--mm-repeats`), for a
   large square product and for the output projection's own shape;
2. one Adam step over the Bowman-size parameters: per-tensor loop against the fused kernel;
3. training at Bowman size (embedding 353, LSTM 191, z 13, batch 32, PTB) for a plain reference
   loop written the way most public text-VAE code is (fp32 `nn.LSTM`, full-vocabulary
   cross-entropy with `ignore_index`, `.item()` logging every batch, per-tensor Adam, batches of
   equal-length sentences as in He et al. 2019's iterator) and for our path (`TextVAE`, the
   trainer's optimiser and inner loop, bucketed batches, optionally bf16 autocast): the same
   number of updates from the same initialisation, interleaved in blocks so all see the same
   machine load; tokens/s, achieved GFLOP/s and validation negative ELBO after the updates;
4. our trainer at 1 torch thread against one per core, alternated in one process;
4b. the trainer's defaults (`train.precision=auto`, `train.threads` unset: the precision
   `repro.precision` picks for these shapes, the thread probe inside the timed updates) against
   the same trainer at fp32 on all of torch's threads, interleaved, with the validation bound of
   each after the same updates;
5. IW-NLL at K = `--iw-samples` on the first `--eval-sentences` PTB test sentences through
   `repro.evaluate.evaluate`, interleaved batch by batch with He et al.'s loop (one sentence at
   a time, full logits, cross-entropy per sample chunk), and once more under
   `eval.precision=auto` (what `repro eval` picks here: `repro.evaluate.eval_precision`); the
   full test set's time is extrapolated by tokens; peak memory from a fresh process on the
   largest test batch;
6. the exact NLL of the 2-layer LSTM LM on PTB test, the same way;
7. the other decoders: Yang et al.'s dilated-CNN VAE (`yang2017_dilated_cnn/scnn-vae`, cpu
   preset sizes) and the 2-layer LSTM LM, each trained by a plain loop around the same model
   (per-tensor Adam, `.item()` every batch, equal-length batches) and by our inner loop,
   interleaved; the CNN VAE's IW-NLL one sentence at a time (He et al.'s evaluation batch) and
   batched through `evaluate`, with peak memory from a fresh process.

`--json FILE` writes every row beside the table, with the CPU model and ISA flags
(/proc/cpuinfo), torch's version, the load average before and after, and what `auto` picked and
why. `--device cuda` runs the ceilings, the Bowman training rows (reference, ours, `auto`) and
the VAE IW-NLL rows on the GPU (`--model-size he` for He et al.'s 512/1024/1024/32), skipping the
rows about CPU threads, CPU Adam kernels, RSS and the other decoders; where no CUDA device is
visible it stops with an error, so no CPU numbers pass for CUDA ones. (Written without a GPU at
hand: its first run is also its test.)

Every timing is wall clock and CPU time of this process: on a machine shared with other jobs the
CPU time (at 1 thread) is the steadier measure of the work done, the wall clock what a user waits.
FLOPs are counted from the shapes (multiply-adds x 2 of the output projection and the LSTMs;
embeddings, softmax and elementwise work are not counted), per real target token; training
counts forward + backward as 3x forward. So "achieved GFLOP/s" is useful work per second, and
its fraction of the measured fp32 ceiling says how much of the machine the code uses.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from repro.config import DataConfig, EvalConfig, OptimConfig, RunConfig
from repro.data import load_corpus
from repro.data.text import bucketed_batches
from repro import precision
from repro.evaluate import eval_precision, evaluate
from repro.sentence_models import LSTMLM, LSTMLMConfig, TextVAE, TextVAEConfig
from repro.train import ThreadChoice, autocast, build_optimizer, choose_train_precision


# Where the rows run (`--device`); batches are built on the CPU and moved there.
DEVICE = torch.device("cpu")
# --model-size: Bowman et al.'s sizes (TextVAEConfig's defaults) or He et al. 2019's.
MODEL_SIZES = {"bowman": {}, "he": {"embed_size": 512, "encoder_hidden": 1024,
                                    "decoder_hidden": 1024, "latent_size": 32}}
MODEL_SIZE = "bowman"


def vae_config() -> TextVAEConfig:
    return TextVAEConfig(**MODEL_SIZES[MODEL_SIZE])


def sync() -> None:
    """Wait for the device's queued work, so a clock read after it counts that work."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


# ---------------------------------------------------------------- machine ceilings

def matmul_gflops(m: int, k: int, n: int, dtype: torch.dtype, repeats: int) -> float:
    a = torch.randn(m, k, device=DEVICE).to(dtype)
    b = torch.randn(k, n, device=DEVICE).to(dtype)
    torch.mm(a, b)
    sync()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def ceilings(repeats: int) -> dict[str, float]:
    """Best-of-`repeats` GFLOP/s, fp32 and bf16 alternated so both see the same load."""
    shapes = {"square 2048": (2048, 2048, 2048), "projection 800x191 @ 191x10002": (800, 191, 10002)}
    out = {}
    for name, shape in shapes.items():
        for _ in range(3):   # alternate, keep the best of each
            for dtype in (torch.float32, torch.bfloat16):
                key = f"{name} {str(dtype)[6:]}"
                out[key] = max(out.get(key, 0.0), matmul_gflops(*shape, dtype, max(1, repeats // 3)))
    return out


# ---------------------------------------------------------------- FLOPs from shapes

def lstm_flops_per_token(lstm: nn.LSTM) -> int:
    total, width = 0, lstm.input_size
    for _ in range(lstm.num_layers):
        total += 2 * 4 * lstm.hidden_size * (width + lstm.hidden_size)
        width = lstm.hidden_size
    return total


def decoder_flops_per_token(decoder) -> int:
    proj = decoder.out.proj
    return 2 * proj.in_features * proj.out_features + lstm_flops_per_token(decoder.lstm)


def vae_flops_per_token(model: TextVAE) -> int:
    return decoder_flops_per_token(model.decoder) + lstm_flops_per_token(model.encoder.lstm)


# ---------------------------------------------------------------- the reference loop

class ReferenceVAE(nn.Module):
    """Bowman's LSTM VAE as most public code writes it: whole-vocabulary logits for every position
    (padding included, masked by `ignore_index`), cross-entropy on them, last LSTM state as the
    sentence code. Parameters mirror `TextVAE`'s, so it starts from the same initialisation."""

    def __init__(self, vocab_size, embed, hidden, latent, pad):
        super().__init__()
        self.pad = pad
        self.enc_embed = nn.Embedding(vocab_size, embed)
        self.enc_lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.to_gaussian = nn.Linear(hidden, 2 * latent)
        self.dec_embed = nn.Embedding(vocab_size, embed)
        self.dec_lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.z_to_state = nn.Linear(latent, hidden)
        self.proj = nn.Linear(hidden, vocab_size)

    NAMES = {"encoder.embed": "enc_embed", "encoder.lstm": "enc_lstm",
             "encoder.to_gaussian": "to_gaussian", "decoder.embed": "dec_embed",
             "decoder.lstm": "dec_lstm", "decoder.z_to_state": "z_to_state", "decoder.out.proj": "proj"}

    @classmethod
    def from_textvae(cls, model: TextVAE) -> "ReferenceVAE":
        cfg = model.cfg
        ref = cls(len(model.vocab), cfg.embed_size, cfg.decoder_hidden, cfg.latent_size, model.vocab.pad)
        ref.load_state_dict({cls._rename(k): v for k, v in model.state_dict().items()})
        return ref

    def to_textvae(self, model: TextVAE) -> TextVAE:
        back = {v: k for k, v in self.NAMES.items()}
        out = copy.deepcopy(model)
        out.load_state_dict({back[k.split(".")[0]] + k[len(k.split(".")[0]):]: v
                             for k, v in self.state_dict().items()})
        return out

    @classmethod
    def _rename(cls, key):
        for ours, theirs in cls.NAMES.items():
            if key.startswith(ours + "."):
                return theirs + key[len(ours):]
        raise KeyError(key)

    def encode(self, targets, num_targets):
        out, _ = self.enc_lstm(self.enc_embed(targets))
        rows = torch.arange(len(targets), device=targets.device)
        return self.to_gaussian(out[rows, num_targets - 1]).chunk(2, -1)

    def reconstruction(self, inputs, targets, z):
        """`z (B, d)` -> -log p(x|z) per sentence `(B,)` over the full-vocabulary logits."""
        c0 = self.z_to_state(z).unsqueeze(0)
        out, _ = self.dec_lstm(self.dec_embed(inputs), (torch.tanh(c0), c0))
        logits = self.proj(out)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                              ignore_index=self.pad, reduction="none")
        return nll.view(targets.shape).sum(1)

    def loss(self, batch, step=None):
        inputs, targets = batch.inputs, batch.targets
        mu, logvar = self.encode(targets, batch.num_targets)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)
        rec = self.reconstruction(inputs, targets, z)
        return {"loss": (rec + kl).mean(), "rec": rec.sum(), "kl": kl.sum()}


def equal_length_batches(split, batch_size: int, vocab, seed: int, epoch: int):
    """He et al. 2019's iterator: sentences grouped by exact length, cut into batches of at most
    `batch_size`, batch order shuffled each epoch."""
    lengths = split.lengths
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    batches = []
    for length in torch.unique(lengths).tolist():
        same = (lengths == length).nonzero().squeeze(1)
        same = same[torch.randperm(len(same), generator=gen)]
        batches.extend(torch.split(same, batch_size))
    for i in torch.randperm(len(batches), generator=gen).tolist():
        yield split.make_batch(batches[i], vocab)


def endless(make_epoch):
    epoch = 0
    while True:
        yield from make_epoch(epoch)
        epoch += 1


class OurTrainer:
    """The inner loop of `repro.train._fit`: the trainer's optimiser, bucketed batches, autocast,
    no host read-back inside the loop."""

    def __init__(self, model, corpus, cfg: RunConfig, bf16: bool, threads: int | None = None,
                 probe=None):
        self.model, self.cfg, self.bf16 = model.to(DEVICE), cfg, bf16
        # `threads`: set before each block, as the trainer holds its count for an epoch;
        # `probe`: the trainer's thread probe (`repro.train.ThreadChoice`), then its choice.
        self.threads, self.probe = threads, probe
        self.optimizer = build_optimizer(cfg, model)
        self.batches = endless(lambda e: corpus.batches("train", cfg.data.batch_size, shuffle=True,
                                                        seed=cfg.seed, epoch=e))
        self.step, self.tokens, self.seconds, self.cpu_seconds, self.sums = 0, 0, 0.0, 0.0, {}

    def run(self, updates: int):
        if self.threads:
            torch.set_num_threads(self.threads)
        start, cpu_start = time.perf_counter(), time.process_time()
        device = DEVICE
        for _ in range(updates):
            batch = next(self.batches)
            self.tokens += int(batch.num_targets.sum())    # on the host: no device sync
            batch = batch.to(device)
            timing = self.probe.before_update() if self.probe else None
            with autocast(device, self.bf16):
                terms = self.model.loss(batch, self.step)
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
            self.optimizer.step()
            if timing is not None:
                self.probe.after_update(timing, batch)
                if self.probe.chosen is not None:
                    self.threads = self.probe.chosen
            self.step += 1
            for key, value in terms.items():
                self.sums[key] = self.sums.get(key, 0.0) + value.detach().float()
        sync()
        self.seconds += time.perf_counter() - start
        self.cpu_seconds += time.process_time() - cpu_start


def run_interleaved(trainers, updates: int, block: int) -> None:
    """Two untimed warm-up updates each, then `updates` more in alternating blocks of `block`,
    so every trainer sees the same machine load."""
    for trainer in trainers:
        trainer.run(2)
        trainer.tokens, trainer.seconds, trainer.cpu_seconds = 0, 0.0, 0.0
    done = 0
    while done < updates:
        step = min(block, updates - done)
        for trainer in trainers:
            trainer.run(step)
        done += step


def validation_elbo(model: TextVAE, corpus, sentences: int | None) -> float:
    split = corpus.split("valid")
    split = split.subset(sentences) if sentences else split
    result = evaluate(model.to(DEVICE), bucketed_batches(split, 64, corpus.vocab, shuffle=False),
                      ("elbo",), iw_samples=1, iw_chunk=1, seed=0)
    return result.metrics["elbo"]


def bench_training(corpus, args) -> list[dict]:
    torch.manual_seed(args.seed)
    cfg = RunConfig(paper="bench", variant="vae", model=vae_config(), preset="bench", seed=args.seed,
                    data=DataConfig(), optim=OptimConfig())
    ours = TextVAE(cfg.model, corpus.vocab)
    init = copy.deepcopy(ours)
    contenders = {"reference loop (fp32)": PlainTrainer(
        ReferenceVAE.from_textvae(init), corpus, cfg.data.batch_size, cfg.optim.lr,
        cfg.optim.grad_clip, args.seed)}
    contenders["ours (fp32)"] = OurTrainer(ours, corpus, cfg, bf16=False)
    if args.bf16:
        contenders["ours (bf16 autocast)"] = OurTrainer(copy.deepcopy(init), corpus, cfg, bf16=True)
    run_interleaved(contenders.values(), args.updates, args.block)
    flops = vae_flops_per_token(ours) * 3
    rows = []
    for name, trainer in contenders.items():
        model = trainer.model.to_textvae(init) if isinstance(trainer.model, ReferenceVAE) else trainer.model
        tokens_s = trainer.tokens / trainer.seconds
        rows.append({"name": name, "updates": args.updates + 2, "tokens/s": tokens_s,
                     "tokens/cpu-s": trainer.tokens / trainer.cpu_seconds,
                     "GFLOP/s": tokens_s * flops / 1e9, "seconds": trainer.seconds,
                     "val -ELBO": validation_elbo(model, corpus, args.val_sentences)})
    return rows


def bench_auto(corpus, args) -> tuple[list[dict], dict]:
    """The trainer's defaults (`train.precision=auto`, `train.threads` unset) against fp32 at all
    of torch's threads: same initialisation, same batches, interleaved blocks. The precision is
    the trainer's (`repro.train.choose_train_precision`: whole updates of a copy of this model
    timed at bf16 and fp32, or read from the user cache); the
    thread probe (8 updates alternating 1 thread and all, after one untimed) runs inside the auto
    trainer's updates, as at the start of a training epoch, so its cost is in the row."""
    torch.manual_seed(args.seed)
    cfg = RunConfig(paper="bench", variant="vae", model=vae_config(), preset="bench", seed=args.seed,
                    data=DataConfig(), optim=OptimConfig())
    model = TextVAE(cfg.model, corpus.vocab)
    init = copy.deepcopy(model)
    all_threads = torch.get_num_threads()
    cached = precision.cache_path().is_file()
    start = time.perf_counter()
    choice = choose_train_precision(cfg, model, corpus, DEVICE)
    resolve_s = time.perf_counter() - start
    probe = ThreadChoice(None, DEVICE).epoch_probe()
    torch.set_num_threads(all_threads)
    reference = PlainTrainer(ReferenceVAE.from_textvae(init), corpus, cfg.data.batch_size,
                             cfg.optim.lr, cfg.optim.grad_clip, args.seed)
    reference.threads = all_threads
    contenders = {f"reference loop (fp32), {all_threads} threads": reference,
                  f"fp32, {all_threads} threads": OurTrainer(model, corpus, cfg, bf16=False, threads=all_threads),
                  "auto": OurTrainer(copy.deepcopy(init), corpus, cfg, bf16=choice.precision == "bf16",
                                     probe=probe)}
    run_interleaved(contenders.values(), args.updates, args.block)
    if probe:
        probe.finish()     # a run shorter than the probe chooses from what it timed
    torch.set_num_threads(all_threads)
    out = []
    for name, trainer in contenders.items():
        tokens_s = trainer.tokens / trainer.seconds
        ours = trainer.model.to_textvae(init) if isinstance(trainer.model, ReferenceVAE) else trainer.model
        out.append({"name": f"train VAE ({MODEL_SIZE} sizes), "
                            + (name if name.startswith("reference") else f"trainer at {name}"),
                    "updates": args.updates + 2,
                    "tokens/s": tokens_s, "tokens/cpu-s": trainer.tokens / trainer.cpu_seconds,
                    "GFLOP/s": tokens_s * vae_flops_per_token(ours) * 3 / 1e9,
                    "seconds": trainer.seconds,
                    "val -ELBO": validation_elbo(ours, corpus, args.val_sentences)})
    picked = {"precision": choice.as_dict(), "precision_resolve_s": resolve_s, "precision_cache_existed": cached,
              "threads_all": all_threads, "threads_chosen": probe.chosen if probe else all_threads,
              "threads_probe_tokens_per_s": probe.rates() if probe else {}}
    out[-1]["name"] += (f" ({choice.precision}, {picked['threads_chosen']} thread"
                        f"{'s' if picked['threads_chosen'] != 1 else ''} after the probe)")
    return out, picked


def bench_adam(corpus, args) -> list[dict]:
    """One Adam step over the Bowman-size model's parameters (random gradients): the per-tensor
    loop most code gets by default on CPU against the fused kernel the trainer uses, alternated."""
    torch.manual_seed(args.seed)
    model = TextVAE(vae_config(), corpus.vocab)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizers = {"per-tensor loop (foreach=False)": torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False),
                  "fused=True (the trainer's)": torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)}
    best = {name: math.inf for name in optimizers}
    for _ in range(args.adam_repeats):
        for name, optimizer in optimizers.items():
            start = time.perf_counter()
            optimizer.step()
            best[name] = min(best[name], time.perf_counter() - start)
    size = sum(p.numel() for p in model.parameters())
    return [{"name": f"Adam step, {name}", "ms": best[name] * 1e3, "params": size} for name in optimizers]


def bench_threads(corpus, args) -> list[dict]:
    """Our trainer at 1 torch thread and at one per core, alternating blocks of 5 updates in one
    process (so both see the same load). On a machine shared with other jobs the threads of
    every OpenMP parallel region wait for each other, and the descheduled one decides."""
    torch.manual_seed(args.seed)
    cfg = RunConfig(paper="bench", variant="vae", model=vae_config(), preset="bench", seed=args.seed,
                    data=DataConfig(), optim=OptimConfig())
    trainer = OurTrainer(TextVAE(cfg.model, corpus.vocab), corpus, cfg, bf16=False)
    before, counts = torch.get_num_threads(), sorted({1, os.cpu_count() or 1})
    totals = {n: [0, 0.0, 0.0] for n in counts}
    trainer.run(2)
    for _ in range(max(1, args.thread_updates // 5)):
        for n in counts:
            torch.set_num_threads(n)
            trainer.tokens, trainer.seconds, trainer.cpu_seconds = 0, 0.0, 0.0
            trainer.run(5)
            for i, value in enumerate((trainer.tokens, trainer.seconds, trainer.cpu_seconds)):
                totals[n][i] += value
    torch.set_num_threads(before)
    return [{"name": f"train Bowman VAE, ours (fp32), {n} torch thread{'s' if n > 1 else ''}",
             "tokens/s": tokens / seconds, "tokens/cpu-s": tokens / cpu, "updates": 5 * max(1, args.thread_updates // 5)}
            for n, (tokens, seconds, cpu) in totals.items()]


# ---------------------------------------------------------------- evaluation

def reference_iw_nll(ref: ReferenceVAE, batch, k: int, chunk: int) -> torch.Tensor:
    """He et al.'s importance-weighted estimate written plainly: one sentence at a time (their
    evaluation batch size), `chunk` samples of z at once, full-vocabulary logits, cross-entropy,
    log-sum-exp over all K. `(B,)`."""
    out = []
    with torch.no_grad():
        for i in range(batch.size):
            n = int(batch.lengths[i])
            tokens = batch.tokens[i:i + 1, :n]
            inputs, targets = tokens[:, :-1], tokens[:, 1:]
            mu, logvar = ref.encode(targets, batch.num_targets[i:i + 1])
            std, weights = torch.exp(0.5 * logvar), []
            for _ in range(0, k, chunk):
                eps = torch.randn(chunk, mu.shape[-1], device=mu.device)
                z = mu + std * eps
                rec = ref.reconstruction(inputs.expand(chunk, -1), targets.expand(chunk, -1), z)
                log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
                log_q = -0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi)).sum(-1)
                weights.append(-rec + log_pz - log_q)
            out.append(-(torch.logsumexp(torch.cat(weights), 0) - math.log(k)))
    return torch.stack(out)


def reference_lm_nll(model: LSTMLM, batch) -> torch.Tensor:
    with torch.no_grad():
        inputs, targets = batch.tokens[:, :-1], batch.tokens[:, 1:]
        out, _ = model.decoder.lstm(model.decoder.embed(inputs))
        logits = model.decoder.out.proj(out)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                              ignore_index=batch.pad_id, reduction="none")
        return nll.view(targets.shape).sum(1)


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as handle:   # Linux
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return math.nan


def _memory_probe(kind: str, iw_chunk: int, batch_size: int, seed: int, threads: int):
    """In a fresh process: build the model, evaluate the largest PTB test batch once (K = one
    sample chunk for the VAE: memory does not grow with K beyond it), and return
    (peak RSS, RSS just before evaluating, batch shape)."""
    torch.set_num_threads(threads)
    corpus = load_corpus(DataConfig())
    torch.manual_seed(seed)
    model = (TextVAE(vae_config(), corpus.vocab) if kind == "vae"
             else cnn_vae(corpus) if kind == "cnn"
             else LSTMLM(LSTMLMConfig(num_layers=2), corpus.vocab))
    batch = max(corpus.batches("test", batch_size, shuffle=False), key=lambda b: b.tokens.numel())
    base = _status_mib("VmRSS")
    evaluate(model, [batch], ("nll",), iw_samples=iw_chunk, iw_chunk=iw_chunk, seed=0)
    return _status_mib("VmHWM"), base, tuple(batch.tokens.shape)


def peak_memory(kind: str, args):
    """`_memory_probe` in a child process running this script with `--memory-probe`."""
    command = [sys.executable, __file__, "--memory-probe", kind, "--iw-chunk", str(args.iw_chunk),
               "--eval-batch-size", str(args.eval_batch_size), "--seed", str(args.seed),
               "--threads", str(torch.get_num_threads()), "--model-size", MODEL_SIZE]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    peak, base, shape = json.loads(out.strip().splitlines()[-1])
    return peak, base, tuple(shape)


def bench_eval(name, model, corpus, args, contenders: dict, flops_per_token, kind) -> list[dict]:
    """The contenders ("reference" first, then "ours" and any variant of ours) interleaved batch
    by batch on the first test sentences; then the peak memory of "ours" alone in a fresh process
    (`_memory_probe`)."""
    split = corpus.split("test")
    sentences = args.eval_sentences if model.has_latent else (args.lm_sentences or len(split))
    subset = split.subset(sentences)
    batches = list(bucketed_batches(subset, args.eval_batch_size, corpus.vocab, shuffle=False))
    times, cpu = dict.fromkeys(contenders, 0.0), dict.fromkeys(contenders, 0.0)
    values = {key: [] for key in contenders}
    for batch in batches:
        batch = batch.to(DEVICE)
        for key, fn in contenders.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            values[key].append(fn(batch))
            sync()
            times[key] += time.perf_counter() - start
            cpu[key] += time.process_time() - cpu_start
    # The probe reads the process's RSS: a CPU measure only.
    memory = peak_memory(kind, args) if DEVICE.type == "cpu" else None
    subset_tokens, full_tokens = subset.num_tokens(), split.num_tokens()
    rows = []
    for key in contenders:
        seconds = times[key]
        rows.append({"name": f"{name}: {key}", "sentences": len(subset),
                     "sentences/s": len(subset) / seconds, "sentences/cpu-s": len(subset) / cpu[key],
                     "GFLOP/s": subset_tokens * flops_per_token / seconds / 1e9,
                     "full test (min)": seconds / subset_tokens * full_tokens / 60,
                     "extrapolated": len(subset) < len(split),
                     "nll": torch.cat(values[key]).float().mean().item(),
                     "peak MiB": memory if key == "ours" else None})
    return rows


def bench_vae_eval(corpus, model, args):
    def ours(batch):
        return evaluate(model, [batch], ("nll",), iw_samples=args.iw_samples, iw_chunk=args.iw_chunk,
                        seed=0).per_example["nll"]

    ref = ReferenceVAE.from_textvae(model).to(DEVICE).eval()

    def reference(batch):
        return reference_iw_nll(ref, batch, args.iw_samples, args.iw_chunk)

    # What `repro eval` runs under `eval.precision=auto`: bf16 only where its products are faster
    # here and it moves this model's IW-NLL on a test prefix by under the tolerance.
    choice = eval_precision(model, corpus, EvalConfig(iw_samples=args.iw_samples, iw_chunk=args.iw_chunk),
                            DEVICE, batch_size=args.eval_batch_size)

    def auto(batch):
        return evaluate(model, [batch], ("nll",), iw_samples=args.iw_samples, iw_chunk=args.iw_chunk,
                        seed=0, bf16=choice.precision == "bf16").per_example["nll"]

    flops = args.iw_samples * decoder_flops_per_token(model.decoder)
    rows = bench_eval(f"VAE IW-NLL K={args.iw_samples}", model, corpus, args,
                      {"reference": reference, "ours": ours, f"ours, eval auto ({choice.precision})": auto},
                      flops, kind="vae")
    rows[-1]["precision_reason"] = choice.reason
    return rows


def bench_lm_eval(corpus, args):
    torch.manual_seed(args.seed)
    model = LSTMLM(LSTMLMConfig(num_layers=2), corpus.vocab).eval()

    def ours(batch):
        return evaluate(model, [batch], ("nll",), seed=0).per_example["nll"]

    def reference(batch):
        return reference_lm_nll(model, batch)

    return bench_eval("LSTM LM (2 layers) exact NLL", model, corpus, args,
                      {"reference": reference, "ours": ours}, decoder_flops_per_token(model.decoder),
                      kind="lm")


# ---------------------------------------------------------------- other decoders

CNN_VARIANT = ("yang2017_dilated_cnn", "scnn-vae")


def cnn_vae(corpus):
    from repro.registry import resolve
    variant, cfg = resolve(*CNN_VARIANT, "cpu")
    return variant.build(cfg, corpus)


def dense_flops_per_token(module: nn.Module, skip: tuple[str, ...] = ()) -> int:
    """2 x the multiply-adds of every Linear and Conv1d applied at each position (their weight
    sizes), leaving out the modules named in `skip` (those applied once per sentence)."""
    return 2 * sum(m.weight.numel() for name, m in module.named_modules()
                   if isinstance(m, (nn.Linear, nn.Conv1d)) and not any(k in name for k in skip))


class PlainTrainer:
    """The loop most public text-VAE code writes: fp32, per-tensor Adam, clip 5, every loss term
    read back with `.item()` each batch, He et al.'s equal-length batches. Around the reference
    model (Bowman rows) or around one of ours (other decoders: then only the loop differs)."""

    def __init__(self, model, corpus, batch_size, lr, clip, seed):
        self.model, self.clip, self.step = model.to(DEVICE), clip, 0
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=False)
        self.batches = endless(lambda e: equal_length_batches(corpus.split("train"), batch_size,
                                                              corpus.vocab, seed, e))
        self.tokens, self.seconds, self.cpu_seconds, self.log = 0, 0.0, 0.0, []
        self.threads = None    # set before each block when another trainer changes the count

    def run(self, updates: int):
        if self.threads:
            torch.set_num_threads(self.threads)
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(updates):
            batch = next(self.batches)
            self.tokens += int(batch.num_targets.sum())
            batch = batch.to(DEVICE)
            terms = self.model.loss(batch, self.step)
            self.optimizer.zero_grad()
            terms["loss"].backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
            self.step += 1
            self.log.append({k: v.item() for k, v in terms.items()})
        sync()
        self.seconds += time.perf_counter() - start
        self.cpu_seconds += time.process_time() - cpu_start


def bench_model_training(name: str, make_model, corpus, flops_per_token: int, args) -> list[dict]:
    """`PlainTrainer` and `OurTrainer` from one initialisation, interleaved in blocks."""
    torch.manual_seed(args.seed)
    model = make_model()
    cfg = RunConfig(paper="bench", variant=name, model=model.cfg, preset="bench", seed=args.seed,
                    data=DataConfig(), optim=OptimConfig())
    contenders = {"plain loop": PlainTrainer(copy.deepcopy(model), corpus, cfg.data.batch_size,
                                             cfg.optim.lr, cfg.optim.grad_clip, args.seed),
                  "ours": OurTrainer(model, corpus, cfg, bf16=False)}
    run_interleaved(contenders.values(), args.updates, args.block)
    return [{"name": f"train {name}, {key}", "tokens/s": t.tokens / t.seconds,
             "tokens/cpu-s": t.tokens / t.cpu_seconds, "updates": args.updates + 2,
             "GFLOP/s": t.tokens / t.seconds * flops_per_token * 3 / 1e9}
            for key, t in contenders.items()]


def bench_cnn_eval(corpus, model, args):
    """IW-NLL through `evaluate`: one sentence per call (He et al.'s evaluation batch of 1)
    against whole bucketed batches."""
    model.eval()

    def batched(batch):
        return evaluate(model, [batch], ("nll",), iw_samples=args.iw_samples, iw_chunk=args.iw_chunk,
                        seed=0).per_example["nll"]

    def one_at_a_time(batch):
        split = [batch.tokens[i:i + 1, :int(batch.lengths[i])] for i in range(batch.size)]
        return torch.cat([evaluate(model, [type(batch)(t, batch.lengths[i:i + 1], batch.pad_id,
                                                        batch.index[i:i + 1])],
                                   ("nll",), iw_samples=args.iw_samples, iw_chunk=args.iw_chunk,
                                   seed=0).per_example["nll"] for i, t in enumerate(split)])

    flops = args.iw_samples * dense_flops_per_token(model.decoder, skip=("z",))
    return bench_eval(f"dilated-CNN VAE IW-NLL K={args.iw_samples}", model, corpus, args,
                      {"reference": one_at_a_time, "ours": batched}, flops, kind="cnn")


def bench_other_decoders(corpus, args) -> tuple[list[dict], list[dict]]:
    cnn = cnn_vae(corpus)
    cnn_flops = (dense_flops_per_token(cnn.decoder, skip=("z",))
                 + lstm_flops_per_token(cnn.encoder.lstm))
    lm = LSTMLM(LSTMLMConfig(num_layers=2), corpus.vocab)
    train_rows = bench_model_training("dilated-CNN VAE (scnn-vae, cpu sizes)", lambda: cnn_vae(corpus),
                                      corpus, cnn_flops, args)
    train_rows += bench_model_training("LSTM LM (2 layers)",
                                       lambda: LSTMLM(LSTMLMConfig(num_layers=2), corpus.vocab),
                                       corpus, decoder_flops_per_token(lm.decoder), args)
    return train_rows, bench_cnn_eval(corpus, cnn, args)


# ---------------------------------------------------------------- the table

def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} cores"


def machine() -> dict:
    """What the numbers were measured on, for the JSON beside the table."""
    return {"cpu_model": precision.cpu_model(), "isa_flags": precision.isa_flags(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "native_bf16": precision.native_bf16(torch.device("cpu")), "device": str(DEVICE),
            "gpu": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else None,
            "vae_sizes": {"name": MODEL_SIZE, **dataclasses.asdict(vae_config())}}


def print_table(args, ceiling, adam_rows, train_rows, thread_rows, eval_rows, other_train_rows,
                load_before, load_after, wall, auto_rows=(), auto=None):
    fp32_peak = max((v for k, v in ceiling.items() if k.endswith("float32")), default=math.nan)
    where = (f"{torch.cuda.get_device_name(DEVICE)} (CUDA) with " if DEVICE.type == "cuda" else "")
    print(f"\nSpeed on {where}{os.cpu_count()} CPU cores ({precision.cpu_model()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads, VAE at {MODEL_SIZE} sizes; {load_before} at start, "
          f"{load_after} at end; {wall:.0f} s in all.\n")
    print("| what | wall clock | per CPU-second | vs reference (wall; CPU) | GFLOP/s, wall (share of fp32 ceiling) | notes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for key, value in ceiling.items():
        print(f"| matmul ceiling, {key} | {value:.0f} GFLOP/s | | | | best of {args.mm_repeats} |")
    for row in adam_rows:
        ratio = f"{adam_rows[0]['ms'] / row['ms']:.2f}x" if row is not adam_rows[0] else ""
        print(f"| {row['name']} | {row['ms']:.1f} ms | | {ratio} | | {row['params'] / 1e6:.1f}M parameters, "
              f"best of {args.adam_repeats} |")
    base = next((r for r in train_rows if r["name"].startswith("reference")), None)
    for row in train_rows:
        ratio = (f"{row['tokens/s'] / base['tokens/s']:.2f}x; {row['tokens/cpu-s'] / base['tokens/cpu-s']:.2f}x"
                 if base and row is not base else "")
        print(f"| train Bowman VAE, {row['name']} | {row['tokens/s']:,.0f} tokens/s | "
              f"{row['tokens/cpu-s']:,.0f} tokens | {ratio} | {row['GFLOP/s']:.0f} ({row['GFLOP/s'] / fp32_peak:.0%}) | "
              f"{row['updates']} updates from one initialisation; val -ELBO {row['val -ELBO']:.3f} |")
    if train_rows and base:
        worst = max(abs(r["val -ELBO"] / base["val -ELBO"] - 1) for r in train_rows)
        print(f"| train: largest val -ELBO gap to the reference | {worst:.3%} | | | | must be < 1% |")
    for row in thread_rows:
        ratio = ""
        if row is not thread_rows[0]:
            first = thread_rows[0]
            ratio = (f"{row['tokens/s'] / first['tokens/s']:.2f}x; {row['tokens/cpu-s'] / first['tokens/cpu-s']:.2f}x"
                     " the 1-thread row")
        print(f"| {row['name']} | {row['tokens/s']:,.0f} tokens/s | {row['tokens/cpu-s']:,.0f} tokens | {ratio} | | "
              f"{row['updates']} updates each, alternating blocks of 5 |")
    for row in auto_rows:
        first, fp32 = auto_rows[0], auto_rows[-2]
        ratio = (f"{row['tokens/s'] / first['tokens/s']:.2f}x; {row['tokens/cpu-s'] / first['tokens/cpu-s']:.2f}x"
                 if row is not first else "")
        notes = f"{row['updates']} updates each from one initialisation; val -ELBO {row['val -ELBO']:.3f}"
        if row is auto_rows[-1]:
            gap = abs(row["val -ELBO"] / fp32["val -ELBO"] - 1)
            notes += (f" ({gap:.3%} from the fp32 trainer's); {row['tokens/s'] / fp32['tokens/s']:.2f}x "
                      f"the fp32 trainer (wall); {auto['precision']['reason']}; thread probe tokens/s "
                      + ", ".join(f"{n}: {r:,.0f}" for n, r in auto["threads_probe_tokens_per_s"].items()))
        print(f"| {row['name']} | {row['tokens/s']:,.0f} tokens/s | {row['tokens/cpu-s']:,.0f} tokens | {ratio} | "
              f"{row['GFLOP/s']:.0f} ({row['GFLOP/s'] / fp32_peak:.0%}) | {notes} |")
    for i, row in enumerate(eval_rows):
        ratio = ""
        if not row["name"].endswith("reference"):
            ref = next(r for r in reversed(eval_rows[:i]) if r["name"].endswith("reference"))
            ratio = (f"{row['sentences/s'] / ref['sentences/s']:.2f}x; "
                     f"{row['sentences/cpu-s'] / ref['sentences/cpu-s']:.2f}x")
        notes = (f"first {row['sentences']} test sentences, full test ({row['full test (min)']:.1f} min) "
                 "extrapolated by tokens" if row["extrapolated"]
                 else f"all {row['sentences']} test sentences: {row['full test (min)']:.1f} min")
        notes += f"; NLL {row['nll']:.2f}"
        if row.get("precision_reason"):
            notes += f"; {row['precision_reason']}"
        if row["peak MiB"]:
            peak, base_mib, shape = row["peak MiB"]
            notes += (f"; peak RSS {peak:.0f} MiB, {peak - base_mib:+.0f} MiB over the loaded process, "
                      f"on the largest test batch {shape} (fresh process)")
        print(f"| {row['name']} | {row['sentences/s']:.2f} sentences/s | {row['sentences/cpu-s']:.2f} sentences | "
              f"{ratio} | {row['GFLOP/s']:.0f} ({row['GFLOP/s'] / fp32_peak:.0%}) | {notes} |")
    for i, row in enumerate(other_train_rows):
        plain = other_train_rows[i - 1] if row["name"].endswith("ours") else None
        ratio = (f"{row['tokens/s'] / plain['tokens/s']:.2f}x; {row['tokens/cpu-s'] / plain['tokens/cpu-s']:.2f}x"
                 if plain else "")
        print(f"| {row['name']} | {row['tokens/s']:,.0f} tokens/s | {row['tokens/cpu-s']:,.0f} tokens | {ratio} | "
              f"{row['GFLOP/s']:.0f} ({row['GFLOP/s'] / fp32_peak:.0%}) | {row['updates']} updates each, "
              "same initialisation, interleaved; the plain loop runs the same model |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=120, help="timed updates per trainer")
    parser.add_argument("--block", type=int, default=10, help="updates per interleaved block")
    parser.add_argument("--val-sentences", type=int, default=None, help="validation prefix (default all)")
    parser.add_argument("--bf16", action="store_true", help="also train ours under bf16 autocast")
    parser.add_argument("--eval-sentences", type=int, default=24, help="test prefix for the IW-NLL")
    parser.add_argument("--lm-sentences", type=int, default=None, help="test prefix for the LM (default all)")
    parser.add_argument("--iw-samples", type=int, default=500)
    parser.add_argument("--iw-chunk", type=int, default=100)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--mm-repeats", type=int, default=12)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--thread-updates", type=int, default=10, help="updates per thread count")
    parser.add_argument("--adam-repeats", type=int, default=10)
    parser.add_argument("--skip", default="",
                        help="comma list of: ceilings,adam,train,threads,auto,vae-eval,lm-eval,other")
    parser.add_argument("--json", metavar="FILE", help="also write every row, the machine, the load "
                        "and what auto picked to FILE")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the ceilings, training (reference, ours, auto) and VAE IW-NLL "
                             "rows on the GPU; the CPU-only rows are skipped")
    parser.add_argument("--model-size", choices=sorted(MODEL_SIZES), default="bowman",
                        help="the VAE's sizes: Bowman et al.'s (353/191/191/13) or He et al.'s "
                             "(512/1024/1024/32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-probe", choices=("vae", "lm", "cnn"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    global DEVICE, MODEL_SIZE
    MODEL_SIZE = args.model_size
    if args.device == "cuda":
        # A CUDA table must never hold CPU numbers: no device, no run.
        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is visible here (torch.cuda.is_available() "
                         "is False); nothing was measured")
        DEVICE = torch.device("cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(json.dumps(_memory_probe(args.memory_probe, args.iw_chunk, args.eval_batch_size,
                                       args.seed, torch.get_num_threads())))
        return
    skip = set(filter(None, args.skip.split(",")))
    if DEVICE.type == "cuda":    # rows about CPU threads, CPU Adam kernels and other decoders
        skip |= {"adam", "threads", "lm-eval", "other"}
    started, load_before, loadavg_before = time.time(), load_line(), os.getloadavg()
    corpus = load_corpus(DataConfig())
    ceiling = ceilings(args.mm_repeats) if "ceilings" not in skip else {}
    adam_rows = bench_adam(corpus, args) if "adam" not in skip else []
    train_rows = bench_training(corpus, args) if "train" not in skip else []
    thread_rows = bench_threads(corpus, args) if "threads" not in skip else []
    auto_rows, auto = bench_auto(corpus, args) if "auto" not in skip else ([], None)
    eval_rows = []
    if "vae-eval" not in skip:
        torch.manual_seed(args.seed)
        model = TextVAE(vae_config(), corpus.vocab).to(DEVICE)
        eval_rows += bench_vae_eval(corpus, model, args)
    if "lm-eval" not in skip:
        eval_rows += bench_lm_eval(corpus, args)
    other_train_rows = []
    if "other" not in skip:
        other_train_rows, cnn_eval_rows = bench_other_decoders(corpus, args)
        eval_rows += cnn_eval_rows
    load_after, loadavg_after, wall = load_line(), os.getloadavg(), time.time() - started
    print_table(args, ceiling, adam_rows, train_rows, thread_rows, eval_rows, other_train_rows,
                load_before, load_after, wall, auto_rows, auto)
    if args.json:
        result = {"command": [os.path.relpath(__file__), *sys.argv[1:]], "machine": machine(),
                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                  "load_before": load_before, "load_after": load_after,
                  "loadavg_before": loadavg_before, "loadavg_after": loadavg_after, "wall_s": wall,
                  "auto": auto, "ceilings_gflops": ceiling,
                  "rows": {"adam": adam_rows, "train": train_rows, "threads": thread_rows,
                           "auto": auto_rows, "eval": eval_rows, "other_train": other_train_rows}}
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1, default=str)


if __name__ == "__main__":
    main()
