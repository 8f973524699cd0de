"""`paysaga dev` as a user runs it: ready without a warning, confirms a real HTTP webhook, is
found by the CLI in another shell with no exports, stops cleanly, and finds the same data on the
next start."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from api.auth import make_token
from paysaga.devstack import free_port
from tests.support.signing import razorpay_payment_event, razorpay_request

pytestmark = pytest.mark.devstack
PAYSAGA = str(Path(sys.executable).parent / "paysaga")

ATTENDEE = "dev@mail.pycon-attendees.org"


def start(
    workdir: Path, ports: dict[str, int], **extra: str
) -> tuple[subprocess.Popen[str], list[str]]:
    """`paysaga dev` in `workdir`, keeping its data in the default `.paysaga` there."""
    env = clean_env() | {k: str(v) for k, v in ports.items()} | extra
    proc = subprocess.Popen(
        [PAYSAGA, "dev"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line.rstrip())
        if line.strip() == "paysaga ready":
            return proc, lines
    proc.kill()
    raise AssertionError("paysaga dev never got ready:\n" + "\n".join(lines))


def clean_env(**extra: str) -> dict[str, str]:
    """A shell's environment with no PAYSAGA_ variable in it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PAYSAGA_")} | extra


def second_shell(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`paysaga ARGS` as a user would run it beside a running `paysaga dev`, in the same
    directory, with nothing exported."""
    return subprocess.run(
        [PAYSAGA, *args],
        cwd=workdir,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stop(proc: subprocess.Popen[str]) -> list[int]:
    """SIGTERM, as a service manager would; returns what it left running."""
    children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    time.sleep(0.5)
    return [
        pid
        for pid in children
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]


def check_printed(printed: str, data_dir: Path, ports: dict[str, int]) -> str:
    """What `paysaga dev` printed before `paysaga ready`; returns the worker's metrics URL."""
    assert f"each mail kept in {data_dir / 'mail'}" in printed
    worker_metrics = re.search(r"(http://127\.0\.0\.1:\d+/metrics) \(worker\)", printed)
    assert worker_metrics is not None, printed
    assert f"http://127.0.0.1:{ports['PAYSAGA_TEMPORAL_UI_PORT']}" in printed
    assert "/docs" in printed and "Admin token" in printed
    assert "Warning" not in printed, printed  # e.g. platformdirs' RuntimeDirWarning
    return worker_metrics[1]


def pay_an_order(
    api: str, admin: dict[str, str], webhook_secret: str
) -> tuple[dict[str, Any], bytes, dict[str, str]]:
    """A product, an order of it, Razorpay's signed webhook; returns the order once paid, and
    the webhook's body and headers."""
    product = {"sku": "DEV-1", "name": "Pass", "unit_amount": 900, "currency": "INR", "stock": 1}
    assert httpx.post(f"{api}/admin/products", json=product, headers=admin).status_code == 201
    order: dict[str, Any] = httpx.post(
        f"{api}/orders",
        json={
            "items": [{"sku": "DEV-1", "quantity": 1}],
            "provider": "razorpay",
            "attendee": {"name": "Dev Attendee", "email": ATTENDEE},
        },
        headers=admin,
    ).json()
    body, headers = razorpay_request(
        razorpay_payment_event(order["payment"]["intent_id"], "pay_DevStack1", 900),
        secret=webhook_secret,
    )
    answer = httpx.post(f"{api}/webhooks/razorpay", content=body, headers=headers)
    assert answer.json() == {"result": "accepted"}
    for _ in range(300):
        status = httpx.get(f"{api}/orders/{order['id']}", headers=admin).json()["status"]
        if status == "paid":
            break
        time.sleep(0.1)
    assert status == "paid"
    return order, body, headers


def check_mail_and_metrics(
    data_dir: Path, api: str, admin: dict[str, str], order_id: str, worker_metrics: str
) -> None:
    # The attendee's mail lands in the sink's directory, once, with the ticket attached.
    for _ in range(300):
        kept = sorted((data_dir / "mail").glob("*.eml"))
        if kept:
            break
        time.sleep(0.1)
    mail = email.message_from_bytes(kept[0].read_bytes(), policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    assert mail["To"] == ATTENDEE
    [ticket] = [a.get_content() for a in mail.iter_attachments()]
    pdf = httpx.get(f"{api}/orders/{order_id}/ticket", headers=admin)
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content == ticket
    metrics = httpx.get(worker_metrics).text
    assert 'paysaga_confirmations_total{outcome="paid"} 1.0' in metrics
    assert "temporal_workflow_completed" in metrics


def check_second_shell(workdir: Path, api: str, order_id: str) -> None:
    """Another shell, nothing exported: the CLI finds the database, Temporal and the secret."""
    cases = second_shell(workdir, "admin", "cases", "--json")
    assert cases.returncode == 0, cases.stderr
    shown = second_shell(workdir, "admin", "show", "razorpay", "pay_DevStack1", "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["transaction_id"] == "pay_DevStack1"
    assert view["workflow"]["status"] not in ("unreachable", "not_found"), view
    token = second_shell(workdir, "token", "ops", "--admin").stdout.strip()
    mine = httpx.get(f"{api}/orders/{order_id}", headers={"Authorization": f"Bearer {token}"})
    assert mine.status_code == 200


def check_logs(data_dir: Path, order_id: str, hidden: list[str]) -> None:
    """JSON lines with the ids they are about, and none of `hidden` anywhere."""
    api_lines = [json.loads(line) for line in (data_dir / "logs" / "api.log").open()]
    assert any(line.get("transaction_id") == "pay_DevStack1" for line in api_lines)
    worker_lines = [
        json.loads(line) for line in (data_dir / "logs" / "worker.log").open() if line[0] == "{"
    ]
    assert any(line.get("order_id") == order_id for line in worker_lines)
    logs = "".join(path.read_text() for path in (data_dir / "logs").glob("*.log"))
    for secret in hidden:
        assert secret not in logs


def test_dev_stack_confirms_stops_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    ports = {
        "PAYSAGA_API_PORT": free_port(),
        "PAYSAGA_TEMPORAL_PORT": free_port(),
        "PAYSAGA_TEMPORAL_UI_PORT": free_port(),
    }
    api = f"http://127.0.0.1:{ports['PAYSAGA_API_PORT']}/api/v1"
    # Made by `paysaga dev`, as for a new user: a plain 0755 directory, not pytest's 0700.
    data_dir = tmp_path / ".paysaga"
    proc, lines = start(tmp_path, ports, PAYSAGA_LOG_FORMAT="json")
    try:
        worker_metrics = check_printed("\n".join(lines), data_dir, ports)
        secrets: dict[str, str] = json.loads((data_dir / "dev-secrets.json").read_text())
        admin_token = make_token(secrets["PAYSAGA_JWT_SECRET"], "ops", admin=True)
        admin = {"Authorization": f"Bearer {admin_token}"}
        order, body, headers = pay_an_order(api, admin, secrets["PAYSAGA_RAZORPAY_WEBHOOK_SECRETS"])
        ui = httpx.get(f"http://127.0.0.1:{ports['PAYSAGA_TEMPORAL_UI_PORT']}/")
        assert ui.status_code == 200
        check_mail_and_metrics(data_dir, api, admin, order["id"], worker_metrics)
        check_second_shell(tmp_path, api, order["id"])
    finally:
        leftovers = stop(proc)
    assert leftovers == []
    assert proc.stdout is not None
    assert "Warning" not in proc.stdout.read()
    # Gone with the stack: the CLI then says what is missing instead of trying a dead socket.
    assert not (data_dir / "connection.json").exists()
    gone = second_shell(tmp_path, "admin", "cases")
    assert gone.returncode == 1 and "PAYSAGA_DATABASE_URL is not set" in gone.stderr
    assert len(list((data_dir / "mail").glob("*.eml"))) == 1
    # Every log of the run: no secret, no token, no signature, no attendee's address.
    hidden = [*secrets.values(), admin_token, headers["X-Razorpay-Signature"], ATTENDEE]
    check_logs(data_dir, order["id"], hidden)
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    proc, _ = start(tmp_path, ports)
    try:
        again = httpx.get(f"{api}/orders/{order['id']}", headers=admin).json()
        assert again["status"] == "paid" and again["ticket"]["code"]
        duplicate = httpx.post(f"{api}/webhooks/razorpay", content=body, headers=headers)
        assert duplicate.json() == {"result": "duplicate"}
    finally:
        assert stop(proc) == []
