"""winrm-lab: start a simulated fleet of Windows devices and keep it running until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import pathlib
import resource
import shutil
import signal
import sys
import tempfile

from . import kdc
from .emulation.powershell import DEVICE_SCRIPTS_ENV, device_scripts_dir
from .outputs import AUTH_MODES
from .scenarios import DEFAULT_BASE_ADDRESS, SCENARIOS, build_fleet, device_addresses
from .windows_time import MODELS

# Each device holds two listening sockets, and each client connection one more.
FILES_PER_DEVICE = 4


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="winrm-lab",
        description="Start a simulated fleet of Windows devices, each a real WinRM endpoint on its own loopback "
                    "address, and run in the foreground until interrupted (SIGINT/SIGTERM).")
    parser.add_argument("--devices", type=int, default=20, metavar="N", help="how many devices (default 20)")
    parser.add_argument("--scenario", default="healthy", choices=SCENARIOS,
                        help="healthy: all active; mixed: every status and failure reason (default healthy)")
    parser.add_argument("--seed", type=int, default=1, metavar="S",
                        help="the same seed gives the same fleet (default 1)")
    parser.add_argument("--base-address", default=DEFAULT_BASE_ADDRESS, metavar="A",
                        help=f"first device's loopback address; the next ones count up (default {DEFAULT_BASE_ADDRESS})")
    parser.add_argument("--http-port", type=int, default=5985, metavar="P", help="WinRM HTTP port (default 5985)")
    parser.add_argument("--https-port", type=int, default=5986, metavar="P", help="WinRM HTTPS port (default 5986)")
    parser.add_argument("--work-dir", type=pathlib.Path, metavar="D",
                        help="where device files, certificates and accounts live (default: a temporary directory, "
                             "removed on exit)")
    parser.add_argument("--inventory", type=pathlib.Path, metavar="FILE",
                        help="write an Ansible inventory (YAML) here once every device listens; removed on exit")
    parser.add_argument("--manifest", type=pathlib.Path, metavar="FILE",
                        help="write the manifest (JSON: endpoints, credentials, expected results, control surface) "
                             "here once every device listens; removed on exit")
    parser.add_argument("--auth", default="ntlm", choices=AUTH_MODES,
                        help="how the inventory's hosts authenticate: ntlm (default); kerberos (starts the lab's own "
                             "MIT KDC on loopback, needs krb5-kdc and krb5-admin-server; export the KRB5_CONFIG it "
                             "prints); certificate (client certificates from the lab CA); credssp (over HTTPS). NTLM is "
                             "accepted with any")
    parser.add_argument("--device-latency", default="none", choices=("none", "windows"),
                        help="windows: each device script waits as long as Windows would for powershell.exe to "
                             "start and for each WMI query it makes (figures in lab/README.md); none: answer at "
                             "once (default)")
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"),
                        help="what the lab logs on stderr (default warning)")
    args = parser.parse_args(argv)

    if args.devices < 1:
        parser.error("--devices must be at least 1")
    for option, port in (("--http-port", args.http_port), ("--https-port", args.https_port)):
        if not 0 < port < 65536:
            parser.error(f"{option} {port} is outside 1-65535")
    if args.http_port == args.https_port:
        parser.error("--http-port and --https-port must differ: each device listens on both")
    try:
        device_addresses(args.base_address, args.devices)
    except ValueError as error:
        parser.error(str(error))
    if args.inventory and args.manifest and args.inventory.resolve() == args.manifest.resolve():
        parser.error("--inventory and --manifest must be different files")
    needed = args.devices * FILES_PER_DEVICE + 64
    if not _raise_open_file_limit(needed):
        parser.error(f"{args.devices} devices need about {needed} open files, more than this process may have "
                     f"(ulimit -n {resource.getrlimit(resource.RLIMIT_NOFILE)[1]})")
    return args


def _raise_open_file_limit(needed: int) -> bool:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return True
    if hard != resource.RLIM_INFINITY and hard < needed:
        return False
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return True


async def _serve(args: argparse.Namespace, work_dir: pathlib.Path) -> int:
    from .runtime import RunningLab  # imports the server stack; kept out of argument parsing

    fleet = build_fleet(args.devices, args.scenario, args.seed, args.base_address, args.http_port, args.https_port,
                        work_dir)
    for device in fleet.devices:
        device.windows_time = MODELS[args.device_latency]
    lab = RunningLab(fleet, args.inventory, args.manifest, args.auth)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await lab.start()
    except OSError as error:
        await lab.stop()
        if error.errno == errno.EADDRINUSE:
            print(f"winrm-lab: cannot listen: {error.strerror or error}. Another winrm-lab (or a WinRM service) "
                  "already uses these addresses and ports; choose others with --base-address, --http-port or "
                  "--https-port.", file=sys.stderr)
        elif error.errno in (errno.EACCES, errno.EPERM):
            print(f"winrm-lab: cannot listen: {error}. Ports below 1024 need privileges; choose higher ports with "
                  "--http-port and --https-port.", file=sys.stderr)
        elif error.errno == errno.EADDRNOTAVAIL:
            print(f"winrm-lab: cannot listen: {error}. This system does not route all of 127.0.0.0/8 to the "
                  "loopback interface (macOS needs an alias per address).", file=sys.stderr)
        else:
            print(f"winrm-lab: cannot start: {error}", file=sys.stderr)
        return 1
    except (kdc.KerberosUnavailable, RuntimeError) as error:
        await lab.stop()
        print(f"winrm-lab: cannot start: {error}", file=sys.stderr)
        return 1
    print(lab.summary(), flush=True)
    try:
        await stop.wait()
    finally:
        await lab.stop()
    print("winrm-lab: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    logging.basicConfig(level=args.log_level.upper(), format="winrm-lab %(levelname)s %(name)s: %(message)s")
    if device_scripts_dir() is None:
        logging.warning("the collection's device scripts were not found; set %s to plugins/module_utils/"
                        "device_scripts, or device scripts will fail as unknown PowerShell", DEVICE_SCRIPTS_ENV)
    temporary = args.work_dir is None
    work_dir = pathlib.Path(tempfile.mkdtemp(prefix="winrm-lab-")) if temporary else args.work_dir
    try:
        return asyncio.run(_serve(args, work_dir.resolve()))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130
    finally:
        if temporary:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
