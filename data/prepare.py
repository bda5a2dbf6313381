"""
Prepare token datasets for nanoPE: text in, flat arrays of token ids out.

    python data/prepare.py demo                        # offline corpus, byte tokenizer
    python data/prepare.py wikitext103                 # WikiText-103 (raw), GPT-2 BPE
    python data/prepare.py text --input PATH --name NAME [--tokenizer bytes|gpt2]

Every source writes DATA_DIR/NAME/{train,val,test}.bin (token ids, uint16 when the vocabulary
fits, else uint32) and then meta.json, which records the tokenizer and these counts per split:
- tokens: token ids in the .bin file; bytes: UTF-8 bytes of the split's raw text.
- words: whitespace-separated words of that text, len(text.split()).
- lines: its lines, blank ones included; a line ends at "\\n", and a last line without "\\n"
  counts too. WikiText-103: one per row of the hub's dataset, i.e. one per line of the file.
- word_level_tokens = words + lines: the denominator of word-level perplexity. It is what
  fairseq scores on a word-level file (preprocess appends an end-of-sentence token to every
  line read, blank lines included; eval_lm scores every token), the convention of the ALiBi
  paper's WikiText-103 numbers: 217,646 validation = 213,886 words + 3,760 lines, 245,569 test
  = 241,211 words + 4,358 lines.
meta.json is written last, so its presence means the dataset is complete. train.py and the eval
scripts use load_meta / ensure_prepared / get_tokenizer from here.
"""

import argparse
import ast
import glob
import json
import os
import socket
import sys
import sysconfig
from urllib.parse import urlparse

import numpy as np

DATA_DIR = os.path.dirname(os.path.abspath(__file__))  # the repo's data/ folder
SPLITS = ("train", "val", "test")
TEXT_SUFFIXES = (".txt", ".md", ".rst")  # what `text --input FOLDER` picks up
CHUNK_CHARS = 1 << 20  # tokenize ~1M characters at a time: bounded memory, threads stay busy
WIKITEXT_ENV = "NANOPE_WIKITEXT_PATH"  # a local copy of the dataset's parquet files

# the command that builds each dataset we know how to build on our own
KNOWN = {
    "demo": "python data/prepare.py demo",
    "wikitext103": "python data/prepare.py wikitext103",
    "wikitext103_bytes": "python data/prepare.py wikitext103 --tokenizer bytes",
}


class PrepareError(Exception):
    """A problem the user can fix; the CLI prints the one-line message, no traceback."""


# -----------------------------------------------------------------------------
# tokenizers


class ByteTokenizer:
    """UTF-8 bytes as tokens: vocab 256, needs nothing downloaded, bits/byte comes for free."""

    name = "bytes"
    vocab_size = 256
    eot_token = None

    def encode(self, text):
        return list(text.encode("utf-8"))

    def encode_batch(self, texts):
        return [self.encode(t) for t in texts]

    def decode(self, ids):
        # a window of tokens may start or end inside a multi-byte character
        return bytes(ids).decode("utf-8", errors="replace")


class TiktokenTokenizer:
    """A tiktoken Encoding (GPT-2 BPE). Special tokens are never parsed out of the text."""

    def __init__(self, enc, name=None):
        self.enc = enc
        self.name = name or enc.name
        self.vocab_size = enc.n_vocab
        self.eot_token = enc.eot_token if "<|endoftext|>" in enc.special_tokens_set else None

    def encode(self, text):
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts):
        return self.enc.encode_ordinary_batch(texts, num_threads=os.cpu_count() or 1)

    def decode(self, ids):
        return self.enc.decode(list(ids), errors="replace")


def get_tokenizer(name):
    if name == "bytes":
        return ByteTokenizer()
    if name != "gpt2":
        raise PrepareError(f"unknown tokenizer {name!r}: use 'bytes' or 'gpt2'")
    try:
        import tiktoken

        enc = tiktoken.get_encoding("gpt2")
    except (ImportError, OSError, ValueError) as e:
        # OSError covers requests' ConnectionError; ValueError is tiktoken's hash mismatch
        raise PrepareError(
            f"could not load the GPT-2 BPE vocabulary through tiktoken, which downloads it on "
            f"first use ({type(e).__name__}: {_first_line(e)}). Without network use "
            f"`python data/prepare.py demo`, or the byte tokenizer (`python data/prepare.py "
            f"text --input PATH --name NAME --tokenizer bytes`, `python data/prepare.py "
            f"wikitext103 --tokenizer bytes`), or copy tiktoken's cache from a machine with "
            f"network and point TIKTOKEN_CACHE_DIR at it"
        ) from e
    return TiktokenTokenizer(enc, "gpt2")


def _first_line(e, limit=160):
    lines = str(e).strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


# -----------------------------------------------------------------------------
# writing token files


def token_dtype(vocab_size):
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def write_tokens(path, chunks, vocab_size):
    """Stream sequences of token ids to a flat binary file; returns the number of tokens.
    Written under a temporary name and renamed, so `path` is either complete or absent."""
    dtype = token_dtype(vocab_size)
    n = 0
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for ids in chunks:
            arr = np.asarray(ids, dtype=np.int64)
            if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
                raise ValueError(f"token id out of range for vocab_size {vocab_size}")
            arr.astype(dtype).tofile(f)
            n += arr.size
    os.replace(tmp, path)
    return n


def write_json(path, obj, indent=2):
    """Write obj as JSON atomically (temporary file, then rename): an interrupted write never
    leaves a broken file. Every script writes its JSON through this."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")
    os.replace(tmp, path)


def write_text(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def _safe_cut(tail, nxt):
    """Can we tokenize ...tail | nxt... in two calls and get the tokens of one call?
    BPE never merges across the pre-tokenizer's pieces, so we only need a place where GPT-2's
    split regex breaks anyway: before " X" (one space, then non-space: the space belongs to X),
    or between "a\\n" and "X" (a lone newline). Python's isspace is a superset of the regex's
    \\s, so these tests are conservative."""
    if nxt[:1] == " " and nxt[1:2] and not nxt[1].isspace():
        return True
    lone_newline = tail[-1:] == "\n" and tail[-2:-1] and not tail[-2].isspace()
    return bool(lone_newline and nxt[:1] and not nxt[0].isspace())


def iter_chunks(pieces, chunk_chars=CHUNK_CHARS):
    """Regroup an iterable of strings (lines, dataset rows) into ~chunk_chars strings whose
    concatenation is the same text, cut only where tokenizing the parts separately gives the
    same tokens as tokenizing the whole."""
    buf, size, tail = [], 0, ""
    for p in pieces:
        if not p:
            continue
        if size >= chunk_chars and _safe_cut(tail, p):
            yield "".join(buf)
            buf, size = [], 0
        buf.append(p)
        size += len(p)
        tail = (tail + p)[-2:]
    if buf:
        yield "".join(buf)


class TextStats:
    """Bytes, whitespace-separated words and lines of a text seen one line at a time: each
    update() is one line (a blank line may come as "", like the hub's WikiText rows). A word cut
    in two by a piece boundary counts once, so words and bytes equal those of the joined text."""

    def __init__(self):
        self.bytes = 0
        self.words = 0
        self.lines = 0
        self.in_word = False  # did the text so far end inside a word?

    def update(self, p):
        self.lines += 1
        if not p:
            return p
        self.bytes += len(p.encode("utf-8"))
        self.words += len(p.split()) - (self.in_word and not p[0].isspace())
        self.in_word = not p[-1].isspace()
        return p


def write_split(path, pieces, tokenizer, chunk_chars=CHUNK_CHARS, batch=None):
    """Tokenize the text given as pieces, one per line, into path; returns its counts."""
    stats = TextStats()
    batch = batch or 2 * (os.cpu_count() or 1)

    def token_chunks():
        todo = []
        for chunk in iter_chunks((stats.update(p) for p in pieces), chunk_chars):
            todo.append(chunk)
            if len(todo) == batch:
                yield from tokenizer.encode_batch(todo)
                todo = []
        if todo:
            yield from tokenizer.encode_batch(todo)

    tokens = write_tokens(path, token_chunks(), tokenizer.vocab_size)
    return {
        "tokens": tokens,
        "bytes": stats.bytes,
        "words": stats.words,
        "lines": stats.lines,
        "word_level_tokens": stats.words + stats.lines,  # + one end-of-sentence per line
    }


def write_dataset(out_dir, name, source, tokenizer, split_pieces):
    """split_pieces: {"train": iterable of str, "val": ..., "test": ...}. Returns meta."""
    os.makedirs(out_dir, exist_ok=True)
    meta_path = os.path.join(out_dir, "meta.json")
    if os.path.exists(meta_path):
        os.remove(meta_path)  # a rebuild interrupted halfway must not look complete
    splits = {}
    for split in SPLITS:
        print(f"tokenizing {name}/{split} with {tokenizer.name} ...")
        path = os.path.join(out_dir, f"{split}.bin")
        splits[split] = write_split(path, split_pieces[split], tokenizer)
    meta = {
        "name": name,
        "source": source,
        "tokenizer": tokenizer.name,
        "vocab_size": tokenizer.vocab_size,
        "dtype": token_dtype(tokenizer.vocab_size).name,
        "eot_token": tokenizer.eot_token,  # recorded for reference; never inserted in the data
        "splits": splits,
    }
    write_json(meta_path, meta)
    print_summary(out_dir, meta)
    return meta


def print_summary(out_dir, meta):
    print(f"wrote {out_dir}/{{train,val,test}}.bin + meta.json")
    print(f"  tokenizer {meta['tokenizer']}, vocab {meta['vocab_size']}, dtype {meta['dtype']}")
    for split, s in meta["splits"].items():
        counts = f"{s['tokens']:>13,} tokens {s['bytes']:>13,} bytes {s['words']:>12,} words"
        print(f"  {split:5s} {counts} {s['word_level_tokens']:>12,} word-level tokens")


# -----------------------------------------------------------------------------
# splitting one text into train / val / test


def _cut_point(text, target):
    """First newline in the next 1% of the text after target, else the first whitespace there,
    else target itself: no word (and no line, where possible) is cut in two."""
    window = max(1, len(text) // 100)
    for sep in ("\n", " "):
        i = text.find(sep, target, target + window)
        if i != -1:
            return i + 1
    return target


def split_text(text):
    """Deterministic split by contiguous text: the last 5% of characters -> test, the 5% before
    that -> val, the rest -> train (each cut moved to a line boundary just after it)."""
    a = _cut_point(text, int(len(text) * 0.90))
    b = max(a, _cut_point(text, int(len(text) * 0.95)))
    parts = {"train": text[:a], "val": text[a:b], "test": text[b:]}
    empty = [k for k, v in parts.items() if not v.strip()]
    if empty:
        raise PrepareError(
            f"text too small to split ({len(text):,} characters): the {', '.join(empty)} "
            f"split would be empty; give at least a few kilobytes of text"
        )
    return parts


def _lines(text):
    """text cut after every "\\n", as a file is read line by line (str.splitlines would also cut
    at \\f, \\x1c, \\u2028, ..., which fairseq's readline keeps inside the line)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]  # what follows the last "\n": a last line without one, or ""
    return lines if lines[-1] else lines[:-1]


# -----------------------------------------------------------------------------
# source: any text file or folder


def read_text_input(input_path):
    """One file, or every *.txt/*.md/*.rst under a folder (recursively, sorted by relative path,
    hidden files and folders skipped), joined with a newline after each file."""
    if os.path.isfile(input_path):
        files = [input_path]
    elif os.path.isdir(input_path):
        files = []
        for root, dirs, names in os.walk(input_path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            files += [
                os.path.join(root, n)
                for n in names
                if n.lower().endswith(TEXT_SUFFIXES) and not n.startswith(".")
            ]
        files.sort(key=lambda p: os.path.relpath(p, input_path).replace(os.sep, "/"))
        if not files:
            raise PrepareError(f"no {'/'.join(TEXT_SUFFIXES)} files found under {input_path}")
    else:
        raise PrepareError(f"input not found: {input_path}")
    parts = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                t = f.read()
        except UnicodeDecodeError as e:
            raise PrepareError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
        parts.append(t if t.endswith("\n") or not t else t + "\n")
    print(f"read {len(files)} file(s) from {input_path}")
    return "".join(parts)


def prepare_text(input_path, name, tokenizer="bytes", data_dir=None):
    if not name or name != os.path.basename(name) or name.startswith("."):
        raise PrepareError(f"--name must be a plain folder name, got {name!r}")
    tok = get_tokenizer(tokenizer)  # fail before reading a big input
    parts = split_text(read_text_input(input_path))
    out_dir = os.path.join(data_dir or DATA_DIR, name)
    return write_dataset(out_dir, name, "text", tok, {k: _lines(v) for k, v in parts.items()})


# -----------------------------------------------------------------------------
# source: the offline demo corpus, built from documentation that ships with Python

# Standard-library modules whose docstrings we use: pure-Python files present in every CPython
# install (no tkinter, no OS-specific modules). Read with ast, never imported: no side effects,
# nothing from the machine (paths, addresses, installed packages) gets into the text.
DEMO_MODULES = """
_pydecimal abc argparse asyncio.base_events asyncio.events asyncio.streams asyncio.tasks base64
bisect bz2 calendar cmd code codecs codeop collections colorsys concurrent.futures configparser
contextlib copy csv dataclasses difflib dis doctest email.feedparser email.generator email.header
email.headerregistry email.message email.policy email.utils enum filecmp fileinput fnmatch
fractions ftplib functools getopt gettext glob graphlib gzip heapq hmac http.client
http.cookiejar http.cookies http.server imaplib importlib.abc inspect ipaddress json json.decoder
json.encoder linecache locale logging logging.handlers lzma mailbox mimetypes modulefinder
multiprocessing.managers multiprocessing.pool numbers operator optparse os pathlib pdb pickle
pkgutil platform poplib pprint pydoc queue quopri random reprlib rlcompleter runpy sched secrets
selectors shlex shutil smtplib socketserver statistics string subprocess symtable sysconfig
tarfile tempfile textwrap threading timeit tokenize trace traceback typing unittest.case
unittest.mock urllib.parse urllib.request urllib.robotparser uuid warnings wave weakref
webbrowser xml.dom.minidom xml.etree.ElementTree xmlrpc.client xmlrpc.server zipapp zipfile
""".split()


def _module_file(stdlib, module):
    base = os.path.join(stdlib, *module.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None  # moved or removed in this Python version: the text is per Python version


def _docstrings(node, prefix):
    """(qualified name, docstring) of the public classes and functions under node, in order."""
    for child in node.body:
        if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if child.name.startswith("_"):
                continue
            name = f"{prefix}.{child.name}"
            doc = ast.get_docstring(child)
            if doc:
                yield name, doc
            if isinstance(child, ast.ClassDef):
                yield from _docstrings(child, name)


def demo_text():
    """The demo corpus (~1.5 MB of English): the Python reference manual's topics as shipped in
    pydoc_data, then the docstrings of DEMO_MODULES. Same bytes for the same Python version."""
    from pydoc_data.topics import topics

    parts = [f"{k}\n\n{topics[k].strip()}\n\n" for k in sorted(topics)]
    stdlib = sysconfig.get_paths()["stdlib"]
    for module in DEMO_MODULES:
        path = _module_file(stdlib, module)
        if path is None:
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        doc = ast.get_docstring(tree)
        if doc:
            parts.append(f"{module}\n\n{doc}\n\n")
        parts += [f"{name}\n\n{doc}\n\n" for name, doc in _docstrings(tree, module)]
    return "".join(parts)


def prepare_demo(data_dir=None):
    out_dir = os.path.join(data_dir or DATA_DIR, "demo")
    text = demo_text()
    os.makedirs(out_dir, exist_ok=True)
    write_text(os.path.join(out_dir, "input.txt"), text)  # so users can read what it learns
    print(f"demo corpus: {len(text.encode('utf-8')):,} bytes of Python's own documentation")
    parts = split_text(text)
    tok = get_tokenizer("bytes")
    return write_dataset(out_dir, "demo", "demo", tok, {k: _lines(v) for k, v in parts.items()})


# -----------------------------------------------------------------------------
# source: WikiText-103 (raw) through Hugging Face `datasets`

WIKITEXT_SPLITS = {"train": "train", "val": "validation", "test": "test"}  # ours -> the hub's


def _wikitext_failed(what):
    return PrepareError(
        f"could not load WikiText-103 ({what}). Alternatives: `python data/prepare.py demo` "
        f"(offline corpus); `python data/prepare.py text --input DIR --name NAME` on local raw "
        f"files; {WIKITEXT_ENV}=DIR pointing at a local copy of the dataset's parquet files; or "
        f"run once on a machine with network (or with a populated Hugging Face cache, HF_HOME)"
    )


def _hub_reachable(timeout=5.0):
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_wikitext_parquet(path):
    """A local copy of the hub's files: PATH/wikitext-103-raw-v1/{train,validation,test}-*.parquet
    (PATH may also be the wikitext-103-raw-v1 folder itself)."""
    import datasets

    sub = os.path.join(path, "wikitext-103-raw-v1")
    folder = sub if os.path.isdir(sub) else path
    files = {}
    for split in WIKITEXT_SPLITS.values():
        files[split] = sorted(glob.glob(os.path.join(folder, f"{split}-*.parquet")))
        if not files[split]:
            raise PrepareError(f"{WIKITEXT_ENV}: no {split}-*.parquet files in {folder}")
    print(f"loading WikiText-103 from local parquet files in {folder}")
    return datasets.load_dataset("parquet", data_files=files)


def _load_wikitext_hub():
    # Without network `datasets` retries for ~25 s before failing. If the hub is unreachable,
    # go offline at once: a copy in the local Hugging Face cache still loads. (The env vars are
    # read when datasets is first imported, which is why it is imported only here.)
    if not os.environ.get("HF_HUB_OFFLINE") and not _hub_reachable():
        print("the Hugging Face hub is unreachable: looking in the local cache only")
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets

    print("loading Salesforce/wikitext (wikitext-103-raw-v1) with datasets")
    return datasets.load_dataset("Salesforce/wikitext", "wikitext-103-raw-v1")


def load_wikitext():
    """The dataset with splits train/validation/test and a `text` column: from the directory in
    $NANOPE_WIKITEXT_PATH if set, else from the Hugging Face hub (or its local cache)."""
    try:
        if os.environ.get(WIKITEXT_ENV):
            return _load_wikitext_parquet(os.environ[WIKITEXT_ENV])
        return _load_wikitext_hub()
    except ImportError as e:
        raise _wikitext_failed(f"`datasets` is not installed: {e}") from e
    except (OSError, ValueError) as e:
        # connection errors, offline mode and missing files are all OSErrors in datasets and
        # huggingface_hub; a bad config or corrupt file shows up as ValueError
        raise _wikitext_failed(f"{type(e).__name__}: {_first_line(e)}") from e


def _rows(split, batch_size=10_000):
    """The `text` rows of a split, a few thousand at a time (a datasets.Dataset is on disk)."""
    if hasattr(split, "iter"):
        for b in split.iter(batch_size=batch_size):
            yield from b["text"]
    else:
        yield from split["text"]


def prepare_wikitext103(data_dir=None, dataset_loader=None, tokenizer="gpt2"):
    """WikiText-103 (raw). A split's text is its rows joined as they are: each row is one line
    of the raw file with its "\\n", except that the hub stores a blank line as "" (its " \\n" is
    dropped). dataset_loader() -> {"train"|"validation"|"test": rows with a "text" column}
    replaces the download (default: load_wikitext).
    lines = rows, blank ones included, so word_level_tokens = words + rows is fairseq's count on
    the word-level release (the raw one differs only in keeping the words that became <unk>):
    validation 217,646 = 213,886 + 3,760 rows, test 245,569 = 241,211 + 4,358 rows."""
    tok = get_tokenizer(tokenizer)  # fail before a long download, not after it
    ds = (dataset_loader or load_wikitext)()
    name = "wikitext103" if tokenizer == "gpt2" else f"wikitext103_{tokenizer}"
    out_dir = os.path.join(data_dir or DATA_DIR, name)
    pieces = {ours: _rows(ds[theirs]) for ours, theirs in WIKITEXT_SPLITS.items()}
    return write_dataset(out_dir, name, "wikitext103", tok, pieces)


# -----------------------------------------------------------------------------
# what train.py and the eval scripts call


def _prepare_command(dataset_dir):
    dataset_dir = os.path.abspath(dataset_dir)
    name, data_dir = os.path.basename(dataset_dir), os.path.dirname(dataset_dir)
    cmd = KNOWN.get(name, f"python data/prepare.py text --input PATH --name {name}")
    if data_dir != DATA_DIR:
        cmd += f" --data_dir {data_dir}"
    return cmd


def load_meta(dataset_dir):
    path = os.path.join(dataset_dir, "meta.json")
    if not os.path.isfile(path):
        raise PrepareError(
            f"dataset not found at {dataset_dir}: run `{_prepare_command(dataset_dir)}`"
        )
    with open(path) as f:
        meta = json.load(f)
    missing = [s for s in SPLITS if not os.path.isfile(os.path.join(dataset_dir, f"{s}.bin"))]
    if missing:
        raise PrepareError(
            f"dataset at {dataset_dir} is incomplete (no {', '.join(missing)}.bin): "
            f"run `{_prepare_command(dataset_dir)}` again"
        )
    return meta


def ensure_prepared(name, data_dir=None):
    """meta of data_dir/name, building it first if it is missing and we know how."""
    dataset_dir = os.path.join(data_dir or DATA_DIR, name)
    if not os.path.isfile(os.path.join(dataset_dir, "meta.json")) and name in KNOWN:
        print(f"dataset {name!r} not found at {dataset_dir}: preparing it ({KNOWN[name]})")
        if name == "demo":
            prepare_demo(data_dir)
        else:
            prepare_wikitext103(data_dir, tokenizer="gpt2" if name == "wikitext103" else "bytes")
    return load_meta(dataset_dir)


# -----------------------------------------------------------------------------
# command line


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="source", required=True)
    dd = dict(default=DATA_DIR, help="where DATA_DIR/NAME/ goes (default: the repo's data/)")
    p = sub.add_parser("demo", help="offline corpus from Python's own docs, bytes tokenizer")
    p.add_argument("--data_dir", **dd)
    h = f"WikiText-103 raw via Hugging Face datasets (or local parquet files: ${WIKITEXT_ENV})"
    p = sub.add_parser("wikitext103", help=h, description=h)
    p.add_argument(
        "--tokenizer",
        choices=["gpt2", "bytes"],
        default="gpt2",
        help="gpt2 writes data/wikitext103/, bytes writes data/wikitext103_bytes/",
    )
    p.add_argument("--data_dir", **dd)
    p = sub.add_parser("text", help="any text file, or a folder of .txt/.md/.rst files")
    p.add_argument("--input", required=True, help="a file, or a folder searched recursively")
    p.add_argument("--name", required=True, help="dataset name: writes DATA_DIR/NAME/")
    p.add_argument("--tokenizer", choices=["bytes", "gpt2"], default="bytes")
    p.add_argument("--data_dir", **dd)
    args = parser.parse_args(argv)
    try:
        if args.source == "demo":
            prepare_demo(args.data_dir)
        elif args.source == "wikitext103":
            prepare_wikitext103(args.data_dir, tokenizer=args.tokenizer)
        else:
            prepare_text(args.input, args.name, args.tokenizer, args.data_dir)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
