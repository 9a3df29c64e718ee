"""An input of many files (cecheck.inputs.shards, cecheck.scaleout, cecheck.cli.sharded):
globs, directories and @lists; every reader format as a shard; --workers and --dask give the
report of the concatenated file; a mismatch, a failing shard or a killed worker is one line
naming it, exit 2."""

from __future__ import annotations

import itertools
import json
import os
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cecheck import inputs, scaleout
from cecheck.cli import cecheck
from cecheck.inputs.shards import natural, open_shards
from cecheck.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CUTS = [0, 70, 71, 200, 333, 400, 512, 600, 777]  # 8 shards of uneven sizes


def _data(n: int = CUTS[-1], c: int = 9, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = np.round(rng.standard_normal((n, c)) * rng.choice([1.0, 30.0, 300.0], (n, 1)), 3)
    y = rng.integers(0, c, n)
    y[rng.random(n) < 0.05] = -100
    return z, y


def _write(kind: str, path: Path, z: np.ndarray, y: np.ndarray) -> Path:
    """One shard holding both logits and labels, in the format ``kind``."""
    out = path.with_suffix("." + kind)
    if kind == "npz":
        np.savez(out, logits=z, labels=y)
    elif kind == "safetensors":
        from safetensors.numpy import save_file

        save_file({"logits": np.ascontiguousarray(z), "labels": y}, str(out))
    elif kind in ("parquet", "arrow", "csv"):
        import pyarrow as pa

        table = pa.table({**{f"c{j}": z[:, j] for j in range(z.shape[1])}, "label": y})
        if kind == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, out)
        elif kind == "arrow":
            import pyarrow.feather as feather

            feather.write_feather(table, str(out))
        else:
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, str(out))
    return out


@pytest.fixture
def mixed(tmp_path: Path) -> dict[str, Any]:
    """8 shards in mixed formats (npz, safetensors, parquet, arrow, csv), their directory, and
    the concatenation as one file."""
    pytest.importorskip("pyarrow")
    pytest.importorskip("safetensors")
    z, y = _data()
    shards = tmp_path / "run"
    shards.mkdir()
    kinds = ["npz", "safetensors", "parquet", "arrow", "csv", "npz", "parquet", "safetensors"]
    for i, kind in enumerate(kinds):
        a, b = CUTS[i], CUTS[i + 1]
        _write(kind, shards / f"part-{i}", z[a:b], y[a:b])
    whole = tmp_path / "whole.npz"
    np.savez(whole, logits=z, labels=y)
    return {"dir": shards, "whole": whole, "z": z, "y": y}


@pytest.fixture
def mixed_pairs(tmp_path: Path) -> dict[str, Any]:
    """8 logits shards in mixed formats (npy, safetensors, parquet, arrow, csv: logits only),
    8 labels shards in .npy, and the concatenation as one file."""
    pytest.importorskip("pyarrow")
    pytest.importorskip("safetensors")
    z, y = _data(seed=5)
    logits, labels = tmp_path / "logits", tmp_path / "labels"
    logits.mkdir()
    labels.mkdir()
    kinds = ["npy", "safetensors", "parquet", "npy", "arrow", "csv", "parquet", "safetensors"]
    for i, kind in enumerate(kinds):
        a, b = CUTS[i], CUTS[i + 1]
        np.save(labels / f"part-{i}.npy", y[a:b])
        out = logits / f"part-{i}.{kind}"
        if kind == "npy":
            np.save(out, z[a:b])
        elif kind == "safetensors":
            from safetensors.numpy import save_file

            save_file({"logits": np.ascontiguousarray(z[a:b])}, str(out))
        else:
            import pyarrow as pa

            table = pa.table({f"c{j}": z[a:b, j] for j in range(z.shape[1])})
            if kind == "parquet":
                import pyarrow.parquet as pq

                pq.write_table(table, out)
            elif kind == "arrow":
                import pyarrow.feather as feather

                feather.write_feather(table, str(out))
            else:
                import pyarrow.csv as pcsv

                pcsv.write_csv(table, str(out))
    whole = tmp_path / "whole.npz"
    np.savez(whole, logits=z, labels=y)
    return {"logits": logits, "labels": labels, "whole": whole}


def test_mixed_logits_formats_pair_with_npy_labels(mixed_pairs: dict[str, Any]) -> None:
    code, out, err = _run(
        str(mixed_pairs["logits"]),
        str(mixed_pairs["labels"]),
        "--format",
        "json",
        "--dtypes",
        "float32,float64",
        "--workers",
        "2",
    )
    assert code == 0, err
    got = json.loads(out)
    assert got["shards"] == {"count": 8, "rows": CUTS[-1]}
    assert _comparable(got) == _expected(mixed_pairs["whole"])


def _run(*args: str) -> tuple[int, str, str]:
    """The CLI in a subprocess (the worker processes need a real one)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    p = subprocess.run(
        [sys.executable, "-m", "cecheck", "compare", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return p.returncode, p.stdout, p.stderr


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    """A JSON report without what differs between shards and one file: names, shard fields."""
    report = json.loads(json.dumps(report))
    report["inputs"]["logits"] = report["inputs"]["labels"] = None
    report["inputs"]["warnings"] = []
    report.pop("shards", None)
    for row in report["flagged"]:
        row.pop("shard", None)
        row.pop("shard_row", None)
    return report


def _expected(whole: Path) -> dict[str, Any]:
    code, out, err = _run(str(whole), "--format", "json", "--dtypes", "float32,float64")
    assert code == 0, err
    return _comparable(json.loads(out))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_eight_mixed_shards_report_as_their_concatenation(
    mixed: dict[str, Any], workers: str
) -> None:
    code, out, err = _run(
        str(mixed["dir"]), "--format", "json", "--dtypes", "float32,float64", "--workers", workers
    )
    assert code == 0, err
    got = json.loads(out)
    assert got["shards"] == {"count": 8, "rows": CUTS[-1]}
    assert _comparable(got) == _expected(mixed["whole"])
    names = sorted(os.listdir(mixed["dir"]), key=natural)
    for row in got["flagged"]:
        i = next(k for k in range(8) if CUTS[k] <= row["row"] < CUTS[k + 1])
        assert os.path.basename(row["shard"]) == names[i]
        assert row["shard_row"] == row["row"] - CUTS[i]


def test_glob_list_and_pairs_give_one_report(tmp_path: Path) -> None:
    z, y = _data(300, 5)
    cuts = [0, 100, 250, 300]
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        np.save(tmp_path / f"logits-{i}.npy", z[a:b])
        np.save(tmp_path / f"labels-{i}.npy", y[a:b])
    np.save(tmp_path / "all_logits.npy", z)
    np.save(tmp_path / "all_labels.npy", y)
    (tmp_path / "lg.txt").write_text("# shards\nlogits-0.npy\n\nlogits-1.npy\nlogits-2.npy\n")
    (tmp_path / "lb.txt").write_text("labels-0.npy\nlabels-1.npy\nlabels-2.npy\n")
    runner = CliRunner()
    base = [str(tmp_path / "all_logits.npy"), str(tmp_path / "all_labels.npy")]
    expected = _comparable(
        json.loads(runner.invoke(cecheck, ["compare", *base, "--format", "json"]).stdout)
    )
    for args in (
        [str(tmp_path / "logits-*.npy"), str(tmp_path / "labels-*.npy")],
        ["@" + str(tmp_path / "lg.txt"), "@" + str(tmp_path / "lb.txt")],
    ):
        result = runner.invoke(cecheck, ["compare", *args, "--format", "json", "--workers", "1"])
        assert result.exit_code == 0, result.output
        assert _comparable(json.loads(result.stdout)) == expected
    csv = runner.invoke(
        cecheck,
        [
            "compare",
            str(tmp_path / "logits-*.npy"),
            str(tmp_path / "labels-*.npy"),
            "--format",
            "csv",
        ],
    )
    lines = csv.stdout.splitlines()
    assert lines[0].startswith("row,shard,shard_row,label,")
    assert lines[1 + 120].startswith(f"120,{tmp_path / 'logits-1.npy'},20,")


def test_fsspec_urls_memory_and_file(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    z, y = _data(50, 4)
    fs = fsspec.filesystem("memory")
    for i, (a, b) in enumerate([(0, 20), (20, 50)]):
        for name, arr in (("logits", z[a:b]), ("labels", y[a:b])):
            with fs.open(f"/cecheck-test/{name}-{i}.npy", "wb") as f:
                np.save(f, arr)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    runner = CliRunner()
    expected = runner.invoke(
        cecheck,
        [
            "compare",
            f"file://{tmp_path / 'z.npy'}",
            f"file://{tmp_path / 'y.npy'}",
            "--format",
            "json",
        ],
    )
    assert expected.exit_code == 0, expected.output
    result = runner.invoke(
        cecheck,
        [
            "compare",
            "memory://cecheck-test/logits-*.npy",
            "memory://cecheck-test/labels-*.npy",
            "--format",
            "json",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["inputs"]["logits"] == "memory://cecheck-test/logits-*.npy"
    assert _comparable(got) == _comparable(json.loads(expected.stdout))
    one = runner.invoke(
        cecheck,
        [
            "compare",
            "memory://cecheck-test/logits-1.npy",
            "memory://cecheck-test/labels-1.npy",
            "--format",
            "json",
        ],
    )
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["rows"]["total"] == 30
    missing = runner.invoke(cecheck, ["compare", "memory://cecheck-test/nothing.npy"])
    assert missing.exit_code == 2
    assert (
        missing.stderr.strip()
        == "Error: memory://cecheck-test/nothing.npy does not exist: check the URL"
    )


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: np.save(d / "labels-2.npy", np.zeros(5, int)), "names 2 files and"),
        (lambda d: np.save(d / "logits-1.npy", np.zeros((10, 6))), "has number of classes 6"),
        (lambda d: np.save(d / "labels-1.npy", np.zeros(9, int)), "labels-1.npy"),
    ],
)
def test_shards_that_do_not_stack_are_one_line_exit_2(
    tmp_path: Path, make: Any, words: str
) -> None:
    for i in range(2):
        np.save(tmp_path / f"logits-{i}.npy", np.zeros((10, 4)))
        np.save(tmp_path / f"labels-{i}.npy", np.zeros(10, int))
    make(tmp_path)
    result = CliRunner().invoke(
        cecheck, ["compare", str(tmp_path / "logits-*.npy"), str(tmp_path / "labels-*.npy")]
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    assert words in lines[0]
    assert "Traceback" not in result.output


def test_pattern_without_files_and_workers_without_shards(tmp_path: Path) -> None:
    runner = CliRunner()
    none = runner.invoke(cecheck, ["compare", str(tmp_path / "nothing-*.npy")])
    assert none.exit_code == 2
    assert "names no file" in none.stderr
    one = runner.invoke(
        cecheck, ["compare", str(ROOT / "sample_data/sequence.npz"), "--workers", "2"]
    )
    assert one.exit_code == 2
    assert "--workers and --dask run the shards" in one.stderr


def _tasks(
    tmp_path: Path, n: int = 4, rows: int = 300, c: int = 50
) -> tuple[list[scaleout.ShardTask], Any]:
    z, y = _data(n * rows, c)
    for i in range(n):
        np.save(tmp_path / f"logits-{i:02}.npy", z[i * rows : (i + 1) * rows].astype(np.float32))
        np.save(tmp_path / f"labels-{i:02}.npy", y[i * rows : (i + 1) * rows])
    source, shards = open_shards(
        str(tmp_path / "logits-*.npy"),
        str(tmp_path / "labels-*.npy"),
        inputs.FORMATS,
        inputs.open_inputs,
    )
    s = Settings(("float32", "float64"))
    opening = scaleout.Opening(source.task, source.label_form, source.n_classes)
    return list(scaleout.tasks(shards, source.lead_shape, s, opening)), source


def test_a_failing_shard_is_named_and_nothing_is_reported(tmp_path: Path) -> None:
    work, _ = _tasks(tmp_path)
    (tmp_path / "logits-02.npy").write_bytes(b"\x93NUMPY garbage")  # corrupt after the check
    with pytest.raises(scaleout.ShardFailed) as e:
        scaleout.run_local(work, 2)
    assert e.value.shard == str(tmp_path / "logits-02.npy")
    assert str(e.value).startswith(f"shard {tmp_path / 'logits-02.npy'} failed (")


def _kill_a_worker_soon(parent: int, done: threading.Event, killed: list[int]) -> None:
    """SIGKILL a busy local worker: a child of this process's forkserver."""
    import psutil

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not done.is_set():
        servers = [
            p for p in psutil.Process(parent).children() if "forkserver" in " ".join(p.cmdline())
        ]
        workers = [w for server in servers for w in server.children()]
        busy = [w for w in workers if w.cpu_percent(0.05) > 0]
        if busy:
            killed.append(busy[0].pid)
            busy[0].kill()
            return
        time.sleep(0.01)


def test_a_killed_worker_process_names_its_shard_or_the_report_is_complete(tmp_path: Path) -> None:
    pytest.importorskip("psutil")
    work, source = _tasks(tmp_path, n=8, rows=2000, c=500)
    expected = scaleout.run_local(work, 1).report(source, lambda: iter(())).to_dict()
    done, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_a_worker_soon, args=(os.getpid(), done, killed))
    killer.start()
    failed: scaleout.ShardFailed | None = None
    try:
        got = scaleout.run_local(work, 2).report(source, lambda: iter(())).to_dict()
    except scaleout.ShardFailed as e:
        failed = e
    finally:
        done.set()
        killer.join()
    if failed is None:
        assert got == expected  # the kill came too late: the report is complete
    else:
        assert killed, "a shard failed with no worker killed"
        assert failed.shard in {t.shard.name for t in work}
        assert "its worker process ended" in str(failed)


class _StuckPool(ProcessPoolExecutor):
    """A pool whose result reader is left waiting for the rest of a message, as when a worker
    is killed while it sends its result; and whose workers are then killed."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        if not getattr(self, "stuck", False):
            self.stuck = True
            writer = self._result_queue._writer  # type: ignore[attr-defined]
            os.write(writer.fileno(), struct.pack("!i", 1 << 20) + b"part of a result")
            for process in list(self._processes.values()):  # type: ignore[attr-defined]
                process.kill()
        return future


def test_a_worker_killed_while_it_sends_its_result_names_a_shard_and_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CPython's pool waits for the rest of the message forever and never reports the pool
    broken: the client sees the worker gone, names the shard and stops the pool, whose reader
    then ends too (the process can exit)."""
    work, _ = _tasks(tmp_path, n=2)
    monkeypatch.setattr(scaleout, "ProcessPoolExecutor", _StuckPool)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            scaleout.run_local(work, 1)
        except BaseException as e:
            raised.append(e)

    client = threading.Thread(target=run, daemon=True)
    client.start()
    client.join(timeout=60)
    assert not client.is_alive(), "run_local waited for a dead worker"
    assert isinstance(raised[0], scaleout.ShardFailed)
    assert raised[0].shard == work[0].shard.name
    assert "its worker process ended: exit code -9" in str(raised[0])
    managers = [t for t in threading.enumerate() if type(t).__name__ == "_ExecutorManagerThread"]
    for t in managers:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in managers), "the pool's reader still waits"


@pytest.fixture(scope="module")
def dask_cluster() -> Any:
    """A Dask cluster of 2 worker processes on 127.0.0.1, started here (bounded in time)."""
    distributed = pytest.importorskip("distributed")
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + (saved or "")  # for its workers
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # a free port: never the default 8787
    )
    try:
        yield cluster
    finally:
        cluster.close(timeout=30)
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def test_dask_gives_the_report_of_the_concatenation(
    mixed: dict[str, Any], dask_cluster: Any
) -> None:
    code, out, err = _run(
        str(mixed["dir"]),
        "--format",
        "json",
        "--dtypes",
        "float32,float64",
        "--dask",
        dask_cluster.scheduler_address,
    )
    assert code == 0, err
    got = json.loads(out)
    assert got["shards"] == {"count": 8, "rows": CUTS[-1]}
    assert _comparable(got) == _expected(mixed["whole"])


def test_dask_retries_a_failing_shard_then_names_it(tmp_path: Path, dask_cluster: Any) -> None:
    work, _ = _tasks(tmp_path)
    (tmp_path / "logits-01.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(scaleout.ShardFailed) as e:
        scaleout.run_dask(work, dask_cluster.scheduler_address)
    assert e.value.shard == str(tmp_path / "logits-01.npy")
    assert scaleout.DASK_RETRIES >= 1


def test_dask_missing_is_one_line_with_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(2):
        np.save(tmp_path / f"logits-{i}.npy", np.zeros((10, 4)))
        np.save(tmp_path / f"labels-{i}.npy", np.zeros(10, int))
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    result = CliRunner().invoke(
        cecheck,
        [
            "compare",
            str(tmp_path / "logits-*.npy"),
            str(tmp_path / "labels-*.npy"),
            "--dask",
            "tcp://127.0.0.1:1",
        ],
    )
    assert result.exit_code == 2
    assert result.stderr == "Error: --dask needs dask.distributed: pip install 'cecheck[dask]'\n"


def test_batches_straddling_shards_run_in_order_only(tmp_path: Path) -> None:
    """With --batch-size, shards whose rows are not a multiple of it cannot be merged apart:
    one sentence, exit 2, and --workers 1 forms the batches across the shards."""
    z, y = _data(30, 4)
    for i, (a, b) in enumerate([(0, 12), (12, 30)]):
        np.save(tmp_path / f"logits-{i}.npy", z[a:b])
        np.save(tmp_path / f"labels-{i}.npy", y[a:b])
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    pattern = [str(tmp_path / "logits-*.npy"), str(tmp_path / "labels-*.npy")]
    runner = CliRunner()
    apart = runner.invoke(cecheck, ["compare", *pattern, "--batch-size", "5", "--workers", "2"])
    assert apart.exit_code == 2
    assert apart.stderr.startswith("Error: --batch-size 5: a batch would straddle ")
    assert "--workers 1" in apart.stderr
    json_args = ["--batch-size", "5", "--format", "json"]
    one = runner.invoke(
        cecheck, ["compare", str(tmp_path / "z.npy"), str(tmp_path / "y.npy"), *json_args]
    )
    serial = runner.invoke(cecheck, ["compare", *pattern, *json_args, "--workers", "1"])
    assert serial.exit_code == 0, serial.output
    assert _comparable(json.loads(serial.stdout)) == _comparable(json.loads(one.stdout))
    whole = runner.invoke(
        cecheck, ["compare", *pattern, "--batch-size", "6", "--format", "json", "--workers", "2"]
    )
    assert whole.exit_code == 0, whole.output  # 12 rows: batches of 6 end with the shard
    assert json.loads(whole.stdout)["batches"]["count"] == 5


def test_dask_survives_a_killed_worker_or_names_the_shard(
    tmp_path: Path, dask_cluster: Any
) -> None:
    """A worker process killed mid-run: Dask runs its task again elsewhere (the report is
    complete), or the shard is named. Last in the file: the cluster's nanny restarts it."""
    import distributed

    work, source = _tasks(tmp_path, n=8, rows=2000, c=500)
    expected = scaleout.run_local(work, 1).report(source, lambda: iter(())).to_dict()
    with distributed.Client(dask_cluster.scheduler_address) as client:
        pids = list(client.run(os.getpid).values())
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = scaleout.run_dask(work, dask_cluster.scheduler_address)
        except scaleout.ShardFailed as e:
            outcome["failed"] = e

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.0)  # the tasks are running (8 shards of 2000 x 500)
    os.kill(pids[0], 9)
    thread.join(timeout=240)
    assert not thread.is_alive()
    if "failed" in outcome:
        assert outcome["failed"].shard in {t.shard.name for t in work}
    else:
        assert outcome["report"].report(source, lambda: iter(())).to_dict() == expected


@pytest.mark.parametrize(
    ("cores", "shards", "values", "expected"),
    [
        (2, 8, 1 << 30, 1),  # one process's kernel and diagnosis already use both cores
        (3, 8, 1 << 30, 1),
        (4, 8, 1 << 30, 2),
        (16, 8, 1 << 30, 8),  # no more than the shards
        (16, 8, 1 << 20, 1),  # a small input: the workers' start-up would eat the gain
    ],
)
def test_default_workers_run_in_process_when_processes_have_nothing_to_win(
    monkeypatch: pytest.MonkeyPatch, cores: int, shards: int, values: int, expected: int
) -> None:
    monkeypatch.setattr(scaleout, "_cores", lambda: cores)
    assert scaleout.default_workers(shards, values) == expected
