"""The site check's figure rules: an image far below its natural size must open full size, and every image says
in words what it shows (see :mod:`vaebook.lab.site_check`, whose page probe measures each ``<img>``)."""
from __future__ import annotations

import re
from typing import Sequence

#: an image shown below this fraction of its natural width must be a link (to its full size)
SHRUNK = 0.5
#: an ``alt`` that is only a file name (what a notebook's image output gets by default) is no alt text
_FILE_NAME = re.compile(r"^[\w./%-]*\.(png|jpe?g|gif|svg|webp)$", re.IGNORECASE)


def image_problems(images: Sequence[dict]) -> list:
    """``(kind, detail)`` of each loaded image shown far below its natural size without a link to it, or without
    alt text (an alt that is only a file name, as a notebook output gets by default, counts as none)."""
    out = []
    for img in images:
        if not img.get("ok"):
            continue
        src = str(img.get("src", ""))
        name = src if not src.startswith("data:") else "an inline image"
        shown, natural = int(img.get("shown") or 0), int(img.get("natural") or 0)
        if 0 < shown < SHRUNK * natural and not img.get("linked"):
            out.append(("unreadable figure", f"{name[:120]} shown {shown} px wide of its {natural} px, and not "
                                             "a link to its full size"))
        alt = str(img.get("alt") or "").strip()
        if not alt or _FILE_NAME.match(alt) or alt == src:
            out.append(("figure without alt text", name[:120]))
    return out
