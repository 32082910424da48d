"""Data generation, the five operations and the result comparison of the RAPIDS dashboard."""

import numpy as np
import pandas as pd
import pytest

from gpu_notebooks.rapids_benchmark.checks import OP_ORDER, results_match
from gpu_notebooks.rapids_benchmark.data import CATEGORIES, N_MANY_KEYS, generate_data
from gpu_notebooks.rapids_benchmark.ops import OPS, bytes_touched, frame_nbytes, get_op


@pytest.fixture(scope="module")
def data():
    return generate_data(200_000, seed=7)


def test_data_shapes_dtypes_and_cardinality(data):
    df, lookup = data
    assert len(df) == 200_000
    assert dict(df.dtypes.astype(str)) == {
        "key_few": "int32",
        "key_many": "int32",
        "value": "float64",
        "value2": "float64",
        "category": "category",
    }
    assert df["key_few"].nunique() == 100
    assert 80_000 < df["key_many"].nunique() <= N_MANY_KEYS
    assert list(df["category"].cat.categories) == CATEGORIES
    assert df["value"].between(0, 100).all()
    assert lookup["key_many"].is_unique and len(lookup) == N_MANY_KEYS // 2


def test_data_is_seeded_and_reproducible():
    a, la = generate_data(50_000, seed=3)
    b, lb = generate_data(50_000, seed=3)
    c, _ = generate_data(50_000, seed=4)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(la, lb)
    assert not a["value"].equals(c["value"])


def numpy_reference(op, df, lookup):
    """Each op's answer computed with NumPy alone (no pandas operation), in the shape pandas returns."""
    key_few, key_many = df["key_few"].to_numpy(), df["key_many"].to_numpy()
    value, value2 = df["value"].to_numpy(), df["value2"].to_numpy()
    if op == "filter":
        return df.iloc[np.flatnonzero((value > 50.0) & (key_few < 50))]
    if op in ("groupby_few", "groupby_many"):
        key = key_few if op == "groupby_few" else key_many
        keys = np.unique(key)
        index = np.searchsorted(keys, key)
        count = np.bincount(index).astype(np.int64)
        total = np.bincount(index, weights=value)
        cols = {("value", "sum"): total}
        if op == "groupby_few":
            maxima = np.full(len(keys), -np.inf)
            np.maximum.at(maxima, index, value)
            mean2 = np.bincount(index, weights=value2) / count
            var2 = np.bincount(index, weights=(value2 - mean2[index]) ** 2) / (count - 1)
            cols.update({("value", "mean"): total / count, ("value", "max"): maxima})
            cols.update({("value", "count"): count, ("value2", "std"): np.sqrt(var2)})
        else:
            cols[("value", "count")] = count
        name = "key_few" if op == "groupby_few" else "key_many"
        out = pd.DataFrame(cols, index=pd.Index(keys, name=name))
        out.columns = pd.MultiIndex.from_tuples(out.columns)
        return out
    if op == "join":
        rows = np.flatnonzero(np.isin(key_many, lookup["key_many"].to_numpy()))
        at = np.searchsorted(lookup["key_many"].to_numpy(), key_many[rows])
        out = df.iloc[rows].reset_index(drop=True)
        out["price"] = lookup["price"].to_numpy()[at]
        out["region"] = lookup["region"].to_numpy()[at]
        return out
    if op == "sort":
        return df.iloc[np.argsort(value, kind="stable")]
    raise AssertionError(op)


@pytest.mark.parametrize("op", list(OPS))
def test_each_op_agrees_with_an_independent_numpy_computation(data, op):
    df, lookup = data
    ok, detail = results_match(numpy_reference(op, df, lookup), get_op(op)(pd, df, lookup), OP_ORDER[op])
    assert ok, detail


def test_op_results_have_the_expected_meaning(data):
    df, lookup = data
    filtered = get_op("filter")(pd, df, lookup)
    assert ((filtered["value"] > 50) & (filtered["key_few"] < 50)).all()
    assert len(filtered) == int(((df["value"] > 50) & (df["key_few"] < 50)).sum())
    few = get_op("groupby_few")(pd, df, lookup)
    assert len(few) == 100 and few[("value", "count")].sum() == len(df)
    assert np.isclose(few[("value", "sum")].sum(), df["value"].sum())
    joined = get_op("join")(pd, df, lookup)
    assert len(joined) == int((df["key_many"] % 2 == 0).sum())
    assert get_op("sort")(pd, df, lookup)["value"].is_monotonic_increasing


def test_unordered_results_match_in_any_row_order(data):
    df, lookup = data
    joined = get_op("join")(pd, df, lookup)
    shuffled = joined.sample(frac=1.0, random_state=1)
    assert results_match(joined, shuffled, "unordered")[0]
    grouped = get_op("groupby_many")(pd, df, lookup)
    assert results_match(grouped, grouped.sample(frac=1.0, random_state=2), "unordered")[0]


def test_comparison_catches_a_changed_value(data):
    df, lookup = data
    few = get_op("groupby_few")(pd, df, lookup)
    wrong = few.copy()
    wrong.iloc[5, wrong.columns.get_loc(("value", "mean"))] *= 1.001
    ok, detail = results_match(few, wrong, "unordered")
    assert not ok and "value_mean" in detail


def test_comparison_tolerates_float_rounding_only(data):
    df, lookup = data
    few = get_op("groupby_few")(pd, df, lookup)
    rounded = few.copy()
    rounded[("value", "sum")] = rounded[("value", "sum")] * (1 + 1e-12)
    assert results_match(few, rounded, "unordered")[0]


def test_comparison_catches_a_missing_row_and_a_wrong_order(data):
    df, lookup = data
    filtered = get_op("filter")(pd, df, lookup)
    assert not results_match(filtered, filtered.iloc[1:], "rows")[0]
    reordered = filtered.iloc[::-1]
    assert not results_match(filtered, reordered, "rows")[0]
    ordered = get_op("sort")(pd, df, lookup)
    swapped = ordered.iloc[[1, 0, *range(2, len(ordered))]]
    ok, detail = results_match(ordered, swapped, "key:value")
    assert not ok and "sorted" in detail


def test_comparison_catches_a_wrong_join_row(data):
    df, lookup = data
    joined = get_op("join")(pd, df, lookup)
    wrong = joined.copy()
    wrong.loc[wrong.index[10], "region"] = 99
    assert not results_match(joined, wrong, "unordered")[0]
    assert not results_match(joined, joined.drop(columns="price"), "unordered")[0]


def test_bytes_touched_counts_inputs_read_and_result_written(data):
    df, lookup = data
    grouped = get_op("groupby_many")(pd, df, lookup)
    expected = df["key_many"].nbytes + df["value"].nbytes + int(grouped.memory_usage(index=True).sum())
    assert bytes_touched("groupby_many", df, grouped) == expected


def test_frame_nbytes_measures_two_level_group_by_columns_column_by_column():
    """cuDF's DataFrame.memory_usage rejects ('value', 'sum') columns; the column-by-column count must not."""
    import numpy as np

    frame = pd.DataFrame({"k": np.arange(10) % 3, "v": np.arange(10.0)})
    grouped = frame.groupby("k").agg({"v": ["sum", "mean"]})
    assert grouped.columns.nlevels == 2
    assert frame_nbytes(grouped) == int(grouped.memory_usage(deep=False).sum())
    assert frame_nbytes(frame, index=False) == 160


@pytest.mark.parametrize("dtype", ["Int64", "string", "Float64"])
def test_a_value_against_a_gap_is_a_mismatch_with_nullable_types(dtype):
    """cuDF (and pandas' nullable types) answer a comparison with a missing value with a missing value, and
    `.sum()` skips it: the check once counted a value against a gap as a match."""
    values = {"Int64": [1, 2], "string": ["a", "b"], "Float64": [1.5, 2.5]}[dtype]
    expected = pd.DataFrame({"c": pd.array(values, dtype=dtype)})
    with_gap = pd.DataFrame({"c": pd.array([values[0], None], dtype=dtype)})
    assert results_match(expected, with_gap, "rows") == (False, "1 of 2 values differ in column 'c'")
    assert results_match(with_gap, with_gap.copy(), "rows")[0]  # missing on both sides is equal
    assert not results_match(expected, with_gap, "key:c")[0]  # and in the sort's key check


def test_decimals_compare_as_floats_with_any_engine():
    """A Parquet decimal column: pandas gives Decimal objects, cuDF Decimal64 (another precision once moved to
    the GPU), other engines floats. Compared as floats: equal values agree, a different one does not."""
    import decimal

    expected = pd.DataFrame({"amount": [decimal.Decimal("1.10"), decimal.Decimal("2.25"), None]})
    assert results_match(expected, pd.DataFrame({"amount": [1.1, 2.25, np.nan]}), "rows")[0]
    assert not results_match(expected, pd.DataFrame({"amount": [1.1, 2.5, np.nan]}), "rows")[0]
    assert results_match(expected, expected.copy(), "unordered")[0]


def test_comparison_counts_equal_infinities_as_equal_and_others_as_different():
    expected = pd.DataFrame({"value": [1.0, np.inf, -np.inf, np.nan]})
    assert results_match(expected, expected.copy(), "rows")[0]  # inf - inf is NaN: equality must decide
    for wrong in ([1.0, -np.inf, -np.inf, np.nan], [1.0, np.inf, 5.0, np.nan], [1.0, np.inf, -np.inf, 0.0]):
        ok, detail = results_match(expected, pd.DataFrame({"value": wrong}), "rows")
        assert not ok and detail == "1 of 4 values differ in column 'value'"
