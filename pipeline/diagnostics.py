"""Records of objects whose fit raised an exception (written as JSON lines)."""

from __future__ import annotations

import traceback


def diagnostic(obj, stage: str, err: BaseException) -> dict:
    """A JSON-able record of a failed object: ids, stage, error and traceback."""
    return {"id": int(obj.id), "number": int(obj.number), "fofid": int(obj.fofid),
            "stage": stage, "error": f"{type(err).__name__}: {err}",
            "traceback": "".join(traceback.format_exception(type(err), err,
                                                            err.__traceback__))}
