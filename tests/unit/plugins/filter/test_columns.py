"""The columns filter lays out the fleet playbooks' tables: what a device reports cannot break a row or a column."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.remote_support.windows.plugins.filter.columns import FilterModule, columns


def test_columns_are_as_wide_as_their_longest_value_and_the_last_is_not_padded():
    table = columns([["HOST", "STATUS", "REASON"], ["pc-1", "active", "-"], ["a-longer-name", "idle", "agent"]])
    assert table.splitlines() == ["HOST           STATUS  REASON",
                                  "pc-1           active  -",
                                  "a-longer-name  idle    agent"]


def test_a_device_s_line_breaks_and_tabs_cannot_split_a_row():
    table = columns([["HOST", "MODEL"], ["pc-1", "Latitude\n7440\tfake row"]])
    assert table.splitlines() == ["HOST  MODEL", "pc-1  Latitude 7440 fake row"]


@pytest.mark.parametrize("empty", [None, "", 0, False, []])
def test_missing_or_empty_values_show_as_a_dash(empty):
    assert columns([["pc-1", empty, "x"]]) == "pc-1  -  x"


def test_a_value_longer_than_the_limit_ends_in_dots_within_the_limit():
    table = columns([["pc-1", "x" * 50, "end"]], 10)
    assert table == "pc-1  xxxxxxx...  end"
    assert columns([["pc-1", "x" * 41]]).endswith("x" * 37 + "...")
    assert columns([["pc-1", "x" * 40]]).endswith("x" * 40)


def test_rows_of_different_lengths_and_no_rows():
    assert columns([["a", "bb"], ["ccc"]]).splitlines() == ["a    bb", "ccc"]
    assert columns([]) == ""


@pytest.mark.parametrize("rows", ["HOST STATUS", [["ok"], "not a row"], {"a": 1}])
def test_what_is_not_a_list_of_rows_is_refused(rows):
    with pytest.raises(AnsibleFilterError, match="list of rows"):
        columns(rows)


def test_a_limit_below_one_is_refused():
    with pytest.raises(AnsibleFilterError, match="limit must be 1 or more"):
        columns([["a"]], 0)


def test_the_filter_is_offered_under_its_name():
    assert FilterModule().filters() == {"columns": columns}
