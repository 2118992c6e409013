"""Bad landing files fail their own partition with a message naming the file and column; other days load."""

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_assets.demo.data import DemoConfig, write_landing
from batch_assets.storage.store import Store
from batch_assets.storage.warehouse import LandingError, landing_dir, read_landing_day

DEMO = DemoConfig(customers=50, days=3, start=dt.date(2026, 9, 1))
D1, D2, D3 = DEMO.dates


@pytest.fixture
def root(tmp_path):
    write_landing(DEMO, tmp_path / "landing")
    return tmp_path / "landing"


def only_file(root, day):
    (path,) = sorted(landing_dir(root, day).glob("*.parquet"))
    return path


def test_good_days_load_from_a_path_or_a_store(root):
    table = read_landing_day(root, D1)
    assert table.num_rows > 0
    assert read_landing_day(Store(str(root)), D1).equals(table)


def test_truncated_file_names_the_file_and_other_days_still_load(root):
    bad = only_file(root, D2)
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(LandingError, match=rf"landing file {bad} for {D2} is not readable Parquet"):
        read_landing_day(root, D2)
    assert read_landing_day(root, D1).num_rows > 0 and read_landing_day(root, D3).num_rows > 0


def test_corrupt_bytes_are_reported_not_loaded(root):
    bad = only_file(root, D2)
    bad.write_bytes(b"PAR1" + b"\x00garbage" * 50 + b"PAR1")
    with pytest.raises(LandingError, match="not readable Parquet"):
        read_landing_day(root, D2)


def test_a_file_with_another_schema_names_the_file_and_column(root):
    good = pq.read_table(only_file(root, D2))
    extra = landing_dir(root, D2) / "late-arrival.parquet"
    pq.write_table(good.drop_columns(["amount"]), extra)
    with pytest.raises(LandingError, match=rf"landing file {extra} for {D2} has no column 'amount'"):
        read_landing_day(root, D2)
    amount = good.column_names.index("amount")
    retyped = good.set_column(amount, "amount", pa.array(["12,50"] * good.num_rows))
    pq.write_table(retyped, extra)
    with pytest.raises(LandingError, match=rf"landing column 'amount' in {extra} for {D2} has type string"):
        read_landing_day(root, D2)
    assert read_landing_day(root, D3).num_rows > 0


def test_missing_day_folder_and_empty_folder(root):
    missing = dt.date(2026, 9, 20)
    with pytest.raises(LandingError, match=f"no landing folder for {missing}"):
        read_landing_day(root, missing)
    for f in landing_dir(root, D3).iterdir():
        f.unlink()
    with pytest.raises(LandingError, match=f"landing folder for {D3} has no files"):
        read_landing_day(root, D3)
    # hidden and underscore files (temporaries, markers) are ignored
    (landing_dir(root, D3) / "_SUCCESS").write_text("")
    with pytest.raises(LandingError, match="has no files"):
        read_landing_day(root, D3)
