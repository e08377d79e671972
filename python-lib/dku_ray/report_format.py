"""Render cluster reports and start/stop results as plain text (CLI) or escaped HTML (DSS macros)."""
from __future__ import annotations

from html import escape
from typing import Sequence

from .cluster_status import ClusterReport
from .lifecycle import StartResult, StopResult

POD_COLUMNS = ("name", "group", "phase", "ready", "restarts", "node", "ip", "reason")


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report_text(report: ClusterReport) -> str:
    if not report.exists:
        return f"No Ray cluster named {report.name!r} in namespace {report.namespace!r}."
    lines = [
        f"Ray cluster {report.namespace}/{report.name}: {'READY' if report.ready else 'NOT READY'}"
        + (f" (state {report.state})" if report.state else ""),
        f"  Ray {report.ray_version}, image {report.image}, auth {report.auth}",
        f"  Operator: {report.operator}" if report.operator else "",
    ]
    if report.conditions:
        lines.append("  Conditions: " + "; ".join(f"{t}={s}" + (f" ({r})" if r and s != "True" and r != t else "")
                                                  for t, s, r in report.conditions))
    lines.append("")
    lines.append(text_table(("group", "ready/desired", "min", "max"),
                            [(g.name, f"{g.ready}/{g.desired}", g.min_replicas, g.max_replicas) for g in report.groups]))
    lines.append("")
    lines.append(text_table(POD_COLUMNS, [[getattr(p, c) for c in POD_COLUMNS] for p in report.pods])
                 if report.pods else "No pods yet.")
    lines.append("")
    lines += endpoint_lines(report)
    if report.reasons:
        lines += ["", "Why it is not ready:"] + [f"  - {r}" for r in report.reasons]
    return "\n".join(line for line in lines if line is not None).strip() + "\n"


def endpoint_lines(report: ClusterReport) -> list[str]:
    ep = report.endpoints
    if ep is None:
        return []
    lines = [
        "Endpoints (inside the Kubernetes cluster):",
        f"  dashboard / Jobs API  {ep.dashboard_url}",
        f"  Ray client            {ep.client_url}",
        f"  GCS                   {ep.service}:{ep.gcs_port}",
    ]
    lines.append(f"  head pod IP           {ep.head_pod_ip} (reachable only where the pod network is routable)"
                 if ep.head_pod_ip else "  head pod IP           not assigned yet")
    lines.append("From DSS or a laptop, open the dashboard with the Ray Dashboard Port-Forward macro or "
                 "`python -m dku_ray cluster dashboard`.")
    return lines


def start_text(result: StartResult) -> str:
    lines = [f"Ray cluster {result.namespace}/{result.name} {result.change} in {result.seconds:.1f} s."]
    lines += [f"  - {a}" for a in result.operator_actions]
    lines += [f"Warning: {w}" for w in result.warnings]
    if result.report is not None:
        lines += ["", report_text(result.report)]
    else:
        lines.append("Not waiting for readiness; run Inspect to follow it.")
    return "\n".join(lines)


def stop_text(result: StopResult) -> str:
    head = (f"Ray cluster {result.namespace}/{result.name} was already gone." if result.already_gone
            else f"Ray cluster {result.namespace}/{result.name} stopped in {result.seconds:.1f} s.")
    return "\n".join([head] + [f"  removed: {r}" for r in result.removed] + [f"  kept: {k}" for k in result.kept])


# -- HTML for DSS macros (every value escaped; scoped CSS) ------------------------------------------
_STYLE = ("<style>.dku-ray table{border-collapse:collapse;margin:6px 0}.dku-ray td,.dku-ray th{border:1px solid #ccc;"
          "padding:2px 8px;text-align:left}.dku-ray .ok{color:#1a7f37}.dku-ray .bad{color:#b42318}</style>")


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape('' if c is None else str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def report_html(report: ClusterReport) -> str:
    if not report.exists:
        return f'<div class="dku-ray">{_STYLE}<p>{escape(report_text(report))}</p></div>'
    status = '<b class="ok">READY</b>' if report.ready else '<b class="bad">NOT READY</b>'
    parts = [
        f"<h4>Ray cluster {escape(report.namespace)}/{escape(report.name)}: {status}</h4>",
        f"<p>Ray {escape(report.ray_version)}, image <code>{escape(report.image)}</code>, auth {escape(report.auth)}"
        f"<br>Operator: {escape(report.operator)}</p>",
        html_table(("group", "ready/desired", "min", "max"),
                   [(g.name, f"{g.ready}/{g.desired}", g.min_replicas, g.max_replicas) for g in report.groups]),
        html_table(POD_COLUMNS, [[getattr(p, c) for c in POD_COLUMNS] for p in report.pods]) if report.pods
        else "<p>No pods yet.</p>",
        "<p>" + "<br>".join(escape(line) for line in endpoint_lines(report)) + "</p>",
    ]
    if report.conditions:
        parts.insert(2, html_table(("condition", "status", "reason"), report.conditions))
    if report.reasons:
        parts.append("<p><b>Why it is not ready:</b></p><ul>" + "".join(f"<li>{escape(r)}</li>" for r in report.reasons)
                     + "</ul>")
    return f'<div class="dku-ray">{_STYLE}{"".join(parts)}</div>'


def text_html(text: str) -> str:
    """Preformatted text (start/stop summaries) for an HTML macro result."""
    return f'<div class="dku-ray">{_STYLE}<pre>{escape(text)}</pre></div>'
