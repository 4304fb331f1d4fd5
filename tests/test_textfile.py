"""dhc.textfile.read_regular: the one way dhc reads a file a user named (regular files only, size capped)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dhc.textfile import FileRefused, read_regular, read_text


def test_a_regular_file_and_a_symlink_to_one_are_read(tmp_path):
    (tmp_path / "a.json").write_bytes(b"{}")
    (tmp_path / "b.json").symlink_to(tmp_path / "a.json")
    assert read_regular(tmp_path / "a.json", 10) == b"{}" and read_text(tmp_path / "b.json", 10) == "{}"


@pytest.mark.parametrize(("make", "words"), [
    (lambda p: os.mkfifo(p), "is a FIFO (named pipe), not a regular file; refused"),
    (lambda p: p.mkdir(), "is a folder, not a regular file; refused"),
    (lambda p: p.symlink_to("/dev/zero"), "is a character device, not a regular file; refused"),
    (lambda p: None, "file not found"),
    (lambda p: p.write_bytes(b"x" * 11), "larger than 10 bytes"),
    (lambda p: p.write_bytes(b"\xff\xfe"), "not UTF-8 text (byte 0)"),
])
def test_what_is_refused_and_why(tmp_path, make, words):
    path = tmp_path / "report.json"
    make(path)
    with pytest.raises(FileRefused) as err:
        read_text(path, 10)
    assert str(err.value) == f"{path}: {words}" or words in str(err.value)


def dhc(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DHC_")} | {"DHC_IMDS": "off"}
    return subprocess.run([sys.executable, "-m", "dhc", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("command", [
    ("report", "show", "{fifo}"),
    ("thresholds", "validate", "{fifo}"),
    ("nccl-tests", "{fifo}", "--instance-type", "cpu", "--scope", "intra"),
    ("report", "fleet", "{folder}", "-o", "{folder}/fleet.html"),
])
def test_no_command_waits_on_a_fifo_named_like_its_input(tmp_path, command):
    """Each of these blocked forever on open() or read() before (a FIFO has no writer)."""
    folder = tmp_path / "node-1"
    folder.mkdir()
    fifo = folder / "report.json"
    os.mkfifo(fifo)
    proc = dhc(*(part.format(fifo=fifo, folder=tmp_path) for part in command))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{fifo}: is a FIFO (named pipe), not a regular file; refused" in proc.stderr.replace("skipped ", "")


def test_the_fifo_is_untouched(tmp_path):
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    with pytest.raises(FileRefused):
        read_regular(fifo, 10)
    assert Path(fifo).is_fifo()
