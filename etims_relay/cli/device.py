"""``etims-relay device``: register OSCU devices (the key is stored encrypted, never shown)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from pydantic import SecretStr

from etims_relay.cli.common import console, fail, opened_runtime, print_json
from worker.device_init import (
    DeviceInfo,
    DeviceInitError,
    device_views,
    import_device,
    init_device,
)

app = typer.Typer(help="OSCU devices (one per branch).", no_args_is_help=True)


@app.command("init")
def init(
    tin: str = typer.Option(..., "--tin", help="Taxpayer PIN, e.g. P051234567A."),
    bhf_id: str = typer.Option(..., "--bhf-id", help="Branch id, e.g. 00."),
    serial: str = typer.Option(..., "--serial", help="Device serial approved by KRA."),
    force: bool = typer.Option(False, "--force", help="Re-initialise a registered device."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Call selectInitOsdcInfo, store the device and fetch KRA's tax rates; never shows the key."""
    with opened_runtime(need_broker=False) as rt:
        try:
            info = init_device(
                rt.engine, rt.client, rt.devices, tin=tin, bhf_id=bhf_id, serial=serial, force=force
            )
        except DeviceInitError as exc:
            raise fail(str(exc)) from exc
    _show(info, "already registered" if info.already_registered else "registered", as_json)


@app.command("import")
def import_command(
    tin: str = typer.Option(..., "--tin", help="Taxpayer PIN, e.g. P051234567A."),
    bhf_id: str = typer.Option(..., "--bhf-id", help="Branch id, e.g. 00."),
    serial: str = typer.Option(..., "--serial", help="The device's serial."),
    cmc_key_file: str = typer.Option(
        ..., "--cmc-key-file", help="File holding the cmcKey; '-' reads standard input."
    ),
    sdc_id: str | None = typer.Option(None, "--sdc-id", help="sdcId from the original init."),
    mrc_no: str | None = typer.Option(None, "--mrc-no", help="mrcNo from the original init."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Store a key another system obtained (KRA answers 902 to a second init), once KRA has
    accepted it on a harmless lookup; nothing is stored if it is refused."""
    key = SecretStr(_read_key(cmc_key_file))
    with opened_runtime(need_broker=False) as rt:
        try:
            info = import_device(
                rt.engine,
                rt.client,
                rt.devices,
                tin=tin,
                bhf_id=bhf_id,
                serial=serial,
                cmc_key=key,
                sdc_id=sdc_id,
                mrc_no=mrc_no,
            )
        except DeviceInitError as exc:
            raise fail(str(exc)) from exc
    _show(info, "imported (KRA accepted the key)", as_json)


@app.command("list")
def list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Each branch's device: sdcId, mrcNo, KRA's tax rates, when its key last worked."""
    with opened_runtime(need_broker=False) as rt:
        views = device_views(rt.engine)
    if as_json:
        print_json(views)
        return
    for v in views:
        rates = " ".join(f"{k}={r}" for k, r in (v["tax_rates"] or {}).items()) or "none yet"
        console.print(
            f"{v['tin']}/{v['bhf_id']}  serial {v['serial']}  sdcId {v['sdc_id']}  "
            f"mrcNo {v['mrc_no']}  key last worked {_when(v['key_ok_at'])}  "
            f"rates {rates} (synced {_when(v['codes_synced_at'])})",
            markup=False,
        )
    console.print(f"{len(views)} device(s)")


def _read_key(path: str) -> str:
    """The key from a file or standard input; surrounding whitespace (a trailing newline)
    is not part of it."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot read the cmcKey file {path}: {exc.strerror}") from exc
    key = text.strip()
    if not key:
        raise fail(f"the cmcKey file {path} is empty")
    return key


def _when(at: float | None) -> str:
    if at is None:
        return "never"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _show(info: DeviceInfo, state: str, as_json: bool) -> None:
    rates: dict[str, Any] | None = (
        None if info.tax_rates is None else {k: str(v) for k, v in info.tax_rates.items()}
    )
    if as_json:
        print_json(
            {
                "tin": info.tin,
                "bhf_id": info.bhf_id,
                "serial": info.serial,
                "sdc_id": info.sdc_id,
                "mrc_no": info.mrc_no,
                "already_registered": info.already_registered,
                "tax_rates": rates,
                "codes_problem": info.codes_problem or None,
                "info": info.info,
            }
        )
        return
    console.print(f"device {info.serial} {state} for {info.tin}/{info.bhf_id}", markup=False)
    console.print(f"  sdcId {info.sdc_id}  mrcNo {info.mrc_no}", markup=False)
    for key in ("taxprNm", "bhfNm", "dvcId"):
        if info.info.get(key):
            console.print(f"  {key} {info.info[key]}", markup=False)
    if rates is not None:
        console.print("  tax rates " + " ".join(f"{k}={v}" for k, v in rates.items()))
    else:
        why = f" ({info.codes_problem})" if info.codes_problem else ""
        console.print(f"  no tax rates from KRA yet{why}: run etims-relay codes sync", markup=False)
