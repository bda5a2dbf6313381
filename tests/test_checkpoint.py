"""Checkpoints that cannot silently lie or be lost: a flipped byte in the tensors is caught on load,
and a save that fails (disk full, no permission) is one line that leaves the previous checkpoint
intact, no temporary file, and a run that resumes."""

import errno
import io
import os
import struct
import zipfile

import pytest
import torch
from test_train import run_train, tiny_args, write_corpus

import checkpoint
from checkpoint import load_checkpoint, remove_partial_save, save_checkpoint
from configurator import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_ckpt(iter_num=3):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 16, generator=g)  # 4096 bytes: the only tensor of that size
    opt = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(10)}}}
    return {"model": {"w": w}, "optimizer": opt, "iter_num": iter_num, "rng": (torch.ones(5),)}


def test_eval_encoding_kwargs_are_saved_then_override_then_rope_scaling():
    """What load_model builds and a sweep checks up front: later sources win key by key."""
    saved = {"base": 500.0, "factor": 2.0, "keep": 1}
    args = dict(encoding="rope", encoding_kwargs=saved)
    e = dict(encoding_kwargs={"base": 10.0, "scaling": "linear"}, rope_scaling="yarn")
    got = checkpoint.eval_encoding_kwargs(args, e | dict(rope_factor=4))
    assert got == {"base": 10.0, "factor": 4.0, "keep": 1, "scaling": "yarn"}
    assert checkpoint.eval_encoding_kwargs(args, e)["factor"] == 8.0  # ROPE_FACTOR
    assert checkpoint.eval_encoding_kwargs(args, dict(rope_scaling="", encoding_kwargs={})) == saved
    assert checkpoint.eval_encoding_kwargs(args, {}) == saved
    assert saved == {"base": 500.0, "factor": 2.0, "keep": 1}  # not changed in place
    with pytest.raises(UserError, match="this checkpoint uses alibi"):
        checkpoint.eval_encoding_kwargs(dict(encoding="alibi", encoding_kwargs={}), e)


def flip_byte_in_member(path, nbytes):
    """XOR one byte in the middle of the zip member holding nbytes of tensor data, in place."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if "/data/" in i.filename and i.file_size == nbytes)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)  # local header: name and extra lengths, then the data
        n, m = struct.unpack("<HH", f.read(4))
        f.seek(info.header_offset + 30 + n + m + nbytes // 2)
        byte = f.read(1)[0]
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte ^ 0xFF]))


def test_a_flipped_byte_in_the_weights_is_a_one_line_error(tmp_path):
    save_checkpoint(str(tmp_path), tiny_ckpt())
    path = str(tmp_path / "ckpt.pt")
    assert torch.equal(load_checkpoint(path)["model"]["w"], tiny_ckpt()["model"]["w"])
    flip_byte_in_member(path, 64 * 16 * 4)
    raw = torch.load(path, weights_only=True)  # torch itself notices nothing
    assert not torch.equal(raw["model"]["w"], tiny_ckpt()["model"]["w"])
    with pytest.raises(UserError) as e:
        load_checkpoint(str(tmp_path))
    msg = str(e.value)
    assert path in msg and "corrupt" in msg and "copy" in msg and "\n" not in msg
    assert load_checkpoint(path, mmap=True)["iter_num"] == 3  # metadata reads skip the CRC


@pytest.mark.parametrize("size", [0, 200])
def test_a_truncated_checkpoint_is_a_one_line_error_with_advice(tmp_path, size):
    save_checkpoint(str(tmp_path), tiny_ckpt())
    os.truncate(tmp_path / "ckpt.pt", size)
    with pytest.raises(UserError) as e:
        load_checkpoint(str(tmp_path))
    assert "\n" not in str(e.value) and "restore it from a copy" in str(e.value)


def test_the_crc_covers_every_tensor_and_older_checkpoints_still_load(tmp_path):
    ckpt = tiny_ckpt()
    crc = checkpoint.tensors_crc32(ckpt)
    ckpt["optimizer"]["state"][0]["step"] += 1  # a tensor in the optimizer state
    assert checkpoint.tensors_crc32(ckpt) != crc
    ckpt, path = tiny_ckpt(), tmp_path / "old.pt"
    torch.save(ckpt, path)  # no crc32 key: as written before checkpoints carried one
    assert load_checkpoint(str(path))["iter_num"] == 3


def full_disk(monkeypatch, room):
    """checkpoint.py's open() gives files that take `room` bytes, then fail as a full disk does."""

    class FullDisk(io.FileIO):
        left = room

        def write(self, b):
            n = min(len(b), FullDisk.left)
            FullDisk.left -= n
            if n < len(b):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(b)

    monkeypatch.setattr(checkpoint, "open", FullDisk, raising=False)


@pytest.mark.parametrize("room", [0, 3000])
def test_disk_full_keeps_the_previous_checkpoint_and_no_temp_file(tmp_path, monkeypatch, room):
    save_checkpoint(str(tmp_path), tiny_ckpt(iter_num=3))
    full_disk(monkeypatch, room)
    with pytest.raises(UserError) as e:
        save_checkpoint(str(tmp_path), tiny_ckpt(iter_num=4))
    path, msg = str(tmp_path / "ckpt.pt"), str(e.value)
    assert msg.startswith(f"could not save {path}: No space left on device; the previous ")
    assert "intact" in msg and "--init_from=resume" in msg
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    monkeypatch.undo()
    assert load_checkpoint(str(tmp_path))["iter_num"] == 3


def test_permission_denied_is_one_line_naming_the_file(tmp_path, monkeypatch):
    def denied(path, mode):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(checkpoint, "open", denied, raising=False)
    with pytest.raises(UserError, match=f"could not save {tmp_path}/ckpt.pt: Permission denied;"):
        save_checkpoint(str(tmp_path), tiny_ckpt())
    assert os.listdir(tmp_path) == []


def test_a_run_whose_save_fails_resumes_from_its_previous_checkpoint(tmp_path, monkeypatch, capsys):
    data, out = str(tmp_path / "data"), str(tmp_path / "run")
    write_corpus(data)
    assert run_train(tiny_args(data, out, max_iters=10)) == 0
    full_disk(monkeypatch, room=1000)
    assert run_train(tiny_args(data, out, max_iters=20, init_from="resume")) == 2  # saves at 15
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: could not save") and "\n" not in err
    assert not os.path.exists(os.path.join(out, "ckpt.pt.tmp"))
    monkeypatch.undo()
    with open(os.path.join(out, "ckpt.pt.tmp"), "wb") as f:
        f.write(b"PK\x03\x04 cut short")  # as a save killed midway leaves it
    assert run_train(tiny_args(data, out, max_iters=20, init_from="resume")) == 0
    ckpt = load_checkpoint(out)
    assert ckpt["iter_num"] == 20 and ckpt["finished"]
    assert not os.path.exists(os.path.join(out, "ckpt.pt.tmp"))
    remove_partial_save(out)  # nothing to remove: no error
