"""The `repro` command line, end to end on small inputs."""
import json
import subprocess
import sys

from repro.cli import build_parser, main


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, sp in sub.choices.items():
        assert sp.format_help().strip(), name
        assert sub._choices_actions and any(c.dest == name and c.help for c in sub._choices_actions)


def test_list_shows_papers_variants_presets_and_datasets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "bowman2016" in out and "vae-anneal-worddrop" in out and "smoke, cpu, paper" in out
    assert "datasets:" in out and "ptb" in out and "synthetic" in out


def test_train_eval_sample_round_trip(tmp_path, capsys):
    runs, records = tmp_path / "runs", tmp_path / "records"
    args = ["train", "bowman2016", "vae-anneal-worddrop", "--preset", "smoke", "--no-mlflow",
            "--quiet", "--runs-dir", str(runs), "--records-dir", str(records)]
    assert main(args) == 0
    run_dir = runs / "bowman2016" / "vae-anneal-worddrop" / "smoke" / "seed0"
    assert (run_dir / "best.pt").is_file() and (run_dir / "samples.txt").is_file()
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--quiet", "--set", "eval.iw_samples=8",
                 "--set", "eval.mi_pool=batch"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["eval"]["iw_samples"] == 8 and out["eval"]["mi_pool"] == "batch"
    assert out["metrics"]["test/nll"] > 0
    assert main(["sample", str(run_dir), "--num", "2"]) == 0
    assert "Homotopy" in capsys.readouterr().out


def test_reproduce_with_resume_keeps_a_finished_row_and_trains_the_rest(tmp_path, capsys):
    runs, records = tmp_path / "runs", tmp_path / "records"
    args = ["reproduce", "bowman2016", "--variants", "vae", "--preset", "smoke", "--no-mlflow",
            "--quiet", "--runs-dir", str(runs), "--records-dir", str(records)]
    assert main(args) == 0
    kept = records / "bowman2016" / "vae__smoke__seed0.json"
    before = kept.read_text()
    capsys.readouterr()
    assert main([*args, "--seeds", "0", "1", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "bowman2016/vae/smoke/seed0: finished, record kept" in out
    assert "bowman2016/vae seed 1:" in out and "bowman2016/vae seed 0:" not in out
    assert kept.read_text() == before      # not scored again under this process's commit
    assert (records / "bowman2016" / "vae__smoke__seed1.json").is_file()


def test_config_errors_exit_2_with_a_message(capsys):
    code = main(["train", "bowman2016", "vae", "--preset", "smoke", "--no-mlflow",
                 "--set", "model.latent_sise=3"])
    assert code == 2
    assert "latent_size" in capsys.readouterr().err
    assert main(["train", "nopaper", "vae", "--preset", "smoke"]) == 2


def test_data_info_names_the_files(capsys):
    assert main(["data", "info", "ptb"]) == 0
    assert "ptb.train.txt" in capsys.readouterr().out


def test_demo_quick_shows_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quick", "--no-mlflow", "--quiet"]) == 0
    out = capsys.readouterr().out
    for variant in ("vae", "vae-anneal-worddrop", "vae-freebits"):
        assert f"| {variant} |" in out


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "repro.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "reproduce" in result.stdout


def test_a_row_whose_training_split_is_not_staged_stops_before_training(tmp_path, capsys):
    """Issue 43: SwDA (and Yahoo) have only valid and test here. The run says at once that the
    row is not runnable here and how to get the data, before any epoch starts."""
    code = main(["train", "zhao2017_kgcvae", "kgcvae", "--preset", "paper", "--no-mlflow",
                 "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr()
    assert code != 0
    assert "is not runnable here" in out.err and "repro data fetch swda" in out.err
    assert "epoch 1" not in out.out + out.err
