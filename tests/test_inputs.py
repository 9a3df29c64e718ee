"""Tests for cecheck.inputs: every format gives the same chunks, every bad file one InputError."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import ml_dtypes
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import cecheck.inputs.csv_arrow
import cecheck.inputs.csv_pandas
import cecheck.inputs.delimited
from cecheck.errors import InputError
from cecheck.inputs import HEAD_ROWS, Source, from_arrays, open_inputs

RNG = np.random.default_rng(20240601)
N, C = 11, 3
LOGITS = RNG.normal(scale=4.0, size=(N, C))
LABELS = RNG.integers(0, C, size=N)
SOFT = RNG.dirichlet(np.ones(C), size=N)


def collect(source: Source, rows: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Iterate every chunk (checking sizes) and glue them back together."""
    chunks = list(source.chunks(rows))
    assert [len(x) for x, _ in chunks] == [len(y) for _, y in chunks]
    assert all(len(x) == rows for x, _ in chunks[:-1])
    assert sum(len(x) for x, _ in chunks) == source.n_rows
    return np.concatenate([x for x, _ in chunks]), np.concatenate([y for _, y in chunks])


def frame(labels: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(LOGITS, columns=[f"z{i}" for i in range(C)])
    df["label"] = labels
    return df


# ---------------------------------------------------------------- one data set, every format


def write_npy_pair(d: Path) -> tuple[str, ...]:
    np.save(d / "logits.npy", LOGITS)
    np.save(d / "labels.npy", LABELS)
    return str(d / "logits.npy"), str(d / "labels.npy")


def write_npz_one(d: Path) -> tuple[str, ...]:
    np.savez_compressed(d / "both.npz", logits=LOGITS, labels=LABELS)
    return (str(d / "both.npz"),)


def write_npz_pair(d: Path) -> tuple[str, ...]:
    np.savez(d / "l.npz", logits=LOGITS)
    np.savez(d / "y.npz", labels=LABELS)
    return str(d / "l.npz"), str(d / "y.npz")


def write_csv_one(d: Path) -> tuple[str, ...]:
    frame(LABELS).to_csv(d / "data.csv", index=False)
    return (str(d / "data.csv"),)


def write_tsv_one(d: Path) -> tuple[str, ...]:
    frame(LABELS).to_csv(d / "data.tsv", index=False, sep="\t")
    return (str(d / "data.tsv"),)


def write_csv_pair_no_header(d: Path) -> tuple[str, ...]:
    pd.DataFrame(LOGITS).to_csv(d / "logits.csv", index=False, header=False)
    pd.DataFrame(LABELS.astype(float)).to_csv(d / "labels.csv", index=False, header=False)
    return str(d / "logits.csv"), str(d / "labels.csv")


def write_parquet_one(d: Path) -> tuple[str, ...]:
    frame(LABELS).to_parquet(d / "data.parquet")
    return (str(d / "data.parquet"),)


def write_parquet_row_groups(d: Path) -> tuple[str, ...]:
    frame(LABELS).to_parquet(d / "groups.parquet", row_group_size=3)  # batches of 3 rows
    return (str(d / "groups.parquet"),)


def write_mixed_pair(d: Path) -> tuple[str, ...]:
    np.save(d / "logits.npy", LOGITS)
    pd.DataFrame({"label": LABELS}).to_parquet(d / "labels.parquet")
    return str(d / "logits.npy"), str(d / "labels.parquet")


WRITERS = [
    write_npy_pair,
    write_npz_one,
    write_npz_pair,
    write_csv_one,
    write_tsv_one,
    write_csv_pair_no_header,
    write_parquet_one,
    write_parquet_row_groups,
    write_mixed_pair,
]


@pytest.mark.parametrize("write", WRITERS, ids=lambda w: w.__name__[len("write_") :])
@pytest.mark.parametrize("rows", [1, 4, 100])
def test_every_format_gives_the_same_chunks(
    tmp_path: Path, write: Callable[[Path], tuple[str, ...]], rows: int
) -> None:
    source = open_inputs(*write(tmp_path))
    logits, labels = collect(source, rows)
    assert (source.task, source.label_form, source.n_classes) == ("multiclass", "index", C)
    assert source.lead_shape == (N,)
    assert logits.dtype == np.float64
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(logits, LOGITS)
    np.testing.assert_array_equal(labels, LABELS)


@pytest.mark.parametrize("ext", ["npy", "csv", "parquet"])
def test_soft_labels_in_two_files_of_every_format(tmp_path: Path, ext: str) -> None:
    paths = [tmp_path / f"logits.{ext}", tmp_path / f"labels.{ext}"]
    for path, values in zip(paths, (LOGITS, SOFT), strict=True):
        if ext == "npy":
            np.save(path, values)
        elif ext == "csv":
            pd.DataFrame(values, columns=["a", "b", "c"]).to_csv(path, index=False)
        else:
            pd.DataFrame(values, columns=["a", "b", "c"]).to_parquet(path)
    source = open_inputs(*paths)
    logits, labels = collect(source)
    assert (source.task, source.label_form) == ("multiclass", "soft")
    np.testing.assert_array_equal(logits, LOGITS)
    np.testing.assert_array_equal(labels, SOFT)


def test_names_are_the_paths_as_given(tmp_path: Path) -> None:
    (path,) = write_npz_one(tmp_path)
    source = open_inputs(path)
    assert source.logits_name == source.labels_name == path
    source = from_arrays(LOGITS, LABELS)
    assert (source.logits_name, source.labels_name) == ("logits", "labels")


def test_npy_chunks_are_read_only_views_of_the_memory_map(tmp_path: Path) -> None:
    source = open_inputs(*write_npy_pair(tmp_path))
    logits, _ = next(iter(source.chunks(5)))
    assert type(logits) is np.ndarray
    assert not logits.flags.writeable
    assert not logits.flags.owndata


def test_pyarrow_and_pandas_are_imported_only_when_needed(tmp_path: Path) -> None:
    # Load cecheck.inputs without the package's __init__ (which imports the engine).
    np.save(tmp_path / "z.npy", LOGITS)
    np.save(tmp_path / "y.npy", LABELS)
    (tmp_path / "d.csv").write_text("z0,z1,label\n1,2,0\n3,4,1\n")
    code = f"""
import sys, types
package = types.ModuleType("cecheck")
package.__path__ = [{str(Path(cecheck.inputs.__file__).parent.parent)!r}]
sys.modules["cecheck"] = package
import cecheck.inputs
loaded = lambda: sorted(m for m in ("pandas", "pyarrow", "ml_dtypes") if sys.modules.get(m))
assert loaded() == [], loaded()
list(cecheck.inputs.open_inputs({str(tmp_path / "z.npy")!r}, {str(tmp_path / "y.npy")!r}).chunks(5))
assert loaded() == [], loaded()
list(cecheck.inputs.open_inputs({str(tmp_path / "d.csv")!r}).chunks(5))
assert loaded() == ["pyarrow"], loaded()  # a plain CSV: pyarrow reads it, no frame is made
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    without_pyarrow = code.replace(
        "import cecheck.inputs\n", "sys.modules['pyarrow'] = None\nimport cecheck.inputs\n"
    )
    without_pyarrow = without_pyarrow.replace('["pyarrow"], loaded()', '["pandas"], loaded()')
    subprocess.run([sys.executable, "-c", without_pyarrow], check=True)


# ---------------------------------------------------------------- shapes, tasks, label forms


@pytest.mark.parametrize(
    ("logits", "labels", "task", "form", "lead", "classes"),
    [
        (LOGITS[:, 0], LABELS % 2, "binary", "binary", (N,), 1),
        (LOGITS[:, :1], (LABELS % 2)[:, None], "binary", "binary", (N,), 1),
        (LOGITS, np.eye(C)[LABELS], "multiclass", "onehot", (N,), C),
        (LOGITS, SOFT, "multiclass", "soft", (N,), C),
        (LOGITS, (SOFT > 0.2).astype(np.int8), "multilabel", "multihot", (N,), C),
        (LOGITS, LABELS.astype(np.float32), "multiclass", "index", (N,), C),
        (LOGITS, LABELS[:, None], "multiclass", "index", (N,), C),
        (LOGITS.reshape(N, 1, C), LABELS.reshape(N, 1), "multiclass", "index", (N, 1), C),
    ],
    ids=["binary-1d", "binary-n1", "onehot", "soft", "multihot", "float-index", "n1-index", "nd"],
)
def test_task_and_label_form_are_inferred(
    logits: np.ndarray,
    labels: np.ndarray,
    task: str,
    form: str,
    lead: tuple[int, ...],
    classes: int,
) -> None:
    source = from_arrays(logits, labels)
    assert (source.task, source.label_form, source.lead_shape, source.n_classes) == (
        task,
        form,
        lead,
        classes,
    )
    x, y = collect(source)
    assert x.shape == ((N,) if task == "binary" else (N, classes))
    assert y.dtype == (np.int64 if form == "index" else np.float64)


@pytest.mark.parametrize("order", ["C", "F"])
def test_nd_logits_become_rows_over_the_leading_axes(tmp_path: Path, order: str) -> None:
    logits = np.asarray(RNG.normal(size=(3, 5, 4)), order=order)
    labels = RNG.integers(0, 4, size=(3, 5))
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    source = open_inputs(tmp_path / "logits.npy", tmp_path / "labels.npy")
    assert (source.lead_shape, source.n_rows, source.n_classes) == ((3, 5), 15, 4)
    x, y = collect(source, rows=4)
    np.testing.assert_array_equal(x, logits.reshape(15, 4))
    np.testing.assert_array_equal(y, labels.reshape(15))


def test_binary_nd_logits_with_matching_targets() -> None:
    logits, targets = RNG.normal(size=(2, 6)), RNG.random(size=(2, 6))
    source = from_arrays(logits, targets, task="binary")
    assert (source.task, source.label_form, source.lead_shape) == ("binary", "binary", (2, 6))
    x, y = collect(source)
    np.testing.assert_array_equal(x, logits.reshape(-1))
    np.testing.assert_array_equal(y, targets.reshape(-1))
    source = from_arrays(logits[..., None], targets)
    assert (source.task, source.lead_shape) == ("binary", (2, 6))


def test_task_override_turns_onehot_labels_into_multihot() -> None:
    source = from_arrays(LOGITS, np.eye(C)[LABELS], task="multilabel")
    assert (source.task, source.label_form) == ("multilabel", "multihot")
    source = from_arrays(LOGITS, (SOFT > 0.2).astype(float), task="multiclass")
    assert (source.task, source.label_form) == ("multiclass", "soft")


def test_nearly_onehot_labels_read_as_multihot_carry_a_warning() -> None:
    """One all-zero row makes 0/1 labels multi-hot by the rule; the person is told why."""
    labels = np.eye(C)[np.arange(40) % C]
    labels[7] = 0
    source = from_arrays(np.zeros((40, C)), labels)
    assert (source.task, source.label_form) == ("multilabel", "multihot")
    assert any("--task multiclass" in w for w in source.warnings)
    assert not from_arrays(np.zeros((40, C)), np.eye(C)[np.arange(40) % C]).warnings


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int8])
def test_narrow_integer_labels_are_class_indices(dtype: type[np.integer]) -> None:
    source = from_arrays(LOGITS, LABELS.astype(dtype))
    assert source.label_form == "index"
    labels = np.concatenate([y for _, y in source.chunks(4)])
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, LABELS)


@pytest.mark.parametrize(
    ("logits", "labels", "task", "match"),
    [
        (LOGITS, LABELS, "binary", "binary task needs one"),
        (LOGITS[:, :1], LABELS, "multilabel", "fewer than the 2 classes"),
        (LOGITS[:, 0], LABELS, "multilabel", "fewer than the 2 classes"),
        (LOGITS, LABELS, "multilabel", r"give labels of shape \(11, 3\)"),
        (np.zeros((N, 1, 1)), LABELS, "multiclass", r"give labels of shape \(11, 1\)"),
        (LOGITS, LABELS[:-1], "auto", r"shape \(11, 3\) but labels has shape \(10,\)"),
        (np.float64(1.0), 1, "auto", "single number"),
        (np.zeros((0, 3)), np.zeros(0), "auto", "holds no rows"),
    ],
)
def test_impossible_shapes_are_input_errors(
    logits: np.ndarray, labels: np.ndarray, task: str, match: str
) -> None:
    with pytest.raises(InputError, match=match):
        from_arrays(logits, labels, task=task)


@pytest.mark.parametrize(
    ("logits", "labels", "form"),
    [
        (LOGITS[:, :1], LABELS, "index"),
        (LOGITS[:, 0], LABELS, "index"),
        (np.zeros((N, 1, 1)), LABELS[:, None], "index"),
        (LOGITS[:, :1], np.ones((N, 1)), "onehot"),
    ],
)
def test_multiclass_with_one_class_is_read(
    logits: np.ndarray, labels: np.ndarray, form: str
) -> None:
    """One class is not an input error: its loss is 0 (tests/test_one_class.py)."""
    source = from_arrays(logits, labels, task="multiclass")
    assert (source.task, source.label_form, source.n_classes) == ("multiclass", form, 1)


def test_unknown_task_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="task must be"):
        from_arrays(LOGITS, LABELS, task="regression")


# ---------------------------------------------------------------- dtypes and precision


@pytest.mark.parametrize(
    ("stored", "handed"),
    [
        (np.float16, np.float16),
        (np.float32, np.float32),
        (np.dtype(">f4"), np.float32),
        (np.int32, np.float64),
        (ml_dtypes.bfloat16, np.float32),
    ],
)
def test_logits_keep_their_precision(stored: np.dtype, handed: np.dtype) -> None:
    logits = LOGITS.astype(stored)
    source = from_arrays(logits, LABELS)
    assert source.logits_dtype == np.dtype(stored).name
    x, _ = collect(source)
    assert x.dtype == np.dtype(handed)
    np.testing.assert_array_equal(x, logits.astype(handed))


def test_csv_numbers_parse_as_float64_exactly(tmp_path: Path) -> None:
    frame(LABELS).to_csv(tmp_path / "data.csv", index=False)
    source = open_inputs(tmp_path / "data.csv")
    assert source.logits_dtype == "float64"
    np.testing.assert_array_equal(collect(source)[0], LOGITS)


def test_parquet_keeps_float32(tmp_path: Path) -> None:
    frame(LABELS).astype({"z0": "float32", "z1": "float32", "z2": "float32"}).to_parquet(
        tmp_path / "data.parquet"
    )
    source = open_inputs(tmp_path / "data.parquet")
    assert source.logits_dtype == "float32"
    assert collect(source)[0].dtype == np.float32


def test_one_file_csv_without_header_takes_a_column_position(tmp_path: Path) -> None:
    frame(LABELS).to_csv(tmp_path / "data.csv", index=False, header=False)
    source = open_inputs(tmp_path / "data.csv", label_column=-1)
    logits, labels = collect(source)
    np.testing.assert_array_equal(logits, LOGITS)
    np.testing.assert_array_equal(labels, LABELS)
    with pytest.raises(InputError, match="no header row"):
        open_inputs(tmp_path / "data.csv")


def test_custom_label_column_and_keys(tmp_path: Path) -> None:
    frame(LABELS).rename(columns={"label": "target"}).to_csv(tmp_path / "d.csv", index=False)
    assert open_inputs(tmp_path / "d.csv", label_column="target").n_classes == C
    np.savez(tmp_path / "d.npz", z=LOGITS, y=LABELS)
    source = open_inputs(tmp_path / "d.npz", logits_key="z", labels_key="y")
    np.testing.assert_array_equal(collect(source)[1], LABELS)


# ---------------------------------------------------------------- warnings


def test_probabilities_in_place_of_logits_give_a_warning() -> None:
    probs = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
    (warning,) = from_arrays(probs, LABELS).warnings
    assert "softmax probabilities" in warning
    assert "logits" in warning
    assert from_arrays(LOGITS, LABELS).warnings == ()
    (warning,) = from_arrays(1 / (1 + np.exp(-LOGITS[:, 0])), LABELS % 2).warnings
    assert "sigmoid probabilities" in warning


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([np.float16, np.float32, np.float64]),
    st.lists(
        st.sampled_from([0.0, -0.0, 1.0, 0.25, 0.75, 1.5, -1e-30, np.nan, np.inf, -np.inf]),
        min_size=4,
        max_size=12,
    ),
)
def test_the_probability_range_is_checked_as_in_float64(dtype: type, values: list[float]) -> None:
    """The range [0, 1] is read off the first rows' minimum and maximum in their own dtype:
    the same warning, or none, as the check on every value widened to float64."""
    from cecheck.inputs.labels import _probability_warning

    z = np.array(values[: len(values) // 2 * 2], dtype=dtype).reshape(-1, 2)
    x = z.astype(np.float64)
    in_range = bool(np.all((x >= 0) & (x <= 1)))
    with np.errstate(invalid="ignore"):  # inf - inf
        sums = x.sum(axis=1)
    sums_to_one = np.allclose(sums, 1.0, rtol=0, atol=1e-2 if z.itemsize <= 2 else 1e-4)
    for task, warns in (("binary", in_range), ("multiclass", in_range and sums_to_one)):
        assert (_probability_warning("z", task, z) is not None) == warns


# ---------------------------------------------------------------- row-level problems pass


def test_row_level_problems_pass_through() -> None:
    logits = LOGITS.copy()
    logits[0, 1], logits[1, 0] = np.nan, np.inf
    labels = LABELS.copy()
    labels[2], labels[3], labels[4] = C + 5, -100, -7
    x, y = collect(from_arrays(logits, labels))
    np.testing.assert_array_equal(x, logits)
    np.testing.assert_array_equal(y, labels)
    soft = SOFT.copy()
    soft[0] *= 3
    np.testing.assert_array_equal(collect(from_arrays(LOGITS, soft))[1], soft)


def test_huge_float_index_stays_out_of_range_without_warnings() -> None:
    _, labels = collect(from_arrays(LOGITS[:2], np.array([1e300, -1e300])))
    assert labels[0] > C
    assert labels[1] < -(2**32)


# ---------------------------------------------------------------- bad files


def save_bytes(name: str, data: bytes) -> Callable[[Path], list[Path]]:
    def write(d: Path) -> list[Path]:
        (d / name).write_bytes(data)
        return [d / name, d / "labels.npy"]

    return write


def save_array(name: str, array: np.ndarray, **kw: bool) -> Callable[[Path], list[Path]]:
    def write(d: Path) -> list[Path]:
        np.save(d / name, array, **kw)
        return [d / name, d / "labels.npy"]

    return write


def save_text(name: str, text: str, labels: str | None = None) -> Callable[[Path], list[Path]]:
    def write(d: Path) -> list[Path]:
        (d / name).write_text(text)
        if labels is None:
            return [d / name]
        (d / "labels.csv").write_text(labels)
        return [d / name, d / "labels.csv"]

    return write


def truncated_npy(d: Path) -> list[Path]:
    np.save(d / "cut.npy", LOGITS)
    data = (d / "cut.npy").read_bytes()
    (d / "cut.npy").write_bytes(data[: len(data) - 16])
    return [d / "cut.npy", d / "labels.npy"]


def truncated_npz(d: Path) -> list[Path]:
    np.savez(d / "cut.npz", logits=LOGITS, labels=LABELS)
    data = (d / "cut.npz").read_bytes()
    (d / "cut.npz").write_bytes(data[: len(data) // 2])
    return [d / "cut.npz"]


def npz_with_object(d: Path) -> list[Path]:
    with zipfile.ZipFile(d / "obj.npz", "w") as zf, zf.open("logits.npy", "w") as f:
        np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(d / "labels.npz", labels=LABELS)
    return [d / "obj.npz", d / "labels.npz"]


def npz_wrong_key(d: Path) -> list[Path]:
    np.savez(d / "keys.npz", scores=LOGITS, labels=LABELS)
    return [d / "keys.npz"]


def parquet_with_text(d: Path) -> list[Path]:
    pd.DataFrame({"z0": ["a", "b"], "label": [0, 1]}).to_parquet(d / "text.parquet")
    return [d / "text.parquet"]


def mismatched_rows(d: Path) -> list[Path]:
    np.save(d / "short.npy", LABELS[:-2])
    return [d / "logits.npy", d / "short.npy"]


HEADER = "z0,z1,label\n"
BAD_FILES = {
    "missing file": (lambda d: [d / "nothing.npy", d / "labels.npy"], "does not exist"),
    "unknown extension": (save_bytes("data.txt", b"1,2\n"), r"\.npy, \.npz, \.csv"),
    "empty npy": (save_bytes("empty.npy", b""), "is empty"),
    "empty csv": (save_text("empty.csv", ""), "is empty"),
    "header only csv": (save_text("head.csv", HEADER), "holds no rows"),
    "blank csv": (save_text("blank.csv", "\n\n"), "holds no data"),
    "corrupt npy": (save_bytes("junk.npy", b"\x93NUMPY garbage" * 10), "not a valid .npy"),
    "truncated npy": (truncated_npy, "truncated"),
    "pickled npy": (
        save_array("obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True),
        "pickled object array, which cecheck never loads",
    ),
    "complex npy": (save_array("cplx.npy", LOGITS.astype(complex)), "complex numbers"),
    "string npy": (save_array("text.npy", np.array(["a", "b"])), "holds text"),
    "record npy": (save_array("rec.npy", np.zeros(3, dtype=[("a", "f4")])), "records"),
    "corrupt npz": (save_bytes("junk.npz", b"PK\x03\x04" + b"x" * 50), "not a readable .npz"),
    "truncated npz": (truncated_npz, "cut.npz"),
    "pickled npz member": (npz_with_object, "pickled object array"),
    "missing npz key": (npz_wrong_key, "no array 'logits' \\(it holds 'scores', 'labels'\\)"),
    "single npy": (lambda d: save_array("alone.npy", LOGITS)(d)[:1], "as a second file"),
    "non-numeric cell": (
        save_text("bad.csv", HEADER + "1,2,0\n3,abc,1\n"),
        r"bad.csv line 3, column 'z1': 'abc' is not a number: fix or remove that cell",
    ),
    "missing label column": (save_text("nolabel.csv", "a,b\n1,2\n"), "no column 'label'"),
    "row longer than header": (save_text("long.csv", HEADER + ",,,0\n"), "more cells than the"),
    "ragged csv": (save_text("ragged.csv", "1,2\n3,4,5\n", "0\n1\n"), "cannot be parsed"),
    "fractional labels": (  # one fractional label is a row problem (invalid_label); most...
        save_text("frac.csv", HEADER + "1,2,0.25\n3,4,1.5\n5,6,1\n"),
        r"frac.csv: 2 of the first 3 labels are fractions such as 0.25",
    ),
    "mismatched rows": (mismatched_rows, r"shape \(11, 3\) but .*short.npy has shape \(9,\)"),
    "non-utf8 csv": (save_bytes("x.csv", b"z0,z1\n\xff\xfe,1\n"), "x.csv is not UTF-8 text"),
    "text parquet": (parquet_with_text, "column 'z0' holds \\w*string values, not numbers"),
    "corrupt parquet": (save_bytes("junk.parquet", b"PAR1" + b"\0" * 40), "not a readable"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_files_raise_one_input_error_naming_the_file(tmp_path: Path, case: str) -> None:
    write_npy_pair(tmp_path)
    write, match = BAD_FILES[case]
    paths = write(tmp_path)
    with pytest.raises(InputError, match=match) as error:
        collect(open_inputs(*paths))
    message = str(error.value)
    assert any(str(p) in message for p in paths)
    assert "\n" not in message
    assert error.value.__cause__ is None


def test_parquet_without_pyarrow_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_parquet_one(tmp_path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError, match=r"pip install 'cecheck\[parquet\]'"):
        open_inputs(tmp_path / "data.parquet")


@pytest.mark.parametrize("block_bytes", [None, 4096])  # one block, or many blocks of text
@pytest.mark.parametrize(
    ("bad_line", "match"),
    [
        ("3,x,1", "'x' is not a number"),
        ("3,NAN,1", "'NAN' is not a number"),
    ],
)
def test_a_problem_past_the_first_chunk_raises_from_the_iterator(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bad_line: str,
    match: str,
    block_bytes: int | None,
) -> None:
    if block_bytes is not None:
        small_blocks(monkeypatch, block_bytes)
    good = "".join(f"{i},{-i},{i % 2}\n" for i in range(HEAD_ROWS + 10))
    (tmp_path / "big.csv").write_text(HEADER + good + bad_line + "\n")
    source = open_inputs(tmp_path / "big.csv")  # the first chunk is fine
    assert source.n_rows == HEAD_ROWS + 11
    line = HEAD_ROWS + 12
    with pytest.raises(InputError, match=rf"big.csv line {line}, column '\w+': .*{match}"):
        collect(source, rows=1000)


def test_bad_in_memory_arrays_are_named() -> None:
    with pytest.raises(InputError, match="scores holds Python objects"):
        from_arrays(np.array([object()]), [0], logits_name="scores")
    with pytest.raises(InputError, match="logits is not a rectangular array"):
        from_arrays([[1.0, 2.0], [3.0]], [0, 1])
    with pytest.raises(InputError, match=r"labels: 2 of the first 3 labels are fractions"):
        from_arrays(LOGITS[:3], [1.0, 0.5, 1.5])


def test_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        from_arrays(LOGITS, LABELS).chunks(0)


# ---------------------------------------------------------------- fuzzing: InputError or valid


def read_fully(*paths: Path) -> None:
    """A valid result, fully iterated, or an InputError: anything else is a bug."""
    message = ""
    try:
        source = open_inputs(*paths)
        for logits, labels in source.chunks(3):
            assert len(logits) == len(labels)
    except InputError as e:
        message = str(e)
    assert "\n" not in message


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(max_size=400), ext=st.sampled_from(["npy", "npz", "csv", "parquet"]))
def test_random_bytes_give_a_result_or_an_input_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, ext: str
) -> None:
    d = tmp_path_factory.mktemp("bytes")
    (d / f"x.{ext}").write_bytes(data)
    np.save(d / "labels.npy", LABELS)
    read_fully(d / f"x.{ext}")
    read_fully(d / f"x.{ext}", d / "labels.npy")


def npy_prefix_then_bytes() -> st.SearchStrategy[bytes]:
    """A real .npy header followed by random bytes: reaches past the magic check."""
    header = b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (4, 2), }"
    header = header + b" " * (127 - len(header)) + b"\n"
    return st.binary(max_size=100).map(lambda tail: header + tail)


@FUZZ
@given(data=npy_prefix_then_bytes())
def test_npy_with_a_valid_header_and_random_data(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    d = tmp_path_factory.mktemp("npy")
    (d / "x.npy").write_bytes(data)
    np.save(d / "labels.npy", np.arange(4) % 2)
    read_fully(d / "x.npy", d / "labels.npy")


CSV_TEXT = st.text(alphabet=st.sampled_from(list('0123456789.,-e\n "abnlie\t')), max_size=200)


@FUZZ
@given(text=CSV_TEXT, header=st.booleans())
def test_random_csv_text_gives_a_result_or_an_input_error(
    tmp_path_factory: pytest.TempPathFactory, text: str, header: bool
) -> None:
    d = tmp_path_factory.mktemp("csv")
    (d / "x.csv").write_text(("a,b,label\n" if header else "") + text)
    (d / "labels.csv").write_text("0\n1\n0\n")
    read_fully(d / "x.csv")
    read_fully(d / "x.csv", d / "labels.csv")
    read_fully(d / "labels.csv", d / "x.csv")


# ---------------------------------------------------------------- CSV: pyarrow reads as pandas


def pandas_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read CSV files with pandas alone, as where pyarrow is not installed."""
    monkeypatch.setattr(cecheck.inputs.delimited, "_have_pyarrow", lambda: False)


def small_blocks(monkeypatch: pytest.MonkeyPatch, block_bytes: int = 64) -> None:
    """Windows and blocks of about ``block_bytes`` of text: many record batches."""
    monkeypatch.setattr(cecheck.inputs.csv_arrow, "BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(cecheck.inputs.csv_arrow, "WINDOW_BYTES", block_bytes)


READERS = {
    "pyarrow": lambda _mp: None,
    "small blocks": small_blocks,
    "pandas": pandas_only,
}


def read_csv_every_way(path: Path, rows: int = 3) -> dict[str, tuple[object, ...] | str]:
    """(rows, logits, labels) or the InputError message, read by each way of READERS."""
    results: dict[str, tuple[object, ...] | str] = {}
    for name, setup in READERS.items():
        with pytest.MonkeyPatch.context() as mp:
            setup(mp)
            try:
                source = open_inputs(path, label_column=-1)
                results[name] = (source.n_rows, *collect(source, rows=rows))
            except InputError as e:
                results[name] = str(e)
    return results


FLOATS = st.floats(allow_nan=False, width=64)


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.tuples(FLOATS, FLOATS), min_size=1, max_size=40),
    style=st.sampled_from([repr, "%.17g".__mod__]),
)
def test_csv_floats_parse_bit_for_bit_as_python_does(
    tmp_path_factory: pytest.TempPathFactory,
    values: list[tuple[float, float]],
    style: Callable[[float], str],
) -> None:
    # Python's float() rounds correctly; repr and %.17g round-trip, so the bits must survive.
    path = tmp_path_factory.mktemp("floats") / "f.csv"
    path.write_text("a,b,label\n" + "".join(f"{style(a)},{style(b)},0\n" for a, b in values))
    expected = np.array([[float(style(a)), float(style(b))] for a, b in values])
    for name, read in read_csv_every_way(path).items():
        assert not isinstance(read, str), name
        logits = read[1]
        assert isinstance(logits, np.ndarray)
        assert logits.dtype == np.float64
        # the same bits, but pandas reads "-0" (%.17g of -0.0) in a column of integers as +0.0
        np.testing.assert_array_equal(logits, expected)
        nonzero = expected != 0
        np.testing.assert_array_equal(logits[nonzero].view(np.int64),
                                      expected[nonzero].view(np.int64))  # fmt: skip


PLAIN_CELL = st.one_of(
    st.floats(allow_nan=False).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.text(alphabet='0123456789.+-eEinfaINFA \t"', max_size=6),
    st.sampled_from(["nan", "NaN", "NAN", "+nan", "NA", "None", "", "inf", "-Infinity", "True"]),
    st.sampled_from(['"NA"', '" 1"', "1_0", "0x10", "1e400", "-1e-400", "\u0661", "1.", ".5"]),
)


@FUZZ
@example(rows=[['"0']], sep=",", header="", blank="")  # a quote left open: pandas' error
@example(rows=[['"1""', "2"]], sep="\t", header="", blank="")  # ... in the header line
@given(
    rows=st.lists(st.lists(PLAIN_CELL, min_size=1, max_size=4), min_size=1, max_size=8),
    sep=st.sampled_from([",", "\t"]),
    header=st.sampled_from(["", "a,b,label\n", "\na,b,label\n", ",a,label\n"]),
    blank=st.sampled_from(["", "\n", "  \n", "\r\n"]),
)
def test_pyarrow_and_pandas_readers_give_the_same_values_or_the_same_error(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[list[str]],
    sep: str,
    header: str,
    blank: str,
) -> None:
    # rows of varying lengths, cells that are not numbers, blank lines, an index column...:
    # whatever pyarrow does not read exactly as pandas would, it leaves to pandas
    path = tmp_path_factory.mktemp("plain") / ("x.csv" if sep == "," else "x.tsv")
    lines = [sep.join(row) + "\n" for row in rows]
    lines.insert(len(lines) // 2, blank)
    path.write_text(header.replace(",", sep) + "".join(lines))
    results = read_csv_every_way(path)
    by_pandas = results.pop("pandas")
    for read in results.values():
        if isinstance(by_pandas, str) or isinstance(read, str):
            assert read == by_pandas
            continue
        assert read[0] == by_pandas[0]  # the same rows
        # Equal values; pandas reads "-0" in a column of integers as +0.0, else as -0.0.
        np.testing.assert_array_equal(read[1], by_pandas[1])  # type: ignore[arg-type]
        np.testing.assert_array_equal(read[2], by_pandas[2])  # type: ignore[arg-type]


def test_many_blocks_and_chunks_give_pandas_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # blocks of about 4 kB (~50 rows) against chunks of 250 rows: batches end inside chunks,
    # chunks inside batches; some rows hold only whole numbers (pandas reads integers)
    rng = np.random.default_rng(5)
    z = rng.normal(scale=10, size=(3001, 4))
    z[1000:2000] = z[1000:2000].round()
    y = rng.integers(0, 4, size=3001)
    cells = [
        [f"{v:.0f}" if 1000 <= i < 2000 else repr(float(v)) for v in row] for i, row in enumerate(z)
    ]
    text = "a,b,c,d,label\n" + "".join(
        ",".join(row) + f",{t}\n" for row, t in zip(cells, y, strict=True)
    )
    (tmp_path / "x.csv").write_text(text)
    small_blocks(monkeypatch, 4096)
    by_arrow = list(open_inputs(tmp_path / "x.csv").chunks(250))
    pandas_only(monkeypatch)
    by_pandas = list(open_inputs(tmp_path / "x.csv").chunks(250))
    assert [len(x) for x, _ in by_arrow] == [250] * 12 + [1]
    for (x, t), (px, pt) in zip(by_arrow, by_pandas, strict=True):
        assert x.flags.c_contiguous
        np.testing.assert_array_equal(x, px)
        np.testing.assert_array_equal(t, pt)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in by_arrow]), z.astype(float))


def test_plain_files_are_read_by_pyarrow_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pandas(*_args: object) -> None:
        raise AssertionError("pandas read a plain file")

    monkeypatch.setattr(cecheck.inputs.csv_pandas.PandasCsv, "n_rows", no_pandas)
    monkeypatch.setattr(cecheck.inputs.csv_pandas.PandasCsv, "blocks", no_pandas)
    (tmp_path / "x.csv").write_text(HEADER + "0.5,-1,0\n1e-3,2,1\n.25,-0,1\n,NA,1\n")
    x, y = collect(open_inputs(tmp_path / "x.csv"))
    np.testing.assert_array_equal(x, [[0.5, -1], [1e-3, 2], [0.25, 0], [np.nan, np.nan]])
    np.testing.assert_array_equal(y, [0, 1, 1, 1])
    # "-0" keeps its sign; pandas reads it in a column of integers as +0.0 (no loss changes)
    assert np.signbit(x[2, 1])
    monkeypatch.undo()
    pandas_only(monkeypatch)
    assert not np.signbit(collect(open_inputs(tmp_path / "x.csv"))[0][2, 1])


def test_pandas_reads_on_from_the_batch_pyarrow_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_by_pandas: list[int] = []
    blocks = cecheck.inputs.csv_pandas.PandasCsv.blocks

    def spy(self: object, rows: int, done: int, used: set[int]) -> Iterator[list[np.ndarray]]:
        read_by_pandas.append(done)
        return blocks(self, rows, done, used)  # type: ignore[arg-type]

    monkeypatch.setattr(cecheck.inputs.csv_pandas.PandasCsv, "blocks", spy)
    small_blocks(monkeypatch, 4096)
    # the third chunk holds True/False: pyarrow cannot convert them, pandas reads them as 1/0
    n = 3 * HEAD_ROWS
    first = [str(i) if i < 2 * HEAD_ROWS else str(i % 2 == 1) for i in range(n)]
    (tmp_path / "x.csv").write_text(HEADER + "".join(f"{z},{-i},1\n" for i, z in enumerate(first)))
    x, _ = collect(open_inputs(tmp_path / "x.csv"), rows=HEAD_ROWS)
    assert len(read_by_pandas) == 1
    assert 0 < read_by_pandas[0] <= 2 * HEAD_ROWS  # the rows before its batch: from pyarrow
    bools = np.arange(2 * HEAD_ROWS, n) % 2
    np.testing.assert_array_equal(x[:, 0], np.r_[np.arange(2 * HEAD_ROWS), bools])
    np.testing.assert_array_equal(x[:, 1], -np.arange(n))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
def test_a_reader_left_early_closes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(HEADER + "".join(f"{i},{-i},1\n" for i in range(50_000)))

    def is_open() -> bool:
        fds = Path("/proc/self/fd")
        return any(os.path.realpath(fds / fd) == str(path.resolve()) for fd in os.listdir(fds))

    chunks = open_inputs(path).chunks(100)
    next(chunks)
    assert is_open()
    chunks.close()  # type: ignore[attr-defined]
    assert not is_open()


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize(
    "text",
    [
        "a,b,label\n1,2,0\n3,4,1\n",  # plain, with a last line end
        "a,b,label\n1,2,0\n3,4,1",  # no last line end
        "1,2,0\r\n3,4,1\r\n",  # CRLF, no header
        "a,b,label\r1,2,0\r3,4,1\r",  # CR alone
        "a,b,label\n1, 2,0\n3,4 ,1\n",  # spaces inside lines
        "a,b,label\n1,2,0\n\n3,4,1\n",  # an empty line: pandas skips it
        "a,b,label\n1,2,0\n   \n3,4,1\n",  # a line of spaces: pandas skips it too
        "\n\na,b,label\n1,2,0\n3,4,1\n",  # empty lines before the header
        'a,b,label\n"1",2,0\n3,4,1\n',  # quotes
        "\ufeffa,b,label\n1,2,0\n3,4,1\n",  # a byte-order mark
    ],
)
def test_rows_are_counted_as_pandas_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, read: str
) -> None:
    READERS[read](monkeypatch)
    (tmp_path / "x.csv").write_text(text)
    source = open_inputs(tmp_path / "x.csv", label_column=-1)
    assert source.n_rows == 2
    np.testing.assert_array_equal(collect(source)[0], [[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize("window", [1, 2, 3, 7, 1 << 20])
@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("a,b,label\n1,2,0\n3,4,1\n", 2),
        ("a,b,label\n1,2,0\n3,4,1", 2),
        ("a,b,label\n", 0),
        ("a,b,label\n1e+300,-2.5E-3,0\n", 1),
        ("a,b,label\n1,2,0\n3,4\n", 2),  # a short row: found as it is parsed
        ("a,b,label\n1,2,0\n\n3,4,1\n", None),  # a blank line
        ("a,b,label\n\n1,2,0\n", None),  # a blank first line
        ("a,b,label\n1,2,0\n3,4,1\n\n", None),
        ("a,b,label\n1,2,0\r\n3,4,1\r\n", None),  # CRLF
        ("a,b,label\r\n1,2,0\n", None),
        ("a,b,label\n1,nan,0\n1,NA,0\n", 2),  # text is counted too
        ("a,b,label\n1, 2,0\n", None),  # a space
        ("a,b,label\n1,2,0\n   \n", None),  # a line of spaces
        ('a,b,label\n1,"2\n3",0\n', None),  # quotes
    ],
)
def test_a_plain_file_is_counted_by_its_line_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, rows: int | None, window: int
) -> None:
    monkeypatch.setattr(cecheck.inputs.csv_arrow, "WINDOW_BYTES", window)
    (tmp_path / "x.csv").write_text(text)
    assert cecheck.inputs.csv_arrow.plain_rows(str(tmp_path / "x.csv"), ",", 1) == rows
    if rows is not None:  # as pandas counts them
        assert len(pd.read_csv(tmp_path / "x.csv")) == rows


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("a\tb\tlabel\n1\t2\t0\n3\t4\t1\n", 2),
        ("a\tb\tlabel\n1\t2\t0\n\t\t\n3\t4\t1\n", None),  # a line of tabs
        ("a\tb\tlabel\n\t2\t0\n", None),  # a line that starts with a tab
        ("a\tb\tlabel\n1\t2\t0\n\n", None),
    ],
)
def test_a_plain_tsv_file_is_counted_by_its_line_ends(
    tmp_path: Path, text: str, rows: int | None
) -> None:
    (tmp_path / "x.tsv").write_text(text)
    assert cecheck.inputs.csv_arrow.plain_rows(str(tmp_path / "x.tsv"), "\t", 1) == rows
    if rows is not None:
        assert len(pd.read_csv(tmp_path / "x.tsv", sep="\t")) == rows


@pytest.mark.parametrize("read", READERS)
def test_a_label_file_of_one_column_with_a_line_of_spaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    READERS[read](monkeypatch)
    np.save(tmp_path / "z.npy", LOGITS[:3])
    (tmp_path / "y.csv").write_text("label\n0\n \n1\n2\n")  # pandas skips the line of spaces
    _, labels = collect(open_inputs(tmp_path / "z.npy", tmp_path / "y.csv"))
    np.testing.assert_array_equal(labels, [0, 1, 2])


@pytest.mark.parametrize("read", READERS)
def test_a_row_shorter_than_the_header_reads_nan_in_its_missing_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    READERS[read](monkeypatch)
    (tmp_path / "x.csv").write_text(HEADER + "1,2,0\n3,4\n5,6,1\n")
    x, y = collect(open_inputs(tmp_path / "x.csv"))
    np.testing.assert_array_equal(x, [[1, 2], [3, 4], [5, 6]])
    assert y[1] == cecheck.inputs.INVALID_LABEL  # the row is flagged invalid_label


@FUZZ
@given(text=st.text(alphabet="1,\n\r", max_size=300), size=st.integers(1, 64))
def test_csv_text_is_read_in_windows_cut_at_line_ends(
    tmp_path_factory: pytest.TempPathFactory, text: str, size: int
) -> None:
    # memory is bounded by the window, whatever the size of the file
    path = tmp_path_factory.mktemp("windows") / "x.csv"
    path.write_bytes(text.encode())
    windows = [bytes(w) for w in cecheck.inputs.csv_arrow._windows(str(path), size)]
    assert b"".join(windows) == text.encode()
    longest = max((len(line) for line in re.split(r"[\r\n]", text)), default=0)
    for w in windows[:-1]:
        assert w.endswith((b"\n", b"\r"))
        assert len(w) <= 2 * size + longest + 1
