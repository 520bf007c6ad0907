"""The tqdm bar of the training loops (``progress=True``): one helper, tqdm imported only when a bar is asked for."""

from __future__ import annotations

from typing import Any


def training_bar(on: bool, total: int, desc: str, unit: str, initial: int = 0) -> Any:
    """A tqdm bar of ``total`` ``unit``s starting at ``initial``, or ``None`` when ``on`` is false."""
    if not on:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, mininterval=0.2)
