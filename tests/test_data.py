"""Tests for data/prepare.py: every source on small fixtures made here, offline."""

import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from data import prepare
from data.prepare import (
    PrepareError,
    ensure_prepared,
    get_tokenizer,
    load_meta,
    prepare_text,
    prepare_wikitext103,
    split_text,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hum".split()


def make_text(n_lines, seed=0):
    """Deterministic English-ish lines of varying length, some non-ASCII, some blank."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n_lines):
        k = int(rng.integers(0, 14))
        words = [WORDS[j] for j in rng.integers(0, len(WORDS), size=k)]
        if i % 17 == 5:
            words.append("café—naïve")
        lines.append(" ".join(words) + "\n")
    return "".join(lines)


def read_bin(path, meta):
    return np.fromfile(path, dtype=np.dtype(meta["dtype"]))


def check_dataset(out_dir, meta, split_texts):
    """The files decode to the split texts, and meta's counts describe them."""
    assert load_meta(out_dir) == meta
    tok = get_tokenizer(meta["tokenizer"])
    for split, text in split_texts.items():
        ids = read_bin(os.path.join(out_dir, f"{split}.bin"), meta)
        assert tok.decode(ids.tolist()) == text
        s = meta["splits"][split]
        assert s["tokens"] == len(ids)
        assert s["bytes"] == len(text.encode("utf-8"))
        assert s["words"] == len(text.split())


# -----------------------------------------------------------------------------
# text source


def test_text_file(tmp_path):
    text = make_text(2000)
    src = tmp_path / "book.txt"
    src.write_text(text, encoding="utf-8")
    meta = prepare_text(str(src), "book", "bytes", str(tmp_path / "d"))
    assert meta["name"] == "book" and meta["source"] == "text"
    assert meta["tokenizer"] == "bytes" and meta["vocab_size"] == 256
    assert meta["dtype"] == "uint16" and meta["eot_token"] is None
    parts = split_text(text)
    assert parts["train"] + parts["val"] + parts["test"] == text
    check_dataset(str(tmp_path / "d" / "book"), meta, parts)
    # bytes tokenizer: one token per byte
    assert all(s["tokens"] == s["bytes"] for s in meta["splits"].values())


# one block of lines, counted by hand: (line, whitespace words)
COUNTED_LINES = [
    (" = Alpha = \n", 3),
    ("\n", 0),  # blank: fairseq still appends an end-of-sentence token
    ("   \n", 0),  # spaces only: the same
    ("  leading and trailing spaces   \n", 4),
    ("tab\tseparated\x0cform feed\n", 4),  # \f is whitespace inside the line, not a line break
    ("one\n", 1),
]


@pytest.mark.parametrize("final_newline", [True, False])
def test_word_level_tokens_text(tmp_path, final_newline):
    """word_level_tokens = words + lines (blank lines too), the count fairseq's eval_lm scores.
    split_text cuts after a newline, so the splits' counts add up to the whole text's."""
    n = 300
    text = "".join(line for line, _ in COUNTED_LINES) * n
    src = tmp_path / "t.txt"
    src.write_text(text if final_newline else text[:-1], encoding="utf-8")
    meta = prepare_text(str(src), "t", "bytes", str(tmp_path / "d"))
    splits = meta["splits"].values()
    lines, words = n * len(COUNTED_LINES), n * sum(w for _, w in COUNTED_LINES)  # 1800, 3600
    assert sum(s["lines"] for s in splits) == lines
    assert sum(s["words"] for s in splits) == words
    assert sum(s["word_level_tokens"] for s in splits) == words + lines
    assert all(s["word_level_tokens"] == s["words"] + s["lines"] for s in splits)


def test_word_level_tokens_wikitext_rows(tmp_path):
    """The hub's rows: one per line of the file, a blank line as "" (still a line), the split's
    last line possibly without its newline (still one line)."""
    rows = {
        "train": ["", " = A = \n", "", " a b c \n"],
        "validation": ["", " = Beta = \n", "", "  Beta follows  alpha in the list . \n", ""],
        "test": ["", " = Gamma = \n", "", " Gamma is third ; delta is fourth ."],
    }
    meta = prepare_wikitext103(
        str(tmp_path),
        dataset_loader=lambda: {k: {"text": v} for k, v in rows.items()},
        tokenizer="bytes",
    )
    s = meta["splits"]
    assert (s["val"]["words"], s["val"]["lines"], s["val"]["word_level_tokens"]) == (10, 5, 15)
    assert (s["test"]["words"], s["test"]["lines"], s["test"]["word_level_tokens"]) == (11, 4, 15)
    assert (s["train"]["words"], s["train"]["lines"], s["train"]["word_level_tokens"]) == (6, 4, 10)


def test_lines_cut_at_newlines_only():
    assert prepare._lines("") == []
    assert prepare._lines("a\n\n b") == ["a\n", "\n", " b"]
    assert prepare._lines("x\x0cy\u2028z\n \n") == ["x\x0cy\u2028z\n", " \n"]


def test_split_rule():
    text = make_text(5000, seed=1)
    parts = split_text(text)
    n = len(text)
    assert parts["train"] + parts["val"] + parts["test"] == text
    # cut just after the 90% and 95% marks, within 1% of the text, at line ends
    assert 0.90 * n <= len(parts["train"]) <= 0.91 * n
    assert 0.04 * n <= len(parts["val"]) <= 0.06 * n
    assert 0.04 * n <= len(parts["test"]) <= 0.05 * n + 1
    assert parts["train"].endswith("\n") and parts["val"].endswith("\n")
    assert split_text(text) == parts  # deterministic
    # one long line: cut at a space, never inside a word
    line = " ".join(WORDS * 200)
    parts = split_text(line)
    assert parts["train"].endswith(" ") and parts["val"].endswith(" ")
    with pytest.raises(PrepareError, match="too small"):
        split_text("just a few words\n")


def test_text_folder(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    files = {
        "a.txt": make_text(600, seed=2),
        "sub/b.md": make_text(600, seed=3).rstrip("\n"),  # no final newline: one is added
        "z.rst": make_text(600, seed=4),
    }
    for rel, t in files.items():
        (folder / rel).write_text(t, encoding="utf-8")
    (folder / "skip.py").write_text("print('not text')\n")
    (folder / ".hidden" / "secret.txt").write_text("hidden\n")
    meta = prepare_text(str(folder), "docs", "bytes", str(tmp_path / "d"))
    whole = files["a.txt"] + files["sub/b.md"] + "\n" + files["z.rst"]
    parts = split_text(whole)
    check_dataset(str(tmp_path / "d" / "docs"), meta, parts)
    assert sum(s["bytes"] for s in meta["splits"].values()) == len(whole.encode("utf-8"))


def test_text_errors_and_cli(tmp_path, capsys):
    with pytest.raises(PrepareError, match="input not found"):
        prepare_text(str(tmp_path / "nope.txt"), "x", "bytes", str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match="no .txt"):
        prepare_text(str(tmp_path / "empty"), "x", "bytes", str(tmp_path))
    src = tmp_path / "in.txt"
    src.write_text(make_text(500), encoding="utf-8")
    with pytest.raises(PrepareError, match="plain folder name"):
        prepare_text(str(src), "../x", "bytes", str(tmp_path))
    d = str(tmp_path / "d")
    assert prepare.main(["text", "--input", str(src), "--name", "x", "--data_dir", d]) == 0
    assert "train" in capsys.readouterr().out
    assert load_meta(os.path.join(d, "x"))["source"] == "text"
    assert prepare.main(["text", "--input", str(tmp_path / "no"), "--name", "y"]) == 2
    assert "error: input not found" in capsys.readouterr().err


# -----------------------------------------------------------------------------
# writing


def test_write_tokens_dtypes(tmp_path):
    assert prepare.token_dtype(256) == np.uint16
    assert prepare.token_dtype(65536) == np.uint16
    assert prepare.token_dtype(65537) == np.uint32
    path = str(tmp_path / "big.bin")
    ids = [0, 1, 65535, 65536, 99_999]
    assert prepare.write_tokens(path, [ids[:2], ids[2:]], 100_000) == 5
    assert np.fromfile(path, dtype=np.uint32).tolist() == ids
    assert not os.path.exists(path + ".tmp")


def test_chunked_bpe_equals_whole_text():
    """Tokenizing in chunks must give the tokens of the whole text, with a real BPE: GPT-2's
    split regex and a few merges (the GPT-2 vocabulary itself cannot be downloaded here)."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken_ext.openai_public import r50k_pat_str

    ranks = {bytes([i]): i for i in range(256)}
    for m in [b"\n\n", b"  ", b" t", b"th", b"he", b"the", b" the", b" =", b"\n\n\n"]:
        ranks[m] = len(ranks)
    enc = tiktoken.Encoding("toy", pat_str=r50k_pat_str, mergeable_ranks=ranks, special_tokens={})
    tok = prepare.TiktokenTokenizer(enc)
    text = (
        " = The title = \n\n the cat\n\n\n  then\nthe end \n the  other\n \n"
        "the\tlast  \n\nthe last line, with 3 numbers 42 and 'quotes' don't\n"
    ) * 20
    pieces = text.splitlines(keepends=True)
    for chunk_chars in (1, 7, 40):
        chunks = list(prepare.iter_chunks(pieces, chunk_chars))
        assert "".join(chunks) == text and len(chunks) > 10
        ids = [i for c in chunks for i in tok.encode(c)]
        assert ids == enc.encode_ordinary(text)


def test_write_split_counts(tmp_path):
    """Counted line by line: a blank row "" is a line, a last line without "\n" is one too."""
    lines = ["ab cd\n", "", "  ef \tg\n", "\n", "h"]
    counts = prepare.write_split(str(tmp_path / "x.bin"), lines, prepare.ByteTokenizer())
    n = len("".join(lines).encode())
    assert counts == dict(tokens=n, bytes=n, words=5, lines=5, word_level_tokens=10)


# -----------------------------------------------------------------------------
# demo corpus (built once for the module: ~2 s)


@pytest.fixture(scope="module")
def data_demo(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("demo_data"))
    meta = ensure_prepared("demo", data_dir)  # missing, known source: builds it
    return data_dir, meta


def test_demo_corpus(data_demo):
    data_dir, meta = data_demo
    out_dir = os.path.join(data_dir, "demo")
    with open(os.path.join(out_dir, "input.txt"), encoding="utf-8") as f:
        text = f.read()
    raw = text.encode("utf-8")
    assert len(raw) >= 1_000_000
    assert meta["source"] == "demo" and meta["tokenizer"] == "bytes"
    check_dataset(out_dir, meta, split_text(text))
    # cut at newlines, ending with one: the splits' lines are input.txt's newlines
    assert text.endswith("\n")
    assert sum(s["lines"] for s in meta["splits"].values()) == text.count("\n")
    # mostly English prose
    assert sum(c.isalpha() or c == " " for c in text) / len(text) > 0.8
    assert len(re.findall(r"\bthe\b", text)) > 5000
    # nothing machine-specific: no memory addresses, no paths of this install
    assert not re.search(r"0x[0-9a-fA-F]{9,}", text)  # 64-bit addresses; the docs have 0xdeadbeef
    assert " at 0x" not in text
    assert sys.prefix not in text and os.path.expanduser("~") + "/" not in text
    # deterministic: a second build gives the same bytes
    again = prepare.demo_text().encode("utf-8")
    assert hashlib.sha256(again).hexdigest() == hashlib.sha256(raw).hexdigest()


def test_ensure_prepared_reuses(data_demo, capsys):
    data_dir, meta = data_demo
    train = os.path.join(data_dir, "demo", "train.bin")
    mtime = os.path.getmtime(train)
    assert ensure_prepared("demo", data_dir) == meta
    assert os.path.getmtime(train) == mtime
    assert "preparing" not in capsys.readouterr().out


# -----------------------------------------------------------------------------
# missing datasets name the command that builds them


def test_missing_dataset_messages(tmp_path):
    d = str(tmp_path)
    with pytest.raises(PrepareError) as e:
        load_meta(os.path.join(d, "wikitext103"))
    assert f"run `python data/prepare.py wikitext103 --data_dir {d}`" in str(e.value)
    assert "dataset not found at" in str(e.value)
    with pytest.raises(PrepareError) as e:
        ensure_prepared("mybooks", d)
    assert f"`python data/prepare.py text --input PATH --name mybooks --data_dir {d}`" in str(
        e.value
    )
    # the default data dir needs no --data_dir
    with pytest.raises(PrepareError) as e:
        load_meta(os.path.join(prepare.DATA_DIR, "demo_missing_for_test"))
    assert str(e.value).endswith("--name demo_missing_for_test`")
    # meta.json present but a .bin file gone: incomplete, not silently used
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "meta.json").write_text(json.dumps({"name": "demo"}))
    with pytest.raises(PrepareError, match=r"incomplete .*python data/prepare.py demo"):
        load_meta(str(tmp_path / "demo"))


# -----------------------------------------------------------------------------
# WikiText-103 through `datasets`, from parquet files in the hub's own layout

WIKI = {
    # like the hub's rows: one line of the raw file each, with its "\n"; blank lines are ""
    "train": [
        ["", " = Alpha = \n", "", " Alpha is a letter . It has 2 @,@ 000 uses .\n", ""],
        [" = = History = = \n", "", " Naïve café text — with unicode .\n"],
    ],
    "validation": [["", " = Beta = \n", "", " Beta follows alpha in the list .\n"]],
    "test": [["", " = Gamma = \n", "", " Gamma is third ; delta is fourth .\n"]],
}


@pytest.fixture
def data_wikitext_parquet(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    root = tmp_path / "wikitext"
    folder = root / "wikitext-103-raw-v1"
    folder.mkdir(parents=True)
    for split, shards in WIKI.items():
        for i, rows in enumerate(shards):
            path = folder / f"{split}-{i:05d}-of-{len(shards):05d}.parquet"
            datasets.Dataset.from_dict({"text": rows}).to_parquet(str(path))
    monkeypatch.setenv(prepare.WIKITEXT_ENV, str(root))
    # keep datasets' arrow cache of the fixture out of the user's ~/.cache
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    return root


def test_wikitext103_from_parquet(data_wikitext_parquet, tmp_path):
    data_dir = str(tmp_path / "d")
    meta = prepare_wikitext103(data_dir, tokenizer="bytes")
    out_dir = os.path.join(data_dir, "wikitext103_bytes")
    assert meta["name"] == "wikitext103_bytes" and meta["source"] == "wikitext103"
    expected = {
        "train": "".join(WIKI["train"][0] + WIKI["train"][1]),
        "val": "".join(WIKI["validation"][0]),
        "test": "".join(WIKI["test"][0]),
    }
    check_dataset(out_dir, meta, expected)
    assert meta["splits"]["val"]["words"] == 10  # = Beta = | Beta follows alpha in the list .
    assert meta["splits"]["val"]["lines"] == 4  # two of them blank ("")
    assert meta["splits"]["val"]["word_level_tokens"] == 14
    assert sorted(os.listdir(out_dir)) == ["meta.json", "test.bin", "train.bin", "val.bin"]
    # the same through ensure_prepared and the known-name table
    assert ensure_prepared("wikitext103_bytes", data_dir) == meta


def test_wikitext103_dataset_loader(tmp_path):
    rows = {k: {"text": sum(v, [])} for k, v in WIKI.items()}
    meta = prepare_wikitext103(str(tmp_path), dataset_loader=lambda: rows, tokenizer="bytes")
    assert meta["splits"]["test"]["bytes"] == len("".join(rows["test"]["text"]).encode())


def test_wikitext103_bad_local_path(tmp_path, monkeypatch):
    monkeypatch.setenv(prepare.WIKITEXT_ENV, str(tmp_path))
    with pytest.raises(PrepareError, match="no train-"):
        prepare_wikitext103(str(tmp_path), tokenizer="bytes")


# -----------------------------------------------------------------------------
# offline: a clear one-line message, exit code 1, no traceback


def run_prepare(*args, **env):
    full_env = {k: v for k, v in os.environ.items() if k != prepare.WIKITEXT_ENV}
    full_env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **env)
    cmd = [sys.executable, os.path.join(REPO, "data", "prepare.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=120)


def test_wikitext103_offline_message(tmp_path):
    # a fresh Hugging Face cache: nothing to fall back on
    r = run_prepare(
        "wikitext103", "--tokenizer", "bytes", "--data_dir", str(tmp_path), HF_HOME=str(tmp_path)
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    err = r.stderr.strip()
    assert err.startswith("error: could not load WikiText-103") and "\n" not in err
    for alternative in ("python data/prepare.py demo", "text --input", prepare.WIKITEXT_ENV):
        assert alternative in err
    assert not os.path.exists(tmp_path / "wikitext103_bytes" / "meta.json")
    # with GPT-2 BPE whichever download fails first, the user gets one line and a way out
    r = run_prepare("wikitext103", "--data_dir", str(tmp_path), HF_HOME=str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "python data/prepare.py demo" in r.stderr


def test_gpt2_offline_advice_names_what_works_offline(monkeypatch):
    """wikitext103 with the byte tokenizer still downloads the dataset: offline it needs local
    parquet files, and the advice says so."""
    tiktoken = pytest.importorskip("tiktoken")

    def offline(name):
        raise OSError("no network")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    with pytest.raises(PrepareError) as e:
        get_tokenizer("gpt2")
    msg = str(e.value)
    assert "python data/prepare.py demo" in msg and "text --input PATH" in msg
    assert f"`wikitext103 --tokenizer bytes` with {prepare.WIKITEXT_ENV}=DIR" in msg


def test_gpt2_tokenizer_offline():
    try:
        tok = get_tokenizer("gpt2")
    except PrepareError as e:
        msg = str(e)
        assert "GPT-2" in msg and "TIKTOKEN_CACHE_DIR" in msg and "--tokenizer bytes" in msg
        assert "python data/prepare.py demo" in msg
    else:  # a cached vocabulary (or network): then it must work
        assert tok.vocab_size == 50257 and tok.eot_token == 50256
        assert tok.decode(tok.encode("Hello world")) == "Hello world"
        pytest.skip("tiktoken's GPT-2 vocabulary is available here")
    with pytest.raises(PrepareError, match="unknown tokenizer"):
        get_tokenizer("sentencepiece")
