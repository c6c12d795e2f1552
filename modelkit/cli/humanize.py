"""Ollama's human-readable sizes and times (``ollama list``'s SIZE and MODIFIED columns)."""

from __future__ import annotations

from datetime import UTC, datetime


def human_bytes(n: int) -> str:
    """Decimal units; ≥10 of a unit shows an integer, else one decimal when fractional."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    if unit == "B":
        return f"{n} B"
    if value >= 10 or value == int(value):
        return f"{int(value)} {unit}"
    return f"{value:.1f} {unit}"


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def human_duration(seconds: float) -> str:
    s = abs(seconds)
    if s < 1:
        return "Less than a second"
    if s < 60:
        return _plural(int(s), "second")
    if s < 120:
        return "About a minute"
    if s < 3600:
        return _plural(int(s // 60), "minute")
    if s < 7200:
        return "About an hour"
    if s < 48 * 3600:
        return _plural(int(s // 3600), "hour")
    if s < 14 * 86400:
        return _plural(int(s // 86400), "day")
    if s < 60 * 86400:
        return _plural(int(s // (7 * 86400)), "week")
    if s < 2 * 365 * 86400:
        return _plural(int(s // (30 * 86400)), "month")
    return _plural(int(s // (365 * 86400)), "year")


def human_time(when: datetime, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (now - when).total_seconds()
    text = human_duration(delta)
    if text == "Less than a second":
        return text
    return f"{text} ago" if delta >= 0 else f"{text} from now"


def table(rows: list[list[str]]) -> str:
    """Left-aligned columns separated by 4 spaces, no borders (Ollama's tables)."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "    ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)


def go_duration(ns: int) -> str:
    """A duration as Go's ``time.Duration.String`` prints it (``850ns``, ``1.5µs``,
    ``123.456ms``, ``2.345678901s``, ``1m2.5s``, ``1h0m0s``)."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(ns / 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(ns / 1_000_000)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim(rest / 1_000_000_000) if rest else "0"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{seconds}s"


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"
