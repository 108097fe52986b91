"""Spoken text with espeak-ng (Debian package ``espeak-ng``), for the synthetic speech-question data.

Rendering happens at data-generation time only; nothing at training or predict time needs espeak-ng.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..errors import PolymodalError

INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu), or generate text questions only"


class SpeechUnavailable(PolymodalError):
    """espeak-ng is not installed (or cannot run), so spoken questions cannot be rendered."""


def espeak_binary() -> str | None:
    """The espeak-ng executable on PATH, or None."""
    return shutil.which("espeak-ng")


def speak(text: str, path: str | Path, *, speed: int = 170, pitch: int = 50, voice: str = "en") -> Path:
    """Write ``text`` spoken by espeak-ng as a WAV file (22.05 kHz mono) to ``path``, atomically.

    ``speed`` in words per minute (80-450), ``pitch`` 0-99.
    """
    exe = espeak_binary()
    if exe is None:
        raise SpeechUnavailable(f"espeak-ng is not installed; {INSTALL_HINT}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # espeak-ng writes the file itself (-w); it becomes ``path`` only once complete
        subprocess.run(
            [exe, "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "-w", str(tmp), str(text)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        os.replace(tmp, path)
    except (OSError, subprocess.SubprocessError) as e:
        raise SpeechUnavailable(f"espeak-ng failed on {text!r}: {e}; {INSTALL_HINT}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
