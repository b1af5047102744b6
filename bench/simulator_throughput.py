"""Throughput of the OSCU simulator: valid saveTrnsSalesOsdc per second over loopback.

Starts ``etims-relay simulator`` as a subprocess (zero latency, fresh ledger), then drives it
from this process with raw asyncio streams on uvloop: ``--connections`` keep-alive
connections, each owning one branch (its own tin, device initialised and item registered
first) so every branch's invcNo runs 1, 2, 3... without gaps. Every answer is checked for
``resultCd 000``; the ledger is verified at the end.

    python bench/simulator_throughput.py --connections 200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import orjson

from simulator import SimulatorProcess, verify_ledger
from simulator.samples import Line, item_body, sale_body
from simulator.server import new_event_loop

TARGET_PER_S = 1000.0
ITEM = "KE2NTNO0000001"
_MARK = 987654321


def _request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST /{path} HTTP/1.1", "Host: sim", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bytes:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    start = head.find(b"content-length:") + len(b"content-length:")
    length = int(head[start : head.find(b"\r\n", start)])
    return await reader.readexactly(length)


class Branch:
    """One connection driving one branch's sales in invcNo order."""

    def __init__(self, index: int, host: str, port: int) -> None:
        self.tin = f"P{index:09d}B"
        self.host, self.port = host, port
        self.sent = 0
        self.errors = 0
        self.latencies: list[float] = []

    async def setup(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        init = orjson.dumps({"tin": self.tin, "bhfId": "00", "dvcSrlNo": f"BENCH-{self.tin}"})
        answer = orjson.loads(
            await _roundtrip(self.reader, self.writer, _request("selectInitOsdcInfo", init, {}))
        )
        headers = {"tin": self.tin, "bhfId": "00", "cmcKey": answer["data"]["info"]["cmcKey"]}
        item = orjson.dumps(item_body(ITEM))
        answer = orjson.loads(
            await _roundtrip(self.reader, self.writer, _request("saveItem", item, headers))
        )
        assert answer["resultCd"] == "000", answer
        template = orjson.dumps(sale_body(_MARK, [Line(ITEM, 2, "1160")]))
        self.parts = template.split(str(_MARK).encode())
        self.headers = headers

    def sale(self, invc_no: int) -> bytes:
        return _request("saveTrnsSalesOsdc", str(invc_no).encode().join(self.parts), self.headers)

    async def run(self, until: float, measure_from: float) -> None:
        invc_no = 0
        while True:
            now = time.perf_counter()
            if now >= until:
                break
            invc_no += 1
            body = await _roundtrip(self.reader, self.writer, self.sale(invc_no))
            done = time.perf_counter()
            if b'"resultCd":"000"' not in body:
                self.errors += 1
                if self.errors < 3:
                    print(f"{self.tin}: {body[:200]!r}", file=sys.stderr)
                invc_no -= 1  # KRA did not advance; resend the number
            elif now >= measure_from:
                self.sent += 1
                self.latencies.append(done - now)
        self.writer.close()


async def drive(
    host: str, port: int, connections: int, seconds: float, warmup: float
) -> dict[str, float]:
    branches = [Branch(i + 1, host, port) for i in range(connections)]
    for start in range(0, connections, 50):
        await asyncio.gather(*(b.setup() for b in branches[start : start + 50]))
    begin = time.perf_counter()
    measure_from = begin + warmup
    until = measure_from + seconds
    await asyncio.gather(*(b.run(until, measure_from) for b in branches))
    elapsed = time.perf_counter() - measure_from
    total = sum(b.sent for b in branches)
    latencies = sorted(x for b in branches for x in b.latencies)
    return {
        "accepted": total,
        "errors": sum(b.errors for b in branches),
        "seconds": elapsed,
        "per_s": total / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else 0.0,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--ledger", type=Path, default=None, help="default: a temporary file")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="simbench-"))
    ledger = args.ledger or workdir / "ledger.jsonl"
    with SimulatorProcess(ledger) as sim:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            result = runner.run(
                drive(sim.host, sim.port, args.connections, args.seconds, args.warmup)
            )
    report = verify_ledger(ledger)
    verdict = "OK" if report.ok else "FAILED"
    print(
        f"simulator throughput: {result['per_s']:.0f} saveTrnsSalesOsdc/s accepted"
        f" ({result['per_s'] / TARGET_PER_S:.2f}x the {TARGET_PER_S:.0f}/s target)"
        f" over {result['seconds']:.1f}s, {args.connections} connections/branches;"
        f" p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms;"
        f" non-000 answers: {result['errors']:.0f}; ledger verify: {verdict}"
    )
    if not report.ok:
        for violation in report.violations[:10]:
            print("  -", violation)
    return 0 if report.ok and result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
