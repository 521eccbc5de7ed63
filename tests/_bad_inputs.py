"""The corpus of bad inputs (``test_edges.py``, ``test_knime_edges.py``): model files a broken
disk, another program or an attacker leaves, and tables that are not 28x28 grey images. Each
case is (name, class, what it holds, the words its one-line error must contain). Generated ones
are seeded, so the corpus is the same on every run; RELIABILITY.md lists the classes and counts.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import subprocess
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vae_core.outputs.tables import PIXEL_COLUMNS
from vae_core.training.checkpoint import FORMAT as CHECKPOINT_FORMAT

DAMAGED = "is not a vae-mnist model file: it is damaged, truncated, or a file of another format"
CODE = "it is a pickle that carries Python objects"
NON_FINITE = "holds non-finite weights (NaN or infinity in"
FOREIGN = "is not a vae-mnist model file: it holds"
INVALID = "Re-run the Train VAE node"  # a model record with a broken part


class Evil:
    """Unpickling it would run a shell command."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


class Sneaky:
    def __reduce__(self):
        return (subprocess.call, (["true"],))


def _torch_bytes(obj, **kw) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kw)
    return buffer.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def model_files(record: dict) -> list[tuple[str, str, bytes, str]]:
    """Bad model files derived from the good model ``record`` (a Save Model file's dict)."""
    good = _torch_bytes(record)
    rng = np.random.default_rng(20)
    cases: list[tuple[str, str, bytes, str]] = []
    # damaged, truncated, another format: generated
    for i, size in enumerate((1, 7, 64, 300, 1000, 4096, 20000, 65536, 13, 999)):
        cases.append((f"random_{i}.pt", "damaged", rng.bytes(size), DAMAGED))
    for frac in (0.0005, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999):
        cut = max(1, int(len(good) * frac))
        cases.append((f"truncated_{cut}.pt", "damaged", good[:cut], DAMAGED))
    for i in range(6):  # a good file's head followed by garbage
        cases.append((f"garbled_tail_{i}.pt", "damaged",
                      good[:len(good) // 2] + rng.bytes(200 + 50 * i), DAMAGED))
    # damaged, another format: hand-written
    npy = io.BytesIO()
    np.save(npy, np.zeros(3))
    png = (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    cases += [
        ("empty.pt", "damaged", b"", DAMAGED),
        ("text.pt", "damaged", b"hello world\nthis is a note\n", DAMAGED),
        ("table.csv.pt", "damaged", b"pixel_0,pixel_1\n0,1\n", DAMAGED),
        ("json.pt", "damaged", json.dumps({"format": "vae-mnist-model"}).encode(), DAMAGED),
        ("png.pt", "damaged", png, DAMAGED),
        ("npy.pt", "damaged", npy.getvalue(), DAMAGED),
        ("zip_of_text.pt", "damaged", _zip({"notes.txt": b"hi"}), DAMAGED),
        ("zip_in_folder.pt", "damaged", _zip({"a/notes.txt": b"hi"}), DAMAGED),
        ("gzip_of_model.pt", "damaged", gzip.compress(good), DAMAGED),
        ("pickle_dict_p4.pt", "damaged", pickle.dumps({"format": "vae-mnist-model"}, 4), DAMAGED),
        ("pickle_list_p5.pt", "damaged", pickle.dumps([1, 2, 3], 5), DAMAGED),
        ("utf16.pt", "damaged", "model".encode("utf-16"), DAMAGED),
    ]
    # carries code: hand-written
    cases += [
        ("os_system_p0.pt", "code", b"cos\nsystem\n(S'echo pwned'\ntR.", CODE),
        ("evil_in_record.pt", "code", _torch_bytes({**record, "x": Evil()}), CODE),
        ("evil_legacy.pt", "code",
         _torch_bytes({**record, "x": Evil()}, _use_new_zipfile_serialization=False), CODE),
        ("subprocess.pt", "code", _torch_bytes({"format": "vae-mnist-model", "x": Sneaky()}), CODE),
        ("datetime.pt", "code", _torch_bytes({"when": datetime(2026, 1, 1)}), CODE),
        ("evil_pickle_p2.pt", "code", pickle.dumps(Evil(), 2), CODE),
        ("evil_pickle_p5.pt", "code", pickle.dumps(Evil(), 5), CODE),
        ("eval_p0.pt", "code", b"c__builtin__\neval\n(S'1+1'\ntR.", CODE),
    ]
    # not a model: real torch files of other things
    cases += [
        ("tensor.pt", "foreign", _torch_bytes(torch.zeros(3)), FOREIGN),
        ("other_dict.pt", "foreign", _torch_bytes({"format": "something else"}), FOREIGN),
        ("state_dict.pt", "foreign", _torch_bytes(record["model"]), FOREIGN),
        ("list.pt", "foreign", _torch_bytes([1, 2]), FOREIGN),
        ("empty_dict.pt", "foreign", _torch_bytes({}), FOREIGN),
    ]
    # a model record with a broken part
    no_weights = {**record, "model": {}}
    cases += [
        ("no_config.pt", "invalid", _torch_bytes({**record, "config": "x"}), INVALID),
        ("bad_history.pt", "invalid", _torch_bytes({**record, "history": "x"}), INVALID),
        ("no_weights.pt", "invalid", _torch_bytes({**record, "model": None}), INVALID),
        ("missing_weights.pt", "invalid", _torch_bytes(no_weights), "does not match"),
        ("newer_version.pt", "invalid", _torch_bytes({**record, "format_version": 99}),
         "newer than"),
    ]
    # non-finite weights: every tensor with NaN, +inf and -inf, generated
    for key in record["model"]:
        for label, value in (("nan", float("nan")), ("inf", float("inf")),
                             ("-inf", float("-inf"))):
            weights = {k: v.clone() for k, v in record["model"].items()}
            weights[key].view(-1)[int(rng.integers(weights[key].numel()))] = value
            cases.append((f"{label}_{key}.pt", "non-finite",
                          _torch_bytes({**record, "model": weights}), NON_FINITE))
    checkpoint = {"format": CHECKPOINT_FORMAT, "format_version": 1, "config": record["config"],
                  "epoch": 1, "model": {k: v * float("nan") for k, v in record["model"].items()},
                  "history": {"epoch": [1]}}
    cases.append(("nan_checkpoint.pt", "non-finite", _torch_bytes(checkpoint), NON_FINITE))
    return cases


def _images(n: int, seed: int = 0) -> pd.DataFrame:
    g = np.random.default_rng(seed)
    return pd.DataFrame(g.integers(0, 256, (n, 784)), columns=PIXEL_COLUMNS)


def _with(df: pd.DataFrame, change: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    return change(df.copy())


def _set(column: str, row: int, value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        kind = "float64" if isinstance(value, float) else "Int64" if value is None else object
        df = df.astype({column: kind})
        df.loc[row, column] = pd.NA if value is None else value  # None: a missing integer
        return df
    return change


def _square(side: int, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(np.zeros((n, side * side), dtype=np.int64),
                        columns=[f"pixel_{i}" for i in range(side * side)])


def tables() -> list[tuple[str, str, pd.DataFrame, str]]:
    """Bad image tables (for Encode, Reconstruct, Train VAE): none is 28x28 grey images with
    finite values in range."""
    base = _images(4)
    rng = np.random.default_rng(21)
    cases: list[tuple[str, str, pd.DataFrame, str]] = []
    # not 28x28: hand-written shapes and generated extra / missing columns
    for side in (27, 29, 32):
        words = "lacks" if side < 28 else "beyond pixel_0 ... pixel_783"
        cases.append((f"square_{side}", "not 28x28", _square(side), words))
    cases.append(("rgb_28x28x3", "not 28x28",
                  pd.DataFrame(np.zeros((2, 2352), dtype=np.int64),
                               columns=[f"pixel_{i}" for i in range(2352)]),
                  "1568 beyond pixel_0 ... pixel_783"))
    for extra in ("pixel_784", "pixel_800", "pixel_0784", "Pixel_1", "pixel5"):
        cases.append((f"extra_{extra}", "not 28x28", _with(base, lambda d, e=extra: d.assign(
            **{e: 0})), f"({extra})"))
    for i in rng.choice(784, 5, replace=False):
        cases.append((f"missing_pixel_{i}", "not 28x28",
                      base.drop(columns=f"pixel_{i}"), f"lacks 1 of the 784 pixel columns "
                      f"(pixel_{i})"))
    cases.append(("renamed_pixel_5", "not 28x28",
                  base.rename(columns={"pixel_5": "pixel_784"}), "(pixel_5)"))
    cases.append(("no_pixels", "not 28x28", pd.DataFrame({"label": [1, 2]}), "lacks 784"))
    # non-finite or missing values: generated positions
    for label, value in (("nan", float("nan")), ("inf", float("inf")),
                         ("-inf", float("-inf")), ("none", None)):
        for row, col in ((0, 0), (3, 783), (int(rng.integers(4)), int(rng.integers(784)))):
            cases.append((f"{label}_r{row}_c{col}", "non-finite",
                          _with(base, _set(f"pixel_{col}", row, value)),
                          f"missing or non-finite pixels in 1 row(s) (first at row {row})"))
    # grey values that are not grey levels
    cases += [
        ("negative", "out of range", _with(base, _set("pixel_3", 1, -1.0)), "range from -1"),
        ("above_255", "out of range", _with(base, _set("pixel_3", 1, 256.0)), "to 256"),
        ("fraction_above_1", "out of range", _with(base.astype(float) / 255,
                                                   _set("pixel_9", 2, 1.5)),
         "not whole grey levels"),
        ("text_pixel", "not numeric", _with(base, _set("pixel_7", 0, "x")), "is not numeric"),
        ("bool_pixels", "not numeric", base.astype(bool), "is not numeric"),
        ("empty", "empty", base.iloc[:0], "is empty"),
        ("not_a_frame", "not a table", base.to_numpy(), "must be a table"),
    ]
    # names a Python caller can repeat (KNIME never sends them)
    dup = pd.concat([base, base[["pixel_0"]]], axis=1)
    cases.append(("repeated_pixel_0", "repeated names", dup, "repeated column name(s) (pixel_0)"))
    dup_label = base.assign(label=1)
    dup_label = pd.concat([dup_label, dup_label[["label"]]], axis=1)
    cases.append(("repeated_label", "repeated names", dup_label, "(label)"))
    return cases


def count_by_class(cases) -> dict[str, int]:
    counts: dict[str, int] = {}
    for case in cases:
        counts[case[1]] = counts.get(case[1], 0) + 1
    return counts


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))}
