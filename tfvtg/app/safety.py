"""What the server refuses before any handler runs, and its own errors.

The server never builds a file path from a request: library videos are
looked up by id in the catalogue (the file is the catalogue's ``source``),
uploads by a random token the server made, page assets by name in a dict
held in memory. The checks here are a second wall in front of that: a
request whose path tries to climb (``..``), smuggles a separator or a NUL
in percent-encoding, or encodes twice is refused with 400 before routing.
"""
from __future__ import annotations

import ipaddress
import re

from ..errors import InvalidInputError, TfvtgError

__all__ = ["RefusedRequestError", "UploadTooLargeError", "UnknownUploadError", "NotReadyError", "refusal",
           "check_video_id", "check_token", "is_loopback", "bind_warning"]


class RefusedRequestError(InvalidInputError):
    """A request the server will not serve (path traversal and the like)."""


class UploadTooLargeError(InvalidInputError):
    """An upload over the server's size limit."""


class UnknownUploadError(TfvtgError, KeyError):
    """No upload with that token (never made, or dropped to make room)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NotReadyError(TfvtgError, RuntimeError):
    """An upload that is still being encoded (or whose encoding failed)."""


# percent-encoded '.', '/', '\', NUL and '%' itself (double encoding): none of
# them is needed to name a library video in a URL, all of them are how a
# traversal hides from a naive check
_ENCODED_DANGER = re.compile(rb"%(2e|2f|5c|00|25)", re.IGNORECASE)
_TOKEN_RE = re.compile(r"^[0-9a-f]{16}$")


def refusal(raw_path: bytes, path: str) -> str | None:
    """Why a request path is refused, or None when it may be routed.

    Args:
        raw_path: the path as sent (still percent-encoded), without the query.
        path: the decoded path.
    """
    if _ENCODED_DANGER.search(raw_path):
        return "percent-encoded dots, slashes, backslashes, NUL or '%' are not allowed in a path"
    if "\x00" in path or "\\" in path:
        return "backslashes and NUL are not allowed in a path"
    segments = path.split("/")
    if any(s in (".", "..") for s in segments):
        return "'.' and '..' path segments are not allowed"
    if "//" in path:
        return "empty path segments (//) are not allowed"
    return None


def check_video_id(video_id: str) -> str:
    """A library video id as it may appear in a URL: refused when it looks
    like a path (the catalogue lookup that follows is the real gate)."""
    if (not video_id or video_id in (".", "..") or "/" in video_id or "\\" in video_id or "\x00" in video_id
            or video_id.startswith("~") or re.match(r"^[A-Za-z]:", video_id) is not None):
        raise RefusedRequestError(f"refused: {video_id!r} is not a video id (ids never contain paths); "
                                  "GET /api/videos lists the ids")
    return video_id


def check_token(token: str) -> str:
    """An upload token: 16 lower-case hex digits, as the server made it."""
    if not _TOKEN_RE.match(token):
        raise RefusedRequestError(f"refused: {token!r} is not an upload token (16 hex digits)")
    return token


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_warning(host: str, port: int) -> str | None:
    """The warning to print when told to listen beyond this machine."""
    if is_loopback(host):
        return None
    return (f"listening on {host}:{port}, not only on this machine: anyone who can reach it can search the library, "
            "watch its videos and upload files (there is no login); use --host 127.0.0.1 to keep it local")
