"""Pareto plots from the report's tables (plotting libraries import lazily, here only)."""
from __future__ import annotations

import io
from typing import Any

import pandas as pd

_SCALES = {"macs": (1e6, "MMACs"), "params": (1e6, "M params")}


def _axis(objective: str) -> tuple[float, str]:
    return _SCALES.get(objective, (1.0, objective))


def pareto_png(trials: pd.DataFrame, front: pd.DataFrame, *, objective: str, target_ms: float,
               title: str, winner: dict[str, Any] | None = None, backbone: dict[str, Any] | None = None) -> bytes:
    """Latency against objective: every trial faint, the feasible front highlighted, the target as a line;
    the winner as a star and the space's backbone (a published network) as a diamond."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    scale, label = _axis(objective)
    fig = Figure(figsize=(7.5, 5), dpi=120)
    ax = fig.add_subplot()
    done = trials[trials["state"] == "COMPLETE"]
    for feasible, color, name in ((False, "#d62728", "infeasible"), (True, "#1f77b4", "feasible")):
        part = done[done["feasible"] == feasible]
        ax.scatter(part["predicted_latency_ms"], part["objective"] / scale, s=9, alpha=0.25, color=color,
                   linewidths=0, label=f"{name} ({len(part)})")
    if not front.empty:
        ax.step(front["predicted_latency_ms"], front["objective"] / scale, where="post", color="black", lw=1.2)
        ax.scatter(front["predicted_latency_ms"], front["objective"] / scale, s=22, color="black", zorder=3,
                   label=f"Pareto front ({len(front)})")
    ax.axvline(target_ms, color="#2ca02c", ls="--", lw=1.2, label=f"target {target_ms:g} ms")
    if winner and winner.get("predicted_latency_ms") is not None:
        ax.scatter([winner["predicted_latency_ms"]], [winner["objective"] / scale], marker="*", s=180,
                   color="#ff7f0e", edgecolors="black", zorder=4, label=f"winner (trial {winner['number']})")
    if backbone:
        ax.scatter([backbone["predicted_latency_ms"]], [backbone["objective"] / scale], marker="D", s=70,
                   color="#9467bd", edgecolors="black", zorder=4, label=f"backbone ({backbone['name']})")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel(label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def pareto_html(trials: pd.DataFrame, front: pd.DataFrame, *, objective: str, target_ms: float,
                title: str, backbone: dict[str, Any] | None = None) -> str | None:
    """An interactive version (hover shows trial number and architecture); None without plotly."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        return None
    scale, label = _axis(objective)
    fig = go.Figure()
    done = trials[trials["state"] == "COMPLETE"]
    for feasible, color, name in ((False, "#d62728", "infeasible"), (True, "#1f77b4", "feasible")):
        part = done[done["feasible"] == feasible]
        fig.add_trace(go.Scatter(x=part["predicted_latency_ms"], y=part["objective"] / scale, mode="markers",
                                 name=name, opacity=0.35, marker={"color": color, "size": 5},
                                 text=[f"trial {n}<br>{a}" for n, a in zip(part["number"], part["arch"])],
                                 hovertemplate="%{text}<br>%{x:.2f} ms, %{y:.1f}<extra></extra>"))
    if not front.empty:
        fig.add_trace(go.Scatter(x=front["predicted_latency_ms"], y=front["objective"] / scale, name="Pareto front",
                                 mode="lines+markers", line={"shape": "hv", "color": "black"},
                                 text=[f"trial {n}<br>{a}" for n, a in zip(front["number"], front["arch"])],
                                 hovertemplate="%{text}<br>%{x:.2f} ms, %{y:.1f}<extra></extra>"))
    if backbone:
        fig.add_trace(go.Scatter(x=[backbone["predicted_latency_ms"]], y=[backbone["objective"] / scale],
                                 name=f"backbone ({backbone['name']})", mode="markers",
                                 marker={"symbol": "diamond", "size": 11, "color": "#9467bd"}))
    fig.add_vline(x=target_ms, line_dash="dash", line_color="#2ca02c", annotation_text=f"target {target_ms:g} ms")
    fig.update_layout(title=title, xaxis_title="predicted latency (ms)", yaxis_title=label, template="plotly_white")
    # Self-contained: the report must open offline, so plotly.js is embedded rather than linked.
    return fig.to_html(include_plotlyjs=True, full_html=True)
