"""How cmd.exe cuts a command line: separators (&, &&, ||), pipes, redirections, ^ escapes, the command word,
and CommandLineToArgvW's rules for the arguments a program receives. Pure functions, no I/O."""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass
class Redirection:
    stream: int  # 0 stdin, 1 stdout, 2 stderr
    mode: str  # ">" | ">>" | "<" | "dup"
    target: str  # file name, or "1"/"2" for dup


@dataclasses.dataclass
class SimpleCommand:
    text: str  # command text without redirections
    redirections: list[Redirection]


def split_commands(line: str) -> list[tuple[str | None, str]]:
    """Splits a line at unquoted &, &&, || into (operator before, text) pairs; ^ escapes one character."""
    parts: list[tuple[str | None, str]] = []
    current: list[str] = []
    operator: str | None = None
    in_quotes = False
    i = 0
    while i < len(line):
        char = line[i]
        if char == '"':
            in_quotes = not in_quotes
            current.append(char)
        elif char == "^" and not in_quotes and i + 1 < len(line):
            current.append(line[i:i + 2])
            i += 1
        elif not in_quotes and char == "&" and not _follows_redirect(current):
            parts.append((operator, "".join(current)))
            current = []
            operator = "&&" if line[i + 1:i + 2] == "&" else "&"
            i += len(operator) - 1
        elif not in_quotes and char == "|" and line[i + 1:i + 2] == "|":
            parts.append((operator, "".join(current)))
            current = []
            operator = "||"
            i += 1
        else:
            current.append(char)
        i += 1
    parts.append((operator, "".join(current)))
    return parts


def _follows_redirect(current: list[str]) -> bool:
    """`2>&1`: the & belongs to the redirection, not a command separator."""
    text = "".join(current)
    return text.endswith(">")


def split_pipes(text: str) -> list[str]:
    pieces, current, in_quotes, i = [], [], False, 0
    while i < len(text):
        char = text[i]
        if char == '"':
            in_quotes = not in_quotes
        if char == "^" and not in_quotes and i + 1 < len(text):
            current.append(text[i:i + 2])
            i += 2
            continue
        if char == "|" and not in_quotes:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    pieces.append("".join(current))
    return pieces


_REDIRECT = re.compile(r'(?P<fd>[012])?(?P<op>>>|>|<)(?:&(?P<dup>[012])|\s*(?P<target>"[^"]*"|[^\s&|<>]+))')


def parse_simple(text: str) -> SimpleCommand:
    redirections: list[Redirection] = []
    kept: list[str] = []
    position = 0
    in_quotes = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == '"':
            in_quotes = not in_quotes
        elif char == "^" and not in_quotes:
            i += 2
            continue
        elif not in_quotes and char in "<>012":
            match = _REDIRECT.match(text, i)
            if match and (char in "<>" or match.group("fd")) and (char not in "012" or _at_word_start(text, i)):
                kept.append(text[position:i])
                default_fd = 0 if match.group("op") == "<" else 1
                fd = int(match.group("fd")) if match.group("fd") else default_fd
                if match.group("dup"):
                    redirections.append(Redirection(fd, "dup", match.group("dup")))
                else:
                    redirections.append(Redirection(fd, match.group("op"), match.group("target").strip('"')))
                position = i = match.end()
                continue
        i += 1
    kept.append(text[position:])
    return SimpleCommand("".join(kept), redirections)


def _at_word_start(text: str, index: int) -> bool:
    return index == 0 or text[index - 1] in " \t"


def unescape(text: str) -> str:
    """Removes cmd's ^ escapes outside quotes."""
    out, in_quotes, i = [], False, 0
    while i < len(text):
        char = text[i]
        if char == '"':
            in_quotes = not in_quotes
        if char == "^" and not in_quotes and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def split_argv(command_line: str) -> list[str]:
    """CommandLineToArgvW's rules: whitespace separates, quotes group, 2n backslashes + quote -> n and a quote
    toggle, 2n+1 backslashes + quote -> n and a literal quote, "" inside quotes -> a literal quote."""
    args: list[str] = []
    current: list[str] = []
    in_quotes = False
    have_arg = False
    i, n = 0, len(command_line)
    while i < n:
        char = command_line[i]
        if char == "\\":
            j = i
            while j < n and command_line[j] == "\\":
                j += 1
            count = j - i
            if j < n and command_line[j] == '"':
                current.append("\\" * (count // 2))
                if count % 2:
                    current.append('"')
                    i = j + 1
                else:
                    i = j
                have_arg = True
                continue
            current.append("\\" * count)
            have_arg = True
            i = j
            continue
        if char == '"':
            if in_quotes and i + 1 < n and command_line[i + 1] == '"':
                current.append('"')
                i += 2
                have_arg = True
                continue
            in_quotes = not in_quotes
            have_arg = True
        elif char in " \t" and not in_quotes:
            if have_arg:
                args.append("".join(current))
                current, have_arg = [], False
        else:
            current.append(char)
            have_arg = True
        i += 1
    if have_arg:
        args.append("".join(current))
    return args


def first_word(text: str) -> tuple[str, str]:
    """The command name (quotes kept) and the rest of the text, as cmd splits them."""
    text = text.lstrip(" \t@")
    if text.startswith('"'):
        end = text.find('"', 1)
        end = len(text) if end < 0 else end + 1
        return text[:end], text[end:]
    match = re.match(r'[^\s/=,;+(]+', text)
    if not match:
        return text[:1], text[1:]
    name = match.group(0)
    # echo. echo: echo\ are echo with a separator character
    if name.lower().startswith("echo") and len(name) > 4 and name[4] in ".:\\[]+":
        return name[:4], name[4:] + text[len(name):]
    return name, text[len(name):]
