"""Test double of ``knime.api.table`` (Table, BatchOutputTable), written from KNIO_API.md §1.3-1.5.

TEST-ONLY: lives under tests/, reached through a test-only sys.path entry, never installed.
A table is held as a pyarrow Table whose first column is the string column ``"<RowID>"``, the way
KNIME's Python side holds it. The conversions copy KNIME's documented rules: RowIDs
("auto" / "keep" / "generate"), ``str()`` column names, float32 widened to float64, int8/int16/
unsigned/float16 rejected, dictionary (pandas category) decoded, strings read back as pandas
``string`` dtype, integer columns with missing values read back as float64 unless a sentinel
is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

ROW_ID = "<RowID>"
_RESERVED = ("The column name '<RowID>' is reserved for internal purposes. Please rename the "
             "column to a different name.")


def _unsupported(type_: pa.DataType, name: str) -> ValueError:
    return ValueError(f"Data type '{type_}' in column '{name}' is not supported in KNIME Python. "
                      "Please use a different data type.")


def _check_type(type_: pa.DataType, name: str) -> pa.DataType:
    """The KNIME-compatible type for ``type_`` (float32 → float64), else the KNIME error."""
    t = pa.types
    if t.is_float32(type_):
        return pa.float64()
    if t.is_large_string(type_):  # pandas 3 strings; both are a KNIME String column
        return pa.string()
    if t.is_dictionary(type_):
        return _check_type(type_.value_type, name)
    if t.is_list(type_) or t.is_large_list(type_):
        return pa.list_(_check_type(type_.value_type, name))
    ok = (t.is_int32(type_) or t.is_int64(type_) or t.is_float64(type_) or t.is_boolean(type_)
          or t.is_string(type_) or t.is_large_string(type_) or t.is_null(type_)
          or t.is_timestamp(type_) or t.is_date(type_) or t.is_duration(type_)
          or t.is_time(type_))
    if not ok:
        raise _unsupported(type_, name)
    return type_


def _sentinel_value(sentinel: str | int, type_: pa.DataType) -> int:
    bits = 32 if pa.types.is_int32(type_) else 64
    if sentinel == "min":
        return -(2 ** (bits - 1))
    if sentinel == "max":
        return 2 ** (bits - 1) - 1
    if isinstance(sentinel, int) and not isinstance(sentinel, bool):
        return sentinel
    raise ValueError(f"sentinel must be 'min', 'max' or an int, got {sentinel!r}")


def _with_row_ids(ids: pa.Array, data: pa.Table, sentinel: str | int | None) -> pa.Table:
    """RowID column first, then every data column converted by KNIME's type rules."""
    arrays, names = [], []
    for name, column in zip(data.column_names, data.columns, strict=True):
        target = _check_type(column.type, name)
        if pa.types.is_dictionary(column.type):
            column = pa.chunked_array([c.dictionary_decode() for c in column.chunks],
                                      type=column.type.value_type)
        if column.type != target:
            column = column.cast(target)
        if sentinel is not None and (pa.types.is_int32(target) or pa.types.is_int64(target)):
            value = pa.scalar(_sentinel_value(sentinel, target), target)
            column = pc.if_else(pc.equal(column, value), pa.nulls(len(column), target), column)
        arrays.append(column)
        names.append(name)
    return pa.Table.from_arrays([ids, *arrays], names=[ROW_ID, *names])


def _check_batch_sizes(data: pa.Table) -> None:
    sizes = [b.num_rows for b in data.to_batches()]
    if len(sizes) > 1 and (any(s != sizes[0] for s in sizes[:-1]) or sizes[-1] > sizes[0]):
        raise ValueError(f"all batches of the table must have the same size, except the last one "
                         f"which may be smaller; got batch sizes {sizes}. Use combine_chunks().")


class Table:
    """A KNIME table as seen from Python."""

    def __init__(self) -> None:
        raise RuntimeError("Do not use this constructor directly, use the from_ methods instead")

    @classmethod
    def _wrap(cls, data: pa.Table, *, source: bool = False) -> Table:
        obj = cls.__new__(cls)
        if not data.column_names or data.column_names[0] != ROW_ID:
            raise AssertionError("test double: internal table without RowID column")
        obj._data = data
        obj._source = source
        return obj

    # ---------------------------------------------------------------------------- from_*
    @classmethod
    def from_pandas(cls, data: Any, sentinel: str | int | None = None,
                    row_ids: str = "auto") -> Table:
        if not isinstance(data, pd.DataFrame):
            raise ValueError(f"Table.from_pandas expects a pandas.DataFrame, but got {type(data)}")
        if row_ids not in ("auto", "keep", "generate"):
            raise ValueError(f"row_ids must be 'auto', 'keep' or 'generate', got {row_ids!r}")
        frame = data.copy(deep=False)
        frame.columns = [str(c) for c in frame.columns]
        if frame.columns.duplicated().any():
            dup = frame.columns[frame.columns.duplicated()][0]
            raise ValueError(f"Duplicate column names found: {dup!r}")
        index = frame.index
        if row_ids == "generate":
            ids = [f"Row{i}" for i in range(len(frame))]
        elif row_ids == "auto" and index.dtype.kind in "iu":
            ids = [f"Row{v}" for v in index]
        else:
            ids = [str(v) for v in index]
        arrow = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
        return cls._wrap(_with_row_ids(pa.array(ids, pa.string()), arrow, sentinel))

    @classmethod
    def from_pyarrow(cls, data: Any, sentinel: str | int | None = None,
                     row_ids: str = "auto") -> Table:
        if not isinstance(data, pa.Table):
            raise TypeError(f"Table.from_pyarrow expects a pyarrow.Table, but got {type(data)}")
        if row_ids not in ("auto", "keep", "generate"):
            raise ValueError(f"row_ids must be 'auto', 'keep' or 'generate', got {row_ids!r}")
        _check_batch_sizes(data)
        n = data.num_rows
        first = data.column_names[0] if data.num_columns else None
        ids: pa.Array
        if row_ids == "keep":
            if first is None or not pa.types.is_string(data.schema.field(0).type):
                raise ValueError("row_ids='keep' needs a string column first (the RowIDs)")
            ids, data = data.column(0).combine_chunks(), data.remove_column(0)
        elif row_ids == "auto" and first == ROW_ID:
            col = data.column(0)
            if pa.types.is_string(col.type):
                ids = col.combine_chunks()
            elif pa.types.is_integer(col.type):
                ids = pa.array([f"Row{v}" for v in col.to_pylist()], pa.string())
            else:
                ids = pa.array([f"Row{i}" for i in range(n)], pa.string())
            data = data.remove_column(0)
        else:
            ids = pa.array([f"Row{i}" for i in range(n)], pa.string())
        return cls._wrap(_with_row_ids(ids, data, sentinel))

    # ---------------------------------------------------------------------------- to_*
    def _checked(self, sentinel: str | int | None) -> pa.Table:
        if ROW_ID in self._data.column_names[1:]:
            raise RuntimeError(_RESERVED)
        data = self._data
        if sentinel is not None:
            for i, field in enumerate(data.schema):
                if i and (pa.types.is_int32(field.type) or pa.types.is_int64(field.type)):
                    value = pa.scalar(_sentinel_value(sentinel, field.type), field.type)
                    data = data.set_column(i, field.name, data.column(i).fill_null(value))
        return data

    def to_pyarrow(self, sentinel: str | int | None = None) -> pa.Table:
        return self._checked(sentinel)

    def to_pandas(self, sentinel: str | int | None = None) -> pd.DataFrame:
        def strings(type_: pa.DataType):
            if pa.types.is_string(type_) or pa.types.is_large_string(type_):
                return pd.StringDtype()
            return None

        frame = self._checked(sentinel).to_pandas(types_mapper=strings)
        return frame.set_index(frame.columns[0])

    # ---------------------------------------------------------------------------- shape
    @property
    def num_rows(self) -> int:
        return self._data.num_rows

    @property
    def num_columns(self) -> int:
        return self._data.num_columns - 1

    @property
    def column_names(self) -> list[str]:
        return list(self._data.column_names[1:])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_columns, self.num_rows)  # columns first, as in KNIME

    @property
    def schema(self) -> pa.Schema:
        return self._data.schema.remove(0)

    def __getitem__(self, key: Any) -> Table:
        cols, rows = key if isinstance(key, tuple) else (key, slice(None))
        names = self.column_names
        if isinstance(cols, slice):
            picked = names[cols]
        elif isinstance(cols, int | str):
            picked = [names[cols] if isinstance(cols, int) else cols]
        else:
            picked = [names[c] if isinstance(c, int) else c for c in cols]
        missing = [c for c in picked if c not in names]
        if missing:
            raise IndexError(f"Column(s) {missing} not found in table")
        start, stop, step = rows.indices(self.num_rows)
        data = self._data.select([ROW_ID, *picked]).take(list(range(start, stop, step)))
        return Table._wrap(data)

    # ---------------------------------------------------------------------------- batches
    @property
    def num_batches(self) -> int:
        self._require_source()
        return len(self._data.to_batches())

    def batches(self) -> Iterator[Table]:
        self._require_source()
        for batch in self._data.to_batches():
            yield Table._wrap(pa.Table.from_batches([batch]))

    to_batches = batches

    def _require_source(self) -> None:
        if not self._source:
            raise RuntimeError("batches() is only available on unmodified input tables")

    def __str__(self) -> str:
        return f"Table(columns={self.num_columns}, rows={self.num_rows})"

    __repr__ = __str__


class BatchOutputTable:
    """An output table written batch by batch."""

    def __init__(self) -> None:
        raise RuntimeError("Use BatchOutputTable.create() or BatchOutputTable.from_batches()")

    @classmethod
    def create(cls, row_ids: str = "keep") -> BatchOutputTable:
        if row_ids not in ("keep", "generate"):
            raise ValueError(f"BatchOutputTable row_ids must be 'keep' or 'generate', got "
                             f"{row_ids!r}")
        obj = cls.__new__(cls)
        obj._row_ids = row_ids
        obj._batches: list[Table] = []
        return obj

    @classmethod
    def from_batches(cls, generator: Iterable[Any], row_ids: str = "generate"
                     ) -> BatchOutputTable:
        obj = cls.create(row_ids)
        for batch in generator:
            obj.append(batch)
        return obj

    def append(self, batch: Any) -> None:
        mode = "auto" if self._row_ids == "keep" else "generate"
        if isinstance(batch, Table):
            table = batch
        elif isinstance(batch, pd.DataFrame):
            table = Table.from_pandas(batch, row_ids=mode)
        elif isinstance(batch, pa.RecordBatch):
            table = Table.from_pyarrow(pa.Table.from_batches([batch]), row_ids=mode)
        elif isinstance(batch, pa.Table):
            table = Table.from_pyarrow(batch, row_ids=mode)
        else:
            raise TypeError("Can only append batches of type knime.api.Table, pyarrow.Table, "
                            f"pyarrow.RecordBatch, pandas.DataFrame but got {type(batch)}")
        if self._batches and table.schema != self._batches[0].schema:
            raise ValueError("The first batch defines the structure of the table, and all "
                             "subsequent batches must have the same number of columns, column "
                             f"names and column types; got {table.schema} after "
                             f"{self._batches[0].schema}")
        self._batches.append(table)

    @property
    def num_batches(self) -> int:
        return len(self._batches)

    def _as_table(self) -> Table:
        """What KNIME receives at the end of the script (0 batches = an empty table)."""
        if not self._batches:
            return Table._wrap(pa.table({ROW_ID: pa.array([], pa.string())}))
        data = pa.concat_tables([b._data for b in self._batches])
        if self._row_ids == "generate":
            ids = pa.array([f"Row{i}" for i in range(data.num_rows)], pa.string())
            data = data.set_column(0, ROW_ID, ids)
        return Table._wrap(data)
