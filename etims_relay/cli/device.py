"""``etims-relay device``: register OSCU devices (the key is stored encrypted, never shown)."""

from __future__ import annotations

import typer

from etims_relay.cli.common import console, fail, opened_runtime, print_json
from worker.device_init import DeviceInitError, init_device

app = typer.Typer(help="OSCU devices (one per branch).", no_args_is_help=True)


@app.command("init")
def init(
    tin: str = typer.Option(..., "--tin", help="Taxpayer PIN, e.g. P051234567A."),
    bhf_id: str = typer.Option(..., "--bhf-id", help="Branch id, e.g. 00."),
    serial: str = typer.Option(..., "--serial", help="Device serial approved by KRA."),
    force: bool = typer.Option(False, "--force", help="Re-initialise a registered device."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Call selectInitOsdcInfo and store the device; prints its info, never the key."""
    with opened_runtime(need_broker=False) as rt:
        try:
            info = init_device(
                rt.engine, rt.client, rt.devices, tin=tin, bhf_id=bhf_id, serial=serial, force=force
            )
        except DeviceInitError as exc:
            raise fail(str(exc)) from exc
    if as_json:
        print_json(
            {
                "tin": info.tin,
                "bhf_id": info.bhf_id,
                "serial": info.serial,
                "sdc_id": info.sdc_id,
                "mrc_no": info.mrc_no,
                "already_registered": info.already_registered,
                "info": info.info,
            }
        )
        return
    state = "already registered" if info.already_registered else "registered"
    console.print(f"device {info.serial} {state} for {info.tin}/{info.bhf_id}")
    console.print(f"  sdcId {info.sdc_id}  mrcNo {info.mrc_no}")
    for key in ("taxprNm", "bhfNm", "dvcId"):
        if info.info.get(key):
            console.print(f"  {key} {info.info[key]}")
