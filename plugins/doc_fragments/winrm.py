# Copyright (c) remote_support.windows contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Connection options shared by every module of the collection. Keep in step with WINRM_ARGUMENT_SPEC,
    # WINRM_HOST_VARIABLES and PSRP_HOST_VARIABLES in plugins/module_utils/winrm_settings.py and with the table in
    # docs/connection-settings.md (a unit test checks all four agree).
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
      - Account used to log on to the device (C(user@REALM) for Kerberos).
      - Defaults to the play's connection user, which Ansible takes from C(ansible_user), else from C(-u) or the
        play's C(remote_user) (an AWX machine credential arrives as C(-u)); then to C(ansible_winrm_user).
    type: str
  password:
    description:
      - Password of O(user). Never logged or returned.
      - Defaults to the play's connection password, which Ansible takes from C(ansible_password), else from
        C(--ask-pass) (an AWX machine credential); then to C(ansible_winrm_password) or C(ansible_winrm_pass).
    type: str
  scheme:
    description:
      - C(https), or C(http) with NTLM message encryption.
      - Defaults to C(ansible_winrm_scheme), then to C(http) when the port is 5985 and C(https) otherwise.
    type: str
    choices: [https, http]
  path:
    description:
      - URL path of the WinRM endpoint.
      - Defaults to C(ansible_winrm_path), then to C(wsman).
    type: str
  transport:
    description:
      - Authentication, or a list of them tried in order until one authenticates (a failure other than
        authentication stops at once).
      - Defaults to C(ansible_winrm_transport), then to C(ntlm).
      - Plain C(http) is used only with message encryption, so C(basic) (clear-text password) and C(certificate)
        (needs TLS) are refused over it.
      - C(kerberos) with a password gets a ticket for O(user) from the KDC itself (O(kinit_mode=managed)); without
        one it uses the controller's ticket cache (C(kinit)).
    type: list
    elements: str
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
      - NTLM/Kerberos/CredSSP message encryption. C(auto) encrypts over http and relies on TLS over https.
      - C(never) is refused over plain C(http), where it would send every command and its output in clear text.
      - Defaults to C(ansible_winrm_message_encryption), then to C(auto).
    type: str
    choices: [auto, always, never]
  send_cbt:
    description:
      - Bind NTLM and Kerberos authentication to the HTTPS channel (channel binding tokens).
      - Defaults to C(ansible_winrm_send_cbt), then to true.
    type: bool
  proxy:
    description:
      - HTTP proxy URL to reach the device through.
      - Defaults to C(ansible_winrm_proxy), then to the controller's C(HTTPS_PROXY)/C(HTTP_PROXY)/C(NO_PROXY).
    type: str
  ignore_proxy:
    description:
      - Use no proxy, whatever the environment says. Defaults to C(ansible_psrp_ignore_proxy), then to false.
    type: bool
  cert_pem:
    description:
      - Client certificate (PEM) for O(transport=certificate), mapped to a local account on the device.
      - Defaults to C(ansible_winrm_cert_pem).
    type: path
  cert_key_pem:
    description:
      - Private key (PEM) of O(cert_pem). Defaults to C(ansible_winrm_cert_key_pem).
    type: path
  kerberos_hostname_override:
    description:
      - Host name of the device's service principal (C(HTTP/name)) when it differs from O(host).
      - Defaults to C(ansible_winrm_kerberos_hostname_override).
    type: str
  kerberos_delegation:
    description:
      - Forward the Kerberos ticket to the device (for a second hop). Defaults to C(ansible_winrm_kerberos_delegation),
        then to false.
    type: bool
  kinit_mode:
    description:
      - C(managed) gets a Kerberos ticket for O(user) from O(password) with O(kinit_cmd), into a credential cache of
        the task's own that is removed after it; C(manual) uses the controller's ticket cache.
      - Without a password the ticket cache is used either way.
      - Defaults to C(ansible_winrm_kinit_mode), then to C(managed).
    type: str
    choices: [managed, manual]
  kinit_cmd:
    description:
      - The C(kinit) that gets a managed ticket; the password goes to its standard input, never its command line.
      - Defaults to C(ansible_winrm_kinit_cmd), then to C(kinit).
    type: str
  kinit_args:
    description:
      - Extra C(kinit) arguments (for example C(-f) for a forwardable ticket). Defaults to C(ansible_winrm_kinit_args).
    type: str
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
  - For a host whose C(ansible_connection) is C(psrp), the C(ansible_psrp_*) variables are read instead, with the
    same meaning; docs/connection-settings.md maps each one.
  - The module runs on the controller and talks to the device over WinRM itself; no Python is needed on the device
    and the task's connection plugin is not used, so C(gather_facts) can stay off.
  - Every failure to reach the device is named in C(connection.reason) as one of C(dns), C(refused), C(timeout),
    C(tls), C(auth), C(protocol), C(quota), C(script), with a message that says what to check.
"""
