import json
import subprocess

from repro import tables
from repro.cli import main
from repro.records import _read_commit, describe_commits, mi_scoring
from repro.registry import get_paper, resolve


def _config(variant, seed, preset):
    _, cfg = resolve("bowman2016", variant, preset)
    cfg.seed = seed
    return cfg.to_dict()


def _record(variant, seed, nll, preset="cpu"):
    return {"paper": "bowman2016", "variant": variant, "preset": preset, "seed": seed,
            "dataset": "ptb", "substitute_for": None,
            "metrics": {"test/nll": nll, "test/ppl": 120.0, "test/elbo": nll + 1, "test/kl": 3.0,
                        "test/mi": 1.0, "test/au": 4},
            "eval": {"iw_samples": 100, "mi_pool": "dataset", "mi_pool_size": 3761, "split": "test"},
            "config": _config(variant, seed, preset), "commit": "abc123", "wall_time_s": 10.0,
            "data_sha256": "x"}


def _write(records_dir, rec):
    path = records_dir / "bowman2016" / f"{rec['variant']}__{rec['preset']}__seed{rec['seed']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def test_table_shows_paper_ours_gap_and_seed_spread(tmp_path):
    records = tmp_path / "records"
    _write(records, _record("vae-anneal-worddrop", 0, 100.0))
    _write(records, _record("vae-anneal-worddrop", 1, 102.0))
    text = tables.render_paper_table(get_paper("bowman2016"), records)
    row = next(line for line in text.splitlines()
               if line.startswith("| vae-anneal-worddrop | test/elbo |"))
    assert "| 101 |" in row and "102.00 ± 1.41" in row and "+1.00" in row
    assert "reduced scale (cpu preset)" in row and "| 2 |" in row
    assert "not run" not in row


def test_paper_scale_rows_say_whether_they_land_in_the_band_around_an_unverified_number(tmp_path):
    """Issue 45: Bowman's numbers are hints (unverified), so a paper-scale row is never a pass or
    a fail; it says "agrees within" or "differs by" against a band fixed before any paper-scale
    record existed: ±3 nats per sentence for NLL/ELBO, ±10% for a perplexity."""
    records = tmp_path / "records"
    _write(records, _record("rnnlm", 0, 106.8, preset="paper"))        # paper: NLL 100, PPL 116
    _write(records, _record("vae-anneal-worddrop", 0, 101.5, preset="paper"))  # ELBO 102.5 vs 101
    text = tables.render_paper_table(get_paper("bowman2016"), records).splitlines()
    def row(variant, metric):
        return next(line for line in text if line.startswith(f"| {variant} | {metric} |"))
    assert "differs by +6.8 nats (band ±3); hint only (unverified (memory))" in row("rnnlm", "test/nll")
    assert "agrees within ±10%; hint only" in row("rnnlm", "test/ppl")               # 120 vs 116
    assert "agrees within ±3 nats; hint only" in row("vae-anneal-worddrop", "test/elbo")
    assert "| paper |" in row("rnnlm", "test/nll") and "MISS" not in "\n".join(text)


def test_every_metric_row_says_how_mi_was_scored(tmp_path):
    """Records from before `mi_estimator` was recorded used the analytic entropy term."""
    records = tmp_path / "records"
    older = _record("vae", 0, 100.0)
    older["eval"]["metrics"] = ["nll", "mi"]
    paired = _record("vae-anneal-worddrop", 0, 100.0)
    paired["eval"].update(metrics=["nll", "mi"], mi_estimator="paired")
    for rec in (older, paired, _record("rnnlm", 0, 110.0)):
        _write(records, rec)
    rows = {line.split(" | ")[0][2:]: line for line in
            tables.render_paper_table(get_paper("bowman2016"), records).splitlines() if "| cpu | ptb |" in line}
    assert "| analytic, dataset pool of 3761 |" in rows["vae"]
    assert "| paired, dataset pool of 3761 |" in rows["vae-anneal-worddrop"]
    assert mi_scoring(_record("rnnlm", 0, 110.0)) is None


def test_check_fails_on_a_hand_edited_table(tmp_path):
    records = tmp_path / "records"
    _write(records, _record("rnnlm", 0, 110.0))
    assert tables.write_all(records, tmp_path) == [tmp_path / "README.md", tmp_path / "bowman2016.md"]
    assert tables.check(records, tmp_path) == []
    assert main(["table", "--check", "--records-dir", str(records), "--results-dir", str(tmp_path)]) == 0
    table = tmp_path / "bowman2016.md"
    table.write_text(table.read_text().replace("110.00", "100.00"))
    assert tables.check(records, tmp_path) == [f"{table} differs from its records"]
    assert main(["table", "--check", "--records-dir", str(records), "--results-dir", str(tmp_path)]) == 1


def test_check_fails_when_a_table_is_missing(tmp_path):
    records = tmp_path / "records"
    _write(records, _record("rnnlm", 0, 110.0))
    assert tables.check(records, tmp_path) == [f"{tmp_path / 'README.md'} is missing",
                                               f"{tmp_path / 'bowman2016.md'} is missing"]


def test_index_counts_the_rows_run_at_each_preset_and_names_the_rest(tmp_path):
    records = tmp_path / "records"
    for variant in ("rnnlm", "vae"):
        _write(records, _record(variant, 0, 110.0))
    _write(records, _record("vae", 1, 111.0))
    _write(records, _record("vae", 0, 100.0, preset="paper"))
    index = tables.render_index(records)
    bowman = next(line for line in index.splitlines() if line.startswith("| bowman2016 |"))
    cells = [c.strip() for c in bowman.strip("|").split("|")]
    assert cells[1:5] == ["5", "2 / 5", "1 / 5", "0"]
    assert cells[5] == "`vae-anneal-worddrop`, `rnnlm-inputless`, `vae-inputless`"
    assert cells[6] == "[bowman2016.md](bowman2016.md)"
    shen = next(line for line in index.splitlines() if line.startswith("| shen2018_aux_ae |"))
    assert "| 0 / " in shen and "none yet: `repro reproduce shen2018_aux_ae --preset cpu`" in shen
    assert "| demo |" not in index


def test_committed_tables_match_committed_records():
    assert tables.check() == []


def test_index_counts_benchmark_methods_with_every_seed_apart_from_partial_ones(tmp_path):
    records = tmp_path / "records"
    preset = "benchmark-synthetic-cpu"
    for variant, seeds in (("vae", (0, 1, 2)), ("rnnlm", (1,))):
        for seed in seeds:
            path = records / "benchmark_synthetic" / "bowman2016" / f"{variant}__{preset}__seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**_record(variant, seed, 50.0, preset), "dataset": "synthetic"}))
    row = next(line for line in tables.render_index(records).splitlines()
               if line.startswith(f"| synthetic | {preset} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2].startswith("1 / ") and cells[3] == "`bowman2016/rnnlm`"
    assert "`bowman2016/vae`" not in cells[4] and "`bowman2016/vae-anneal-worddrop`" in cells[4]


def test_commit_line_explains_dirty_only_when_a_run_was_dirty():
    clean = [{"commit": "a" * 40}, {"commit": "a" * 40}]
    assert describe_commits(clean) == "a" * 12
    dirty = describe_commits(clean + [{"commit": "b" * 40 + "+dirty"}])
    assert dirty.startswith(f"{'a' * 12}, {'b' * 12}+dirty (+dirty: the run started from a tree")


def test_commit_line_counts_the_records_that_went_on_after_a_divergence():
    plain = [{"commit": "a" * 40, "train": {"recoveries": []}}, {"commit": "a" * 40}]
    assert describe_commits(plain) == "a" * 12
    recovered = {"commit": "a" * 40, "train": {"recoveries": [{"after_epoch": 3}]}}
    assert describe_commits(plain + [recovered]).endswith(
        "; 1 record(s) resumed after a divergence with changed settings (their `train.recoveries`)")
    stopped = {"commit": "a" * 40, "train": {"stopped_by_divergence": {"after_epoch": 25}}}
    assert describe_commits(plain + [stopped]).endswith(
        "; 1 record(s) of runs stopped early by a divergence, scored at their best checkpoint "
        "(their `train.stopped_by_divergence`)")


def test_metrics_table_shows_each_runs_best_epoch_against_its_epochs(tmp_path):
    """A best epoch equal to the last tells the reader the run was still improving."""
    records = tmp_path / "records"
    for seed, best in ((0, 7), (1, 8)):
        rec = _record("vae", seed, 100.0)
        rec["train"] = {"epochs": 8, "best_epoch": best}
        _write(records, rec)
    row = next(line for line in tables.render_paper_table(get_paper("bowman2016"), records).splitlines()
               if line.startswith("| vae | cpu |"))
    assert "| 7/8, 8/8 |" in row


def test_a_run_is_dirty_for_changed_code_but_not_for_regenerated_results(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("old\n")
    (tmp_path / "train.py").write_text("lr = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    (tmp_path / "results" / "table.md").write_text("regenerated\n")
    assert not _read_commit(tmp_path).endswith("+dirty")
    (tmp_path / "train.py").write_text("lr = 2\n")
    assert _read_commit(tmp_path).endswith("+dirty")


def test_a_rerun_under_a_changed_preset_keeps_the_old_record_and_the_table_says_how_the_row_moved(tmp_path):
    """Issue 43: a row re-run after its preset or code changed replaces its record, and the
    earlier one is kept in `superseded/` (never loaded as a current record) so the table can show
    before, after and the commits; a rerun of the same experiment just replaces its record."""
    from repro.records import load_records, write_record
    records = tmp_path / "records"
    old = _record("vae-anneal-worddrop", 0, 104.0)
    old["config"]["optim"]["lr"] = 0.5          # the preset's value when it ran, changed since
    old["commit"] = "1111111aaa"
    _write(records, old)                        # where it was written then: the preset's path
    new = _record("vae-anneal-worddrop", 0, 101.5)
    new["commit"] = "2222222bbb"
    path = write_record(new, records)
    assert json.loads(path.read_text())["metrics"]["test/nll"] == 101.5
    (kept,) = (records / "bowman2016" / "superseded").glob("*.json")
    assert kept.name.startswith("vae-anneal-worddrop__cpu__seed0__")
    assert [r["commit"] for r in load_records(records)] == ["2222222bbb"]
    assert [r["commit"] for r in load_records(records, superseded=True)] == ["1111111aaa"]
    text = tables.render_paper_table(get_paper("bowman2016"), records)
    assert "## Rows re-run after their preset or code changed" in text
    assert "| vae-anneal-worddrop | cpu | 0 | test/nll | 104.00 | 101.50 | -2.50 | 1111111aaa -> 2222222bbb |" in text
    write_record(dict(new, commit="3333333ccc"), records)     # the same experiment again
    assert len(list((records / "bowman2016" / "superseded").glob("*.json"))) == 1
    assert [r["commit"] for r in load_records(records)] == ["3333333ccc"]
