"""
Prepare token datasets for nanoPE: text in, flat arrays of token ids out.

    python data/prepare.py demo                        # offline corpus, byte tokenizer
    python data/prepare.py wikitext103                 # WikiText-103 (raw), GPT-2 BPE
    python data/prepare.py text --input PATH --name NAME [--tokenizer bytes|gpt2]

Each writes DATA_DIR/NAME/{train,val,test}.bin (token ids), then meta.json (last: it means
"complete") with the counts of each split; docs/data.md describes both.
"""

import argparse
import ast
import contextlib
import glob
import io
import itertools
import json
import os
import socket
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import numpy as np

DATA_DIR = os.path.dirname(os.path.abspath(__file__))  # the repo's data/ folder
SPLITS = ("train", "val", "test")
TEXT_SUFFIXES = (".txt", ".md", ".rst")  # what `text --input FOLDER` picks up
CHUNK_CHARS = 1 << 20  # tokenize ~1M characters at a time: bounded memory, threads stay busy
WIKITEXT_ENV = "NANOPE_WIKITEXT_PATH"  # a local copy of the dataset's parquet files
WIKITEXT_SPLITS = {"train": "train", "val": "validation", "test": "test"}  # ours -> the hub's
KNOWN = {  # the arguments of `python data/prepare.py` that build the datasets we can build alone
    "demo": "demo",
    "wikitext103": "wikitext103",
    "wikitext103_bytes": "wikitext103 --tokenizer bytes",
}


class PrepareError(Exception):
    """A problem the user can fix; the CLI prints the one-line message, no traceback."""


class ByteTokenizer:
    """UTF-8 bytes as tokens: vocab 256, needs nothing downloaded, bits/byte comes for free."""

    name, vocab_size, eot_token = "bytes", 256, None

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):  # a window may start or end inside a multi-byte character
        return bytes(ids).decode("utf-8", errors="replace")


class TiktokenTokenizer:
    """A tiktoken Encoding (GPT-2 BPE). Special tokens are never parsed out of the text."""

    def __init__(self, enc):
        self.enc, self.name, self.vocab_size = enc, enc.name, enc.n_vocab
        self.eot_token = enc.eot_token if "<|endoftext|>" in enc.special_tokens_set else None
        self.encode = enc.encode_ordinary

    def decode(self, ids):
        return self.enc.decode(list(ids), errors="replace")


def get_tokenizer(name):
    if name == "bytes":
        return ByteTokenizer()
    if name != "gpt2":
        raise PrepareError(f"unknown tokenizer {name!r}: use 'bytes' or 'gpt2'")
    try:
        import tiktoken

        return TiktokenTokenizer(tiktoken.get_encoding("gpt2"))
    except (ImportError, OSError, ValueError) as e:  # OSError: no network; ValueError: bad hash
        raise PrepareError(
            f"could not load the GPT-2 BPE vocabulary, which tiktoken downloads on first use "
            f"({type(e).__name__}: {_first_line(e)}). Offline: `python data/prepare.py demo`;"
            f" `text --input PATH --name NAME --tokenizer bytes`; `wikitext103 --tokenizer bytes`"
            f" with {WIKITEXT_ENV}=DIR, a local copy of the dataset's parquet files (the hub needs"
            f" network too); or TIKTOKEN_CACHE_DIR=tiktoken's cache copied from a machine online"
        ) from e


def _first_line(e):  # of an exception's message, at most 160 characters
    return (str(e).strip().splitlines() or [""])[0][:160]


@contextlib.contextmanager
def atomic(path, mode="w", **kwargs):
    """path (and its folder) written under a temporary name: complete or absent. A full disk or a
    read-only directory is a one-line PrepareError: every script writes its files through here."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path + ".tmp", mode, **kwargs) as f:
            yield f
        os.replace(path + ".tmp", path)
    except OSError as e:
        fix = "free space or fix permissions, then run the same command again"
        raise PrepareError(f"cannot write {path}: {e.strerror or e}; {fix}") from None


def write_json(path, obj, indent=2):
    """Write obj as JSON atomically: every script writes its JSON through this."""
    with atomic(path) as f:
        f.write(json.dumps(obj, indent=indent) + "\n")


def token_dtype(vocab_size):
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def write_tokens(path, chunks, vocab_size):
    """Stream sequences of token ids to a flat binary file; returns the number of tokens."""
    n, dtype = 0, token_dtype(vocab_size)
    with atomic(path, "wb") as f:
        for ids in chunks:
            np.asarray(ids, dtype=dtype).tofile(f)
            n += len(ids)
    return n


def iter_chunks(pieces, chunk_chars=CHUNK_CHARS):
    """Regroup strings (lines, rows) into ~chunk_chars strings of the same text, cut only where the
    parts give the tokens of the whole: BPE never merges across GPT-2's pre-tokenizer pieces,
    which break before " X" and after a lone "\\n" (str.isspace: a superset of the regex's \\s)."""
    buf, size, tail = [], 0, ""
    for p in filter(None, pieces):
        space_word = p[:1] == " " and p[1:2] and not p[1].isspace()
        newline = tail[-1:] == "\n" and tail[-2:-1] and not tail[-2].isspace()
        if size >= chunk_chars and (space_word or (newline and not p[0].isspace())):
            yield "".join(buf)
            buf, size = [], 0
        buf.append(p)
        size, tail = size + len(p), (tail + p)[-2:]
    if buf:
        yield "".join(buf)


def write_split(path, lines, tokenizer):
    """Tokenize a text given line by line (a blank line may be "", as the hub's WikiText rows)
    into path; returns its counts."""
    n = dict(tokens=0, bytes=0, words=0, lines=0)

    def count(line):  # a line holds whole words: words add up line by line
        n["lines"] += 1
        n["bytes"] += len(line.encode("utf-8"))
        n["words"] += len(line.split())
        return line

    threads = os.cpu_count() or 1  # tiktoken releases the GIL
    chunks = iter_chunks(map(count, lines))
    batches = iter(lambda: list(itertools.islice(chunks, 2 * threads)), [])  # bounded memory
    with ThreadPoolExecutor(threads) as pool:
        ids = (ids for b in batches for ids in pool.map(tokenizer.encode, b))
        n["tokens"] = write_tokens(path, ids, tokenizer.vocab_size)
    return n | {"word_level_tokens": n["words"] + n["lines"]}  # + one </s> per line


def write_dataset(out_dir, name, source, tokenizer, split_lines):
    """split_lines: {"train": iterable of lines, "val": ..., "test": ...}. Returns meta."""
    os.makedirs(out_dir, exist_ok=True)
    meta_path = os.path.join(out_dir, "meta.json")
    if os.path.exists(meta_path):
        os.remove(meta_path)  # a rebuild interrupted halfway must not look complete
    meta = dict(name=name, source=source, tokenizer=tokenizer.name, vocab_size=tokenizer.vocab_size)
    meta["dtype"] = token_dtype(tokenizer.vocab_size).name
    meta["eot_token"] = tokenizer.eot_token  # recorded for reference; never inserted in the data
    meta["splits"] = {}
    for split in SPLITS:
        print(f"tokenizing {name}/{split} with {tokenizer.name} ...")
        path = os.path.join(out_dir, f"{split}.bin")
        meta["splits"][split] = write_split(path, split_lines[split], tokenizer)
    write_json(meta_path, meta)
    print(f"wrote {out_dir}/{{train,val,test}}.bin + meta.json")
    for split, s in meta["splits"].items():
        counts = f"{s['tokens']:>13,} tokens {s['bytes']:>13,} bytes {s['words']:>12,} words"
        print(f"  {split:5s} {counts} {s['word_level_tokens']:>12,} word-level tokens")
    return meta


# -----------------------------------------------------------------------------
# sources: any text file or folder, the offline demo corpus, WikiText-103
def split_text(text):
    """The last 5% of characters -> test, the 5% before -> val, the rest -> train; each cut just
    after the next newline (else space) within 1% of the text: no word, and no line if possible,
    is cut in two."""

    def cut(target):
        for sep in ("\n", " "):
            i = text.find(sep, target, target + max(1, len(text) // 100))
            if i != -1:
                return i + 1
        return target

    a = cut(int(len(text) * 0.90))
    b = max(a, cut(int(len(text) * 0.95)))
    parts = {"train": text[:a], "val": text[a:b], "test": text[b:]}
    if empty := [k for k, v in parts.items() if not v.strip()]:
        what = f"text too small to split ({len(text):,} characters): the {', '.join(empty)} split"
        raise PrepareError(f"{what} would be empty; give at least a few kilobytes of text")
    return parts


def _lines(text):
    """text cut after every "\\n", as a file is read (str.splitlines would also cut at \\f,
    \\u2028, ..., which fairseq's readline keeps inside the line)."""
    return list(io.StringIO(text, newline="\n"))


def read_text_input(input_path):
    """One file, or every *.txt/*.md/*.rst under a folder (recursively, sorted by relative path;
    glob skips hidden files and folders), joined with a newline after each file."""
    if os.path.isfile(input_path):
        files = [input_path]
    elif os.path.isdir(input_path):
        every = glob.glob(os.path.join(glob.escape(input_path), "**", "*"), recursive=True)
        files = [p for p in every if p.lower().endswith(TEXT_SUFFIXES) and os.path.isfile(p)]
        if not files:
            raise PrepareError(f"no {'/'.join(TEXT_SUFFIXES)} files found under {input_path}")
    else:
        raise PrepareError(f"input not found: {input_path}")
    parts = []
    for path in sorted(files):  # by relative path: they share input_path
        try:
            with open(path, encoding="utf-8") as f:
                t = f.read()
        except UnicodeDecodeError as e:
            raise PrepareError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
        parts.append(t if t.endswith("\n") or not t else t + "\n")
    print(f"read {len(files)} file(s) from {input_path}")
    return "".join(parts)


def prepare_text(input_path, name, tokenizer="bytes", data_dir=DATA_DIR):
    if not name or name != os.path.basename(name) or name.startswith("."):
        raise PrepareError(f"--name must be a plain folder name, got {name!r}")
    tok = get_tokenizer(tokenizer)  # fail before reading a big input
    parts = split_text(read_text_input(input_path))
    pieces = {k: _lines(v) for k, v in parts.items()}
    return write_dataset(os.path.join(data_dir, name), name, "text", tok, pieces)


# The demo corpus: the docs of pure-Python standard-library modules in every CPython install,
# read with ast and never imported (no side effects; no paths or addresses get into the text).
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


def _docstrings(node, prefix):
    """(qualified name, docstring) of the public classes and functions under node, in order."""
    for child in node.body:
        if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            if child.name.startswith("_"):
                continue
            name, doc = f"{prefix}.{child.name}", ast.get_docstring(child)
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
        base = os.path.join(stdlib, *module.split("."))
        paths = [p for p in (base + ".py", os.path.join(base, "__init__.py")) if os.path.isfile(p)]
        if not paths:  # moved or removed in this Python version
            continue
        with open(paths[0], encoding="utf-8") as f:
            tree = ast.parse(f.read())
        docs = [(module, ast.get_docstring(tree))] + list(_docstrings(tree, module))
        parts += [f"{name}\n\n{doc}\n\n" for name, doc in docs if doc]
    return "".join(parts)


def prepare_demo(data_dir=DATA_DIR):
    out_dir, text = os.path.join(data_dir, "demo"), demo_text()
    os.makedirs(out_dir, exist_ok=True)
    with atomic(os.path.join(out_dir, "input.txt"), encoding="utf-8", newline="") as f:
        f.write(text)  # so users can read what it learns
    print(f"demo corpus: {len(text.encode('utf-8')):,} bytes of Python's own documentation")
    pieces = {k: _lines(v) for k, v in split_text(text).items()}
    return write_dataset(out_dir, "demo", "demo", ByteTokenizer(), pieces)


def load_wikitext():
    """The dataset (train/validation/test, a `text` column) from the hub or its local cache, or
    from parquet files: $NANOPE_WIKITEXT_PATH[/wikitext-103-raw-v1]/{split}-*.parquet."""
    path = os.environ.get(WIKITEXT_ENV)
    try:
        # offline, `datasets` retries for ~25 s: if the hub is unreachable go offline at once (a
        # cached copy still loads); datasets reads these variables on import, hence before it
        if not path and not os.environ.get("HF_HUB_OFFLINE"):
            url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
            port = url.port or (443 if url.scheme == "https" else 80)
            try:
                socket.create_connection((url.hostname, port), timeout=5.0).close()
            except OSError:
                print("the Hugging Face hub is unreachable: looking in the local cache only")
                os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
        import datasets

        if not path:
            print("loading Salesforce/wikitext (wikitext-103-raw-v1) with datasets")
            return datasets.load_dataset("Salesforce/wikitext", "wikitext-103-raw-v1")
        folder = os.path.join(path, "wikitext-103-raw-v1")
        folder = folder if os.path.isdir(folder) else path
        splits = WIKITEXT_SPLITS.values()
        files = {s: sorted(glob.glob(os.path.join(folder, f"{s}-*.parquet"))) for s in splits}
        if missing := [s for s, found in files.items() if not found]:
            raise PrepareError(f"{WIKITEXT_ENV}: no {missing[0]}-*.parquet files in {folder}")
        print(f"loading WikiText-103 from local parquet files in {folder}")
        return datasets.load_dataset("parquet", data_files=files)
    except (ImportError, OSError, ValueError) as e:  # no network, offline, missing or bad files
        raise PrepareError(
            f"could not load WikiText-103 ({type(e).__name__}: {_first_line(e)}). Alternatives:"
            f" `python data/prepare.py demo` (offline corpus); `python data/prepare.py text --input"
            f" DIR --name NAME` on local raw files; {WIKITEXT_ENV}=DIR, a local copy of the"
            f" dataset's parquet files; or a machine with network (or a filled HF_HOME cache)"
        ) from e


def prepare_wikitext103(data_dir=DATA_DIR, dataset_loader=load_wikitext, tokenizer="gpt2"):
    """WikiText-103 (raw): a row is a line of the raw file (a blank line ""), so word_level_tokens
    is fairseq's count on the word-level release. dataset_loader: what load_wikitext returns."""
    tok = get_tokenizer(tokenizer)  # fail before a long download, not after it
    ds = dataset_loader()

    def rows(split):  # a few thousand at a time: a datasets.Dataset lives on disk
        batches = split.iter(batch_size=10_000) if hasattr(split, "iter") else [split]
        return (row for b in batches for row in b["text"])

    name = "wikitext103" if tokenizer == "gpt2" else f"wikitext103_{tokenizer}"
    pieces = {ours: rows(ds[theirs]) for ours, theirs in WIKITEXT_SPLITS.items()}
    return write_dataset(os.path.join(data_dir, name), name, "wikitext103", tok, pieces)


# -----------------------------------------------------------------------------
# what train.py and the eval scripts call, and the command line
def load_meta(dataset_dir):
    """meta.json of a complete dataset; else an error naming the command that builds it."""
    data_dir, name = os.path.split(os.path.abspath(dataset_dir))
    cmd = "python data/prepare.py " + KNOWN.get(name, f"text --input PATH --name {name}")
    cmd += f" --data_dir {data_dir}" if data_dir != DATA_DIR else ""
    if not os.path.isfile(os.path.join(dataset_dir, "meta.json")):
        raise PrepareError(f"dataset not found at {dataset_dir}: run `{cmd}`")
    with open(os.path.join(dataset_dir, "meta.json")) as f:
        meta = json.load(f)
    missing = [s for s in SPLITS if not os.path.isfile(os.path.join(dataset_dir, f"{s}.bin"))]
    if missing:
        what = f"incomplete (no {', '.join(missing)}.bin)"
        raise PrepareError(f"dataset at {dataset_dir} is {what}: run `{cmd}` again")
    return meta


def ensure_prepared(name, data_dir=DATA_DIR, build=True):
    """meta of data_dir/name, building it first if it is missing and we know how (build=False:
    None then, a sweep's check before it starts)."""
    dataset_dir = os.path.join(data_dir, name)
    if not os.path.isfile(os.path.join(dataset_dir, "meta.json")) and name in KNOWN:
        if not build:
            return None
        argv = KNOWN[name].split() + ["--data_dir", data_dir]
        print(f"dataset {name!r} not found at {dataset_dir}: preparing it ({' '.join(argv)})")
        run(argv)
    return load_meta(dataset_dir)


def run(argv=None):
    """What `python data/prepare.py ARGV` does, errors raised: returns the dataset's meta."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    sub = parser.add_subparsers(dest="source", required=True)
    demo = sub.add_parser("demo", help="offline corpus from Python's own docs, bytes tokenizer")
    demo.set_defaults(run=lambda a: prepare_demo(a.data_dir))
    h = f"WikiText-103 raw via Hugging Face datasets (or local parquet files: ${WIKITEXT_ENV})"
    wiki = sub.add_parser("wikitext103", help=h, description=h)
    h = "gpt2 writes data/wikitext103/, bytes writes data/wikitext103_bytes/"
    wiki.add_argument("--tokenizer", choices=["gpt2", "bytes"], default="gpt2", help=h)
    wiki.set_defaults(run=lambda a: prepare_wikitext103(a.data_dir, tokenizer=a.tokenizer))
    text = sub.add_parser("text", help="any text file, or a folder of .txt/.md/.rst files")
    text.add_argument("--input", required=True, help="a file, or a folder searched recursively")
    text.add_argument("--name", required=True, help="dataset name: writes DATA_DIR/NAME/")
    text.add_argument("--tokenizer", choices=["bytes", "gpt2"], default="bytes")
    text.set_defaults(run=lambda a: prepare_text(a.input, a.name, a.tokenizer, a.data_dir))
    for p in (demo, wiki, text):
        p.add_argument("--data_dir", default=DATA_DIR, help="where NAME/ goes (default: data/)")
    args = parser.parse_args(argv)
    return args.run(args)


def main(argv=None):
    try:
        run(argv)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2  # a user error, as every other script (and argparse) exits
    return 0


if __name__ == "__main__":
    sys.exit(main())
