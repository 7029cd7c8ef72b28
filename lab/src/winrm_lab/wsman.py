"""WS-Management envelopes: reading a request, writing a response or a SOAP fault the way Windows writes them.

Only what the lab serves is modelled: the WS-Addressing and WS-Management headers a WinRS client sends, and the
response envelope Windows answers with (namespace prefixes s/a/x/w/rsp/p as Windows uses them, `a:RelatesTo` set to
the request's MessageID, a fresh upper-case `uuid:` MessageID, `a:To` the anonymous role).

The faults Windows gives for the situations the lab reproduces are built by the functions at the end of this module;
each one names where its code and text come from.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "e": "http://schemas.xmlsoap.org/ws/2004/08/eventing",
    "n": "http://schemas.xmlsoap.org/ws/2004/09/enumeration",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
}

ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"

# a:Action of a fault. Windows uses the WS-Management one for w: subcodes and the WS-Addressing one for a: subcodes,
# as its faults show.
WSMAN_FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
ADDRESSING_FAULT_ACTION = "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault"

FAULT_DETAIL = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/"

_HEADER_NAMESPACES = " ".join(
    f'xmlns:{prefix}="{NS[prefix]}"' for prefix in ("s", "a", "x", "w", "rsp", "p")
)
_FAULT_NAMESPACES = " ".join(
    f'xmlns:{prefix}="{NS[prefix]}"' for prefix in ("s", "a", "x", "e", "n", "w", "p")
)


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


@dataclasses.dataclass
class WSManRequest:
    """The parts of a WS-Management request the lab acts on."""

    action: str
    resource_uri: str
    message_id: str
    to: str
    max_envelope_size: int | None  # bytes the client accepts in a response (w:MaxEnvelopeSize)
    operation_timeout: float | None  # seconds (w:OperationTimeout)
    locale: str
    selectors: dict[str, str]
    options: dict[str, str]  # option name -> value, as sent (compare case-insensitively)
    body: etree._Element | None  # first child of s:Body, if any

    def option_flag(self, name: str, default: bool = False) -> bool:
        value = self.options.get(name)
        if value is None:
            return default
        return value.strip().lower() in ("true", "1", "yes")

    def selector(self, name: str) -> str | None:
        for key, value in self.selectors.items():
            if key.lower() == name.lower():
                return value
        return None


class RequestTooLarge(Exception):
    """The request envelope is larger than the device's MaxEnvelopeSizekb.

    Windows does not answer this with a SOAP fault: the WinRM service rejects the request with a bare HTTP 413, which
    the Windows client reports as ERROR_WSMAN_HTTP_REQUEST_TOO_LARGE_STATUS (0x80338111, "... the request size
    exceeded the configured MaxEnvelopeSize quota", the Windows SDK's wsmerror.h).
    """

    http_status = 413


class WSManFault(Exception):
    """A SOAP 1.2 fault carrying a WSManFault detail, answered with HTTP 500 as Windows does."""

    http_status = 500

    def __init__(self, code: str, subcode: str, reason: str, wsman_code: int, message: str | None = None, *,
                 fault_detail: str | None = None, provider: tuple[str, str] | None = None,
                 action: str = WSMAN_FAULT_ACTION) -> None:
        super().__init__(f"{subcode} ({wsman_code}): {message or reason}")
        self.code = code  # s:Sender | s:Receiver
        self.subcode = subcode  # w:TimedOut, w:InvalidSelectors, ...
        self.reason = reason  # s:Reason/s:Text
        self.wsman_code = wsman_code  # f:WSManFault/@Code
        self.message = message if message is not None else reason  # f:WSManFault/f:Message
        self.fault_detail = fault_detail  # w:FaultDetail URI, when Windows sends one
        self.provider = provider  # (provider name, dll path) when the fault comes from a WinRS plugin
        self.action = action

    def render(self, relates_to: str | None, machine: str) -> bytes:
        detail = ""
        if self.fault_detail:
            detail += f"<w:FaultDetail>{escape(self.fault_detail)}</w:FaultDetail>"
        if self.provider:
            name, path = self.provider
            message = (f"<f:ProviderFault provider={quoteattr(name)} path={quoteattr(path)}>"
                       f"{escape(self.message)}</f:ProviderFault>")
        else:
            message = escape(self.message)
        detail += (f'<f:WSManFault xmlns:f="{NS["f"]}" Code="{self.wsman_code}" Machine={quoteattr(machine)}>'
                   f"<f:Message>{message}</f:Message></f:WSManFault>")
        body = ("<s:Fault>"
                f"<s:Code><s:Value>{self.code}</s:Value>"
                f"<s:Subcode><s:Value>{self.subcode}</s:Value></s:Subcode></s:Code>"
                f'<s:Reason><s:Text xml:lang="en-US">{escape(self.reason)}</s:Text></s:Reason>'
                f"<s:Detail>{detail}</s:Detail>"
                "</s:Fault>")
        return _envelope(self.action, relates_to, body, _FAULT_NAMESPACES)


# Request parsing ---------------------------------------------------------------------------------------------------

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> float:
    """Seconds in an xs:duration such as PT20S, PT60.000S or P0DT2H0M0S."""
    match = _DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        raise ValueError(f"not an xs:duration: {text!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return (parts.get("days", 0) * 86400 + parts.get("hours", 0) * 3600 + parts.get("minutes", 0) * 60
            + parts.get("seconds", 0))


def format_duration(seconds: float) -> str:
    """xs:duration as Windows writes it in a shell description (PT7200.000S)."""
    return f"PT{seconds:.3f}S"


def parse_request(data: bytes) -> WSManRequest:
    """Reads a SOAP envelope. Malformed requests raise the fault Windows gives for XML that breaks the schema."""
    # libxml2, not expat: a Send carries up to MaxEnvelopeSize of base64 text, which expat hands to ElementTree in
    # small pieces (~2.5 ms per 500 KB, the lab's largest cost per Send), while Windows parses it natively. Like
    # WinRM it loads no DTD, resolves no entity and reaches no network; a document type is refused outright.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True,
                             remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise schema_validation_error(f"The request is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise schema_validation_error("The request carries a document type declaration.")
    if root.tag != _q("s", "Envelope"):
        raise schema_validation_error("The request is not a SOAP 1.2 envelope.")
    header = root.find(_q("s", "Header"))
    if header is None:
        raise schema_validation_error("The SOAP envelope has no header.")

    def text(prefix: str, name: str) -> str | None:
        element = header.find(_q(prefix, name))
        return element.text.strip() if element is not None and element.text else None

    action = text("a", "Action")
    message_id = text("a", "MessageID")
    if not action or not message_id:
        raise message_information_header_required()

    max_envelope = text("w", "MaxEnvelopeSize")
    timeout = text("w", "OperationTimeout")
    locale_element = header.find(_q("w", "Locale"))
    locale = locale_element.get("{http://www.w3.org/XML/1998/namespace}lang", "en-US") \
        if locale_element is not None else "en-US"

    selectors: dict[str, str] = {}
    selector_set = header.find(_q("w", "SelectorSet"))
    if selector_set is not None:
        for selector in selector_set.findall(_q("w", "Selector")):
            selectors[selector.get("Name", "")] = (selector.text or "").strip()

    options: dict[str, str] = {}
    option_set = header.find(_q("w", "OptionSet"))
    if option_set is not None:
        for option in option_set.findall(_q("w", "Option")):
            options[option.get("Name", "")] = (option.text or "").strip()

    try:
        max_envelope_size = int(max_envelope) if max_envelope else None
        operation_timeout = parse_duration(timeout) if timeout else None
    except ValueError as exc:
        raise schema_validation_error(str(exc)) from None

    body_element = root.find(_q("s", "Body"))
    body = body_element[0] if body_element is not None and len(body_element) else None
    return WSManRequest(
        action=action, resource_uri=text("w", "ResourceURI") or "", message_id=message_id,
        to=text("a", "To") or "", max_envelope_size=max_envelope_size, operation_timeout=operation_timeout,
        locale=locale, selectors=selectors, options=options, body=body,
    )


# Response rendering ------------------------------------------------------------------------------------------------

def new_message_id() -> str:
    return f"uuid:{str(uuid.uuid4()).upper()}"


def _envelope(action: str, relates_to: str | None, body: str, namespaces: str) -> bytes:
    relates = f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>" if relates_to else ""
    return (f'<s:Envelope xml:lang="en-US" {namespaces}>'
            "<s:Header>"
            f"<a:Action>{escape(action)}</a:Action>"
            f"<a:MessageID>{new_message_id()}</a:MessageID>"
            f"<a:To>{ANONYMOUS}</a:To>"
            f"{relates}"
            "</s:Header>"
            f"<s:Body>{body}</s:Body>"
            "</s:Envelope>").encode("utf-8")


def render_response(request: WSManRequest, body: str, action: str | None = None) -> bytes:
    """The response envelope for `request`: Action is the request's Action + "Response" unless given."""
    return _envelope(action or request.action + "Response", request.message_id, body, _HEADER_NAMESPACES)


# The faults --------------------------------------------------------------------------------------------------------
# Codes are the ERROR_WSMAN_* values of the Windows SDK's wsmerror.h, or a Win32 error the shell plugin passes on;
# the SOAP code/subcode and texts are those of Windows' own answers where one is known, noted per fault.

_SHELL_PLUGIN = ("Shell cmd plugin", r"%systemroot%\system32\winrscmd.dll")


def operation_timed_out() -> WSManFault:
    # ERROR_WSMAN_OPERATION_TIMEDOUT 0x80338029. Envelope as Windows Server 2022 sends it (s:Receiver / w:TimedOut,
    # reason and message identical). MS-WSMV 3.1.4.14:
    # a Receive that gets no output within OperationTimeout answers this fault and the client polls again.
    text = "The WS-Management service cannot complete the operation within the time specified in OperationTimeout. "
    return WSManFault("s:Receiver", "w:TimedOut", text, 2150858793)


def shell_not_found(shell_id: str) -> WSManFault:
    # ERROR_WSMAN_UNEXPECTED_SELECTORS 0x8033805B, the fault as Windows sends it for a shell already closed; pypsrp
    # treats 0x8033805B as "shell gone".
    return WSManFault(
        "s:Sender", "w:InvalidSelectors",
        "The WS-Management service cannot process the request because the request contained invalid selectors "
        "for the resource. ",
        2150858843,
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not found "
        "on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on "
        "the server. Provide the correct ShellId or create a new shell and retry the operation. ",
        fault_detail=FAULT_DETAIL + "UnexpectedSelectors",
    )


def command_not_found(shell_id: str, command_id: str) -> WSManFault:
    # A Signal naming a CommandId the shell does not hold: Windows answers the same ERROR_WSMAN_UNEXPECTED_SELECTORS
    # fault (0x8033805B, s:Sender / w:InvalidSelectors) as for an unknown ShellId, the CommandId being part of what
    # selects the resource (MS-WSMV 3.1.4, the rsp:Signal message). The f:Message wording is the lab's: no recorded Windows text.
    return WSManFault(
        "s:Sender", "w:InvalidSelectors",
        "The WS-Management service cannot process the request because the request contained invalid selectors "
        "for the resource. ",
        2150858843,
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the command with "
        f"CommandId {command_id} was not found in the shell. Possible causes are: the specified CommandId is "
        "incorrect or the command no longer exists in the shell. ",
        fault_detail=FAULT_DETAIL + "UnexpectedSelectors",
    )


def invalid_parameter() -> WSManFault:
    # What the cmd shell plugin (winrscmd.dll) answers for a parameter it cannot use: w:InvalidParameter, WSManFault
    # Code 87 (ERROR_INVALID_PARAMETER) with a ProviderFault "The parameter is incorrect.", as Windows answers an
    # rsp:Signal without CommandId (Server 2016) and an empty rsp:Command.
    text = "The parameter is incorrect. "
    return WSManFault("s:Sender", "w:InvalidParameter", text, 87, text,
                      fault_detail=FAULT_DETAIL + "InvalidValue", provider=_SHELL_PLUGIN)


def action_not_supported(action: str) -> WSManFault:
    # ERROR_WSMAN_ACTION_NOT_SUPPORTED 0x80338013; wsmerror.h documents it as "wsa, code=Sender,
    # subcode=WS-Addressing ActionNotsupported" with this text. WS-Addressing faults
    # carry the addressing fault Action.
    return WSManFault(
        "s:Sender", "a:ActionNotSupported",
        "The WS-Management service does not support the action specified in the request. ",
        2150858771,
        f"The WS-Management service does not support the action specified in the request. Action: {action} ",
        action=ADDRESSING_FAULT_ACTION,
    )


def resource_uri_not_found(resource_uri: str) -> WSManFault:
    # ERROR_WSMAN_INVALID_RESOURCE_URI 0x8033803B, with the message as Windows words it. SOAP code per DMTF DSP0226
    # (wsa:DestinationUnreachable with faultDetail InvalidResourceURI), the subcode Windows uses for a resource it
    # cannot find.
    text = (f"The WS-Management service cannot process the request. The resource URI ({resource_uri}) was not "
            "found in the WS-Management catalog. The catalog contains the metadata that describes resources, or "
            "logical endpoints. ")
    return WSManFault("s:Sender", "a:DestinationUnreachable", text, 2150858811, text,
                      fault_detail=FAULT_DETAIL + "InvalidResourceURI", action=ADDRESSING_FAULT_ACTION)


def max_shells_exceeded(limit: int) -> WSManFault:
    # ERROR_WSMAN_QUOTA_MAX_SHELLS 0x803381A5 (wsmerror.h). Text as Windows words it ("This user is allowed a maximum number of 18
    # concurrent shells, which has been exceeded. Close existing shells or raise the quota for this user.").
    # Subcode w:QuotaLimit is the WS-Management subcode wsmerror.h gives quota faults (ERROR_WSMAN_QUOTA_LIMIT).
    text = (f"The WS-Management service cannot process the request. This user is allowed a maximum number of "
            f"{limit} concurrent shells, which has been exceeded. Close existing shells or raise the quota for this "
            "user. ")
    return WSManFault("s:Sender", "w:QuotaLimit", text, 2150859173, text)


def schema_validation_error(message: str) -> WSManFault:
    # ERROR_WSMAN_SCHEMA_VALIDATION_ERROR 0x80338041, s:Sender / w:SchemaValidationError with this reason, as
    # Windows sends it.
    return WSManFault(
        "s:Sender", "w:SchemaValidationError",
        "The SOAP XML in the message does not match the corresponding XML schema definition. Change the XML and "
        "retry. ",
        2150858817, message,
    )


def message_information_header_required() -> WSManFault:
    # ERROR_WSMAN_MESSAGE_INFORMATION_HEADER_REQUIRED 0x80338011: "wsa, code=Sender, subcode=WS-Addressing
    # MessageInformationHeaderRequired" with this text (wsmerror.h).
    text = ("The WS-Management service cannot process the request. The request does not have all the expected SOAP "
            "headers. ")
    return WSManFault("s:Sender", "a:MessageInformationHeaderRequired", text, 2150858769, text,
                      action=ADDRESSING_FAULT_ACTION)


def executable_not_found() -> WSManFault:
    # WINRS_SKIP_CMD_SHELL with an executable CreateProcess cannot find: the cmd plugin fails the Command with
    # s:Receiver / w:InternalError, the subcode Windows gives a provider's failure, and as WSManFault code the
    # HRESULT of the Win32 error: 0x80070002 = HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND), "The system cannot find
    # the file specified." (MS-WSMV 3.1.4, the rsp:Command message; MS-ERREF 2.1 for the HRESULT form).
    text = "The system cannot find the file specified. "
    return WSManFault("s:Receiver", "w:InternalError", text, 0x80070002, text, provider=_SHELL_PLUGIN)
