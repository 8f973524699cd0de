"""The bench's report: figures derived from the results, the Markdown page and its plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.phases import RATES

RESULTS = Path(__file__).parent / "results"


def derive(r: dict[str, Any]) -> dict[str, Any]:
    sustained = [
        s["offered_rate"]
        for s in r["sweep"]
        if s["incomplete"] == 0
        and s["errors"] == 0
        and s["e2e_ms"]["p99"] is not None
        and s["e2e_ms"]["p99"] < 2000
    ]
    at = {s["offered_rate"]: s for s in r["sweep"]}
    plain_at = {s["offered_rate"]: s for s in r["plain"]["rates"]}
    ratios = {}
    for rate in RATES:
        ours, theirs = at[rate]["ack_ms"]["p99"], plain_at[rate]["ack_ms"]["p99"]
        if ours is not None and theirs:
            ratios[str(rate)] = round(ours / theirs, 2)
    with_p99 = r["parked"]["ack_with"]["ack_ms"]["p99"]
    without_p99 = r["parked"]["ack_without"]["ack_ms"]["p99"]
    return {
        "sustained_rate_p99_e2e_under_2s": max(sustained, default=None),
        "throughput_vs_engine_ceiling": round(
            r["saturation"]["throughput"] / r["engine_ceiling"]["throughput"], 3
        ),
        "overload_throughput_vs_engine_ceiling": round(
            r["saturation"]["overload_throughput"] / r["engine_ceiling"]["throughput"], 3
        ),
        "throughput_vs_plain_handler": round(
            r["saturation"]["throughput"] / r["plain"]["throughput"], 3
        ),
        "ack_p99_multiple_of_plain": ratios,
        "ack_p99_parked_vs_not": round(with_p99 / without_p99, 2)
        if with_p99 and without_p99
        else None,
    }


def markdown(report: dict[str, Any]) -> str:
    r, d = report["results"], report["derived"]
    lines = [
        f"# paysaga benchmark, {report['started']} ({report['mode']})",
        "",
        f"Machine: {report['machine']}. One worker, one API process (uvicorn), embedded PostgreSQL, "
        "Temporal dev server on a file; load generator in its own process, open loop.",
        "",
        "## Ack and end-to-end latency (ms) against offered load",
        "",
        "| offered/s | achieved ack/s | ack p50 | p95 | p99 | max | e2e p50 | p95 | p99 | max | completed/s | incomplete | errors | plain ack p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    plain_at = {s["offered_rate"]: s for s in r["plain"]["rates"]}
    for s in r["sweep"]:
        a, e = s["ack_ms"], s["e2e_ms"]
        lines.append(
            f"| {s['offered_rate']:g} | {s['achieved_rate']} | {a['p50']} | {a['p95']} | {a['p99']} | {a['max']} "
            f"| {e['p50']} | {e['p95']} | {e['p99']} | {e['max']} | {s['completion_rate']} | {s['incomplete']} "
            f"| {s['errors']} | {plain_at[s['offered_rate']]['ack_ms']['p99']} |"
        )
    p = r["parked"]
    lines += [
        "",
        "## Throughput and the reference points",
        "",
        "| | confirmations/s |",
        "|---|---|",
        f"| paysaga sustained (best sweep phase with nothing left incomplete: {r['saturation']['offered_rate']:g}/s offered; webhook to paid + ticket) | {r['saturation']['throughput']} |",
        f"| paysaga under overload ({r['saturation']['overload_offered_rate']:g}/s offered) | {r['saturation']['overload_throughput']} |",
        f"| engine ceiling (same activities, no-ops, no database) | {r['engine_ceiling']['throughput']} |",
        f"| plain transactional handler (one request, one transaction) | {r['plain']['throughput']} |",
        "",
        f"- Highest offered rate with p99 end-to-end under 2 s, nothing lost: **{d['sustained_rate_p99_e2e_under_2s']}/s**",
        f"- paysaga sustained throughput as a fraction of the engine ceiling: **{d['throughput_vs_engine_ceiling']:.0%}** "
        f"(under overload: {d['overload_throughput_vs_engine_ceiling']:.0%}); of the plain handler: **{d['throughput_vs_plain_handler']:.0%}**",
        f"- paysaga ack p99 as a multiple of the plain handler's, per offered rate: {d['ack_p99_multiple_of_plain']}",
        "",
        "## Checkout",
        "",
        f"- `POST /orders` (stock reserved, order workflow started), {r['checkout']['orders']} orders, "
        f"{r['checkout']['concurrency']} customers at a time: p50 {r['checkout']['ms']['p50']} ms, "
        f"p95 **{r['checkout']['ms']['p95']} ms**, p99 {r['checkout']['ms']['p99']} ms (SEQ-BP-002: p95 < 200 ms)",
        f"- One customer at a time (50 orders, nothing else running): p50 {r['checkout']['alone_ms']['p50']} ms, "
        f"p95 **{r['checkout']['alone_ms']['p95']} ms**, p99 {r['checkout']['alone_ms']['p99']} ms",
        "",
        "## Memory",
        "",
        f"- Peak RSS during the run: worker {r['peak_rss_mb']['worker']} MB, API {r['peak_rss_mb']['api']} MB",
        f"- Worker RSS before parking: {p['worker_rss_mb_before']} MB; with {p['parked_cases']} parked unmatched workflows: **{p['worker_rss_mb_parked']} MB**",
        f"- Ack p99 at {p['ack_without']['offered_rate']:g}/s without parked workflows {p['ack_without']['ack_ms']['p99']} ms, "
        f"with them {p['ack_with']['ack_ms']['p99']} ms (ratio {d['ack_p99_parked_vs_not']})",
        "",
        "Targets (not asserted): ack p99 <= 50 ms at 100/s; e2e p99 <= 2 s at 50/s; throughput >= 60 % of the engine "
        "ceiling; worker RSS <= 300 MB with 10,000 parked, ack p99 with them within 20 %.",
        "",
        f"![latency against offered load]({report['plot']})",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = report["results"]
    rates = [s["offered_rate"] for s in r["sweep"]]
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, label, style in (("ack_ms", "ack", "-o"), ("e2e_ms", "end to end", "--s")):
        for q in ("p50", "p95", "p99"):
            ax.plot(rates, [s[key][q] for s in r["sweep"]], style, label=f"paysaga {label} {q}")
    ax.plot(
        rates, [s["ack_ms"]["p99"] for s in r["plain"]["rates"]], ":^", label="plain handler p99"
    )
    ax.set_xlabel("offered confirmations per second")
    ax.set_ylabel("latency (ms, log)")
    ax.set_yscale("log")
    ax.set_xticks(rates)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"paysaga latency against offered load ({report['mode']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
