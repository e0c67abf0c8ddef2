"""Datasets: resolution (data dir -> cache -> download), checksums, reading, vocab, batching.

Real-data tests read `$REPRO_DATA_DIR` (the shared store) and are skipped without it. Every
test uses a temporary `$REPRO_CACHE_DIR`, so nothing touches the user's cache.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import os
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import repro.data.text as text_module
from repro.config import DataConfig
from repro.data import DATASETS, LOADERS, DataError, fetch, info, load_corpus, locate, verify
from repro.data.text import yahoo_line, yelp_line
from repro.data.dialog import (DD_ACTS, DD_EMOTIONS, UNKNOWN_LABEL, build_dialog_corpus,
                               read_dailydialog, read_swda)
from repro.data.images import (ImageCorpus, ImageSplit, fixed_binarisation, read_amat, read_idx,
                               read_npz)
from repro.data.sources import DatasetSpec, FileSpec
from repro.data.text import (SPECIALS, TextSplit, Vocab, bucket_order, bucketed_batches,
                             build_corpus, read_sentences)

REAL = os.environ.get("REPRO_DATA_DIR")
needs_real = pytest.mark.skipif(not REAL or not Path(REAL, "ptb").is_dir(),
                                reason="REPRO_DATA_DIR does not point at the shared data store")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Batches are many small tensor ops; on a busy shared CPU a second intra-op thread makes
    them ~20x slower (thread wake-ups), so these tests run single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))


# --- a fake dataset served over HTTP on 127.0.0.1 -----------------------------------------------

FAKE = {"train": b"the cat sat\nthe dog ran\n", "valid": b"the cat ran\n", "test": b"a dog sat\n"}


@pytest.fixture
def server(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "www"
    root.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_port}/", hits=hits)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fake(tmp_path, monkeypatch, server):
    """Dataset `fake` (train optional) whose files the local server publishes."""
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "store"))
    for split, data in FAKE.items():
        (server.root / f"fake.{split}.txt").write_bytes(data)
    files = tuple(FileSpec(f"fake.{s}.txt", sha(d), url=f"{server.url}fake.{s}.txt", split=s,
                           optional=s == "train") for s, d in FAKE.items())
    monkeypatch.setitem(DATASETS, "fake", DatasetSpec("fake", "a fake corpus for tests", files))
    return SimpleNamespace(store=tmp_path / "store" / "fake", cache=tmp_path / "cache" / "data" / "fake",
                           server=server)


def put(directory: Path, name: str, data: bytes, gz: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# --- resolution order and downloads ----------------------------------------------------------

def test_data_dir_wins_over_cache_and_network(fake):
    for split in ("valid", "test"):
        put(fake.store, f"fake.{split}.txt", FAKE[split])
        put(fake.cache, f"fake.{split}.txt", FAKE[split])
    paths = locate("fake")
    assert paths == {f"fake.{s}.txt": fake.store / f"fake.{s}.txt" for s in ("valid", "test")}
    assert fake.server.hits == []


def test_cache_used_when_data_dir_lacks_a_file(fake):
    put(fake.store, "fake.valid.txt", FAKE["valid"])
    put(fake.cache, "fake.test.txt", FAKE["test"])
    paths = locate("fake")
    assert paths["fake.valid.txt"] == fake.store / "fake.valid.txt"
    assert paths["fake.test.txt"] == fake.cache / "fake.test.txt"
    assert fake.server.hits == []


def test_missing_required_file_is_downloaded_into_cache_once(fake):
    paths = locate("fake")
    assert paths["fake.valid.txt"] == fake.cache / "fake.valid.txt"
    assert paths["fake.valid.txt"].read_bytes() == FAKE["valid"]
    assert sorted(fake.server.hits) == ["/fake.test.txt", "/fake.valid.txt"]
    locate("fake")
    assert len(fake.server.hits) == 2


def test_optional_file_is_fetched_only_on_request(fake):
    assert "fake.train.txt" not in locate("fake")
    assert "/fake.train.txt" not in fake.server.hits
    assert fetch("fake")["fake.train.txt"].read_bytes() == FAKE["train"]


def test_locate_without_download_names_the_missing_files(fake):
    with pytest.raises(DataError, match="fake.valid.txt.*repro data fetch fake"):
        locate("fake", download=False)


def test_failed_checksum_on_download_leaves_no_file(fake):
    (fake.server.root / "fake.valid.txt").write_bytes(b"tampered\n")
    with pytest.raises(DataError, match="checksum mismatch"):
        locate("fake")
    leftovers = [p.name for p in fake.cache.rglob("*") if p.is_file()] if fake.cache.exists() else []
    assert "fake.valid.txt" not in leftovers and not any(n.endswith(".part") for n in leftovers)


def test_corrupted_copy_is_refused(fake):
    put(fake.store, "fake.valid.txt", b"the cat ran!\n")
    put(fake.store, "fake.test.txt", FAKE["test"])
    with pytest.raises(DataError, match=r"checksum mismatch for .*fake\.valid\.txt"):
        locate("fake")
    checks = {c.file: c for c in verify("fake")}
    assert not checks["fake.valid.txt"].ok and checks["fake.test.txt"].ok
    assert checks["fake.train.txt"].ok and checks["fake.train.txt"].path is None  # optional, absent


def test_gz_copy_verified_against_uncompressed_digest_and_read_like_plain(fake):
    put(fake.store, "fake.valid.txt", FAKE["valid"], gz=True)
    put(fake.store, "fake.test.txt", FAKE["test"])
    paths = locate("fake")
    assert paths["fake.valid.txt"].suffix == ".gz"
    assert read_sentences(paths["fake.valid.txt"], None) == [["the", "cat", "ran"]]
    assert read_sentences(paths["fake.test.txt"], None) == [["a", "dog", "sat"]]


def test_file_verified_by_git_blob_id_when_no_sha256(tmp_path, monkeypatch):
    data = b"hello\n"
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert blob == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object` of "hello\n"
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path))
    monkeypatch.setitem(DATASETS, "blob", DatasetSpec("blob", "", (FileSpec("a.txt", None, git_sha1=blob),)))
    put(tmp_path / "blob", "a.txt", data, gz=True)
    assert locate("blob", download=False)["a.txt"].name == "a.txt.gz"
    put(tmp_path / "blob", "a.txt", b"hello!\n", gz=True)
    with pytest.raises(DataError, match="git blob"):
        locate("blob", download=False)


def test_zip_member_extracted_by_name_and_verified(fake, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("release/train/dialogues.txt", b"hi __eou__\n")
        zf.writestr("../evil.txt", b"outside")
    (fake.server.root / "bundle.zip").write_bytes(buf.getvalue())
    files = (FileSpec("train/dialogues.txt", sha(b"hi __eou__\n"), url=fake.server.url + "bundle.zip",
                      member="dialogues.txt"),
             FileSpec("evil.txt", sha(b"other"), url=fake.server.url + "bundle.zip", member="evil.txt",
                      optional=True))
    monkeypatch.setitem(DATASETS, "zipped", DatasetSpec("zipped", "", files))
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch("zipped")  # evil.txt's bytes do not match: refused, nothing written for it
    target = fake.cache.parent / "zipped"
    assert (target / "train" / "dialogues.txt").read_bytes() == b"hi __eou__\n"
    assert sorted(p.name for p in fake.cache.parent.parent.rglob("*") if p.is_file()) == ["dialogues.txt"]


def test_info_reports_staged_missing_and_eval_only(fake):
    put(fake.store, "fake.valid.txt", FAKE["valid"])
    put(fake.store, "fake.test.txt", FAKE["test"])
    text = info("fake")
    assert "fake.valid.txt [valid]: staged at" in text
    assert "fake.train.txt [train]: missing (optional)" in text
    assert "valid/test only" in text


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_corpus(DataConfig(dataset="nope"))


def test_registered_specs_cover_the_papers_datasets():
    optional = {n: {f.split for f in DATASETS[n].files if f.optional} for n in DATASETS}
    assert optional["yahoo"] == {"train"} and optional["swda"] == {"train"}
    assert optional["yelp"] == {"train", "valid", "test"}
    for name in ("ptb", "dailydialog", "binarized_mnist", "mnist"):
        assert optional[name] == set()
    for ds in DATASETS.values():
        assert all(f.url and f.split in ("train", "valid", "test") for f in ds.files), ds.name


@needs_real
@pytest.mark.parametrize("name", ["ptb", "yahoo", "swda", "dailydialog", "binarized_mnist", "mnist"])
def test_staged_files_match_their_published_digests(name):
    checks = verify(name)
    assert all(c.ok for c in checks), checks
    assert any(c.path is not None for c in checks)


# --- reading text: good and bad input --------------------------------------------------------

words = st.text(alphabet=st.sampled_from(list("abz.,'é-")), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sentences=st.lists(st.lists(words, max_size=7), min_size=1, max_size=10),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), sep=st.sampled_from([" ", "\t", " \t  "]),
       gz=st.booleans(), cap=st.one_of(st.none(), st.integers(1, 4)))
def test_read_sentences_any_layout(tmp_path, sentences, newline, sep, gz, cap):
    raw = newline.join(sep + sep.join(s) for s in sentences) + newline
    path = put(tmp_path, f"in{len(raw)}{gz}.txt", raw.encode("utf-8"), gz=gz)
    expected = [s[:cap] if cap else s for s in sentences if s]
    if expected:
        assert read_sentences(path, cap) == expected
    else:
        with pytest.raises(DataError, match="no sentences"):
            read_sentences(path, cap)


@pytest.mark.parametrize("data", [b"", b"\n\n  \r\n\t\n"])
def test_empty_file_is_a_clear_error(tmp_path, data):
    with pytest.raises(DataError, match=r"empty\.txt holds no sentences"):
        read_sentences(put(tmp_path, "empty.txt", data), None)


def test_non_utf8_file_is_a_clear_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"latin\.txt is not valid UTF-8"):
        read_sentences(put(tmp_path, "latin.txt", "caf\xe9 au lait\n".encode("latin-1")), None)


def test_truncated_gz_is_a_clear_error_naming_it(tmp_path):
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(gzip.compress(b"a b c\n" * 1000)[:-20])
    with pytest.raises(DataError, match=r"cut\.txt\.gz cannot be read"):
        read_sentences(path, None)


def test_line_preprocessors():
    assert yelp_line("4\tgreat food .") == "great food ."
    assert yelp_line("no label here") == "no label here"
    assert yahoo_line("apples , pears etorch. and") == "apples , pears etc. and"


# --- vocabulary --------------------------------------------------------------------------------

def test_vocab_specials_cap_tiebreak_and_unk():
    sentences = [["b", "a", "c"], ["a", "b"], ["a", "<unk>", "d"], ["<eos>"]]
    vocab = Vocab.build(sentences, max_size=3)
    assert vocab.itos == [*SPECIALS, "a", "b", "c"]  # a:3, b:2, then c before d (alphabetical tie)
    assert (vocab.pad, vocab.unk, vocab.bos, vocab.eos) == (0, 1, 2, 3)
    assert vocab.encode(["d", "never-seen", "<unk>", "a"]) == [vocab.unk] * 3 + [4]
    assert Vocab.from_json(vocab.to_json()).itos == vocab.itos


# --- batching ----------------------------------------------------------------------------------

def test_batch_layout_and_empty_split():
    vocab = Vocab(["x", "y"])
    split = TextSplit.from_lists([[4, 5, 4], [5]])
    batch = split.make_batch(torch.tensor([0, 1]), vocab)
    assert batch.tokens.tolist() == [[2, 4, 5, 4, 3], [2, 5, 3, 0, 0]]
    assert batch.num_targets.tolist() == [4, 2] and batch.target_mask.sum() == 6
    empty = TextSplit.from_lists([])
    assert empty.make_batch(torch.tensor([], dtype=torch.long), vocab).tokens.shape == (0, 2)
    assert list(bucketed_batches(empty, 4, vocab, shuffle=True)) == []


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 30), max_size=200), batch_size=st.integers(1, 17),
       seed=st.integers(0, 5), epoch=st.integers(0, 5))
def test_bucket_order_is_a_reproducible_partition(lengths, batch_size, seed, epoch):
    lengths = torch.tensor(lengths, dtype=torch.long)
    batches = bucket_order(lengths, batch_size, True, seed, epoch)
    assert sorted(torch.cat(batches).tolist() if batches else []) == list(range(len(lengths)))
    assert all(0 < len(b) <= batch_size for b in batches)
    again = bucket_order(lengths, batch_size, True, seed, epoch)
    assert [b.tolist() for b in batches] == [b.tolist() for b in again]


@pytest.fixture(scope="session")
def real(tmp_path_factory):
    """Load a real corpus once per session, with a session-wide numericalised cache."""
    cache = tmp_path_factory.mktemp("real-cache")
    loaded = {}

    def load(name: str, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in loaded:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("REPRO_CACHE_DIR", str(cache))
                loaded[key] = load_corpus(DataConfig(dataset=name, **options))
        return loaded[key]
    return load


@needs_real
def test_bucketing_on_ptb_wastes_little_and_reshuffles(real):
    corpus = real("ptb")
    batches = list(corpus.batches("train", 32, shuffle=True, seed=0, epoch=0))
    words = sum(int((b.lengths - 2).sum()) for b in batches)
    padded = sum(b.size * (b.tokens.shape[1] - 2) for b in batches)
    assert (padded - words) / words < 0.01
    assert sorted(torch.cat([b.index for b in batches]).tolist()) == list(range(42068))
    same = list(corpus.batches("train", 32, shuffle=True, seed=0, epoch=0))
    other = list(corpus.batches("train", 32, shuffle=True, seed=0, epoch=1))
    assert all(torch.equal(a.index, b.index) for a, b in zip(batches, same))
    assert [b.index[0].item() for b in batches[:10]] != [b.index[0].item() for b in other[:10]]


def test_numericalised_cache_second_load_reads_nothing(tmp_path, monkeypatch):
    files = {s: put(tmp_path, f"c.{s}.txt", d) for s, d in FAKE.items()}
    first = build_corpus("c", files, "digest", max_vocab=10, max_length=None)
    assert list((tmp_path / "cache" / "numericalised").glob("c-*.pt"))

    def no_reading(*args, **kwargs):
        raise AssertionError("the cached corpus was read again")
    monkeypatch.setattr(text_module, "read_sentences", no_reading)
    second = build_corpus("c", files, "digest", max_vocab=10, max_length=None)
    assert second.vocab.itos == first.vocab.itos
    for split in FAKE:
        assert torch.equal(second.splits[split].flat, first.splits[split].flat)
        assert torch.equal(second.splits[split].offsets, first.splits[split].offsets)


def test_vocab_from_first_split_when_train_is_missing(tmp_path):
    files = {s: put(tmp_path, f"d.{s}.txt", FAKE[s]) for s in ("valid", "test")}
    corpus = build_corpus("d", files, "digest", max_vocab=10, max_length=None)
    assert corpus.vocab_split == "valid"
    assert corpus.vocab.itos[4:] == ["cat", "ran", "the"]
    assert corpus.vocab.decode(corpus.splits["test"].sentence(0)) == ["<unk>", "<unk>", "<unk>"]
    with pytest.raises(DataError, match="no 'train' split.*repro data fetch d"):
        corpus.split("train")


# --- real text corpora ---------------------------------------------------------------------------

@needs_real
def test_ptb_counts(real):
    corpus = real("ptb")
    assert {s: len(v) for s, v in corpus.splits.items()} == {"train": 42068, "valid": 3370, "test": 3761}
    assert {s: v.num_tokens() for s, v in corpus.splits.items()} == {
        "train": 929_589, "valid": 73_760, "test": 82_430}
    assert corpus.vocab_split == "train" and corpus.kind == "text" and len(corpus.sha256) == 64


@needs_real
def test_yahoo_loads_valid_test_only_with_vocab_from_valid(real):
    corpus = real("yahoo", max_vocab=20_000)
    assert sorted(corpus.splits) == ["test", "valid"] and corpus.vocab_split == "valid"
    assert {s: len(v) for s, v in corpus.splits.items()} == {"valid": 10_000, "test": 10_000}
    assert corpus.splits["valid"].num_tokens() == 790_680 + 10_000
    assert int(corpus.splits["test"].lengths.max()) == 200


@needs_real
def test_train_fraction_subsets_every_kind(real, monkeypatch):
    for name, full in (("ptb", 42_068), ("dailydialog", 76_053), ("mnist", 50_000)):
        corpus = real(name)  # reused rather than reloaded (a fresh copy each call, as a loader gives)
        monkeypatch.setitem(LOADERS, name, lambda cfg, c=corpus: dataclasses.replace(c, splits=dict(c.splits)))
        assert len(load_corpus(DataConfig(dataset=name, train_fraction=0.1)).splits["train"]) == full // 10


# --- dialog ------------------------------------------------------------------------------------

def write_dailydialog(directory: Path, dialogs: str, acts: str, emotions: str) -> list[Path]:
    return [put(directory, name, data.encode()) for name, data in
            (("d.txt", dialogs), ("a.txt", acts), ("e.txt", emotions))]


TINY = ("Hello , Bob ! __eou__ Hi . How are you ? __eou__ Fine __eou__\n"
        "One __eou__ ... __eou__  __eou__ Two? __eou__ Three __eou__\r\n"
        "A __eou__ B __eou__\n",
        "2 1 2 \n1 1 2 3 4 \n2 \n", "0 4 0 \n0 0 0 0 6 \n0 \n")


@pytest.fixture
def tiny(tmp_path):
    paths = write_dailydialog(tmp_path, *TINY)

    def build(max_context=10):
        return build_dialog_corpus("tiny", "digest", ["train"], lambda split: read_dailydialog(*paths),
                                   {"act": DD_ACTS, "emotion": DD_EMOTIONS}, max_vocab=50,
                                   max_length=None, max_context=max_context)
    return build


def examples(corpus, max_context=10):
    """{response text: (context texts, speakers, labels)} from one unshuffled pass."""
    out = {}
    for b in corpus.batches("train", 3, shuffle=False):
        for i in range(b.size):
            context = [" ".join(corpus.vocab.decode(b.context[i, j, :b.context_lengths[i, j]]))
                       for j in range(b.num_context[i])]
            labels = {k: v[i].item() for k, v in b.labels.items()}
            out[" ".join(corpus.vocab.decode(b.response[i]))] = (
                context, b.context_speakers[i, :b.num_context[i]].tolist(), b.speaker[i].item(), labels)
    return out


def test_dialog_examples_context_speakers_and_labels(tiny):
    got = examples(tiny())
    assert got["hi . how are you ?"] == (["hello , bob !"], [0], 1, {"act": 0, "emotion": 4})
    assert got["fine"] == (["hello , bob !", "hi . how are you ?"], [0, 1], 0, {"act": 1, "emotion": 0})
    # the empty turn is dropped with its labels; "two?" is split off its punctuation
    assert got["three"] == (["one", "...", "two ?"], [0, 1, 1], 0, {"act": 3, "emotion": 6})
    assert got["b"][3] == {"act": UNKNOWN_LABEL, "emotion": UNKNOWN_LABEL}  # 2 turns, 1 label
    assert len(got) == 6  # every turn after the first of its dialog, exactly once


def test_dialog_context_window_is_capped(tiny):
    got = examples(tiny(max_context=1))
    assert got["three"][0] == ["two ?"] and got["fine"][0] == ["hi . how are you ?"]


def test_dialog_batch_protocol(tiny):
    corpus = tiny()
    batch = next(corpus.batches("train", 8, shuffle=True, seed=1, epoch=0)).to("cpu")
    assert batch.size == 6 and batch.response.shape[1] == int(batch.lengths.max())
    assert batch.context.shape[:2] == batch.context_lengths.shape == (6, int(batch.num_context.max()))
    assert batch.context.shape[2] == int(batch.context_lengths.max())
    assert torch.equal(batch.num_targets, batch.lengths - 1)
    assert int(batch.target_mask.sum()) == int(batch.num_targets.sum())
    assert torch.equal(batch.inputs[:, 0], torch.full((6,), corpus.vocab.bos))
    assert (batch.context[batch.context_lengths == 0] == batch.pad_id).all()


@needs_real
def test_dialog_buckets_cover_every_example_once_and_reshuffle(real):
    corpus = real("dailydialog")
    runs = [[b.index for b in corpus.batches("valid", 64, True, 0, e)] for e in (0, 0, 1)]
    assert sorted(torch.cat(runs[0]).tolist()) == list(range(len(corpus.splits["valid"])))
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert [b[0].item() for b in runs[0]] != [b[0].item() for b in runs[2]]
    lengths = corpus.splits["valid"].response_lengths
    padded = sum(len(i) * int(lengths[i].max()) for i in runs[0])
    assert padded / int(lengths.sum()) < 1.06  # bucketed by response length (random: ~2x)


def test_dailydialog_bad_files_are_clear_errors(tmp_path):
    dialogs, acts, emotions = TINY
    with pytest.raises(DataError, match="one line per dialog"):
        read_dailydialog(*write_dailydialog(tmp_path, dialogs, "1 1 1\n", emotions))
    with pytest.raises(DataError, match=r"a\.txt has label '9'"):
        read_dailydialog(*write_dailydialog(tmp_path, dialogs, acts.replace("4", "9"), emotions))
    with pytest.raises(DataError, match="holds no dialogs"):
        read_dailydialog(*write_dailydialog(tmp_path, "\n", acts, emotions))


def test_swda_bad_line_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"s\.jsonl:2 is not a SwDA dialog"):
        read_swda(put(tmp_path, "s.jsonl", b'{"topic": "x", "utts": []}\n{"topic": 1}\n'))


@needs_real
def test_dailydialog_counts(real):
    corpus = real("dailydialog")
    utterances = {s: len(v.utterances) for s, v in corpus.splits.items()}
    dialogs = {s: len(torch.unique(v.dialog_start)) for s, v in corpus.splits.items()}
    assert utterances == {"train": 87_171, "valid": 8_069, "test": 7_740}
    assert dialogs == {"train": 11_118, "valid": 1_000, "test": 1_000}
    assert {s: len(v) for s, v in corpus.splits.items()} == {
        s: utterances[s] - dialogs[s] for s in utterances}
    unknown = {s: int((v.labels["act"] == UNKNOWN_LABEL).sum()) for s, v in corpus.splits.items()}
    assert unknown == {"train": 12, "valid": 0, "test": 0}  # the one 12-turn dialog with 11 labels
    assert corpus.label_names["act"] == ["inform", "question", "directive", "commissive"]
    assert corpus.kind == "dialog" and corpus.vocab_split == "train"


@needs_real
def test_swda_counts_match_the_wordpunct_tokenisation(real):
    corpus = real("swda")
    assert sorted(corpus.splits) == ["test", "valid"] and corpus.vocab_split == "valid"
    assert {s: len(v.utterances) for s, v in corpus.splits.items()} == {"valid": 5_225, "test": 5_543}
    assert {s: int(v.utterances.lengths.sum()) for s, v in corpus.splits.items()} == {
        "valid": 68_213, "test": 74_240}
    dialogs = {s: len(torch.unique(v.dialog_start)) for s, v in corpus.splits.items()}
    assert dialogs == {"valid": 60, "test": 62}
    assert "statement-non-opinion" in corpus.label_names["act"] and "MUSIC" in corpus.label_names["topic"]


# --- images ------------------------------------------------------------------------------------

def test_dynamic_binarisation_follows_seed_and_epoch():
    intensities = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8)
    corpus = ImageCorpus("toy", {"train": ImageSplit(intensities, dynamic=True)}, "digest")

    def draw(seed, epoch):
        return torch.cat([b.x for b in corpus.batches("train", 16, False, seed, epoch)])
    first = draw(0, 0)
    assert first.shape == (40, 1, 28, 28) and set(first.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(first, draw(0, 0))
    assert not torch.equal(first, draw(0, 1)) and not torch.equal(first, draw(1, 0))
    assert not first[:, 0][intensities == 0].any() and first[:, 0][intensities == 255].all()
    assert abs(first.mean().item() - intensities.float().mean().item() / 255) < 0.01


def test_image_batches_partition_and_empty_split():
    pixels = torch.randint(0, 2, (10, 28, 28), dtype=torch.uint8)
    corpus = ImageCorpus("toy", {"test": ImageSplit(pixels), "empty": ImageSplit(pixels[:0])}, "digest")
    batches = list(corpus.batches("test", 4, True, seed=3))
    assert sorted(torch.cat([b.index for b in batches]).tolist()) == list(range(10))
    assert all(torch.equal(b.x[:, 0], pixels[b.index].float()) for b in batches)
    assert batches[0].num_targets is None and batches[0].to("cpu").size == 4
    assert list(corpus.batches("empty", 4, True)) == []


def test_amat_and_idx_readers(tmp_path):
    images = np.random.default_rng(0).integers(0, 2, (3, 784)).astype(np.uint8)
    amat = "".join(" ".join(map(str, row)) + "\n" for row in images).encode()
    assert np.array_equal(read_amat(put(tmp_path, "x.amat", amat, gz=True)), images)
    with pytest.raises(DataError, match="not a 28x28 binary .amat"):
        read_amat(put(tmp_path, "bad.amat", amat[:-1]))
    array = np.arange(2 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(2, 28, 28)
    idx = (0x0803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()
    assert np.array_equal(read_idx(put(tmp_path, "x-idx3-ubyte", idx, gz=True)), array)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    np.savez(tmp_path / "evil.npz", train=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="cannot be read as plain arrays"):
        read_npz(tmp_path / "evil.npz", ("train",))


@needs_real
def test_mnist_shapes_valid_split_and_fixed_eval_binarisation(real):
    corpus = real("mnist")
    assert {s: len(v) for s, v in corpus.splits.items()} == {"train": 50_000, "valid": 10_000, "test": 10_000}
    assert corpus.vocab is None and corpus.kind == "image"
    raw = read_npz(Path(REAL, "mnist", "mnist.npz"), ("x_train", "x_test"))
    valid = corpus.splits["valid"].pixels
    assert set(valid.unique().tolist()) == {0, 1}
    assert not valid[torch.from_numpy(raw["x_train"][50_000:]) == 0].any()  # last 10k of train
    again = fixed_binarisation(torch.from_numpy(raw["x_test"]), None, "test")  # what any load draws
    assert torch.equal(again.pixels, corpus.splits["test"].pixels)
    batch = next(corpus.batches("train", 64, True, seed=0, epoch=0))
    assert batch.x.shape == (64, 1, 28, 28) and batch.x.dtype == torch.float32


@needs_real
def test_binarized_mnist_shapes_and_amat_equivalence(real, tmp_path):
    corpus = real("binarized_mnist")
    assert {s: tuple(v.pixels.shape) for s, v in corpus.splits.items()} == {
        "train": (50_000, 28, 28), "valid": (10_000, 28, 28), "test": (10_000, 28, 28)}
    rows = corpus.splits["valid"].pixels[:5].reshape(5, 784).numpy()
    amat = "".join(" ".join(map(str, r)) + "\n" for r in rows).encode()
    assert np.array_equal(read_amat(put(tmp_path, "v.amat", amat)), rows)
    assert abs(corpus.splits["train"].pixels.float().mean().item() - 0.13056) < 1e-4
