"""Inputs are never harmed and reports never half-written (issue 12, points 3, 4 and 8).

``-o`` naming an input is refused before anything is written; a report reaches its ``-o``
file only when the run succeeded (a failed, interrupted or cut-off run leaves the previous
file as it was, and no temporary file); Ctrl-C exits 130 and a closed pipe 141. Runs that
could crash the interpreter before the fix (a memory-mapped input truncated under it dies
of SIGBUS) run in a subprocess, ``python -m cecheck``.
"""

from __future__ import annotations

import builtins
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from textcheck import strict_json

from cecheck import engine, inputs
from cecheck.atomicfile import atomic_text_file
from cecheck.cli import cecheck
from cecheck.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "sample_data"
OLD = b"the previous report\n"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """``python -m cecheck ARGS`` in ``cwd``, with this checkout's cecheck."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cecheck", *args],
        capture_output=True, check=False, cwd=cwd, env=env, timeout=300,
    )  # fmt: skip


def run(*args: str) -> Result:
    return CliRunner().invoke(cecheck, list(args), catch_exceptions=False)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file in ``directory`` (hidden ones too) and its bytes."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory with copies of sample inputs: a.npy, b.npy (labels), s.csv, q.npz."""
    for src, name in [
        ("tf_example_logits.npy", "a.npy"),
        ("tf_example_labels.npy", "b.npy"),
        ("binary_sweep.csv", "s.csv"),
        ("sequence.npz", "q.npz"),
    ]:
        (tmp_path / name).write_bytes((DATA / src).read_bytes())
    np.save(tmp_path / "w.npy", np.array([1.0, 2.0, 0.5]))
    return tmp_path


# ---------------------------------------------------------------- -o naming an input


SAME_FILE_CASES = {
    "logits npy": (["compare", "a.npy", "b.npy"], "a.npy"),
    "logits through ./": (["compare", "a.npy", "b.npy"], "./a.npy"),
    "logits through a symlink": (["compare", "a.npy", "b.npy"], "link.npy"),
    "logits through a hard link": (["compare", "a.npy", "b.npy"], "hard.npy"),
    "labels npy": (["compare", "a.npy", "b.npy", "--format", "json"], "b.npy"),
    "one csv": (["compare", "s.csv", "--format", "csv"], "s.csv"),
    "one npz": (["compare", "q.npz"], "q.npz"),
    "class weights file": (["compare", "a.npy", "b.npy", "--class-weights", "w.npy"], "w.npy"),
    "trace logits": (["trace", "a.npy", "b.npy"], "a.npy"),
    "trace labels, absolute": (["trace", "a.npy", "b.npy", "--format", "json"], "ABS/b.npy"),
}


@pytest.mark.parametrize("case", list(SAME_FILE_CASES))
def test_output_naming_an_input_is_refused(work: Path, case: str) -> None:
    args, output = SAME_FILE_CASES[case]
    output = output.replace("ABS", str(work))
    (work / "link.npy").symlink_to("a.npy")
    os.link(work / "a.npy", work / "hard.npy")
    before = snapshot(work)
    done = cli(*args, "-o", output, cwd=work)
    assert done.returncode == 2, done.stderr
    assert done.stderr.decode() == f"Error: -o {output} is one of the inputs\n"
    assert done.stdout == b""
    assert snapshot(work) == before


SHARD_CASES = {
    "a glob's shard": (["lg/logits-*.npy", "lb/labels-*.npy"], "lg/logits-1.npy"),
    "a directory's shard": (["lg", "lb"], "lb/labels-0.npy"),
    "a listed shard": (["@lg.txt", "@lb.txt"], "lg/logits-0.npy"),
    "the list itself": (["@lg.txt", "@lb.txt"], "lb.txt"),
}


@pytest.mark.parametrize("case", list(SHARD_CASES))
def test_output_naming_a_shard_is_refused(work: Path, case: str) -> None:
    for folder, stem, src in (("lg", "logits", "a.npy"), ("lb", "labels", "b.npy")):
        (work / folder).mkdir()
        for i in range(2):
            (work / folder / f"{stem}-{i}.npy").write_bytes((work / src).read_bytes())
        (work / f"{folder}.txt").write_text(f"{folder}/{stem}-0.npy\n{folder}/{stem}-1.npy\n")
    args, output = SHARD_CASES[case]
    before = {d: snapshot(work / d) for d in (".", "lg", "lb")}
    done = cli("compare", *args, "--format", "json", "-o", output, cwd=work)
    assert done.returncode == 2, done.stderr
    assert done.stderr.decode() == f"Error: -o {output} is one of the inputs\n"
    assert {d: snapshot(work / d) for d in (".", "lg", "lb")} == before
    assert cli("compare", *args, "--format", "json", "-o", "r.json", cwd=work).returncode == 0


def test_output_beside_the_inputs_is_fine(work: Path) -> None:
    """Only the same file is refused: a new name next to the inputs is written."""
    done = cli("compare", "a.npy", "b.npy", "--format", "json", "-o", "a.json", cwd=work)
    assert done.returncode == 0, done.stderr
    assert strict_json((work / "a.json").read_text())["rows"]["total"] == 1


# ---------------------------------------------------------------- atomic reports


def _failing_after_one_chunk(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """The engine yields its first chunk (the CSV writer writes it), then ``error`` happens,
    as when a later chunk of a file holds a bad cell or the user presses Ctrl-C."""
    real = engine.iter_chunks

    def failing(*args: Any, **kw: Any) -> Iterator[engine.ChunkResult]:
        yield next(real(*args, **kw))
        raise error

    monkeypatch.setattr(engine, "iter_chunks", failing)


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_input_error_halfway_keeps_the_previous_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    report = tmp_path / "r.out"
    report.write_bytes(OLD)
    _failing_after_one_chunk(monkeypatch, InputError("x.csv line 9: 'oops' is not a number"))
    result = run("compare", str(DATA / "binary_sweep.csv"), "--format", fmt, "-o", str(report))
    assert result.exit_code == 2
    assert result.stderr == "Error: x.csv line 9: 'oops' is not a number\n"
    assert snapshot(tmp_path) == {"r.out": OLD}  # unchanged, and no temporary file


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_ctrl_c_exits_130_and_keeps_the_previous_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    report = tmp_path / "r.out"
    report.write_bytes(OLD)
    _failing_after_one_chunk(monkeypatch, KeyboardInterrupt())
    result = run("compare", str(DATA / "binary_sweep.csv"), "--format", fmt, "-o", str(report))
    assert result.exit_code == 130
    assert result.stderr == "Interrupted (Ctrl-C)\n"
    assert snapshot(tmp_path) == {"r.out": OLD}


def test_ctrl_c_in_trace_exits_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = tmp_path / "t.json"
    report.write_bytes(OLD)
    _failing_after_one_chunk(monkeypatch, KeyboardInterrupt())  # while it picks the worst row
    result = run("trace", str(DATA / "binary_sweep.csv"), "--format", "json", "-o", str(report))
    assert result.exit_code == 130
    assert snapshot(tmp_path) == {"t.json": OLD}


def test_real_input_error_late_in_a_csv_keeps_the_previous_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real file: the bad cell is past the rows read when the file is opened, in the last
    of many small chunks, so the first chunks' lines have been written when it is found."""
    monkeypatch.setattr(engine, "CHUNK_ELEMENTS", 1024)
    monkeypatch.setattr("cecheck.fast.CHUNK_BYTES", 4096)
    n = inputs.HEAD_ROWS + 4000
    data = tmp_path / "in" / "z.csv"
    data.parent.mkdir()
    data.write_text("z,label\n" + "".join(f"{i % 7 - 3}.5,{i % 2}\n" for i in range(n)) + "x,1\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "r.csv").write_bytes(OLD)
    result = run("compare", str(data), "--format", "csv", "-o", str(out / "r.csv"))
    assert result.exit_code == 2
    assert f"line {n + 2}, column 'z': 'x' is not a number" in result.stderr
    assert snapshot(out) == {"r.csv": OLD}


@pytest.mark.parametrize(
    ("command", "fmt"),
    [("compare", "table"), ("compare", "json"), ("compare", "csv"), ("trace", "json")],
)
def test_a_successful_run_replaces_the_report(tmp_path: Path, command: str, fmt: str) -> None:
    report = tmp_path / "r.out"
    report.write_bytes(OLD)
    report.chmod(0o640)
    result = run(command, str(DATA / "binary_sweep.csv"), "--format", fmt, "-o", str(report))
    assert result.exit_code == 0, result.stderr
    text = report.read_text()
    assert text != OLD.decode()
    if fmt == "json":
        strict_json(text)
    assert snapshot(tmp_path).keys() == {"r.out"}
    assert report.stat().st_mode & 0o777 == 0o640  # the replaced file's permissions


def test_a_new_report_has_the_permissions_of_a_new_file(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        result = run("compare", str(DATA / "binary_sweep.csv"), "-o", str(tmp_path / "new.txt"))
    finally:
        os.umask(old)
    assert result.exit_code == 0
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644


def test_atomic_text_file_writes_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_bytes(OLD)
    (tmp_path / "link.txt").symlink_to("real.txt")
    with atomic_text_file(tmp_path / "link.txt") as f:
        f.write("new\n")
    assert (tmp_path / "link.txt").is_symlink()
    assert (tmp_path / "real.txt").read_text() == "new\n"
    assert snapshot(tmp_path).keys() == {"link.txt", "real.txt"}


# ``python -m cecheck`` whose report, once written in full, waits before it is renamed into
# place (os.fsync is the last step before the rename): the test's SIGINT then always arrives
# while the run is unfinished, however busy the machine is.
_HELD_AT_FSYNC = """
import os, runpy, sys, time
def held(fd):
    open("fsync-reached", "w").close()
    time.sleep(600)
os.fsync = held
sys.argv = ["cecheck", *sys.argv[1:]]
runpy.run_module("cecheck", run_name="__main__")
"""


def test_sigint_exits_130_and_keeps_the_previous_report(tmp_path: Path) -> None:
    """A real Ctrl-C: SIGINT sent to ``python -m cecheck`` before its report is in place."""
    n = 1_000
    np.save(tmp_path / "z.npy", np.linspace(-50, 50, n))
    np.save(tmp_path / "y.npy", (np.arange(n) % 2).astype(np.float64))
    out = tmp_path / "out"
    out.mkdir()
    (out / "r.csv").write_bytes(OLD)
    proc = subprocess.Popen(
        [sys.executable, "-c", _HELD_AT_FSYNC, "compare", "z.npy", "y.npy", "--format", "csv",
         "-o", "out/r.csv"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    while not (tmp_path / "fsync-reached").exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # the report, unrenamed
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert stderr.decode() == "Interrupted (Ctrl-C)\n"
    assert stdout == b""
    assert snapshot(out) == {"r.csv": OLD}


def test_closed_pipe_exits_141_quietly(tmp_path: Path) -> None:
    """``cecheck compare ... | head -1``: no traceback, no 'Exception ignored', code 141."""
    n = 200_000
    np.save(tmp_path / "z.npy", np.linspace(-50, 50, n))
    np.save(tmp_path / "y.npy", (np.arange(n) % 2).astype(np.float64))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cecheck", "compare", "z.npy", "y.npy", "--format", "csv"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline()
    proc.stdout.close()  # the reader goes away with the output still coming
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 141
    assert err == b""


def test_closed_pipe_after_a_small_report_exits_141_quietly(tmp_path: Path) -> None:
    """The whole report fits in the buffer: the closed pipe shows only at the final flush."""
    r, w = os.pipe()
    os.close(r)  # nobody will ever read
    done = subprocess.run(
        [sys.executable, "-m", "cecheck", "compare", "tf_example_logits.npy",
         "tf_example_labels.npy"],
        cwd=DATA, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=w, stderr=subprocess.PIPE, check=False, timeout=300,
    )  # fmt: skip
    os.close(w)
    assert done.returncode == 141
    assert done.stderr == b""


# ---------------------------------------------------------------- one-line file errors


def _unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``chmod 000 path``, and, since root reads such a file anyway, what a user would see:
    os.access (click's check) says no and open() raises PermissionError."""
    path.chmod(0)
    real_open = builtins.open
    real_access = os.access

    def denied(file: Any, *args: Any, **kw: Any) -> Any:
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(file) == str(path):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kw)

    def access(file: Any, mode: int, *args: Any, **kw: Any) -> bool:
        if os.path.abspath(file) == str(path):
            return False
        return real_access(file, mode, *args, **kw)

    monkeypatch.setattr(builtins, "open", denied)
    monkeypatch.setattr(os, "access", access)


@pytest.mark.parametrize("which", ["logits", "labels"])
@pytest.mark.parametrize("command", ["compare", "trace"])
def test_unreadable_input_is_one_line(
    work: Path, monkeypatch: pytest.MonkeyPatch, which: str, command: str
) -> None:
    path = work / ("a.npy" if which == "logits" else "b.npy")
    _unreadable(path, monkeypatch)
    try:
        result = run(command, str(work / "a.npy"), str(work / "b.npy"))
    finally:
        path.chmod(0o644)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: cannot read {path} (Permission denied): check its permissions\n"
    )


def test_other_read_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(path: str, *_args: object, **_kw: object) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), path)

    monkeypatch.setattr(inputs, "open_inputs", failing)
    result = run("compare", "z.npy", "y.npy")
    assert result.exit_code == 2
    assert result.stderr == "Error: cannot read z.npy (Input/output error): check the file\n"


def test_directory_as_output_is_one_line(tmp_path: Path) -> None:
    result = run("compare", str(DATA / "binary_sweep.csv"), "-o", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: -o {tmp_path} is a directory: give a file name, such as "
        f"{tmp_path / 'report.txt'}\n"
    )


def test_unwritable_output_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An existing -o file the user may not write (as click checked it, in one line)."""
    report = tmp_path / "r.txt"
    report.write_bytes(OLD)
    report.chmod(0o444)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda f, m, **kw: m != os.W_OK and real_access(f, m, **kw)
    )  # as a user other than root sees a read-only file
    result = run("compare", str(DATA / "binary_sweep.csv"), "-o", str(report))
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: cannot write {report} (Permission denied): check its permissions\n"
    )
    assert report.read_bytes() == OLD


def test_output_in_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    report = tmp_path / "no" / "r.txt"
    result = run("compare", str(DATA / "binary_sweep.csv"), "-o", str(report))
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: cannot write {report} (No such file or directory): check that its "
        "directory exists and that you may write there\n"
    )
