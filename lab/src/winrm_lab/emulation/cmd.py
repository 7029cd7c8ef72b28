"""cmd.exe and the few console tools a WinRS client reaches through it.

WinRS starts `cmd.exe /c <Command> <Arguments>` unless WINRS_SKIP_CMD_SHELL is set, in which case it starts the
executable itself. `cmd_program` and `direct_program` return the emulated program for each case.

The interpreter does what a one-line `cmd /c` does: `%VAR%` expansion once for the whole line (so
`set X=1 & echo %X%` shows the old value, as on Windows), `&`, `&&`, `||` and `|`, redirection to files and `nul`,
and the built-ins `echo`, `set`, `exit`, `type`, `ver`, `cd`, `rem`. The tools are `hostname`, `whoami`, `ping`,
`timeout`, `more`, `findstr`, `cmd` itself and `powershell` (emulated in powershell.py), in cmd_tools.py. Anything else fails as
Windows fails: "'X' is not recognized as an internal or external command, operable program or batch file." That
includes the cmd built-ins the lab does not emulate (dir, copy, if, for, ...): the lab cannot honestly pretend to
run them, so they fail loudly rather than appear to succeed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ntpath
import re
import typing as t

from ..process import Program, ProcessIO
from .cmd_tools import TOOLS, load_powershell
from .cmdline import (Redirection, SimpleCommand, first_word, parse_simple, split_argv, split_commands, split_pipes,
                      unescape)

NOT_RECOGNIZED = "'{name}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
FILE_NOT_FOUND = "The system cannot find the file specified.\r\n"
PATH_NOT_FOUND = "The system cannot find the path specified.\r\n"

BUILTINS = ("echo", "set", "exit", "type", "ver", "cd", "chdir", "rem", "cls")
EXIT_NOT_RECOGNIZED = 9009  # %ERRORLEVEL% after an unknown command; cmd /c itself then exits with 1


class ExecutableNotFound(FileNotFoundError):
    """WINRS_SKIP_CMD_SHELL with an executable CreateProcess cannot find (ERROR_FILE_NOT_FOUND)."""

    def __init__(self, name: str) -> None:
        super().__init__("The system cannot find the file specified. ")
        self.name = name


# Entry points ----------------------------------------------------------------------------------------------------

def cmd_program(command: str, arguments: list[str]) -> Program:
    """`cmd.exe /c <command> <arguments...>`, as WinRS runs a command by default."""
    line = " ".join([command, *arguments])

    async def cmd(io: ProcessIO) -> int:
        return await Interpreter(io).run_slash_c(line)

    return cmd


def direct_program(command: str, arguments: list[str]) -> Program:
    """The executable started without cmd.exe (WINRS_SKIP_CMD_SHELL). Raises ExecutableNotFound at once, as
    CreateProcess fails before anything runs."""
    tool = _resolve_executable(command)
    if tool is None:
        raise ExecutableNotFound(command)
    args_text = " ".join(arguments)

    async def program(io: ProcessIO) -> int:
        interpreter = Interpreter(io)
        return await interpreter.run_tool(tool, args_text, interpreter.console())

    return program


# Streams ---------------------------------------------------------------------------------------------------------

class Output:
    """Where a command writes: the process stream, a pipe buffer, a file or nul."""

    def __init__(self, write: t.Callable[[bytes], t.Awaitable[None]]) -> None:
        self._write = write

    async def write(self, data: bytes) -> None:
        if data:
            await self._write(data)


@dataclasses.dataclass
class Streams:
    stdout: Output
    stderr: Output
    read_stdin: t.Callable[[], t.Awaitable[bytes]]


def _buffer_output(buffer: bytearray) -> Output:
    async def write(data: bytes) -> None:
        buffer.extend(data)

    return Output(write)


async def _discard(data: bytes) -> None:
    return None


# Finding a program ------------------------------------------------------------------------------------------------

def _tool_key(name: str) -> str:
    """hostname, HOSTNAME.EXE, C:\\Windows\\System32\\hostname.exe -> hostname."""
    base = ntpath.basename(name.strip('"')).lower()
    for extension in (".exe", ".com"):
        if base.endswith(extension):
            return base[:-len(extension)]
    return base


def _resolve_executable(command: str) -> str | None:
    name = command.strip().strip('"')
    key = _tool_key(name)
    if key not in TOOLS:
        return None
    if key == "powershell" and load_powershell() is None:
        return None
    # A directory other than the system ones is not where Windows keeps these tools.
    directory = ntpath.dirname(name).lower().rstrip("\\")
    if directory and directory not in (r"c:\windows\system32", r"c:\windows",
                                       r"c:\windows\system32\windowspowershell\v1.0"):
        return None
    return key


# The interpreter -------------------------------------------------------------------------------------------------

class Interpreter:
    """One cmd.exe: its environment (shared with the shell's copy for this command), directory and ERRORLEVEL."""

    def __init__(self, io: ProcessIO, environment: dict[str, str] | None = None,
                 directory: str | None = None) -> None:
        self.io = io
        self.environment = environment if environment is not None else io.environment
        self.directory = directory or io.working_directory or self.get("USERPROFILE") or "C:\\"
        self.errorlevel = 0
        self.exit_requested: int | None = None
        self.last_not_recognized = False

    # environment ----------------------------------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        for key, value in self.environment.items():
            if key.lower() == name.lower():
                return value
        dynamic = {"errorlevel": str(self.errorlevel), "cd": self.directory}
        return dynamic.get(name.lower())

    def set(self, name: str, value: str | None) -> None:
        for key in list(self.environment):
            if key.lower() == name.lower():
                del self.environment[key]
        if value:
            self.environment[name] = value

    def expand(self, line: str) -> str:
        """%VAR% expansion as on the command line: an undefined variable stays as written."""
        def replace(match: re.Match[str]) -> str:
            value = self.get(match.group(1))
            return value if value is not None else match.group(0)

        return re.sub(r"%([^%\s=][^%=]*)%", replace, line)

    def encode(self, text: str) -> bytes:
        return text.encode(self.io.encoding, errors="replace")

    def console(self) -> Streams:
        return Streams(Output(self.io.write_stdout), Output(self.io.write_stderr), self.io.read_stdin)

    # running --------------------------------------------------------------------------------------------------
    def child(self) -> "Interpreter":
        """A cmd.exe started by this one: a copy of the environment, the same directory."""
        return Interpreter(self.io, dict(self.environment), self.directory)

    async def run_slash_c(self, line: str, streams: Streams | None = None) -> int:
        """`cmd /c line`: the exit code is 1, not 9009, when the last command was not recognized."""
        code = await self.run_line(_strip_slash_c_quotes(line), streams)
        return 1 if self.last_not_recognized and code == EXIT_NOT_RECOGNIZED else code

    async def run_line(self, line: str, streams: Streams | None = None) -> int:
        streams = streams or self.console()
        for operator, text in split_commands(self.expand(line)):
            if self.exit_requested is not None:
                break
            if operator == "&&" and self.errorlevel != 0:
                continue
            if operator == "||" and self.errorlevel == 0:
                continue
            if not text.strip():
                continue
            self.errorlevel = await self._run_pipeline(text, streams)
        return self.exit_requested if self.exit_requested is not None else self.errorlevel

    async def _run_pipeline(self, text: str, streams: Streams) -> int:
        stages = split_pipes(text)
        piped_input: bytes | None = None
        code = 0
        for index, stage in enumerate(stages):
            last = index == len(stages) - 1
            buffer = bytearray()
            stage_streams = Streams(
                stdout=streams.stdout if last else _buffer_output(buffer),
                stderr=streams.stderr,
                read_stdin=streams.read_stdin if piped_input is None else constant_input(piped_input),
            )
            code = await self._run_simple(parse_simple(stage), stage_streams)
            piped_input = bytes(buffer)
            if self.exit_requested is not None:
                break
        return code

    async def _run_simple(self, command: SimpleCommand, streams: Streams) -> int:
        try:
            streams = self._redirect(command.redirections, streams)
        except OSError:
            await streams.stderr.write(self.encode(PATH_NOT_FOUND))
            return 1
        name, rest = first_word(command.text)
        if not name.strip():
            return self.errorlevel
        self.last_not_recognized = False
        key = name.strip('"').lower()
        if key in BUILTINS and '"' not in name:
            return await getattr(self, f"_builtin_{'cd' if key == 'chdir' else key}")(rest, streams)
        tool = _resolve_executable(name)
        if tool is None:
            await streams.stderr.write(self.encode(NOT_RECOGNIZED.format(name=name.strip('"'))))
            self.last_not_recognized = True
            return EXIT_NOT_RECOGNIZED
        return await self.run_tool(tool, unescape(rest), streams)

    def _redirect(self, redirections: list[Redirection], streams: Streams) -> Streams:
        stdout, stderr, read_stdin = streams.stdout, streams.stderr, streams.read_stdin
        for redirection in redirections:
            if redirection.mode == "dup":
                source = stdout if redirection.target == "1" else stderr
                if redirection.stream == 2:
                    stderr = source
                else:
                    stdout = source
                continue
            if redirection.mode == "<":
                path = self.host_path(redirection.target)
                if path is None or not path.is_file():
                    raise OSError(redirection.target)
                read_stdin = constant_input(path.read_bytes())
                continue
            output = self._file_output(redirection.target, append=redirection.mode == ">>")
            if redirection.stream == 2:
                stderr = output
            else:
                stdout = output
        return Streams(stdout, stderr, read_stdin)

    def _file_output(self, target: str, append: bool) -> Output:
        if target.lower() in ("nul", "nul:"):
            return Output(_discard)
        path = self.host_path(target)
        if path is None or not path.parent.is_dir():
            raise OSError(target)
        if not append:
            path.write_bytes(b"")

        async def write(data: bytes) -> None:
            with path.open("ab") as handle:
                handle.write(data)

        return Output(write)

    def host_path(self, windows_path: str) -> t.Any:
        """Where the lab keeps a (possibly relative) Windows path of this device; None when it cannot exist."""
        windows_path = windows_path.strip().strip('"')
        if not windows_path:
            return None
        if not re.match(r"^[A-Za-z]:[\\/]", windows_path):
            windows_path = ntpath.join(self.directory, windows_path)
        try:
            return self.io.device.windows_path(ntpath.normpath(windows_path))
        except (ValueError, AttributeError):
            return None

    # built-ins ------------------------------------------------------------------------------------------------
    async def _builtin_echo(self, rest: str, streams: Streams) -> int:
        text = unescape(rest)
        if not text.strip():
            if text[:1] in (".", ":", "\\", "[", "]", "+"):
                await streams.stdout.write(b"\r\n")
            else:
                await streams.stdout.write(self.encode("ECHO is on.\r\n"))
            return 0
        if text.strip().lower() in ("on", "off"):
            return 0
        await streams.stdout.write(self.encode(text[1:] + "\r\n"))
        return 0

    async def _builtin_set(self, rest: str, streams: Streams) -> int:
        text = unescape(rest).strip()
        if text.lower().startswith("/a"):
            return await self._set_arithmetic(text[2:].strip(), streams)
        if text.lower().startswith("/p"):
            name, _, prompt = text[2:].strip().partition("=")
            await streams.stdout.write(self.encode(prompt))
            line = (await streams.read_stdin()).decode(self.io.encoding, errors="replace").splitlines()
            if line:
                self.set(name.strip(), line[0])
            return 0 if line else 1
        if text.startswith('"') and text.endswith('"'):
            text = text[1:-1]
        if not text:
            listing = sorted(self.environment.items(), key=lambda item: item[0].lower())
            await streams.stdout.write(self.encode("".join(f"{k}={v}\r\n" for k, v in listing)))
            return 0
        if "=" not in text:
            matches = sorted((k, v) for k, v in self.environment.items() if k.lower().startswith(text.lower()))
            if not matches:
                await streams.stderr.write(self.encode(f"Environment variable {text} not defined\r\n"))
                return 1
            await streams.stdout.write(self.encode("".join(f"{k}={v}\r\n" for k, v in matches)))
            return 0
        name, _, value = text.partition("=")
        if not name:
            await streams.stderr.write(self.encode("The syntax of the command is incorrect.\r\n"))
            return 1
        self.set(name, value)
        return 0

    async def _set_arithmetic(self, expression: str, streams: Streams) -> int:
        expression = expression.strip('"')
        assignment = re.match(r"^\s*([A-Za-z_][\w]*)\s*=(.*)$", expression)
        target, expression = (assignment.group(1), assignment.group(2)) if assignment else (None, expression)

        def variable(match: re.Match[str]) -> str:
            value = self.get(match.group(0)) or "0"
            return str(int(value)) if re.fullmatch(r"-?\d+", value.strip()) else "0"

        resolved = re.sub(r"[A-Za-z_]\w*", variable, expression)
        if not re.fullmatch(r"[\d\s+\-*/%()]*", resolved) or not resolved.strip():
            await streams.stderr.write(self.encode("Missing operand.\r\n"))
            return 1
        try:
            value = int(eval(resolved.replace("/", "//"), {"__builtins__": {}}, {}))  # digits and operators only
        except (SyntaxError, ZeroDivisionError):
            await streams.stderr.write(self.encode("Divide by zero error.\r\n" if "/" in resolved
                                                   else "Missing operand.\r\n"))
            return 1
        if target:
            self.set(target, str(value))
        await streams.stdout.write(self.encode(str(value)))  # no newline, as `cmd /c set /a` prints it
        return 0

    async def _builtin_exit(self, rest: str, streams: Streams) -> int:
        words = rest.split()
        if words and words[0].lower() == "/b":
            words = words[1:]
        code = self.errorlevel
        if words:
            match = re.match(r"^-?\d+", words[0])
            code = int(match.group(0)) if match else 0
        self.exit_requested = code
        return code

    async def _builtin_type(self, rest: str, streams: Streams) -> int:
        names = split_argv(rest)
        if not names:
            await streams.stderr.write(self.encode("The syntax of the command is incorrect.\r\n"))
            return 1
        code = 0
        for name in names:
            path = self.host_path(name)
            if path is None or not path.exists():
                await streams.stderr.write(self.encode(FILE_NOT_FOUND))
                code = 1
                continue
            if path.is_dir():
                await streams.stderr.write(self.encode("Access is denied.\r\n"))
                code = 1
                continue
            if len(names) > 1:
                await streams.stderr.write(self.encode(f"\r\n{name}\r\n\r\n\r\n"))
            await streams.stdout.write(path.read_bytes())
        return code

    async def _builtin_ver(self, rest: str, streams: Streams) -> int:
        version = getattr(getattr(self.io.device, "hardware", None), "os_version", "10.0.19045")
        await streams.stdout.write(self.encode(f"\r\nMicrosoft Windows [Version {version}]\r\n"))
        return 0

    async def _builtin_cd(self, rest: str, streams: Streams) -> int:
        target = unescape(rest).strip().strip('"')
        if target.lower().startswith("/d"):
            target = target[2:].strip().strip('"')
        if not target:
            await streams.stdout.write(self.encode(self.directory + "\r\n"))
            return 0
        if not re.match(r"^[A-Za-z]:[\\/]", target):
            target = ntpath.join(self.directory, target)
        target = ntpath.normpath(target)
        path = self.host_path(target)
        if path is None or not path.is_dir():
            await streams.stderr.write(self.encode(PATH_NOT_FOUND))
            return 1
        self.directory = target
        return 0

    async def _builtin_rem(self, rest: str, streams: Streams) -> int:
        return 0

    async def _builtin_cls(self, rest: str, streams: Streams) -> int:
        return 0

    # tools ----------------------------------------------------------------------------------------------------
    async def run_tool(self, tool: str, args: str, streams: Streams) -> int:
        return await TOOLS[tool](self, args, streams)


def constant_input(data: bytes) -> t.Callable[[], t.Awaitable[bytes]]:
    async def read() -> bytes:
        return data

    return read


def _strip_slash_c_quotes(line: str) -> str:
    """cmd /c's quote rule (cmd /?): the quotes around the line stay only when there are exactly two, nothing
    special between them, whitespace inside, and they name an executable; otherwise the first and last quote go."""
    stripped = line.lstrip()
    if not stripped.startswith('"'):
        return line
    if stripped.count('"') == 2:
        inner = stripped[1:stripped.index('"', 1)]
        if not re.search(r'[&<>()@^|]', inner) and re.search(r"\s", inner) and _resolve_executable(inner):
            return line
    last = stripped.rfind('"')
    return stripped[1:last] + stripped[last + 1:]
