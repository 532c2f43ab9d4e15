"""Garbage-collector settings for the long-running embedded server: rarer, cheaper full passes."""

from __future__ import annotations

import gc

# Young objects allocated (net of those freed) between two young-generation collections.
YOUNG_THRESHOLD = 50_000


def tune_for_serving() -> None:
    """Freeze what start-up allocated and let more young objects pile up between collections.

    With CPython's defaults (700, 10, 10) a study-metadata request, which builds tens of
    thousands of JSON containers, promotes enough of them to trigger a full collection every
    few requests, and each full collection walks every object the imports left behind
    (pydicom's dictionaries, Flask, numpy): study metadata had a p95 of about 42 ms against a
    p50 of 12 ms. Frozen objects are never walked again, and with 50,000 young objects between
    collections most of a request's objects are freed by reference counting before a
    collection sees them. The cost is that cyclic garbage waits longer to be freed: at most
    about that many objects.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
