"""Reading a request envelope: what parse_request accepts, and the fault for what Windows would refuse."""

from __future__ import annotations

import base64

import pytest

from winrm_lab import wsman

SCHEMA_VALIDATION_ERROR = 2150858817

SEND = """<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"
  xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"
  xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
  xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell">
<s:Header><a:Action>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send</a:Action>
<a:MessageID>uuid:1</a:MessageID><w:MaxEnvelopeSize>512000</w:MaxEnvelopeSize>
<w:OperationTimeout>PT20S</w:OperationTimeout><!-- a comment --></s:Header>
<s:Body><!-- before the body --><rsp:Send><rsp:Stream Name="stdin" CommandId="C">{data}</rsp:Stream></rsp:Send>
</s:Body></s:Envelope>"""


def test_a_send_envelope_gives_its_body_and_stream_text() -> None:
    payload = base64.b64encode(bytes(range(256)) * 2000).decode()
    request = wsman.parse_request(SEND.format(data=payload).encode())
    assert request.action.endswith("/shell/Send")
    assert request.max_envelope_size == 512000
    assert request.operation_timeout == 20.0
    assert request.body is not None and request.body.tag == "{%s}Send" % wsman.NS["rsp"]  # comments are not children
    assert request.body[0].text == payload


@pytest.mark.parametrize("document", [
    b"<s:Envelope",
    b"not xml at all",
    b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x "expanded">]>' + SEND.format(data="&x;").encode(),
    SEND.format(data="&undeclared;").encode(),
], ids=["truncated", "not-xml", "doctype", "undeclared-entity"])
def test_malformed_or_dtd_carrying_requests_are_the_schema_validation_fault(document: bytes) -> None:
    with pytest.raises(wsman.WSManFault) as fault:
        wsman.parse_request(document)
    assert fault.value.wsman_code == SCHEMA_VALIDATION_ERROR
    assert fault.value.subcode == "w:SchemaValidationError"
