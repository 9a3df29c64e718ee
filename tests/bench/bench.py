"""Benchmark cecheck against the anchors of issue 5 and print a table of medians and ratios.

Not a test (pytest does not collect it: the name does not start with ``test_``). Run::

    python tests/bench/bench.py              # the full set, ~5-10 minutes
    python tests/bench/bench.py --runs 7     # more runs per measurement
    python tests/bench/bench.py --only lm csv  # some groups: startup, lm, rows, csv, csvout,
                                               # narrow, tasks, shards, formats
    python tests/bench/bench.py --only shards --shard-mb 64  # 8 shards vs one file

Every input is generated at run time in a temporary directory and deleted afterwards. Each
measurement is the median of ``--runs`` runs (at least 5), with the page cache warm (the
files have just been written). Peak memory is the ``ru_maxrss`` of a child process measured
from a fresh intermediate process, so each number belongs to one command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

READ_CHUNK_BYTES = 64 << 20
# Issue 19's bound on the LM command's resident peak (the 2 GB file), in MB as ru_maxrss.
PEAK_MB = 100
# The console script next to this interpreter (not a version manager's shim, which adds its
# own start-up time), else the one on PATH.
_HERE = Path(sys.executable).parent / "cecheck"
CECHECK = str(_HERE) if _HERE.exists() else shutil.which("cecheck")

# The one-pass read anchor: max(axis=1) over 64 MB row chunks of a memory map, pages released
# after each chunk. The same code runs in process and as a `python -c` script.
READ_BODY = f"""
import mmap, numpy as np
z = np.load(path, mmap_mode="r")
rows = max(1, {READ_CHUNK_BYTES} // (z.shape[1] * z.itemsize))
for i in range(0, z.shape[0], rows):
    z[i:i + rows].max(axis=1)
    z._mmap.madvise(mmap.MADV_DONTNEED)
"""
READ_SNIPPET = "import sys; path = sys.argv[1]" + READ_BODY


def one_pass_read(path: Path) -> None:
    exec(READ_BODY, {"path": str(path)})


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_time(fn: Callable[[], object], runs: int) -> float:
    return statistics.median(timed(fn) for _ in range(runs))


# The commands run as they would after `pip install`, with Python's bytecode cached: pip
# compiles it at install time, an editable install writes it on the first run, unless
# PYTHONDONTWRITEBYTECODE is set (some environments set it), when every run compiles
# cecheck's sources again (~0.1 s) while numpy's bytecode, compiled at install, is used.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def child_peak_mb(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak resident MB) of one run of ``cmd``, measured from a fresh process."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(time.perf_counter() - t, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *cmd], check=True, capture_output=True, text=True,
        env=CHILD_ENV,
    ).stdout.split()  # fmt: skip
    return float(out[0]), float(out[1])


def command_medians(cmd: list[str], runs: int) -> tuple[float, float]:
    results = [child_peak_mb(cmd) for _ in range(runs)]
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


# ------------------------------------------------------------------ inputs


def write_logits(path: Path, rows: int, classes: int, seed: int = 0) -> None:
    """Language-model-like float32 logits, written in blocks (never all in memory)."""
    z = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, classes))
    rng = np.random.default_rng(seed)
    step = max(1, (32 << 20) // (classes * 4))
    for i in range(0, rows, step):
        n = min(step, rows - i)
        block = rng.standard_normal((n, classes), dtype=np.float32) * 3
        block[:, 0] += 12  # a confident class, as a trained model has
        z[i : i + n] = block
    z.flush()
    del z


def write_labels(path: Path, rows: int, classes: int, seed: int = 1) -> None:
    np.save(path, np.random.default_rng(seed).integers(0, classes, rows))


def write_csv(path: Path, rows: int, classes: int) -> None:
    rng = np.random.default_rng(2)
    with open(path, "w") as f:
        f.write(",".join([f"x{i}" for i in range(classes)] + ["label"]) + "\n")
        step = 100_000
        for i in range(0, rows, step):
            n = min(step, rows - i)
            z = rng.standard_normal((n, classes)).astype(np.float32)
            y = rng.integers(0, classes, n)
            lines = [
                ",".join(f"{v:.6g}" for v in row) + f",{t}\n" for row, t in zip(z, y, strict=True)
            ]
            f.writelines(lines)


# ------------------------------------------------------------------ the measurements


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, what: str, value: str, anchor: str, ratio: float | None, target: str) -> None:
        if ratio is None:
            verdict = ""
        elif not target.startswith("<="):  # a ratio with no target
            verdict = f"{ratio:.2f}x"
        else:
            limit = float(target.lstrip("<= ").rstrip("x"))
            verdict = f"{ratio:.2f}x {'ok' if ratio <= limit else 'MISSED'}"
        self.rows.append((what, value, anchor, verdict, target))
        print(f"  {what}: {value} | {anchor} | {verdict} (target {target})", flush=True)

    def show(self) -> None:
        head = ("measurement", "cecheck", "anchor", "ratio", "target")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
        print("\n" + line + "\n" + "-" * len(line))
        for r in self.rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def engine_run(logits: Path, labels: Path, dtypes: tuple[str, ...] = ("float32", "float64")):
    from cecheck import engine, inputs

    source = inputs.open_inputs(str(logits), str(labels))
    return engine.run(source, engine.Settings(dtypes))


def exp_floor(n: int) -> float | None:
    """Seconds for the kernel's float64 exp alone on ``n`` arguments, split perfectly over the
    cores: what the LM kernel cannot go below (every path needs one such exp per logit).

    Measured on one core on a block that stays in cache (the best of many runs), so it leaves
    out memory and the other work of the kernel. None when the kernel is not built.
    """
    try:
        from cecheck import _kernel, fast
    except ImportError:
        return None
    x = np.random.default_rng(4).uniform(-30.0, 0.0, 1 << 15)
    out = np.empty_like(x)
    per_exp = min(timed(lambda: _kernel.apply("exp_tame", x, out)) for _ in range(200)) / x.size
    return n * per_exp / fast.threads()


def torch_stable(path: Path, labels: Path) -> Callable[[], None] | None:
    """torch cross_entropy, stable float32 + float64 only, on the same chunks."""
    try:
        import mmap

        import torch
        import torch.nn.functional as F
    except ImportError:
        return None

    # torch warns that the memory map is read-only; it only reads it here
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    def run() -> None:
        z = np.load(path, mmap_mode="r")
        y = torch.from_numpy(np.load(labels))
        rows = max(1, READ_CHUNK_BYTES // (z.shape[1] * z.itemsize))
        for i in range(0, z.shape[0], rows):
            x = torch.from_numpy(np.asarray(z[i : i + rows]))
            t = y[i : i + rows]
            F.cross_entropy(x, t, reduction="none")
            F.cross_entropy(x.double(), t, reduction="none")
            z._mmap.madvise(mmap.MADV_DONTNEED)

    return run


def bench_lm(d: Path, t: Table, runs: int, rows: int, classes: int) -> None:
    big, labels = d / "big.npy", d / "labels.npy"
    write_logits(big, rows, classes)
    write_labels(labels, rows, classes)
    print(f"LM logits {rows} x {classes} float32 ({big.stat().st_size / 1e9:.2f} GB)")
    one_pass_read(big)
    engine_run(big, labels)  # warm up
    read = median_time(lambda: one_pass_read(big), runs)
    eng = median_time(lambda: engine_run(big, labels), runs)
    t.add("LM engine, in process", f"{eng:.2f} s", f"read {read:.2f} s", eng / read, "<= 3x")
    floor = exp_floor(rows * classes)
    if floor is not None:
        t.add("  its floor: one float64 exp per logit", f"{floor:.2f} s", f"read {read:.2f} s",
              floor / read, "no target")  # fmt: skip
    tr = torch_stable(big, labels)
    if tr is None:
        t.add("LM engine vs torch stable f32+f64", f"{eng:.2f} s", "torch not installed",
              None, "<= 0.5x")  # fmt: skip
    else:
        tr()
        tt = median_time(tr, runs)
        t.add("LM engine vs torch stable f32+f64", f"{eng:.2f} s", f"torch {tt:.2f} s",
              eng / tt, "<= 0.5x")  # fmt: skip
    cmd = [CECHECK, "compare", str(big), str(labels), "--format", "json"]
    read_cmd = [sys.executable, "-c", READ_SNIPPET, str(big)]
    command_medians(cmd, 1)  # warm up (and write the bytecode cache)
    c_time, c_peak = command_medians(cmd, runs)
    r_time, r_peak = command_medians(read_cmd, runs)
    t.add("LM command, start-up included", f"{c_time:.2f} s", f"python -c read {r_time:.2f} s",
          c_time / r_time, "<= 3x")  # fmt: skip
    t.add("LM command peak memory", f"{c_peak:.0f} MB",
          f"{PEAK_MB} MB (read script {r_peak:.0f} MB)", c_peak / PEAK_MB, "<= 1x")  # fmt: skip
    quarter, qlabels = d / "quarter.npy", d / "qlabels.npy"
    write_logits(quarter, rows // 4, classes)
    write_labels(qlabels, rows // 4, classes)
    _, q_peak = command_medians(
        [CECHECK, "compare", str(quarter), str(qlabels), "--format", "json"], 2
    )
    t.add("peak memory, 4x larger file", f"{c_peak:.0f} MB", f"1/4 file {q_peak:.0f} MB",
          c_peak / q_peak, "<= 1.1x")  # fmt: skip
    for p in (big, quarter):
        p.unlink()


def bench_rows(d: Path, t: Table, runs: int) -> None:
    z, y = d / "rows.npy", d / "rows_labels.npy"
    write_logits(z, 10_000_000, 10)
    write_labels(y, 10_000_000, 10)
    print("many rows: 10,000,000 x 10 float32")
    one_pass_read(z)
    engine_run(z, y)
    read = median_time(lambda: one_pass_read(z), runs)
    eng = median_time(lambda: engine_run(z, y), runs)
    t.add("10M x 10 engine, in process", f"{eng:.2f} s", f"read {read:.2f} s", eng / read,
          "<= 3x")  # fmt: skip
    z.unlink()


def interleaved_medians(cmds: list[list[str]], runs: int) -> list[float]:
    """The median seconds of each command, run in turn (one run of each, ``runs`` times), so
    that a load on the shared machine falls on all of them alike."""
    times: list[list[float]] = [[] for _ in cmds]
    for _ in range(runs):
        for t, cmd in zip(times, cmds, strict=True):
            t.append(child_peak_mb(cmd)[0])
    return [statistics.median(t) for t in times]


def bench_startup(d: Path, t: Table, runs: int) -> None:
    z, y = d / "one.npy", d / "one_labels.npy"
    np.save(z, np.array([[1.0, 2.0, 3.0]], dtype=np.float32))
    np.save(y, np.array([1]))
    cmd = [CECHECK, "compare", str(z), str(y)]
    helps = [CECHECK, "--help"]
    imports = [sys.executable, "-c", "import numpy, pandas, rich, click"]
    interleaved_medians([cmd, helps, imports], 1)  # warm up (and write the bytecode cache)
    c_time, h_time, i_time = interleaved_medians([cmd, helps, imports], runs)
    t.add("start-up, one-row input", f"{c_time:.2f} s", f"imports {i_time:.2f} s",
          c_time / i_time, "<= 1.5x")  # fmt: skip
    t.add("start-up, cecheck --help", f"{h_time:.2f} s", f"imports {i_time:.2f} s",
          h_time / i_time, "<= 0.5x")  # fmt: skip


def bench_csv(d: Path, t: Table, runs: int) -> None:
    import pandas as pd

    from cecheck import inputs

    path = d / "table.csv"
    write_csv(path, 1_000_000, 10)
    print("CSV: 1,000,000 x 10")

    def cecheck_read() -> None:
        source = inputs.open_inputs(str(path))
        for _ in source.chunks(1 << 18):
            pass

    engines = ["c"]
    try:
        import pyarrow  # noqa: F401

        engines.append("pyarrow")
    except ImportError:
        pass
    # in turn, one run of each at a time, so that a load on the shared machine falls on all
    runs_of: dict[str, list[float]] = {e: [] for e in [*engines, "cecheck"]}
    for _ in range(runs):
        for e in engines:
            runs_of[e].append(timed(lambda e=e: pd.read_csv(path, engine=e)))
        runs_of["cecheck"].append(timed(cecheck_read))
    medians = {e: statistics.median(t) for e, t in runs_of.items()}
    ours = medians.pop("cecheck")
    best_name = min(medians, key=medians.__getitem__)
    best = medians[best_name]
    t.add("CSV read 1M x 10", f"{ours:.2f} s", f"read_csv {best_name} {best:.2f} s",
          ours / best, "<= 1.2x")  # fmt: skip


def bench_csvout(d: Path, t: Table, runs: int) -> None:
    """`--format csv` (every row) against `--format json` (the report only), the same run."""
    z, y = d / "out.npy", d / "out_labels.npy"
    write_logits(z, 131_072, 98)
    write_labels(y, 131_072, 98)
    print("CSV output: 131,072 x 98 float32")
    cmds = [[CECHECK, "compare", str(z), str(y), "--format", f] for f in ("csv", "json")]
    interleaved_medians(cmds, 1)  # warm up (and write the bytecode cache)
    csv_time, json_time = interleaved_medians(cmds, runs)
    t.add("--format csv, 131,072 x 98", f"{csv_time:.2f} s", f"--format json {json_time:.2f} s",
          csv_time / json_time, "<= 1.5x")  # fmt: skip


def cpu_isa() -> str:
    """The kernel's instruction set and the CPU's widest vector flags, as the targets differ."""
    try:
        from cecheck import _kernel

        kernel = _kernel.isa()
    except ImportError:
        kernel = "no kernel"
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    vectors = [f for f in ("avx512f", "avx2") if f in flags] or ["no avx2/avx512f in /proc/cpuinfo"]
    return f"kernel {kernel}, CPU {'+'.join(vectors)}"


def bench_narrow(d: Path, t: Table, runs: int) -> None:
    """All four dtypes against float32 + float64, engine in process, runs side by side."""
    z, y = d / "narrow.npy", d / "narrow_labels.npy"
    write_logits(z, 4096, 32000)
    write_labels(y, 4096, 32000)
    four = ("float16", "bfloat16", "float32", "float64")
    engine_run(z, y, four)  # bfloat16's first use imports ml_dtypes
    wide_runs, four_runs = [], []
    for _ in range(runs):
        wide_runs.append(timed(lambda: engine_run(z, y)))
        four_runs.append(timed(lambda: engine_run(z, y, four)))
    wide, all4 = statistics.median(wide_runs), statistics.median(four_runs)
    t.add("all four dtypes vs float32+float64 (4096 x 32000)", f"{all4:.2f} s",
          f"f32+f64 {wide:.2f} s", all4 / wide, "<= 2.5x")  # fmt: skip


def write_bfloat16_pair(st: Path, npy: Path, rows: int, classes: int) -> None:
    """The logits of :func:`write_logits` rounded to bfloat16 (truncated to their top 16 bits),
    as a BF16 ``.safetensors`` tensor ``logits`` and the same values as a float32 ``.npy``."""
    import json
    import struct

    write_logits(npy, rows, classes)
    z = np.load(npy, mmap_mode="r+")
    header = json.dumps(
        {"logits": {"dtype": "BF16", "shape": [rows, classes], "data_offsets": [0, z.size * 2]}}
    ).encode()
    step = max(1, (32 << 20) // (classes * 4))
    with open(st, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        for i in range(0, rows, step):
            bits = (z[i : i + step].view(np.uint32) >> 16).astype("<u2")
            f.write(bits.tobytes())
            z[i : i + step] = np.left_shift(bits, 16, dtype=np.uint32).view(np.float32)
    z.flush()
    del z


def bench_formats(d: Path, t: Table, runs: int, rows: int, classes: int) -> None:
    """Issue 15: bfloat16 .safetensors (1 GB) vs the same values as a float32 .npy (2 GB)."""
    st, npy, labels = d / "lm.safetensors", d / "lm.npy", d / "lm_labels.npy"
    write_bfloat16_pair(st, npy, rows, classes)
    write_labels(labels, rows, classes)
    wide = ["--dtypes", "float32,float64", "--format", "json"]
    cmds = [[CECHECK, "compare", str(p), str(labels), *wide] for p in (st, npy)]
    interleaved_medians(cmds, 1)  # warm up (page cache, bytecode)
    st_time, npy_time = interleaved_medians(cmds, runs)
    t.add(f"bfloat16 .safetensors vs float32 .npy ({rows} x {classes})", f"{st_time:.2f} s",
          f".npy {npy_time:.2f} s", st_time / npy_time, "<= 1.2x")  # fmt: skip
    _, peak = command_medians(cmds[0], 2)
    quarter, qlabels = d / "quarter.safetensors", d / "quarter_labels.npy"
    write_bfloat16_pair(quarter, d / "quarter.npy", rows // 4, classes)
    write_labels(qlabels, rows // 4, classes)
    _, q_peak = command_medians([CECHECK, "compare", str(quarter), str(qlabels), *wide], 2)
    t.add("  its peak memory, 4x larger file", f"{peak:.0f} MB", f"1/4 file {q_peak:.0f} MB",
          peak / q_peak, "<= 1.1x")  # fmt: skip
    for p in (st, npy, quarter, d / "quarter.npy"):
        p.unlink()


def bench_tasks(d: Path, t: Table, runs: int) -> None:
    """The kernels against the numpy specification on the other tasks (no target)."""
    rng = np.random.default_rng(3)
    inputs = {
        "multilabel 100k x 200": (
            rng.standard_normal((100_000, 200), dtype=np.float32) * 4,
            rng.integers(0, 2, (100_000, 200), dtype=np.int8),
        ),
        "soft labels 5k x 4000": (
            rng.standard_normal((5_000, 4000), dtype=np.float32) * 4,
            rng.dirichlet(np.full(4000, 0.1), 5_000).astype(np.float32),
        ),
    }
    z, y = d / "task.npy", d / "task_labels.npy"
    for name, (logits, labels) in inputs.items():
        np.save(z, logits)
        np.save(y, labels)
        print(name)
        engine_run(z, y)
        kernel = median_time(lambda: engine_run(z, y), runs)
        os.environ["CECHECK_NO_KERNEL"] = "1"
        try:
            numpy_only = median_time(lambda: engine_run(z, y), runs)
        finally:
            del os.environ["CECHECK_NO_KERNEL"]
        t.add(f"{name} engine, kernel vs numpy", f"{kernel:.2f} s", f"numpy {numpy_only:.2f} s",
              kernel / numpy_only, "no target")  # fmt: skip


def bench_shards(d: Path, t: Table, runs: int, shard_mb: int, classes: int) -> None:
    """8 shards against their concatenation: --workers 1 and 2, and --dask on a local cluster
    of 2 worker processes started here (each worker one thread)."""
    rows = max(1, (shard_mb << 20) // (classes * 4))
    whole, labels = d / "whole.npy", d / "whole_labels.npy"
    write_logits(whole, 8 * rows, classes)
    write_labels(labels, 8 * rows, classes)
    z, y = np.load(whole, mmap_mode="r"), np.load(labels)
    # The shards are written as the one file is (through a map): written with np.save's
    # write() calls, the same bytes took ~8x the page faults to map here (65,000 vs 8,700 for
    # 2 GB), which is the page cache's doing, not sharding's.
    for i in range(8):
        shard = np.lib.format.open_memmap(d / f"logits-{i}.npy", mode="w+", dtype=z.dtype,
                                          shape=(rows, classes))  # fmt: skip
        step = max(1, (32 << 20) // (classes * 4))
        for j in range(0, rows, step):
            shard[j : j + step] = z[i * rows + j : i * rows + min(rows, j + step)]
        shard.flush()
        del shard
        np.save(d / f"labels-{i}.npy", y[i * rows : (i + 1) * rows])
    del z
    gb = whole.stat().st_size / 1e9
    print(f"shards: 8 x {rows} x {classes} float32 ({gb:.2f} GB in all)")
    base = [CECHECK, "compare", "--format", "json"]
    pattern = [str(d / "logits-*.npy"), str(d / "labels-*.npy")]
    one = [*base, str(whole), str(labels)]
    w1, w2 = [*base, *pattern, "--workers", "1"], [*base, *pattern, "--workers", "2"]
    cmds = [one, w1, w2]
    cluster = None
    try:
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0")  # fmt: skip
        cmds.append([*base, *pattern, "--dask", cluster.scheduler_address])
    except ImportError:
        print("dask.distributed not installed: no --dask row")
    try:
        interleaved_medians(cmds, 1)  # warm up
        times = interleaved_medians(cmds, runs)
    finally:
        if cluster is not None:
            cluster.close()
    t.add("8 shards --workers 1", f"{gb / times[1]:.2f} GB/s", f"one file {gb / times[0]:.2f} GB/s",
          times[0] / times[1], ">= 0.9x")  # fmt: skip
    t.add("8 shards --workers 2", f"{gb / times[2]:.2f} GB/s", f"one file {gb / times[0]:.2f} GB/s",
          times[0] / times[2], ">= 0.9x")  # fmt: skip
    if len(times) > 3:
        t.add("8 shards --dask (2 workers)", f"{gb / times[3]:.2f} GB/s",
              f"--workers 2 {gb / times[2]:.2f} GB/s", times[2] / times[3], ">= 0.85x")  # fmt: skip
    _, one_peak = command_medians(one, 1)
    _, w2_peak = command_medians(w2, 1)
    t.add("8 shards --workers 2, peak memory", f"{w2_peak:.0f} MB", f"one file {one_peak:.0f} MB",
          w2_peak / one_peak, "bounded")  # fmt: skip
    for p in d.glob("*.npy"):
        p.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--only",
        choices=["lm", "rows", "startup", "csv", "csvout", "narrow", "tasks", "shards", "formats"],
        nargs="*",
    )
    ap.add_argument("--shard-mb", type=int, default=256, help="shards: MB of logits a shard")
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--classes", type=int, default=32000)
    ap.add_argument("--dir", help="where to write the inputs (default: a new temp dir)")
    args = ap.parse_args()
    if CECHECK is None:
        sys.exit("cecheck is not installed: pip install -e '.[test]' first")
    runs = max(5, args.runs)
    d = Path(tempfile.mkdtemp(prefix="cecheck-bench-", dir=args.dir))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # still delete the inputs
    t = Table()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} cores, "
          f"{cpu_isa()}, medians of {runs} runs, inputs in {d}")  # fmt: skip
    try:
        groups = {
            "startup": lambda: bench_startup(d, t, runs),
            "lm": lambda: bench_lm(d, t, runs, args.rows, args.classes),
            "rows": lambda: bench_rows(d, t, runs),
            "csv": lambda: bench_csv(d, t, runs),
            "csvout": lambda: bench_csvout(d, t, runs),
            "narrow": lambda: bench_narrow(d, t, runs),
            "tasks": lambda: bench_tasks(d, t, runs),
            "shards": lambda: bench_shards(d, t, runs, args.shard_mb, args.classes),
            "formats": lambda: bench_formats(d, t, runs, args.rows, args.classes),
        }
        for name, fn in groups.items():
            if not args.only or name in args.only:
                fn()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    t.show()
    print(cpu_isa())


if __name__ == "__main__":
    main()
