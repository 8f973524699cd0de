"""`GET /vendor`: the vendor dashboard, one static page (`api/static/vendor.html`, plain HTML
and JS, no build step) that signs in with a vendor token and does the rest from the browser
through `GET /vendor/orders`, the accept and reject routes and the live stream.

The page itself holds nothing secret, so anyone may fetch it (the edge lets this one path
through without a token); the data needs a vendor's token. Its inline script and style are
allowed by their hashes in the Content-Security-Policy, and nothing else is.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

PAGE_PATH = "/api/v1/vendor"

router = APIRouter()  # under /api/v1
root = APIRouter(include_in_schema=False)  # the short address


@cache
def page() -> tuple[str, str]:
    """The page and its Content-Security-Policy, read once from the package."""
    html = (resources.files("api") / "static" / "vendor.html").read_text(encoding="utf-8")
    return html, _policy(html)


def _policy(html: str) -> str:
    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
        return " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'"
            for block in found
        )

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


@router.get("/vendor", response_class=HTMLResponse, summary="The vendor dashboard (a page)")
async def vendor_page() -> HTMLResponse:
    html, policy = page()
    return HTMLResponse(
        html,
        headers={
            "content-security-policy": policy,
            "cache-control": "no-cache",
            "referrer-policy": "no-referrer",
            "x-content-type-options": "nosniff",
        },
    )


@root.get("/vendor")
async def vendor_page_short() -> RedirectResponse:
    return RedirectResponse(PAGE_PATH, status_code=308)
