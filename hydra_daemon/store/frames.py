"""Frame checks and conversions applied before anything is written to ArcticDB, and after it is read (pure).

ArcticDB cannot append categoricals, pandas nullable dtypes or Arrow-backed columns, silently makes a symbol's
index naive when a naive frame is appended, and returns tz-aware non-index columns as naive UTC values. So:
writers call :func:`normalise_dtypes`, :func:`require_utc_index` and :func:`require_utc_columns`; readers call
:func:`restore_utc`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu", "tzutc()"})
_NS_UTC = "datetime64[ns, UTC]"


def is_utc(tz: Any) -> bool:
    """True if ``tz`` is a UTC time zone object (pytz, zoneinfo, dateutil or ``datetime.timezone.utc``)."""
    return tz is dt.UTC or str(tz) in _UTC_NAMES


def require_utc_index(frame: pd.DataFrame, *, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` unless the index is an ascending, NaT-free UTC ``DatetimeIndex``."""
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"{what}: index must be a UTC DatetimeIndex, got {type(index).__name__}")
    if index.tz is None:
        raise ValueError(
            f"{what}: index is timezone-naive; refusing to guess. Localise it explicitly "
            "(index.tz_localize('UTC') if the values are UTC)"
        )
    if not is_utc(index.tz):
        raise ValueError(f"{what}: index time zone is {index.tz}, expected UTC; convert with index.tz_convert('UTC')")
    if index.hasnans:
        raise ValueError(f"{what}: index contains NaT")
    if not index.is_monotonic_increasing:
        raise ValueError(f"{what}: index is not sorted ascending; sort it (stable) before writing")


def require_utc_columns(frame: pd.DataFrame, *, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` and the columns if any datetime column is timezone-naive."""
    dtypes = frame.dtypes.items()
    naive = [str(c) for c, t in dtypes if isinstance(t, np.dtype) and t.kind == "M"]
    if naive:
        raise ValueError(f"{what}: datetime columns {naive} are timezone-naive; localise them to UTC explicitly")
    other = [str(c) for c, t in frame.dtypes.items() if isinstance(t, pd.DatetimeTZDtype) and not is_utc(t.tz)]
    if other:
        raise ValueError(f"{what}: datetime columns {other} are not UTC; run normalise_dtypes first")


def normalise_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``frame`` with numpy dtypes ArcticDB can append.

    Categoricals become their categories' dtype; nullable and Arrow-backed integers/booleans become numpy ints/
    bools, or float64 when they hold missing values; strings become object columns with ``None`` for missing;
    tz-aware datetime columns become ``datetime64[ns, UTC]``. The index keeps its time zone (only its unit
    becomes ns) so that :func:`require_utc_index` still sees what the caller passed.
    """
    out = frame.copy(deep=False)
    out.index = _normalise_index(frame.index)
    for position, dtype in enumerate(frame.dtypes):
        if _needs_conversion(dtype):
            out.isetitem(position, _normalise_series(frame.iloc[:, position], str(frame.columns[position])))
    return out


def restore_utc(frame: pd.DataFrame) -> pd.DataFrame:
    """Copy of a frame read from ArcticDB with naive datetime columns (stored as UTC values) made UTC again."""
    out = frame.copy()
    for name, dtype in frame.dtypes.items():
        if isinstance(dtype, np.dtype) and dtype.kind == "M":
            out[name] = frame[name].dt.tz_localize("UTC")
    if isinstance(out.index, pd.DatetimeIndex) and out.index.tz is None:
        out.index = out.index.tz_localize("UTC")
    return out


def _normalise_index(index: pd.Index) -> pd.Index:
    if isinstance(index.dtype, pd.ArrowDtype) and pa.types.is_timestamp(index.dtype.pyarrow_dtype):
        tz = index.dtype.pyarrow_dtype.tz
        return pd.DatetimeIndex(index.astype(f"datetime64[ns, {tz}]" if tz else "datetime64[ns]"), name=index.name)
    if isinstance(index, pd.DatetimeIndex):
        return index.as_unit("ns")
    return index


def _needs_conversion(dtype: Any) -> bool:
    if isinstance(dtype, np.dtype):
        return dtype.kind == "M" and dtype != np.dtype("datetime64[ns]")
    if isinstance(dtype, pd.DatetimeTZDtype):
        return dtype.unit != "ns" or str(dtype.tz) != "UTC"
    return True


def _normalise_series(series: pd.Series, name: str) -> pd.Series:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _normalise_series(_decategorise(series), name)
    if isinstance(dtype, pd.ArrowDtype):
        return _from_arrow(series, dtype.pyarrow_dtype, name)
    if isinstance(dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC").astype(_NS_UTC)
    if isinstance(dtype, np.dtype) and dtype.kind == "M":
        return series.astype("datetime64[ns]")
    if isinstance(dtype, pd.StringDtype):
        return _strings(series)
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.kind in "iubf":
        return _from_masked(series, np.dtype(dtype.numpy_dtype))
    return series


def _decategorise(series: pd.Series) -> pd.Series:
    categories = series.cat.categories
    if categories.dtype.kind in "iub" and series.isna().any():
        return series.astype("float64")
    if categories.dtype.kind in "iubfM" or isinstance(categories.dtype, pd.api.extensions.ExtensionDtype):
        return series.astype(categories.dtype)
    return _strings(series)


def _strings(series: pd.Series) -> pd.Series:
    values = series.astype(object)
    return values.where(series.notna(), None)


def _from_masked(series: pd.Series, numpy_dtype: np.dtype) -> pd.Series:
    if numpy_dtype.kind == "f" or series.isna().any():
        return pd.Series(series.to_numpy(dtype="float64", na_value=np.nan), index=series.index, name=series.name)
    return pd.Series(series.to_numpy(dtype=numpy_dtype), index=series.index, name=series.name)


def _from_arrow(series: pd.Series, arrow_type: pa.DataType, name: str) -> pd.Series:
    if pa.types.is_timestamp(arrow_type):
        converted = series.astype(f"datetime64[ns, {arrow_type.tz}]" if arrow_type.tz else "datetime64[ns]")
        return _normalise_series(converted, name)
    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type) or pa.types.is_floating(arrow_type):
        return _from_masked(series, np.dtype(arrow_type.to_pandas_dtype()))
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return _strings(series)
    raise ValueError(f"column {name!r}: Arrow type {arrow_type} cannot be stored; convert it to a numpy dtype")
