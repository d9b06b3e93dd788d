"""What the packager needs of a publish, whoever ingests it (RTMP today, WHIP next).

The packager defines this seam and never imports an ingest's sessions: ``ingest.session``'s
``PublishSession`` and ``Subscription`` implement it, and the composition root (``streamd/``)
hands each new publish to ``Packager.on_session``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from packager.types import RenditionItem


class MediaFeed(Protocol):
    """One consumer's bounded queue of a publish: codec configs, then packets, in order.

    Iteration ends with the publish. A feed that fell behind drops items, counts them in
    ``dropped`` and resumes at a keyframe after re-sending the current configs.
    """

    @property
    def dropped(self) -> int: ...

    def __aiter__(self) -> AsyncIterator[RenditionItem]: ...

    def unsubscribe(self) -> None:
        """Stop receiving (the packager is closing); iteration ends."""
        ...


class MediaSource(Protocol):
    """One publish of one live."""

    @property
    def live_id(self) -> int: ...

    def subscribe(self, name: str, maxsize: int) -> MediaFeed:
        """A new feed that starts with the codec configs known so far."""
        ...
