"""--device-latency windows: each device script waits as long as Windows would (powershell.exe start-up, one wait
per WMI query the script makes); without it the lab waits for nothing. The waits are recorded, not timed."""

from __future__ import annotations

import asyncio

import pytest

from winrm_lab import cli, windows_time
from winrm_lab.scenarios import build_fleet

from test_device_scripts import BOOTSTRAP_ARGUMENTS, FACTS_SCRIPT, SCRIPTS, payload, run


@pytest.fixture
def waits(monkeypatch):
    recorded = []
    real_sleep = asyncio.sleep

    async def sleep(seconds, *args, **kwargs):
        recorded.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(windows_time.asyncio, "sleep", sleep)
    return recorded


@pytest.fixture
def device(tmp_path):
    return build_fleet(1, "healthy", 1, work_dir=tmp_path).devices[0]


def test_the_facts_script_waits_for_powershell_and_each_of_its_wmi_queries(device, waits):
    device.windows_time = windows_time.MODELS["windows"]
    stdout, stderr, code = run(device, BOOTSTRAP_ARGUMENTS, payload())
    assert code == 0, stderr
    queries = queries_in(FACTS_SCRIPT) + queries_in(library("device_facts"))  # the script reads them in its library
    assert queries >= 1
    assert waits == [windows_time.POWERSHELL_STARTUP_SECONDS, queries * windows_time.WMI_QUERY_SECONDS]


def queries_in(text):
    return text.count("Get-CimInstance") + text.count("Get-WmiObject")


def library(name):
    return (SCRIPTS / "library" / f"{name}.ps1").read_text(encoding="utf-8")


def test_the_session_read_waits_for_the_facts_queries_only_when_it_answers_the_facts():
    own = queries_in((SCRIPTS / "get_support_session.ps1").read_text(encoding="utf-8")) \
        + queries_in(library("interactive_user"))
    assert own >= 1  # the console user, from WMI
    assert windows_time.wmi_queries("get_support_session") == own
    assert windows_time.wmi_queries("get_support_session", frozenset({"facts"})) \
        == own + queries_in(library("device_facts"))


def test_without_the_model_nothing_waits(device, waits):
    assert device.windows_time is None
    _stdout, stderr, code = run(device, BOOTSTRAP_ARGUMENTS, payload())
    assert code == 0, stderr
    assert waits == []


def test_the_command_line_takes_the_model_and_refuses_others(capsys):
    assert cli.parse_arguments(["--device-latency", "windows"]).device_latency == "windows"
    assert cli.parse_arguments([]).device_latency == "none"
    with pytest.raises(SystemExit):
        cli.parse_arguments(["--device-latency", "linux"])
    assert "invalid choice" in capsys.readouterr().err
