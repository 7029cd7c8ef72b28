"""Emulation of Windows PowerShell 5.1's powershell.exe, as far as the collection's device scripts need it.

The lab knows exactly two PowerShell programs: the collection's bootstrap (device_scripts/bootstrap.ps1), sent as
`-EncodedCommand`, and its streaming twin (device_scripts/stream_bootstrap.ps1, for the file transfers). The
bootstrap reads `{"script": ..., "input": ...}` from stdin and runs the script; the lab recognises the script by its
header (`# device-script: NAME`, `# version: N`) and runs its emulation in emulation/scripts/NAME.py, checking input
and output against NAME.contract.json. Any other PowerShell fails the way PowerShell fails on a command it cannot
find, because the lab cannot honestly pretend to run it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import importlib
import inspect
import json
import logging
import os
import pathlib
import re
import typing as t

import jsonschema
import referencing
import referencing.jsonschema

from .. import windows_time
from ..process import Program, ProcessIO
from .scripts import DeviceScriptError

log = logging.getLogger(__name__)

DEVICE_SCRIPTS_ENV = "WINRM_LAB_DEVICE_SCRIPTS"

# powershell.exe's exit code for a command line it cannot parse (ExitCodeBadCommandLineParameter).
EXIT_BAD_COMMAND_LINE = 64

# powershell.exe switches: (full name, shortest accepted prefix). Windows PowerShell matches a switch when the given
# text is a prefix of the full name at least as long as the shortest prefix; a few also have a short alias of their
# own (-ep, -if, -of, -ec), listed as names of their own.
_FLAG_SWITCHES = (("noprofile", "nop"), ("noninteractive", "noni"), ("nologo", "nol"), ("noexit", "noe"),
                  ("sta", "s"), ("mta", "mta"))
_VALUE_SWITCHES = (("executionpolicy", "ex"), ("ep", "ep"), ("inputformat", "in"), ("if", "if"),
                   ("outputformat", "o"), ("of", "of"), ("windowstyle", "w"), ("version", "v"),
                   ("psconsolefile", "psc"), ("configurationname", "config"))

COMMAND_NOT_FOUND = ("The term '{name}' is not recognized as the name of a cmdlet, function, script file, or "
                     "operable program. Check the spelling of the name, or if a path was included, verify that the "
                     "path is correct and try again.")


# Where the collection's device scripts live ----------------------------------------------------------------------
def device_scripts_dir() -> pathlib.Path | None:
    """$WINRM_LAB_DEVICE_SCRIPTS, else plugins/module_utils/device_scripts of the repository holding this package."""
    configured = os.environ.get(DEVICE_SCRIPTS_ENV)
    if configured:
        return pathlib.Path(configured)
    return collection_scripts_dir()


@functools.lru_cache(maxsize=None)
def collection_scripts_dir() -> pathlib.Path | None:
    """plugins/module_utils/device_scripts of the repository holding this package (looked for once: every command
    asks)."""
    for parent in pathlib.Path(__file__).resolve().parents:
        candidate = parent / "plugins" / "module_utils" / "device_scripts"
        if candidate.is_dir():
            return candidate
    return None


_file_cache: dict[pathlib.Path, tuple[tuple[int, int], str]] = {}


def _read_text(path: pathlib.Path) -> str | None:
    """A file's text, cached until the file changes (1,000 devices read the same few files)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _file_cache.get(path)
    if cached is None or cached[0] != key:
        cached = (key, path.read_text(encoding="utf-8-sig"))
        _file_cache[path] = cached
    return cached[1]


def _normalise(script_text: str) -> str:
    # Line endings and trailing blank space differ between a checkout on Linux and the same file on Windows.
    return script_text.lstrip("\ufeff").replace("\r\n", "\n").rstrip()


def is_bootstrap(script_text: str, name: str = "bootstrap.ps1") -> bool:
    directory = device_scripts_dir()
    bootstrap = _read_text(directory / name) if directory else None
    if bootstrap is None:
        log.warning("device scripts not found (set %s); the lab cannot recognise the bootstrap", DEVICE_SCRIPTS_ENV)
        return False
    return _normalise(script_text) == _normalise(bootstrap)


def is_stream_bootstrap(script_text: str) -> bool:
    """stream_bootstrap.ps1: the bootstrap of the device scripts that stream data through stdin and stdout."""
    return is_bootstrap(script_text, "stream_bootstrap.ps1")


# The powershell.exe command line -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Invocation:
    command: str | None = None  # script text to run
    encoded: bool = False  # came in through -EncodedCommand (errors are then written as CLIXML)
    read_commands_from_stdin: bool = False
    file: str | None = None
    error: str | None = None  # the command line itself is bad


def _matches(text: str, full: str, shortest: str) -> bool:
    return len(text) >= len(shortest) and full.startswith(text)


def parse_command_line(arguments: list[str]) -> Invocation:
    """What powershell.exe makes of its arguments (Windows PowerShell 5.1 rules)."""
    invocation = Invocation()
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        if argument == "-":
            invocation.read_commands_from_stdin = True
            return invocation
        if not argument or argument[0] not in "-/":
            # 5.1: the first argument that is not a switch starts the command text, which is all the rest.
            invocation.command = " ".join(arguments[index:])
            return invocation
        switch = argument[1:].lower()
        if any(_matches(switch, full, shortest) for full, shortest in _FLAG_SWITCHES):
            index += 1
            continue
        value_switch = next((full for full, shortest in _VALUE_SWITCHES if _matches(switch, full, shortest)), None)
        if value_switch is not None:
            if index + 1 >= len(arguments):
                invocation.error = f"Missing argument for parameter {argument}."
                return invocation
            index += 2
            continue
        if _matches(switch, "encodedcommand", "e") or _matches(switch, "ec", "ec"):
            if index + 1 >= len(arguments):
                invocation.error = "Cannot process the command because -EncodedCommand requires an argument."
                return invocation
            try:
                raw = base64.b64decode(arguments[index + 1], validate=True)
                invocation.command = raw.decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                invocation.error = ("Cannot process the command because the value specified with -EncodedCommand "
                                    "is not properly encoded. The value must be Base64 encoded.")
            invocation.encoded = True
            return invocation
        if _matches(switch, "command", "c"):
            rest = arguments[index + 1:]
            if rest == ["-"]:
                invocation.read_commands_from_stdin = True
            else:
                invocation.command = " ".join(rest)
            return invocation
        if _matches(switch, "file", "f"):
            if index + 1 >= len(arguments):
                invocation.error = "Missing the argument to the -File parameter."
                return invocation
            invocation.file = arguments[index + 1]
            return invocation
        # 5.1: "The first parameter we fail to recognize marks the beginning of the command string."
        invocation.command = " ".join(arguments[index:])
        return invocation
    # No command: with stdin redirected (always, under WinRS) powershell.exe reads its commands from stdin.
    invocation.read_commands_from_stdin = True
    return invocation


# What PowerShell says about a command it cannot find ---------------------------------------------------------------
_KEYWORDS = frozenset("""begin break catch class continue data do dynamicparam else elseif end enum exit filter
finally for foreach function if in param process return switch throw trap try until using while""".split())


@dataclasses.dataclass
class CommandToken:
    name: str
    line: int  # 1-based, as PowerShell's "At line:N char:M"
    column: int
    line_text: str


def first_command(script_text: str) -> CommandToken | None:
    """The first word in command position: what PowerShell would look up, and fail to find, first.

    A reading of statements, not a parser: comments, keywords, variables and literals are skipped, and the right-hand
    side of an assignment is read as the statement it is.
    """
    in_block_comment = False
    for line_number, line in enumerate(script_text.replace("\r\n", "\n").split("\n"), start=1):
        position = 0
        while position < len(line):
            if in_block_comment:
                end = line.find("#>", position)
                if end < 0:
                    break
                in_block_comment, position = False, end + 2
                continue
            if line.startswith("<#", position):
                in_block_comment, position = True, position + 2
                continue
            match = re.compile(r"[\s;|{}()]*").match(line, position)
            position = match.end() if match else position
            if position >= len(line) or line[position] == "#":
                break
            assignment = re.compile(r"\$[\w:]+\s*[-+*/]?=\s*").match(line, position)
            if assignment:
                position = assignment.end()
                continue
            call = re.compile(r"&\s*|\.\s+").match(line, position)
            if call:
                position = call.end()
                quoted = re.compile(r"'([^']*)'|\"([^\"]*)\"").match(line, position)
                if quoted:  # & 'C:\tool.exe': the string names the command
                    return CommandToken(quoted.group(1) or quoted.group(2) or "", line_number, position + 1, line)
            word = re.compile(r"[^\s;|(){}]+").match(line, position)
            if word is None:
                break
            text = word.group(0)
            if text.lower() not in _KEYWORDS and text[0] not in "$[@'\"" and not text[0].isdigit():
                return CommandToken(text, line_number, position + 1, line)
            # Not a command: skip to the next statement on this line.
            next_statement = re.compile(r"[;|{(]").search(line, word.end())
            position = next_statement.start() + 1 if next_statement else len(line)
    return None


def command_not_found_message(name: str) -> str:
    return COMMAND_NOT_FOUND.format(name=name)


def command_not_found_record(script_text: str) -> str:
    """The error record PowerShell's host prints when the first command of a script does not exist."""
    token = first_command(script_text)
    if token is None:  # nothing in command position; name the script's first word, as little as we can claim
        words = script_text.split()
        first = words[0] if words else ""
        token = CommandToken(first, 1, 1, script_text.split("\n", 1)[0].rstrip("\r"))
    return "\r\n".join((
        f"{token.name} : {command_not_found_message(token.name)}",
        f"At line:{token.line} char:{token.column}",
        f"+ {token.line_text.rstrip()}",
        "+ " + " " * (token.column - 1) + "~" * len(token.name),
        f"    + CategoryInfo          : ObjectNotFound: ({token.name}:String) [], CommandNotFoundException",
        "    + FullyQualifiedErrorId : CommandNotFoundException",
        " ",
        "",
    ))


def _clixml_escape(text: str) -> str:
    # PowerShell's serializer writes control characters as _xHHHH_ and escapes a literal "_x" the same way.
    text = text.replace("_x", "_x005F_x")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"[\x00-\x1f]", lambda m: f"_x{ord(m.group(0)):04X}_", text)


def as_clixml_error(record: str) -> str:
    """An error record as powershell.exe writes it to a redirected stderr after -EncodedCommand: CLIXML."""
    lines = record.split("\r\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    parts = "".join(f'<S S="Error">{_clixml_escape(line + chr(13) + chr(10))}</S>' for line in lines)
    return f'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">{parts}</Objs>'


# The bootstrap and the device scripts ------------------------------------------------------------------------------
class LabEmulationBug(RuntimeError):
    """An emulation answered outside its script's contract: a defect in the lab, never a device failure."""


_HEADER_LINE = re.compile(r"^#\s*(device-script|version)\s*:\s*(\S+)\s*$", re.IGNORECASE)


def script_header(script_text: str) -> dict[str, str]:
    """`device-script` and `version` from the comment block the script starts with."""
    header: dict[str, str] = {}
    for line in script_text.lstrip("\ufeff").replace("\r\n", "\n").split("\n"):
        if not line.startswith("#"):
            break
        match = _HEADER_LINE.match(line.strip())
        if match:
            header[match.group(1).lower()] = match.group(2)
    return header


@functools.lru_cache(maxsize=8)
def _contracts(directory: pathlib.Path) -> referencing.Registry[t.Any]:
    """Every contract in `directory` by its file name, for a contract that refers to another's schema
    (get_support_session's `facts` is get_device_facts' output). Read once per folder: every command asks."""
    resources = []
    for path in sorted(directory.glob("*.contract.json")):
        text = _read_text(path)
        if text is not None:
            resources.append((path.name, referencing.jsonschema.DRAFT202012.create_resource(json.loads(text))))
    return referencing.Registry().with_resources(resources)


def validator(known: KnownScript, part: str) -> jsonschema.Draft202012Validator:
    """The validator of a script's input or output, its references to other contracts resolved."""
    directory = device_scripts_dir()
    registry = _contracts(directory) if directory is not None else referencing.Registry()
    return jsonschema.Draft202012Validator(known.contract[part], registry=registry)


@dataclasses.dataclass
class KnownScript:
    name: str
    version: int
    contract: dict[str, t.Any]
    emulation: t.Any  # the module in emulation/scripts


def identify_script(script_text: str) -> KnownScript | None:
    """The device script this text is, when the lab has its contract and an emulation of that version."""
    header = script_header(script_text)
    name, version = header.get("device-script"), header.get("version")
    directory = device_scripts_dir()
    if not name or not version or directory is None or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        return None
    contract_text = _read_text(directory / f"{name}.contract.json")
    if contract_text is None:
        log.warning("device script %s has no contract in %s", name, directory)
        return None
    contract = json.loads(contract_text)
    try:
        emulation = importlib.import_module(f"{__package__}.scripts.{name}")
    except ModuleNotFoundError:
        log.warning("device script %s has no emulation in the lab", name)
        return None
    if str(contract.get("version")) != version or str(getattr(emulation, "VERSION", None)) != version:
        log.warning("device script %s version %s: contract is version %s, emulation version %s", name, version,
                    contract.get("version"), getattr(emulation, "VERSION", None))
        return None
    return KnownScript(name, int(version), contract, emulation)


async def run_bootstrap(io: ProcessIO) -> int:
    """What bootstrap.ps1 does: read the payload from stdin, run the script, report its error and exit 1 on failure."""
    stdin_text = await io.read_stdin_text()
    if not stdin_text.strip():
        # `"" | ConvertFrom-Json` fails parameter binding, outside the bootstrap's try/catch.
        await io.write_stderr(as_clixml_error(_terminating_error_record(
            "ConvertFrom-Json : Cannot bind argument to parameter 'InputObject' because it is an empty string.",
            "InvalidData: (:) [ConvertFrom-Json], ParameterBindingValidationException",
            "ParameterArgumentValidationErrorEmptyStringNotAllowed,"
            "Microsoft.PowerShell.Commands.ConvertFromJsonCommand")))
        return 1
    try:
        payload = json.loads(stdin_text)
    except ValueError:
        primitive = stdin_text.split()[0][:40]
        await io.write_stderr(as_clixml_error(_terminating_error_record(
            f"ConvertFrom-Json : Invalid JSON primitive: {primitive}.",
            "NotSpecified: (:) [ConvertFrom-Json], ArgumentException",
            "System.ArgumentException,Microsoft.PowerShell.Commands.ConvertFromJsonCommand")))
        return 1

    # [Console]::OutputEncoding = UTF8 (no BOM): from here on both streams are UTF-8 whatever the codepage.
    async def fail(message: str) -> int:
        await io.write_stderr((message + "\r\n").encode("utf-8"))
        return 1

    script_text = payload.get("script") if isinstance(payload, dict) else None
    if not isinstance(script_text, str) or not script_text.strip():
        return 0  # an empty script block runs, does nothing, and the bootstrap exits 0
    script_input = payload.get("input")

    known = identify_script(script_text)
    if known is None:
        header = script_header(script_text)
        unknown = header.get("device-script") or (first_command(script_text) or CommandToken("", 0, 0, "")).name
        return await fail(command_not_found_message(unknown or script_text.split()[0]))
    return await run_known_script(io, known, script_input)


async def run_stream_bootstrap(io: ProcessIO) -> int:
    """What stream_bootstrap.ps1 does: read the header's length (ASCII digits and a line feed) and that many bytes of
    JSON from stdin, byte-exact, and run the script with the rest of stdin and stdout left to it as raw streams."""
    async def fail(message: str) -> int:
        await io.write_stderr((message + "\r\n").encode("utf-8"))
        return 1

    digits = bytearray()
    while True:
        byte = await io.read_stdin_exactly(1)
        if not byte:
            return await fail("stdin ended before the header of the streaming bootstrap.")
        if byte == b"\n":
            break
        if not byte.isdigit() or len(digits) >= 9:
            return await fail("stdin does not start with the length of a header.")
        digits.extend(byte)
    if not digits:
        return await fail("stdin does not start with the length of a header.")
    length = int(digits)
    header = await io.read_stdin_exactly(length)
    if len(header) < length:
        return await fail("stdin ended inside the header of the streaming bootstrap.")
    try:
        payload = json.loads(header.decode("utf-8"))
    except ValueError:
        return await fail(f"Invalid JSON primitive: {header[:40].decode('utf-8', errors='replace')}.")
    script_text = payload.get("script") if isinstance(payload, dict) else None
    if not isinstance(script_text, str) or not script_text.strip():
        return 0
    known = identify_script(script_text)
    if known is None:
        header_fields = script_header(script_text)
        unknown = header_fields.get("device-script") or (first_command(script_text) or CommandToken("", 0, 0, "")).name
        return await fail(command_not_found_message(unknown or script_text.split()[0]))
    return await run_known_script(io, known, payload.get("input"))


async def run_known_script(io: ProcessIO, known: KnownScript, script_input: t.Any) -> int:
    """Runs a device script's emulation as the script would run: input checked against the contract, the result
    checked and written as one JSON line, a script error as its message on stderr with exit code 1."""
    async def fail(message: str) -> int:
        await io.write_stderr((message + "\r\n").encode("utf-8"))
        return 1

    errors = sorted(validator(known, "input").iter_errors(script_input),
                    key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(the input)"
        return await fail(f"Cannot validate argument on parameter 'InputObject'. {where}: {errors[0].message}")

    await windows_time.script_queries_answered(io.device, known.name, script_input)
    try:
        run = known.emulation.run
        # Emulations that care who runs them and where (the consent prompt) take the process as `io`.
        if "io" in inspect.signature(run).parameters:
            result = run(io.device, script_input, io=io)
        else:
            result = run(io.device, script_input)
        if inspect.isawaitable(result):
            result = await result
    except DeviceScriptError as error:
        return await fail(str(error))

    problems = list(validator(known, "output").iter_errors(result))
    if problems:
        detail = "; ".join(f"{'/'.join(map(str, p.absolute_path)) or '(result)'}: {p.message}" for p in problems[:5])
        log.error("lab bug: emulation of %s v%s broke its contract: %s", known.name, known.version, detail)
        raise LabEmulationBug(f"winrm-lab bug: the emulation of {known.name} v{known.version} answered outside "
                              f"{known.name}.contract.json: {detail}")
    # ConvertTo-Json -Compress: one line; the host ends it with CRLF.
    await io.write_stdout((json.dumps(result, ensure_ascii=False, separators=(",", ":")) + "\r\n").encode("utf-8"))
    return 0


def _terminating_error_record(first_line: str, category: str, error_id: str) -> str:
    return "\r\n".join((first_line, f"    + CategoryInfo          : {category}",
                        f"    + FullyQualifiedErrorId : {error_id}", " ", ""))


# powershell.exe ----------------------------------------------------------------------------------------------------
def powershell_program(arguments: list[str]) -> Program:
    """powershell.exe started with `arguments` (everything after the program name)."""

    async def powershell(io: ProcessIO) -> int:
        await windows_time.powershell_started(io.device)
        invocation = parse_command_line(list(arguments))
        if invocation.error:
            await io.write_stderr(invocation.error + "\r\n")
            return EXIT_BAD_COMMAND_LINE
        if invocation.file is not None:
            return await _run_file(io, invocation.file)
        if invocation.read_commands_from_stdin:
            script_text = await io.read_stdin_text()
            if not script_text.strip():
                return 0
            await io.write_stderr(command_not_found_record(script_text))
            return 1
        script_text = invocation.command or ""
        if invocation.encoded and is_bootstrap(script_text):
            return await run_bootstrap(io)
        if invocation.encoded and is_stream_bootstrap(script_text):
            return await run_stream_bootstrap(io)
        if not script_text.strip():
            return 0
        record = command_not_found_record(script_text)
        # With -EncodedCommand and a redirected stderr (always so under WinRS) Windows PowerShell serialises error
        # records as CLIXML; clients such as pywinrm's run_ps and Ansible decode it.
        await io.write_stderr(as_clixml_error(record) if invocation.encoded else record)
        return 1

    return powershell


async def _run_file(io: ProcessIO, file: str) -> int:
    try:
        path = io.device.windows_path(file)
        exists = path.is_file() and file.lower().endswith(".ps1")
    except ValueError:
        exists = False
    if not exists:
        await io.write_stderr(f"The argument '{file}' to the -File parameter does not exist. Provide the path to an "
                              "existing '.ps1' file as an argument to the -File parameter.\r\n")
        return EXIT_BAD_COMMAND_LINE
    script_text = path.read_text(encoding="utf-8-sig", errors="replace")
    # A device script the lab emulates (how the scheduled tasks run the consent route's scripts): -File passes no
    # arguments, so its $InputObject is $null.
    known = identify_script(script_text)
    if known is not None:
        return await run_known_script(io, known, None)
    await io.write_stderr(command_not_found_record(script_text))
    return 1
