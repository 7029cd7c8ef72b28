# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Connection options shared by every module of the collection. Keep in step with WINRM_ARGUMENT_SPEC and
    # WINRM_HOST_VARIABLES in plugins/module_utils/winrm_client.py.
    DOCUMENTATION = r"""
options:
  host:
    description:
      - Address or name of the device's WinRM endpoint.
      - Defaults to the host variable C(ansible_host), then to the inventory host name.
    type: str
  port:
    description:
      - WinRM port.
      - Defaults to C(ansible_port), then to 5986 for https and 5985 for http.
    type: int
  user:
    description:
      - Account used to log on to the device.
      - Defaults to C(ansible_user) (or C(ansible_winrm_user)).
    type: str
  password:
    description:
      - Password of O(user). Never logged or returned.
      - Defaults to C(ansible_password) (or C(ansible_winrm_password), C(ansible_winrm_pass)).
    type: str
  scheme:
    description:
      - C(https), or C(http) with NTLM message encryption.
      - Defaults to C(ansible_winrm_scheme), then to C(http) when the port is 5985 and C(https) otherwise.
    type: str
    choices: [https, http]
  transport:
    description:
      - Authentication. Defaults to C(ansible_winrm_transport) (the first one when it is a list), then to C(ntlm).
      - C(basic) is refused over plain C(http) because it would send the password in clear text.
    type: str
    choices: [ntlm, basic, kerberos, credssp, certificate]
  server_cert_validation:
    description:
      - Whether to verify the device's HTTPS certificate. Keep C(validate); give the issuing CA with O(ca_trust_path).
      - Defaults to C(ansible_winrm_server_cert_validation), then to C(validate).
    type: str
    choices: [validate, ignore]
  ca_trust_path:
    description:
      - PEM file of the CA certificates that issued the devices' certificates.
      - Defaults to C(ansible_winrm_ca_trust_path), then to the controller's trust store.
    type: path
  message_encryption:
    description:
      - NTLM/Kerberos message encryption. C(auto) encrypts over http and relies on TLS over https.
      - Defaults to C(ansible_winrm_message_encryption), then to C(auto).
    type: str
    choices: [auto, always, never]
  connection_timeout:
    description:
      - Seconds to establish the connection before the device counts as unreachable (reason C(timeout)).
      - Defaults to C(ansible_winrm_connection_timeout), then to 10.
    type: int
  operation_timeout:
    description:
      - WS-Management OperationTimeout in seconds; a long command is polled at this interval.
      - Defaults to C(ansible_winrm_operation_timeout_sec), then to 20.
    type: int
  read_timeout:
    description:
      - Seconds to wait for one HTTP answer; must exceed O(operation_timeout).
      - Defaults to C(ansible_winrm_read_timeout_sec), then to 30 (or O(operation_timeout) + 10 when larger).
    type: int
requirements:
  - pywinrm >= 0.4 on the controller
notes:
  - The module runs on the controller and talks to the device over WinRM itself; no Python is needed on the device
    and the task's connection plugin is not used, so C(gather_facts) can stay off.
  - Every failure to reach the device is named in C(connection.reason) as one of C(dns), C(refused), C(timeout),
    C(tls), C(auth), C(protocol), C(quota), C(script), with a message that says what to check.
"""
