import json

from repro import tables
from repro.cli import main
from repro.registry import get_paper


def _record(variant, seed, nll, preset="cpu"):
    return {"paper": "bowman2016", "variant": variant, "preset": preset, "seed": seed,
            "dataset": "ptb", "substitute_for": None,
            "metrics": {"test/nll": nll, "test/ppl": 120.0, "test/elbo": nll + 1, "test/kl": 3.0,
                        "test/mi": 1.0, "test/au": 4},
            "eval": {"iw_samples": 100, "mi_pool": "dataset", "mi_pool_size": 3761, "split": "test"},
            "config": {}, "commit": "abc123", "wall_time_s": 10.0, "data_sha256": "x"}


def _write(records_dir, rec):
    path = records_dir / "bowman2016" / f"{rec['variant']}__{rec['preset']}__seed{rec['seed']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def test_table_shows_paper_ours_gap_and_seed_spread(tmp_path):
    records = tmp_path / "records"
    _write(records, _record("vae-anneal-worddrop", 0, 100.0))
    _write(records, _record("vae-anneal-worddrop", 1, 102.0))
    text = tables.render(get_paper("bowman2016"), records)
    row = next(line for line in text.splitlines()
               if line.startswith("| vae-anneal-worddrop | test/elbo |"))
    assert "| 101 |" in row and "102.00 ± 1.41" in row and "+1.00" in row
    assert "reduced scale (cpu preset)" in row and "| 2 |" in row
    assert "not run" not in row


def test_check_fails_on_a_hand_edited_table(tmp_path):
    records = tmp_path / "records"
    _write(records, _record("rnnlm", 0, 110.0))
    assert tables.write_all(records, tmp_path) == [tmp_path / "bowman2016.md"]
    assert tables.check(records, tmp_path) == []
    assert main(["table", "--check", "--records-dir", str(records)]) == 0
    table = tmp_path / "bowman2016.md"
    table.write_text(table.read_text().replace("110.00", "100.00"))
    assert tables.check(records, tmp_path) == [f"{table} differs from its records"]
    assert main(["table", "--check", "--records-dir", str(records)]) == 1


def test_check_fails_when_a_table_is_missing(tmp_path):
    records = tmp_path / "records"
    _write(records, _record("rnnlm", 0, 110.0))
    assert tables.check(records, tmp_path) == [f"{tmp_path / 'bowman2016.md'} is missing"]


def test_committed_tables_match_committed_records():
    assert tables.check() == []
