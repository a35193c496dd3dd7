"""Map friends-of-friends tables onto object indices."""

from __future__ import annotations

import numpy as np

from ..errors import InputFileError


def groups_from_fofs(numbers: np.ndarray, fofs: np.ndarray | None,
                     source: str = "fof file") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(order, starts, fofids)`` describing the groups.

    ``order`` lists object indices grouped by FoF id (ascending), members in
    object-table order; group ``k`` is ``order[starts[k]:starts[k+1]]`` and has
    id ``fofids[k]``. Without a FoF table every object is its own group.
    """
    nobj = len(numbers)
    if fofs is None:
        order = np.arange(nobj)
        return order, np.arange(nobj + 1), np.arange(nobj)

    index_of = {int(n): i for i, n in enumerate(numbers)}
    if len(index_of) != nobj:
        raise InputFileError(source, "object numbers in the MEDS file are not unique")
    fof_numbers = np.asarray(fofs["number"])
    missing = [int(n) for n in fof_numbers if int(n) not in index_of]
    if missing:
        raise InputFileError(source, f"{len(missing)} FoF numbers are not in the MEDS file "
                                     f"(first: {missing[0]})")
    if len(np.unique(fof_numbers)) != len(fof_numbers):
        raise InputFileError(source, "an object number appears in more than one FoF row")
    if len(fof_numbers) != nobj:
        raise InputFileError(source, f"covers {len(fof_numbers)} objects but the MEDS "
                                     f"file has {nobj}")
    idx = np.array([index_of[int(n)] for n in fof_numbers], dtype=np.int64)
    fofid = np.asarray(fofs["fofid"], dtype=np.int64)
    sort = np.lexsort((idx, fofid))
    order = idx[sort]
    sorted_ids = fofid[sort]
    fofids, starts = np.unique(sorted_ids, return_index=True)
    starts = np.append(starts, len(order))
    return order, starts, fofids
