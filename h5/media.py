"""/media/<name>: the product pictures the admin uploaded (handlers.media).

Served by the app itself, outside the H5 pages' session handling (a
picture needs no buyer), from the media folder only: the name must be one
handlers.media gives (a content hash), so no path can reach another file.
A name is its content, so the answer may be cached for a year; nginx may
serve the folder directly instead."""
from __future__ import annotations

import io

from flask import abort, send_file

from handlers import media

from . import bp

YEAR = 365 * 24 * 3600


def picture(filename: str):
    path = media.path_of(filename)
    if path is None or not path.is_file():
        abort(404)
    # Read whole (a picture is at most a few hundred KB): no open file is left
    # to a response nobody closes; the name, a content hash, is the ETag.
    response = send_file(io.BytesIO(path.read_bytes()), mimetype="image/png" if filename.endswith(".png")
                         else "image/jpeg", max_age=YEAR, conditional=True, etag=filename.split(".")[0],
                         last_modified=path.stat().st_mtime)
    response.headers["Cache-Control"] = f"public, max-age={YEAR}, immutable"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# At /media, not under the blueprint's /h5 prefix, and under an endpoint of
# the app's own ("media"), so the H5 session hooks do not run for pictures.
bp.record_once(lambda state: state.app.add_url_rule("/media/<filename>", endpoint="media", view_func=picture,
                                                    methods=["GET"]))
