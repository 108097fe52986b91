"""Shared helpers for benchmark scripts: machine description and rewriting a marked section of a markdown file."""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import date
from pathlib import Path

import torch


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"{date.today().isoformat()}"
    )


def write_section(path: Path, name: str, body: str, title: str = "# Benchmarks\n") -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` (appending it if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else title
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
