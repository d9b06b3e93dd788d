"""A publish session: one live's codec configuration and packets, fanned out to consumers.

The publisher's socket must never wait for a consumer. Each consumer reads from its own bounded
:class:`Subscription`; when it falls behind, new items are dropped and counted (logged once), and
the subscription *resyncs*: it skips video until the next keyframe and re-sends the current codec
configuration before it, so a consumer that lost packets resumes with something decodable instead
of garbage. Everything here runs on the event loop thread; consumers doing heavy work move it
to threads themselves.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from media.types import AudioConfig, MediaPacket, VideoConfig

log = logging.getLogger(__name__)

Item: TypeAlias = MediaPacket | VideoConfig | AudioConfig
DEFAULT_QUEUE_ITEMS = 512  # ~8 s of 30 fps video + 48 kHz AAC


class Subscription:
    """One consumer's bounded view of a session. Iterate it; iteration ends with the session."""

    def __init__(self, session: PublishSession, name: str, maxsize: int) -> None:
        self.session = session
        self.name = name
        self.maxsize = maxsize
        self.dropped = 0
        self._items: collections.deque[Item] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._resync = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    # --- producer side (the session) ---

    def _offer(self, item: Item) -> None:
        if isinstance(item, MediaPacket):
            self._offer_packet(item)
        elif self._closed:
            return
        elif len(self._items) < self.maxsize:
            self._push(item)
        else:
            self._drop()

    def _offer_packet(self, packet: MediaPacket) -> None:
        """Called by feed directly (every packet of every publisher) and by _offer."""
        if self._closed:
            return
        if self._resync:
            has_video = self.session.video_config is not None
            if has_video and not (packet.kind == "video" and packet.keyframe):
                self._drop()
                return
            configs = self.session.current_configs()
            if len(self._items) + len(configs) + 1 > self.maxsize:
                self._drop()
                return
            self._resync = False
            for config in configs:
                self._push(config)
            self._push(packet)
        elif len(self._items) < self.maxsize:
            self._push(packet)
        else:
            self._drop()

    def _offer_batch(self, packets: list[MediaPacket]) -> None:
        """_offer_packet of each packet in turn; in one step when they all fit."""
        if self._resync or self._closed or len(self._items) + len(packets) > self.maxsize:
            for packet in packets:
                self._offer_packet(packet)
            return
        self._items.extend(packets)
        self._wake()

    def _push(self, item: Item) -> None:
        self._items.append(item)
        self._wake()

    def _wake(self) -> None:
        """Wake the consumer if it waits for items (or for the end)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _drop(self) -> None:
        if self.dropped == 0:
            log.warning(
                "live %s: consumer %s is too slow, dropping packets until it catches up",
                self.session.live_id,
                self.name,
            )
        self.dropped += 1
        self._resync = True
        if self.session.drop_hook is not None:
            self.session.drop_hook(self)

    def _close(self) -> None:
        self._closed = True
        self._wake()

    # --- consumer side ---

    async def get(self) -> Item | None:
        """The next item, or None once the session has ended and everything was read."""
        while not self._items:
            if self._closed:
                return None
            await self._wait()
        return self._items.popleft()

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def get_nowait(self) -> Item | None:
        return self._items.popleft() if self._items else None

    async def __aiter__(self) -> AsyncIterator[Item]:
        # get() in a loop, without a coroutine per item: what is queued is yielded directly.
        items = self._items
        while True:
            while items:
                yield items.popleft()
            if self._closed:
                return
            await self._wait()

    def unsubscribe(self) -> None:
        self.session.unsubscribe(self)


@dataclass(eq=False)
class PublishSession:
    """What one publisher sends for one live: configs, metadata and timestamped packets."""

    live_id: int
    app: str
    client: str  # peer address, for logs
    video_config: VideoConfig | None = None
    audio_config: AudioConfig | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    packets: int = 0
    bytes_in: int = 0
    ended: bool = False
    #: Called on every dropped item (the server counts drops in its metrics).
    drop_hook: Callable[[Subscription], None] | None = None
    #: Asks the publisher for a keyframe, where its protocol can (WHIP's PLI; RTMP cannot).
    request_keyframe: Callable[[], None] | None = None
    _subscriptions: list[Subscription] = field(default_factory=list)
    _ended_event: asyncio.Event = field(default_factory=asyncio.Event)

    def subscribe(self, name: str, maxsize: int = DEFAULT_QUEUE_ITEMS) -> Subscription:
        """A new consumer; it first receives the configs known so far."""
        sub = Subscription(self, name, maxsize)
        for config in self.current_configs():
            sub._offer(config)
        if self.ended:
            sub._close()
        self._subscriptions.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)
        sub._close()

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions)

    def current_configs(self) -> list[Item]:
        return [c for c in (self.video_config, self.audio_config) if c is not None]

    def set_video_config(self, config: VideoConfig) -> None:
        if config != self.video_config:
            self.video_config = config
            self._fan_out(config)

    def set_audio_config(self, config: AudioConfig) -> None:
        if config != self.audio_config:
            self.audio_config = config
            self._fan_out(config)

    def feed(self, packet: MediaPacket) -> None:
        self.packets += 1
        self.bytes_in += len(packet.data)
        for sub in self._subscriptions:
            sub._offer_packet(packet)

    def feed_batch(self, packets: list[MediaPacket]) -> None:
        """feed() of each packet in turn (the server hands over what one read brought)."""
        self.packets += len(packets)
        size = 0
        for packet in packets:
            size += len(packet.data)
        self.bytes_in += size
        for sub in self._subscriptions:
            sub._offer_batch(packets)

    def _fan_out(self, item: Item) -> None:
        for sub in self._subscriptions:
            sub._offer(item)

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        for sub in self._subscriptions:
            sub._close()
        self._ended_event.set()

    async def wait_ended(self) -> None:
        await self._ended_event.wait()

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self._subscriptions)
