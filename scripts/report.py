"""How the scripts write their figures: a Markdown report that names the command that wrote it,
and the same figures as JSON beside it (``.json``)."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(out: str | Path, title: str, command: str, body: list[str], figures, note: str = "") -> Path:
    """``out`` (Markdown: ``title``, "Written by `command`" and ``note``, then ``body``) and its
    ``.json`` twin holding ``figures``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = command.strip().replace(str(Path.home()), "~")  # no one machine's home folder in a stored file
    out.write_text("\n".join([f"## {title}", "", f"Written by `{command}`{note}.", "", *body, ""]))
    out.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
    return out
