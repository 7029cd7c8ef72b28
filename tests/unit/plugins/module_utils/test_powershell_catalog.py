# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every device script, as the device receives it, calls only what Windows PowerShell 5.1 on .NET Framework 4.5+ has.

No PowerShell runs where the collection is built, so the scripts are read with the tree-sitter PowerShell grammar and
each call is looked up in powershell_catalog.yml beside this file: every cmdlet with the module that provides it on
Windows PowerShell 5.1 and each parameter the scripts pass it (a switch or one that takes a value), every .NET type
with the static members the scripts use, every instance method called, each with the Microsoft documentation page that
shows it on Windows PowerShell 5.1 / .NET Framework 4.5. A type a script compiles itself (Add-Type -TypeDefinition with
the C# source written in the script) is not Microsoft's and has no page: that script may use it, and only the public
static members its source declares. A call outside the catalog fails here, and so does:

- an alias (`gci`, `%`, `?`): aliases differ between hosts and versions, the full name does not;
- an abbreviated or misspelled parameter, a positional argument to a cmdlet (unless the catalog names the one
  positional parameter that cmdlet is always called with, a ForEach-Object script block), or to a function of the
  script beyond the parameters it declares;
- an automatic variable used wrongly: assigned, used as a parameter or loop variable, `$_` outside a script block or
  catch, `$Matches` in a script that never matches, PowerShell 6+ only ones (`$IsWindows`), or the script's own path
  (`$PSScriptRoot`), which a script run from the bootstrap does not have;
- what Set-StrictMode -Version 2.0 turns into an error on the device: a variable read that the script never sets, a
  property read on what a command run with -ErrorAction SilentlyContinue may not return, an input field the
  contract lets a request leave out read without looking it up first;
- a script that does not begin with `Set-StrictMode -Version 2.0` and `$ErrorActionPreference = 'Stop'`.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import typing as t
import urllib.parse

import pytest
import tree_sitter
import tree_sitter_powershell
import yaml

from ansible_collections.remote_support.windows.plugins.module_utils import device_script

CATALOG_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "powershell_catalog.yml")
BOOTSTRAPS = ("bootstrap", "stream_bootstrap")
SCRIPT_NAMES = sorted(os.path.basename(p)[:-len(".ps1")]
                      for p in glob.glob(os.path.join(device_script.SCRIPTS_DIR, "*.ps1")))
PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))

# The automatic variables of Windows PowerShell 5.1 (about_Automatic_Variables): never assigned, never a parameter or
# loop variable name. Lower case.
AUTOMATIC = {
    "$", "?", "^", "_", "args", "consolefilename", "error", "event", "eventargs", "eventsubscriber",
    "executioncontext", "false", "foreach", "home", "host", "input", "lastexitcode", "matches", "myinvocation",
    "nestedpromptlevel", "null", "ofs", "pid", "profile", "psboundparameters", "pscmdlet", "pscommandpath",
    "psculture", "psdebugcontext", "pshome", "psitem", "psscriptroot", "pssenderinfo", "psuiculture",
    "psversiontable", "pwd", "sender", "shellid", "stacktrace", "switch", "this", "true",
}
# Read freely: constants and the process's own facts.
READABLE_AUTOMATIC = {"true", "false", "null", "pid", "lastexitcode"}
# Only PowerShell 6 and later set these; on Windows PowerShell 5.1 they are unset (an error under StrictMode).
PS6_ONLY = {"iswindows", "islinux", "ismacos", "iscoreclr", "psstyle", "enabledexperimentalfeatures"}
# Empty or wrong in a script block the bootstrap builds from text: the script has no file of its own.
NO_SCRIPT_FILE = {"psscriptroot", "pscommandpath", "myinvocation"}
# Preference variables a script sets for itself (about_Preference_Variables), which StrictMode lets it set unread.
PREFERENCES = {"erroractionpreference", "progresspreference", "verbosepreference", "warningpreference",
               "confirmpreference", "informationpreference", "debugpreference"}

DOC_HOST = "learn.microsoft.com"
CMDLET_VIEWS = ("powershell-5.1", "windowsserver2019-ps")
DOTNET_VIEW = "netframework-4.5"
# The PowerShell SDK reference of Windows PowerShell 5.1 (System.Management.Automation).
SDK_VIEW = "powershellsdk-1.1.0"


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)


def _text(node) -> str:
    return node.text.decode("utf-8")


def sent_text(name: str) -> str:
    """What the device runs: a script with its libraries in place, or a bootstrap as it is."""
    if name in BOOTSTRAPS:
        with open(os.path.join(device_script.SCRIPTS_DIR, f"{name}.ps1"), encoding="utf-8") as handle:
            return handle.read()
    return device_script.load(name).text


def load_catalog(path: str = CATALOG_PATH) -> dict[str, t.Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@dataclasses.dataclass
class Finding:
    line: int
    what: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.what}"


class Checker:
    """The catalog, looked up case-insensitively as PowerShell does, and the checks one script text goes through."""

    def __init__(self, catalog: t.Mapping[str, t.Any]):
        self.catalog = catalog
        self.cmdlets = {name.lower(): (name, entry) for name, entry in catalog["cmdlets"].items()}
        self.aliases = {alias.lower(): target for alias, target in catalog["aliases"].items()}
        self.types: dict[str, dict[str, t.Any]] = {}
        for name, entry in catalog["types"].items():
            for spelling in [name, *entry.get("accelerators", [])]:
                self.types[spelling.lower()] = entry
                if spelling.lower().startswith("system."):
                    # PowerShell resolves a type name with the System. namespace left out as well.
                    self.types[spelling[len("system."):].lower()] = entry
        self.methods = {name.lower() for name in catalog["methods"]}
        self.com = {name.lower() for name in catalog["com_objects"]}
        for entry in catalog["com_objects"].values():
            self.methods.update(m.lower() for m in entry["methods"])
        # Every cmdlet takes the common parameters (about_CommonParameters).
        self.common = catalog["common_parameters"]["parameters"]
        # The types the script being checked compiles itself (compiled_types).
        self.own_types: dict[str, dict[str, t.Any]] = {}

    # ---- the whole script
    def check(self, text: str) -> list[Finding]:
        tree = PARSER.parse(text.encode("utf-8"))
        root = tree.root_node
        self.own_types = compiled_types(root)
        functions = own_functions(root)
        found: list[Finding] = []
        found += self.check_preamble(root)
        for node in _walk(root):
            if node.type == "command":
                found += self.check_command(node, functions)
            elif node.type == "type_literal":
                found += self.check_type(node)
            elif node.type in ("invokation_expression", "member_access"):
                found += self.check_member(node)
            elif node.type == "argument_list" and node.parent.type == "command_elements":
                found += self.check_split_call(node)
        found += check_variables(root, functions)
        return sorted(found, key=lambda f: f.line)

    @staticmethod
    def check_preamble(root) -> list[Finding]:
        statements = [n for n in root.named_children if n.type == "statement_list"]
        body = [n for n in statements[0].named_children if n.type not in ("comment", "empty_statement")] \
            if statements else []
        wanted = ["Set-StrictMode -Version 2.0", "$ErrorActionPreference = 'Stop'"]
        first = [" ".join(_text(n).split()) for n in body[:2]]
        if first != wanted:
            return [Finding(1, f"the script must begin (after param) with {wanted}, not {first}")]
        return []

    # ---- commands
    def check_command(self, node, functions: dict[str, list[str]]) -> list[Finding]:
        name_node = next((c for c in node.children if c.type == "command_name"), None)
        if name_node is None:
            return []  # & $scriptBlock: the bootstraps run the script they were sent
        name = _text(name_node)
        line = node.start_point[0] + 1
        elements = command_elements(node)
        if name.lower() in functions:
            return self.check_function_call(name, elements, functions[name.lower()], line)
        if name.lower() in self.aliases:
            return [Finding(line, f"'{name}' is an alias; write {self.aliases[name.lower()]}")]
        if name.lower() not in self.cmdlets:
            return [Finding(line, f"'{name}' is not in the catalog of Windows PowerShell 5.1 cmdlets")]
        canonical, entry = self.cmdlets[name.lower()]
        params = {p.lower(): (p, kind) for p, kind in [*entry["parameters"].items(), *self.common.items()]}
        positional = [p.lower() for p in entry.get("positional", [])]
        found = []
        if name != canonical:
            found.append(Finding(line, f"'{name}' is spelled {canonical}"))
        taking_value: str | None = None
        for kind, text in elements:
            if kind == "parameter":
                if taking_value:
                    found.append(Finding(line, f"{canonical} -{taking_value} has no value"))
                    taking_value = None
                param, attached = text.lstrip("-"), text.endswith(":")
                param = param.rstrip(":")
                if param.lower() not in params:
                    found.append(Finding(line, f"{canonical} has no parameter -{param} in the catalog "
                                               "(misspelled or abbreviated?)"))
                    continue
                spelled, param_kind = params[param.lower()]
                if param != spelled:
                    found.append(Finding(line, f"{canonical} -{param} is spelled -{spelled}"))
                if param_kind == "value" or attached:
                    # -Name value, -Name:value, and a switch given its value as -Switch:$false
                    taking_value = spelled
            elif taking_value:
                taking_value = None
            elif positional:
                positional.pop(0)
            else:
                found.append(Finding(line, f"{canonical} is given a positional argument {text!r}; name its "
                                           "parameter"))
        if taking_value:
            found.append(Finding(line, f"{canonical} -{taking_value} has no value"))
        return found

    @staticmethod
    def check_function_call(name: str, elements, declared: list[str], line: int) -> list[Finding]:
        found = []
        lowered = [d.lower() for d in declared]
        positional = 0
        expects_value = False
        for kind, text in elements:
            if kind == "parameter":
                param = text.lstrip("-").rstrip(":")
                if param.lower() not in lowered:
                    found.append(Finding(line, f"{name} declares no parameter -{param}"))
                expects_value = not text.endswith(":")
            elif expects_value:
                expects_value = False
            else:
                positional += 1
        if positional > len(declared):
            found.append(Finding(line, f"{name} is given {positional} positional arguments but declares "
                                       f"{len(declared)} parameters"))
        return found

    # ---- .NET
    def resolve_type(self, spelled: str) -> dict[str, t.Any] | None:
        name = spelled.strip().lower()
        while name.endswith("[]"):
            name = name[:-2]
        return self.types.get(name) or self.own_types.get(name)

    def check_type(self, node) -> list[Finding]:
        spelled = _text(node)[1:-1]
        if self.resolve_type(spelled) is None:
            return [Finding(node.start_point[0] + 1, f"the type [{spelled}] is not in the catalog")]
        return []

    def check_member(self, node) -> list[Finding]:
        kids = node.children
        member = next((k for k in kids if k.type == "member_name"), None)
        if member is None:
            return []
        line = node.start_point[0] + 1
        name = _text(member)
        if any(k.type == "::" for k in kids):
            if kids[0].type != "type_literal":
                return [Finding(line, f"static member ::{name} on something other than a type")]
            entry = self.resolve_type(_text(kids[0])[1:-1])
            if entry is None:
                return []  # reported by check_type
            static = {m.lower() for m in entry.get("static", [])}
            if name.lower() not in static:
                return [Finding(line, f"{_text(kids[0])}::{name} is not in the catalog")]
            return []
        if node.type == "member_access" and kids[0].type == "parenthesized_expression" and \
                re.search(r"-ErrorAction:?\s*'?SilentlyContinue", _text(kids[0]), re.IGNORECASE):
            return [Finding(line, f"(... -ErrorAction SilentlyContinue).{name}: when the command finds nothing the "
                                  "property read stops the script under Set-StrictMode -Version 2.0")]
        if node.type == "invokation_expression" and name.lower() not in self.methods:
            return [Finding(line, f"the method .{name}() is not in the catalog")]
        return []

    def check_split_call(self, node) -> list[Finding]:
        """`Cmd $x.Method($y)`: in a command's arguments the grammar gives the member and its argument list apart."""
        callee = node.prev_sibling
        while callee is not None and callee.type != "member_access" and callee.children:
            callee = callee.children[-1]
        if callee is None or callee.type != "member_access":
            return []
        name = _text(next(k for k in callee.children if k.type == "member_name"))
        if any(k.type == "::" for k in callee.children) or name.lower() in self.methods:
            return []  # a static call is checked with its type
        return [Finding(node.start_point[0] + 1, f"the method .{name}() is not in the catalog")]

    def check_new_object(self, text: str) -> list[Finding]:
        found = []
        tree = PARSER.parse(text.encode("utf-8"))
        self.own_types = compiled_types(tree.root_node)
        for node in _walk(tree.root_node):
            if node.type != "command":
                continue
            name_node = next((c for c in node.children if c.type == "command_name"), None)
            if name_node is None or _text(name_node).lower() != "new-object":
                continue
            elements = command_elements(node)
            for (kind, text_), (_next_kind, value) in zip(elements, elements[1:]):
                if kind != "parameter":
                    continue
                value = value.strip("'\"")
                if text_.lower() == "-typename" and self.resolve_type(value) is None:
                    found.append(Finding(node.start_point[0] + 1, f"New-Object -TypeName {value}: not in the catalog"))
                if text_.lower() == "-comobject" and value.lower() not in self.com:
                    found.append(Finding(node.start_point[0] + 1, f"New-Object -ComObject {value}: not in the catalog"))
        return found


def command_elements(node) -> list[tuple[str, str]]:
    """A command's parameters and arguments in order: ('parameter', '-Name' or '-Name:') or ('argument', text)."""
    elements_node = next((c for c in node.children if c.type == "command_elements"), None)
    if elements_node is None:
        return []
    elements: list[tuple[str, str]] = []
    separated = True
    for child in elements_node.children:
        if child.type == "command_parameter":
            elements.append(("parameter", _text(child)))
        elif child.type == "command_argument_sep":
            if _text(child).strip() == ":" and elements and elements[-1][0] == "parameter":
                elements[-1] = ("parameter", elements[-1][1].rstrip(":") + ":")
            separated = True
            continue
        elif child.type in ("redirection", "comment"):
            continue
        elif not separated and elements and elements[-1][0] == "argument":
            # `$sha.ComputeHash($stream)` is one argument; the grammar hands over its argument list on its own.
            elements[-1] = ("argument", elements[-1][1] + _text(child))
        else:
            elements.append(("argument", _text(child)))
        separated = False
    return elements


_CS_NAMESPACE = re.compile(r"\bnamespace\s+([\w.]+)")
_CS_TYPE = re.compile(r"\bpublic\s+(?:(?:static|sealed|abstract|partial)\s+)*(?:class|struct|enum)\s+(\w+)")
_CS_STATIC = re.compile(r"\bpublic\s+(?:(?:static|const|readonly|extern|unsafe)\s+)*(?:static|const)\s+"
                        r"(?:(?:readonly|extern|unsafe)\s+)*[\w.<>\[\], ]+?\s+(\w+)\s*[({=;]")


def compiled_types(root) -> dict[str, dict[str, t.Any]]:
    """The public types the script compiles with `Add-Type -TypeDefinition @'...'@` (C# written in the script itself),
    lower-cased full name -> {"static": the public static members the source declares}. Only a literal source counts:
    a type compiled from anything else cannot be checked here. One namespace per source, as the scripts write it."""
    types: dict[str, dict[str, t.Any]] = {}
    for node in _walk(root):
        if node.type != "command":
            continue
        name_node = next((c for c in node.children if c.type == "command_name"), None)
        if name_node is None or _text(name_node).lower() != "add-type":
            continue
        elements = command_elements(node)
        for (kind, text_), (_next_kind, value) in zip(elements, elements[1:]):
            if kind != "parameter" or text_.lower().rstrip(":") != "-typedefinition" or \
                    not re.fullmatch(r"@'\r?\n.*\r?\n'@", value, re.DOTALL):
                continue
            source = value[2:-2]
            namespace = _CS_NAMESPACE.search(source)
            prefix = namespace.group(1) + "." if namespace else ""
            declared = list(_CS_TYPE.finditer(source))
            for index, match in enumerate(declared):
                # The members between this type's declaration and the next one's (the scripts nest no types).
                end = declared[index + 1].start() if index + 1 < len(declared) else len(source)
                static = [m.group(1) for m in _CS_STATIC.finditer(source, match.end(), end)]
                types[(prefix + match.group(1)).lower()] = {"static": static}
    return types


def own_functions(root) -> dict[str, list[str]]:
    """The functions the script defines, lower-cased, with the parameter names each declares."""
    functions: dict[str, list[str]] = {}
    for node in _walk(root):
        if node.type != "function_statement":
            continue
        name = _text(next(c for c in node.children if c.type == "function_name"))
        functions[name.lower()] = [_text(v)[1:] for v in _declared_parameters(node)]
    return functions


def _declared_parameters(function_node):
    stack = list(function_node.children)
    while stack:
        node = stack.pop(0)
        if node.type == "parameter_list":
            return [next(c for c in p.children if c.type == "variable") for p in node.named_children
                    if p.type == "script_parameter"]
        if node.type in ("function_statement", "statement_list"):
            continue  # a nested function's parameters, or the body past the param block
        stack = list(node.children) + stack
    return []


MATCH_OPERATORS = ("-match", "-imatch", "-cmatch", "-notmatch")
VARIABLE = re.compile(r"^[$@](?:(?P<scope>global|script|local|private|env|using):)?(?P<name>.+)$", re.IGNORECASE)


def check_variables(root, functions) -> list[Finding]:
    found = []
    assigned: set[str] = set()
    parameters: set[str] = set()
    reads: list[tuple[str, t.Any]] = []
    matches_anything = False
    for node in _walk(root):
        if node.type == "comparison_operator" and _text(node).lower() in MATCH_OPERATORS:
            matches_anything = True
        if node.type == "switch_statement" and "-regex" in _text(node).lower()[:60]:
            matches_anything = True
        if node.type != "variable":
            continue
        spelled = VARIABLE.match(_text(node))
        if spelled is None or (spelled.group("scope") or "").lower() == "env":
            continue
        name = spelled.group("name").strip("{}").lower()
        line = node.start_point[0] + 1
        role = _variable_role(node)
        if role in ("assigned", "parameter", "loop"):
            if name in AUTOMATIC:
                found.append(Finding(line, f"${name} is an automatic variable; it is not to be {role}"))
            (parameters if role == "parameter" else assigned).add(name)
            continue
        reads.append((name, node))
    for name, node in reads:
        line = node.start_point[0] + 1
        if name in PS6_ONLY:
            found.append(Finding(line, f"${name} exists only in PowerShell 6 and later"))
        elif name in NO_SCRIPT_FILE:
            found.append(Finding(line, f"${name}: a device script runs from the bootstrap and has no file of its own"))
        elif name in ("_", "psitem") and not _inside(node, ("script_block", "catch_clause")):
            found.append(Finding(line, f"${name} outside a script block or catch: it holds nothing there"))
        elif name == "matches" and not matches_anything:
            found.append(Finding(line, "$Matches read in a script that never uses -match"))
        elif name in AUTOMATIC or name in PREFERENCES:
            continue
        elif name not in assigned and name not in parameters:
            found.append(Finding(line, f"${name} is read but never set: an error under Set-StrictMode -Version 2.0"))
    return found


def _variable_role(node) -> str:
    parent = node.parent
    if parent is not None and parent.type == "script_parameter":
        return "parameter"
    if parent is not None and parent.type == "foreach_statement":
        return "loop"
    # $x = ..., $x += ..., [type]$x = ...: the variable is the whole left side of an assignment.
    current = node
    while current.parent is not None and current.parent.type not in _STATEMENT_PARTS:
        if current.parent.type not in _WRAPPERS:
            return "read"
        current = current.parent
    if current.parent is not None and current.parent.type == "left_assignment_expression":
        operator = next((c for c in current.parent.parent.children if c.type == "assignement_operator"), None)
        # $x += 1 reads $x first: under StrictMode an unset $x stops the script there.
        return "assigned" if operator is None or _text(operator) == "=" else "read"
    # [ref]$x passed to a method (TryParse) sets $x.
    if node.prev_sibling is not None and node.prev_sibling.type == "type_literal" and \
            _text(node.prev_sibling).lower() == "[ref]":
        return "assigned"
    return "read"


_STATEMENT_PARTS = ("left_assignment_expression", "assignment_expression", "pipeline", "statement_list")
_WRAPPERS = {"unary_expression", "array_literal_expression", "range_expression", "format_expression",
             "multiplicative_expression", "additive_expression", "comparison_expression", "bitwise_expression",
             "logical_expression", "expression_with_unary_operator", "cast_expression"}


def _inside(node, kinds) -> bool:
    current = node.parent
    while current is not None:
        if current.type in kinds:
            return True
        current = current.parent
    return False


# ---------------------------------------------------------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def checker():
    return Checker(load_catalog())


def test_there_are_scripts_to_check():
    assert len(SCRIPT_NAMES) > 10 and set(BOOTSTRAPS) <= set(SCRIPT_NAMES)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_script_calls_only_what_windows_powershell_5_1_has(checker, name):
    text = sent_text(name)
    found = checker.check(text) + checker.check_new_object(text)
    assert not found, f"{name}.ps1 (as the device receives it):\n" + "\n".join(map(str, found))


def test_every_catalog_entry_is_used_and_cites_its_page(checker):
    """An entry no script uses is dead weight that would hide a later misuse; each one names the page that shows it
    on Windows PowerShell 5.1 / .NET Framework 4.5."""
    texts = "\n".join(sent_text(name) for name in SCRIPT_NAMES).lower()
    catalog = checker.catalog
    for name, entry in catalog["cmdlets"].items():
        assert re.search(rf"(?<![\w-]){re.escape(name.lower())}(?![\w-])", texts), f"cmdlet {name} is unused"
        _assert_doc(entry["doc"], CMDLET_VIEWS, f"/powershell/module/{entry['module'].lower()}/{name.lower()}")
        assert isinstance(entry["parameters"], dict), name
        for param, kind in entry["parameters"].items():
            assert kind in ("switch", "value"), (name, param)
            assert f"-{param.lower()}" in texts or param in entry.get("positional", []), f"{name} -{param} is unused"
        for param in entry.get("positional", []):
            assert param in entry["parameters"], (name, param)
    common = catalog["common_parameters"]
    _assert_doc(common["doc"], CMDLET_VIEWS, "/powershell/module/microsoft.powershell.core/about/about_commonparameters")
    for param, kind in common["parameters"].items():
        assert kind == "value" and f"-{param.lower()}" in texts, param
        assert not any(param in entry["parameters"] for entry in catalog["cmdlets"].values()), param
    for name, entry in catalog["types"].items():
        spellings = [name, *entry.get("accelerators", [])]
        spellings += [s[len("System."):] for s in spellings if s.startswith("System.")]
        assert any(s.lower() in texts for s in spellings), f"type {name} is unused"
        _assert_doc(entry["doc"], (DOTNET_VIEW, SDK_VIEW), "/dotnet/api/" + name.lower())
        for member in entry.get("static", []):
            assert f"]::{member.lower()}" in texts, f"{name}::{member} is unused"
    for name, entry in catalog["methods"].items():
        assert f".{name.lower()}(" in texts, f"method {name} is unused"
        assert entry["on"], name
        for receiver in entry["on"]:
            _assert_doc(receiver["doc"], (DOTNET_VIEW,), "/dotnet/api/" + receiver["type"].lower())
    for name, entry in catalog["com_objects"].items():
        assert name.lower() in texts, name
        assert urllib.parse.urlparse(entry["doc"]).netloc == DOC_HOST, name
        for method in entry["methods"]:
            assert f".{method.lower()}(" in texts, f"{name}.{method} is unused"
    # Aliases are listed only to name the cmdlet to write instead (about_Aliases, Get-Alias on Windows PowerShell 5.1).
    for alias, target in catalog["aliases"].items():
        assert re.fullmatch(r"[A-Z][A-Za-z]+-[A-Z][A-Za-z]+", target), (alias, target)


def _assert_doc(url: str, views: tuple[str, ...], path_start: str):
    parsed = urllib.parse.urlparse(url)
    assert parsed.scheme == "https" and parsed.netloc == DOC_HOST, url
    assert parsed.path.lower().startswith("/en-us" + path_start), (url, path_start)
    assert urllib.parse.parse_qs(parsed.query).get("view") in [[v] for v in views], (url, views)


INPUT_READ = re.compile(r"\$InputObject\.(\w+)", re.IGNORECASE)


def optional_input_reads(text: str, contract: t.Mapping[str, t.Any]) -> list[str]:
    """Input fields the script reads as $InputObject.NAME that the contract lets a request leave out, unless the script
    first looks them up ($InputObject.PSObject.Properties['NAME']): a missing property stops it under StrictMode."""
    required = set(contract["input"].get("required", []))
    return sorted({name for name in INPUT_READ.findall(text) if name.lower() != "psobject" and name not in required
                   and f"$InputObject.PSObject.Properties['{name}']" not in text})


@pytest.mark.parametrize("name", [n for n in SCRIPT_NAMES if n not in BOOTSTRAPS])
def test_script_reads_only_input_fields_a_request_always_carries(name):
    script = device_script.load(name)
    assert optional_input_reads(script.text, script.contract) == []


def test_the_input_check_catches_an_optional_field_read():
    contract = {"input": {"required": ["path"], "properties": {"path": {}, "mode": {}}}}
    assert optional_input_reads("$p = $InputObject.path\n$m = $InputObject.mode\n", contract) == ["mode"]
    guarded = "if ($null -ne $InputObject.PSObject.Properties['mode']) {\n    $m = $InputObject.mode\n}\n"
    assert optional_input_reads(guarded, contract) == []


# The checker itself: each rule fails on a script that breaks it.

GOOD = "param($InputObject)\nSet-StrictMode -Version 2.0\n$ErrorActionPreference = 'Stop'\n"
ADD_TYPE = """Add-Type -TypeDefinition @'
using System;
namespace RemoteSupport {
    public static class Probe {
        public const int Limit = 4;
        public static int Field;
        static int Hidden() { return 0; }
        public static int Open() { return 1; }
    }
}
'@
"""


@pytest.mark.parametrize("body, expected", [
    ("Get-Item -LiteralPth 'C:\\x' | Out-Null\n", "has no parameter -LiteralPth"),
    ("Get-Item -Lit 'C:\\x' | Out-Null\n", "has no parameter -Lit"),
    ("1..3 | ForEach-Object -Parallel { $_ }\n", "has no parameter -Parallel"),
    ("Get-Error\n", "'Get-Error' is not in the catalog"),
    ("$h = ConvertFrom-Json -InputObject '{}' -AsHashtable\n", "has no parameter -AsHashtable"),
    ("Get-Content -LiteralPath 'C:\\x'\n", "'Get-Content' is not in the catalog"),
    ("gci\n", "'gci' is an alias"),
    ("@(1) | % { $_ }\n", "'%' is an alias"),
    ("Get-Item 'C:\\x' | Out-Null\n", "positional argument"),
    ("Join-Path -Path 'C:\\' 'x' | Out-Null\n", "positional argument"),
    ("Test-Path -LiteralPath\n", "-LiteralPath has no value"),
    ("$input = 1\n", "$input is an automatic variable"),
    ("function Get-X($args) {\n}\n", "$args is an automatic variable"),
    ("foreach ($matches in @(1)) {\n}\n", "$matches is an automatic variable"),
    ("$x = $_\n", "outside a script block"),
    ("$y = $Matches[1]\n", "never uses -match"),
    ("if ($IsWindows) {\n}\n", "only in PowerShell 6"),
    ("$here = $PSScriptRoot\n", "no file of its own"),
    ("$a = $undefinedThing\n", "read but never set"),
    ("$count += 1\n", "$count is read but never set"),
    ("$v = (Get-ItemProperty -LiteralPath 'HKLM:\\X' -Name 'A' -ErrorAction SilentlyContinue).A\n",
     "property read stops the script"),
    ("$s = [System.IO.FileSystemWatcherX]::new()\n", "[System.IO.FileSystemWatcherX] is not in the catalog"),
    ("$s = [System.IO.File]::ReadAllLinesAsync('x')\n", "ReadAllLinesAsync is not in the catalog"),
    ("$s = 'x'.ReplaceLineEndings()\n", ".ReplaceLineEndings() is not in the catalog"),
    ("$h = @{}\nOut-Null -InputObject $h.GetValueOrDefault('a')\n", ".GetValueOrDefault() is not in the catalog"),
    ("function Set-X([string]$Name) {\n}\nSet-X -Nmae 'a'\n", "declares no parameter -Nmae"),
    ("function Set-X([string]$Name) {\n}\nSet-X 'a' 'b'\n", "2 positional arguments but declares 1"),
    # A type compiled by the script itself: only its public static members, only the types its source declares, and
    # only a source written in the script (not a name merely mentioned in a string or comment).
    (ADD_TYPE + "$p = [RemoteSupport.Probe]::Hidden()\n", "[RemoteSupport.Probe]::Hidden is not in the catalog"),
    (ADD_TYPE + "$p = [RemoteSupport.Other]::Open()\n", "[RemoteSupport.Other] is not in the catalog"),
    (ADD_TYPE + "$p = [Probe]::Open()\n", "[Probe] is not in the catalog"),
    ("# namespace RemoteSupport { public static class Probe { public static int Open() } }\n"
     "$p = [RemoteSupport.Probe]::Open()\n", "[RemoteSupport.Probe] is not in the catalog"),
    ("$source = 'namespace RemoteSupport { public static class Probe { public static int Open() { return 1; } } }'\n"
     "Add-Type -TypeDefinition $source\n$p = [RemoteSupport.Probe]::Open()\n",
     "[RemoteSupport.Probe] is not in the catalog"),
])
def test_the_checker_fails_a_script_that_breaks_a_rule(checker, body, expected):
    found = [str(f) for f in checker.check(GOOD + body)]
    assert any(expected in f for f in found), found


def test_the_checker_passes_a_type_the_script_compiles_itself(checker):
    body = ADD_TYPE + ("if (-not ('RemoteSupport.Probe' -as [type])) {\n}\n"
                       "$p = [RemoteSupport.Probe]::Open()\n$q = [RemoteSupport.Probe]::Limit\n"
                       "$r = [RemoteSupport.Probe]::Field\n")
    assert [str(f) for f in checker.check(GOOD + body)] == []
    assert checker.check_new_object(GOOD + ADD_TYPE + "$x = New-Object -TypeName RemoteSupport.Probe\n") == []


def test_the_checker_passes_what_the_rules_allow(checker):
    body = ("$n = 0\n[void][int]::TryParse('1', [ref]$n)\n"
            "$names = @('a') | ForEach-Object { $_.ToUpperInvariant() }\n"
            "if ('a1' -match '(\\d)') {\n    $digit = $Matches[1]\n}\n"
            "try {\n    Test-Path -LiteralPath $names[0] | Out-Null\n}\ncatch {\n    $message = $_.Exception.Message\n}\n"
            "Remove-Item -LiteralPath 'C:\\x' -Force -ErrorAction:SilentlyContinue\n")
    assert [str(f) for f in checker.check(GOOD + body)] == []


@pytest.mark.parametrize("preamble", [
    "param($InputObject)\n$ErrorActionPreference = 'Stop'\n",
    "param($InputObject)\nSet-StrictMode -Version Latest\n$ErrorActionPreference = 'Stop'\n",
    "param($InputObject)\nSet-StrictMode -Version 2.0\n$ErrorActionPreference = 'Continue'\n",
])
def test_the_checker_wants_strict_mode_and_stop_first(checker, preamble):
    assert any("must begin" in str(f) for f in checker.check(preamble))


def test_the_checker_reads_new_object_type_names(checker):
    assert checker.check_new_object("$x = New-Object -TypeName System.Text.StringBuilder\n") == []
    found = checker.check_new_object("$x = New-Object -TypeName System.Text.StringBuilderX\n"
                                     "$y = New-Object -ComObject Shell.ApplicationX\n")
    assert [f.what for f in found] == [
        "New-Object -TypeName System.Text.StringBuilderX: not in the catalog",
        "New-Object -ComObject Shell.ApplicationX: not in the catalog",
    ]
