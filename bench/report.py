"""The bench's report: figures derived from the results, the Markdown page and its plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
ROLE_NAMES = {"worker": "worker", "temporal": "Temporal", "api": "API", "postgres": "PostgreSQL"}


def _share(part: float | None, whole: float | None) -> float | None:
    return round(part / whole, 3) if part is not None and whole else None


def derive(r: dict[str, Any]) -> dict[str, Any]:
    capacity = r["ramp"]["capacity"]
    ceilings = r["engine_ceilings"]
    h, b = r["half_capacity"], r["beside"]
    one_per_order = r["checkout_one_at_a_time"]["workflows_per_checkout"] >= 1
    out: dict[str, Any] = {
        "capacity_per_s": capacity,
        "half_capacity_per_s": h["offered_rate"],
        "capacity_vs_five_noop": _share(capacity, ceilings["five_noop"]),
        "capacity_vs_confirmation_shape": _share(capacity, ceilings["confirmation_shape"]),
        "capacity_vs_with_order": _share(capacity, ceilings["with_order"]),
        "workflow_per_order": one_per_order,
        "cpu_ms_per_paid_order": h["cpu_ms_per_paid_order_total"],
        "half_ack_p99_ms": h["ack_ms"]["p99"],
        "half_e2e_p99_ms": h["e2e_ms"]["p99"],
        "checkout_p95_alone_ms": h["checkout_alone_ms"]["p95"],
        "checkout_p95_beside_ms": b["checkout_ms"]["p95"],
    }
    if r.get("plain"):
        theirs = r["plain"]["rates"][0]["ack_ms"]["p99"]
        out["half_ack_p99_multiple_of_plain"] = _share(h["ack_ms"]["p99"], theirs)
    return out


def _at_most(value: float | None, limit: float) -> str:
    return "n/a" if value is None else ("yes" if value <= limit else "**no**")


def _cpu_table(r: dict[str, Any]) -> list[str]:
    h = r["half_capacity"]
    cpu = h["cpu_ms_per_paid_order"]
    total = h["cpu_ms_per_paid_order_total"]
    roles = list(ROLE_NAMES)
    return [
        "## CPU per paid order (ms), checkout to ticket, mail off",
        "",
        "| " + " | ".join(ROLE_NAMES[k] for k in roles) + " | total |",
        "|" + "---|" * (len(roles) + 1),
        "| " + " | ".join(str(cpu[k]) for k in roles) + f" | **{total}** |",
        "",
        f"Over {h['completed']} orders at half capacity ({h['offered_rate']:g}/s): `POST /orders` "
        "(stock, the order's workflow), the signed webhook, the confirmation, the ticket and the "
        f"order's own workflow ending; a {h['cpu_window_s']} s window, each process's idle CPU "
        f"over it taken off (idle, ms/s: {h['idle_cpu_ms_per_s']}). "
        f"Two cores at this cost: about {round(2000 / total, 1) if total else 'n/a'} paid orders/s.",
    ]


def _ramp_table(r: dict[str, Any]) -> list[str]:
    lines = [
        f"## Step ramp (a step holds if every order is paid within {r['ramp']['hold_s']:g} s of its end)",
        "",
        "| offered/s | held | ack p50 | p95 | p99 | e2e p50 | p95 | p99 | max | completed/s | incomplete | late | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in r["ramp"]["steps"]:
        a, e = s["ack_ms"], s["e2e_ms"]
        lines.append(
            f"| {s['offered_rate']:g} | {'yes' if s['held'] else '**no**'} | {a['p50']} | {a['p95']} | {a['p99']} "
            f"| {e['p50']} | {e['p95']} | {e['p99']} | {e['max']} | {s['completion_rate']} "
            f"| {s['incomplete']} | {s['late']} | {s['errors']} |"
        )
    return lines


def _capacity(r: dict[str, Any], d: dict[str, Any]) -> list[str]:
    c = r["engine_ceilings"]
    pct = d["capacity_vs_five_noop"]
    order_note = (
        "paysaga starts one per order at checkout"
        if d["workflow_per_order"]
        else "paysaga starts none per order at checkout"
    )
    return [
        "## Capacity against the engine",
        "",
        f"- **Capacity: {d['capacity_per_s']}/s** (last step that held) = "
        f"**{'n/a' if pct is None else f'{pct:.0%}'}** of the engine's ceiling for a workflow of five "
        f"no-op local activities ({c['five_noop']}/s), measured in this run on the same server.",
        "",
        f"| engine ceiling, no-op activities, unsandboxed, {c['in_flight']} in flight, up to {c['workflows']} workflows or {c['limit_s']:g} s | workflows/s | capacity as share |",
        "|---|---|---|",
        f"| five no-op local activities | {c['five_noop']} | {_pct(d['capacity_vs_five_noop'])} |",
        f"| the confirmation's shape (3 steps + upserts, audit and ticket side by side) | {c['confirmation_shape']} | {_pct(d['capacity_vs_confirmation_shape'])} |",
        f"| the same plus an order workflow signalled ({order_note}) | {c['with_order']} | {_pct(d['capacity_vs_with_order'])} |",
    ]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _latency_and_checkout(r: dict[str, Any], d: dict[str, Any]) -> list[str]:
    h, b, one = r["half_capacity"], r["beside"], r["checkout_one_at_a_time"]
    a, e = h["ack_ms"], h["e2e_ms"]
    lines = [
        f"## At half capacity ({h['offered_rate']:g}/s for {h['webhooks'] / h['offered_rate']:.0f} s)",
        "",
        "| | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|",
        f"| ack (ms) | {a['p50']} | {a['p95']} | **{a['p99']}** | {a['max']} |",
        f"| webhook to paid + ticket (ms) | {e['p50']} | {e['p95']} | **{e['p99']}** | {e['max']} |",
        "",
        f"{h['completed']} of {h['webhooks']} paid, {h['errors']} errors.",
        "",
        "## Checkout (`POST /orders`)",
        "",
        "| | orders | p50 | p95 | p99 |",
        "|---|---|---|---|---|",
        f"| one customer at a time, nothing else running | {one['orders']} | {one['ms']['p50']} | {one['ms']['p95']} | {one['ms']['p99']} |",
        f"| 8 customers at once, nothing else running | {h['checkout_alone_orders']} | {h['checkout_alone_ms']['p50']} | **{h['checkout_alone_ms']['p95']}** | {h['checkout_alone_ms']['p99']} |",
        f"| 8 customers at once, beside confirmations at {b['offered_rate']:g}/s | {b['checkout_orders']} | {b['checkout_ms']['p50']} | **{b['checkout_ms']['p95']}** | {b['checkout_ms']['p99']} |",
        "",
        f"Beside the checkouts, the confirmations' ack p99 was {b['ack_ms']['p99']} ms and e2e p99 "
        f"{b['e2e_ms']['p99']} ms ({b['completed']} of {b['webhooks']} paid). "
        f"Workflows started per checkout: {one['workflows_per_checkout']}.",
    ]
    if r.get("plain"):
        p = r["plain"]
        lines += [
            "",
            f"Plain transactional handler: ack p99 {p['rates'][0]['ack_ms']['p99']} ms at "
            f"{p['rates'][0]['offered_rate']:g}/s (paysaga's is {d['half_ack_p99_multiple_of_plain']}x), "
            f"saturation {p['throughput']}/s.",
        ]
    return lines


def _targets(d: dict[str, Any]) -> list[str]:
    return [
        "## Issue 24's targets (this run)",
        "",
        "| target | figure | met |",
        "|---|---|---|",
        f"| capacity >= 60 % of the five-no-op ceiling | {_pct(d['capacity_vs_five_noop'])} | "
        f"{'n/a' if d['capacity_vs_five_noop'] is None else ('yes' if d['capacity_vs_five_noop'] >= 0.6 else '**no**')} |",
        f"| e2e p99 <= 1 s at half capacity | {d['half_e2e_p99_ms']} ms | {_at_most(d['half_e2e_p99_ms'], 1000)} |",
        f"| ack p99 <= 100 ms at half capacity | {d['half_ack_p99_ms']} ms | {_at_most(d['half_ack_p99_ms'], 100)} |",
        f"| checkout p95 <= 200 ms, 8 at once, alone | {d['checkout_p95_alone_ms']} ms | {_at_most(d['checkout_p95_alone_ms'], 200)} |",
        f"| checkout p95 <= 200 ms, 8 at once, beside confirmations | {d['checkout_p95_beside_ms']} ms | {_at_most(d['checkout_p95_beside_ms'], 200)} |",
        "",
        "CPU per paid order (<= 50 % of 521edb7's) needs the baseline benched in the same sitting.",
    ]


def _memory(r: dict[str, Any]) -> list[str]:
    lines = [
        "## Memory",
        "",
        f"- Peak RSS during the run: worker {r['peak_rss_mb']['worker']} MB, API {r['peak_rss_mb']['api']} MB",
    ]

    p = r.get("parked")
    if p:
        lines += [
            f"- Worker RSS before parking: {p['worker_rss_mb_before']} MB; with {p['parked_cases']} parked "
            f"unmatched workflows: **{p['worker_rss_mb_parked']} MB**",
            f"- Ack p99 at {p['ack_without']['offered_rate']:g}/s without parked workflows "
            f"{p['ack_without']['ack_ms']['p99']} ms, with them {p['ack_with']['ack_ms']['p99']} ms",
        ]
    return lines


def markdown(report: dict[str, Any]) -> str:
    r, d = report["results"], report["derived"]
    lines = [
        f"# paysaga benchmark, {report['started']} ({report['mode']}, {report['seconds']} s)",
        "",
        f"Machine: {report['machine']}. One worker, one API process (uvicorn), embedded PostgreSQL, "
        "Temporal dev server on a file; load generator in its own process, open loop. "
        f"Seconds per phase: {r.get('phase_seconds', 'n/a')}.",
        "",
        *_cpu_table(r),
        "",
        *_capacity(r, d),
        "",
        *_ramp_table(r),
        "",
        *_latency_and_checkout(r, d),
        "",
        *_memory(r),
        "",
        *_targets(d),
        "",
        f"![latency against offered load]({report['plot']})",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = report["results"]
    steps = r["ramp"]["steps"]
    rates = [s["offered_rate"] for s in steps]
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, label, style in (("ack_ms", "ack", "-o"), ("e2e_ms", "end to end", "--s")):
        for q in ("p50", "p95", "p99"):
            ax.plot(rates, [s[key][q] for s in steps], style, label=f"{label} {q}")
    capacity = r["ramp"]["capacity"]
    if capacity is not None:
        ax.axvline(capacity, color="grey", linestyle=":", label=f"capacity {capacity:g}/s")
    ax.set_xlabel("offered confirmations per second (step ramp)")
    ax.set_ylabel("latency (ms, log)")
    ax.set_yscale("log")
    ax.set_xticks(rates)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"paysaga latency against offered load ({report['mode']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
