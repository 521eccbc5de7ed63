"""Results as pandas DataFrames with KNIME-safe dtypes (int32 grey levels, int64, float64, bool,
string), and the one way every table is written to and read from a file.

These schemas are the contract the KNIME nodes use; README documents them. Every table has a
fresh RangeIndex, so KNIME's RowIDs come out unique (Row0, Row1, ...).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vae_core.errors import TableError
from vae_core.files import atomic_open
from vae_core.model.network import IMAGE_PIXELS

PIXEL_COLUMNS = [f"pixel_{i}" for i in range(IMAGE_PIXELS)]
_PIXEL_NAME = re.compile(r"pixel_?\d+", re.IGNORECASE)  # any column meant as a pixel
LOSS_COLUMNS = ["epoch", "train_loss", "train_recon", "train_kl",
                "test_loss", "test_recon", "test_kl", "seconds"]
TABLE_FORMATS = ("csv", "parquet")


def write_table(df: pd.DataFrame, path: Path) -> Path:
    """Write a table atomically as CSV or Parquet (by suffix)."""
    with atomic_open(path) as fh:
        if path.suffix == ".parquet":
            df.to_parquet(fh, index=False)
        else:
            df.to_csv(fh, index=False)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`; every float64 comes back bit for bit.

    CSV floats are parsed with ``float_precision="round_trip"``: pandas' default parser (2.0 in
    KNIME 5.5 and 2.3 alike) is off by one unit in the last place for many values.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, float_precision="round_trip")


def z_columns(k: int) -> list[str]:
    return [f"z{i + 1}" for i in range(k)]


def _np(t: torch.Tensor | np.ndarray) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _frame(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(parts, axis=1).reset_index(drop=True)


def _ids(image_ids, source: str | Sequence[str], labels) -> pd.DataFrame:
    labels = _np(labels).astype(np.int64)
    n = len(labels)
    sources = [source] * n if isinstance(source, str) else list(source)
    return pd.DataFrame({
        "image_id": _np(image_ids).astype(np.int64),
        "source": pd.array(sources, dtype="string"),
        "label": labels,
        "digit": pd.array([str(v) for v in labels], dtype="string"),
    })


def _pixels(images, columns: list[str] = PIXEL_COLUMNS) -> pd.DataFrame:
    arr = _np(images).reshape(len(images), -1).astype(np.float64)
    return pd.DataFrame(arr, columns=columns)


def loss_table(history: Sequence[dict]) -> pd.DataFrame:
    """One row per epoch; per-image nats; ``seconds`` is wall time (not deterministic)."""
    df = pd.DataFrame(list(history), columns=LOSS_COLUMNS)
    df["epoch"] = df["epoch"].astype(np.int64)
    for c in LOSS_COLUMNS[1:]:
        df[c] = df[c].astype(np.float64)
    return df


def with_settings(table: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """``table`` plus one constant column per setting, so rows collected from several runs (a
    KNIME Loop End) still say which settings made them."""
    out = table.copy()
    for name, value in settings.items():
        if name in out.columns:
            raise ValueError(f"setting {name} clashes with a column of the table")
        dtype = {bool: "bool", int: "int64", float: "float64"}.get(type(value), "string")
        out[name] = pd.Series([value] * len(out), dtype=dtype)
    return out


def image_table(image_ids, source, labels, images) -> pd.DataFrame:
    """Images with their ids and labels: image_id, source, label, digit, pixel_0..pixel_783.

    Pixels are stored as integer grey levels 0-255 (int32): exact for MNIST (read as
    uint8 / 255) and, through KNIME's own table conversion, fewer bytes and faster to pass
    between nodes than float64 (figures: BENCHMARKS.md, "KNIME table I/O")."""
    return _frame([_ids(image_ids, source, labels), grey_levels(images)])


def grey_levels(images) -> pd.DataFrame:
    """Pixels in [0, 1] that are whole multiples of 1/255 as int32 columns 0-255."""
    arr = _np(images).reshape(len(images), -1).astype(np.float64) * 255.0
    levels = np.rint(arr)
    if not np.allclose(arr, levels, rtol=0, atol=1e-3):
        raise ValueError("images are not whole grey levels; use the float pixel tables")
    return pd.DataFrame(levels.astype(np.int32), columns=PIXEL_COLUMNS)


def latent_table(image_ids, source, labels, mu, logvar=None) -> pd.DataFrame:
    """One row per image: ids, label (int) and digit (string category), z1..zk = μ(x).

    With ``logvar``, the posterior log-variances follow as logvar1..logvark.
    """
    mu = _np(mu)
    parts = [_ids(image_ids, source, labels),
             pd.DataFrame(mu.astype(np.float64), columns=z_columns(mu.shape[1]))]
    if logvar is not None:
        lv = _np(logvar).astype(np.float64)
        parts.append(pd.DataFrame(lv, columns=[f"logvar{i + 1}" for i in range(lv.shape[1])]))
    return _frame(parts)


def reconstruction_table(image_ids, source, labels, originals, recons, bce) -> pd.DataFrame:
    """Two rows per image, ``kind`` = original | reconstruction; ``bce`` = that pair's BCE."""
    n = len(_np(labels))
    ids = _ids(image_ids, source, labels)
    bce = _np(bce).astype(np.float64)
    rows = []
    for kind, images in (("original", originals), ("reconstruction", recons)):
        meta = ids.copy()
        meta.insert(4, "kind", pd.array([kind] * n, dtype="string"))
        meta.insert(5, "bce", bce)
        meta["pair"] = np.arange(n, dtype=np.int64)
        rows.append(_frame([meta, _pixels(images)]))
    # originals and reconstructions interleaved: image 0 original, image 0 reconstruction, ...
    out = pd.concat(rows, ignore_index=True)
    out = out.sort_values(["pair", "kind"], kind="stable").drop(columns="pair")
    return out.reset_index(drop=True)


def generated_table(z, images) -> pd.DataFrame:
    """Samples decoded from N(0, I): sample_id, z1..zk, pixel_0..pixel_783."""
    z = _np(z).astype(np.float64)
    head = pd.DataFrame({"sample_id": np.arange(len(z), dtype=np.int64)})
    return _frame([head, pd.DataFrame(z, columns=z_columns(z.shape[1])), _pixels(images)])


IMAGE_COLUMN = "image"
IMAGE_CELL_SCALE = 2  # 28x28 digits drawn at 56x56 pixels: readable in a KNIME table


def image_cells(images, scale: int = IMAGE_CELL_SCALE) -> list:
    """One greyscale PIL image per row of ``images`` ([N, 784] in [0, 1]); a pandas column of
    them becomes a KNIME PNG image column. KNIME stores each cell as its own file, so only
    small tables (tens to hundreds of rows) get one."""
    from PIL import Image

    pixels = _np(images).astype(np.float64).reshape(len(images), 28, 28)  # as the table holds
    levels = np.rint(np.clip(pixels, 0, 1) * 255)
    size = (28 * scale, 28 * scale)
    return [Image.fromarray(a.astype(np.uint8), mode="L").resize(size, Image.Resampling.NEAREST)
            for a in levels]


def with_image_column(table: pd.DataFrame, images, limit: int | None = None) -> pd.DataFrame:
    """``table`` plus an ``image`` column of its digits; rows beyond ``limit`` get a missing
    cell (the column and its type stay the same whatever the number of rows)."""
    out = table.copy()
    n = len(out) if limit is None else min(limit, len(out))
    out[IMAGE_COLUMN] = pd.Series(image_cells(images[:n]) + [None] * (len(out) - n),
                                  index=out.index, dtype=object)
    return out


def latent_plane(z) -> tuple[np.ndarray, str, str]:
    """The two coordinates a latent scatter plot shows, and what they are: z1 and z2 for two
    latent dimensions, else the first two principal components of the latent means (a
    component a tiny table does not have, e.g. of one image, is 0)."""
    z = _np(z).astype(np.float64)
    if z.shape[1] > 2:
        centred = z - z.mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        plane = np.zeros((len(z), 2))
        parts = centred @ vt[:2].T
        plane[:, :parts.shape[1]] = parts
        total = float((s ** 2).sum())
        share = [float(s[i] ** 2) / total if total > 0 and i < len(s) else 0.0 for i in range(2)]
        return (plane, f"PC 1 of μ(x) ({share[0]:.0%} of variance)",
                f"PC 2 of μ(x) ({share[1]:.0%} of variance)")
    if z.shape[1] == 2:
        return z.copy(), "z1 (μ)", "z2 (μ)"
    return np.column_stack([z[:, 0], np.zeros(len(z))]), "z1 (μ)", "0 (one latent dimension)"


def _check_frame(df: pd.DataFrame, what: str) -> None:
    """A table the library can read by column name: a DataFrame without repeated names."""
    if not isinstance(df, pd.DataFrame):
        raise TableError(f"The {what} must be a table (pandas DataFrame), got {type(df).__name__}.")
    names = [str(c) for c in df.columns]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        shown = ", ".join(repeated[:3]) + (" ..." if len(repeated) > 3 else "")
        raise TableError(f"The {what} has {len(repeated)} repeated column name(s) ({shown}). "
                         "Give every column its own name.")


def images_from_table(df: pd.DataFrame, *, what: str = "input table") -> torch.Tensor:
    """Pixel columns of a table as a float32 tensor [N, 784] in [0, 1].

    Integer columns are grey levels 0-255 (what Load MNIST writes); float columns with whole
    numbers above 1 are read the same way, with a warning;
    anything else out of range, missing, or not numeric is a :class:`TableError`.
    """
    _check_frame(df, what)
    missing = [c for c in PIXEL_COLUMNS if c not in df.columns]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise TableError(f"The {what} lacks {len(missing)} of the 784 pixel columns ({shown}). "
                         "Feed it a table with columns pixel_0 ... pixel_783, such as the output "
                         "of the Load MNIST node.")
    known = set(PIXEL_COLUMNS)
    extra = [str(c) for c in df.columns if _PIXEL_NAME.fullmatch(str(c)) and str(c) not in known]
    if extra:
        shown = ", ".join(extra[:3]) + (" ..." if len(extra) > 3 else "")
        raise TableError(f"The {what} has {len(PIXEL_COLUMNS) + len(extra)} pixel columns: "
                         f"{len(extra)} beyond pixel_0 ... pixel_783 ({shown}). Images must be "
                         "28x28 grey (exactly pixel_0 ... pixel_783): remove the other pixel "
                         "columns, or resize the images.")
    if len(df) == 0:
        raise TableError(f"The {what} is empty: it has no images to process.")
    block = df[PIXEL_COLUMNS]
    non_numeric = [c for c in PIXEL_COLUMNS if not pd.api.types.is_numeric_dtype(block[c])
                   or pd.api.types.is_bool_dtype(block[c])]
    if non_numeric:
        raise TableError(f"Pixel column {non_numeric[0]} of the {what} is not numeric. Pixels "
                         "must be numbers in [0, 1].")
    arr = block.to_numpy(dtype=np.float64, na_value=np.nan)
    bad_rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad_rows.size:
        raise TableError(f"The {what} has missing or non-finite pixels in {bad_rows.size} row(s) "
                         f"(first at row {bad_rows[0]}). Remove or fill those rows.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 255:
        raise TableError(f"Pixel values of the {what} range from {lo:g} to {hi:g}; they must be "
                         "in [0, 1] (or 0-255 grey levels).")
    integer = all(pd.api.types.is_integer_dtype(block[c]) for c in PIXEL_COLUMNS)
    if hi > 1 or integer:
        if not np.array_equal(arr, np.round(arr)):
            raise TableError(f"Pixel values of the {what} go up to {hi:g} but are not whole grey "
                             "levels: use pixels in [0, 1] or integer grey levels 0-255.")
        if not integer:
            warnings.warn(f"Pixel values of the {what} go up to {hi:g}: read as 0-255 grey "
                          "levels and divided by 255.", stacklevel=2)
        # the same float32 division as reading the MNIST files (data): bit-identical pixels
        levels = np.ascontiguousarray(arr, dtype=np.int32)
        return torch.from_numpy(levels).to(torch.float32).div_(255.0)
    # row-major like the MNIST tensors: a column-major copy would change matmul rounding
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def latents_from_table(df: pd.DataFrame, latent_dim: int, *, what: str = "input table"
                       ) -> torch.Tensor:
    """Columns z1..zk of a table as a float32 tensor [N, k] for a model with k = ``latent_dim``.

    The table's z columns must be exactly z1..zk: a table encoded by a model of another latent
    size is refused, not silently cut or padded.
    """
    _check_frame(df, what)
    found = sorted((c for c in df.columns if c[:1] == "z" and c[1:].isdigit()),
                   key=lambda c: int(c[1:]))
    if found != z_columns(latent_dim):
        have = ", ".join(found) if found else "none"
        raise TableError(f"The model has latent size {latent_dim} (columns "
                         f"{', '.join(z_columns(latent_dim))}), but the {what} has z columns: "
                         f"{have}. Use a table made for this model, e.g. by its Encode node.")
    if len(df) == 0:
        raise TableError(f"The {what} is empty: it has no latent points to decode.")
    block = df[found]
    if not all(pd.api.types.is_numeric_dtype(block[c]) for c in found):
        raise TableError(f"The z columns of the {what} must be numeric.")
    arr = block.to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(arr).all():
        raise TableError(f"The {what} has missing or non-finite z values. Remove or fill them.")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def labels_from_table(df: pd.DataFrame) -> np.ndarray:
    """Digit labels if the table has them (``label`` column), else -1 for every row.

    Missing labels become -1; a label that is not a whole number is an error, not truncated.
    """
    if "label" not in df.columns:
        return np.full(len(df), -1, dtype=np.int64)
    values = pd.to_numeric(df["label"], errors="coerce").astype("float64")
    bad = df["label"].notna().to_numpy() & ~np.isclose(values.fillna(0.5) % 1, 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise TableError(f"Column 'label' must hold whole digits; row {first} holds "
                         f"{str(df['label'].iloc[first])!r}. Fix the column or remove it.")
    return values.fillna(-1).to_numpy().astype(np.int64)
