import datetime as dt

import pytest

from batch_assets.core.names import InvalidName, check_name, check_table, parse_partition_date, quote_table

HOSTILE = ["../x", "a/b", "x;DROP TABLE t", "a'b", 'a"b', "", " a", "..", "a..b", "-a", "a" * 65, "a\nb"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_names_are_refused(value):
    with pytest.raises(InvalidName):
        check_name("model name", value)


@pytest.mark.parametrize("value", ["risk_model", "v1", "1", "2026.11.25-rc1", "Champion"])
def test_ordinary_names_pass(value):
    assert check_name("model name", value) == value


@pytest.mark.parametrize("value", ["predictions", "a.b.c", 'p."x"', "p.x;--", "1p.x"])
def test_bad_tables_are_refused(value):
    with pytest.raises(InvalidName):
        check_table(value)


def test_quote_table():
    assert quote_table("predictions.risk_scores") == '"predictions"."risk_scores"'


@pytest.mark.parametrize("key", ["2026-13-01", "2026-09-01'; DROP", "20260901", "2026-9-1", ""])
def test_bad_partition_keys_are_refused(key):
    with pytest.raises(InvalidName):
        parse_partition_date(key)


def test_partition_key_parses():
    assert parse_partition_date("2026-09-01") == dt.date(2026, 9, 1)
