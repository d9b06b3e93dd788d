"""Media types and codec parsing, below every ingest path and the packager.

``media.types`` holds what an ingest hands to its consumers (codec configs, timestamped
packets); the codec modules (``avc``, ``hevc``, ``av1``, ``vp9``, ``aac``, with the bit
readers of ``bits``) parse decoder configuration records and the parameter sets in them.
Nothing here knows FLV, RTMP or WebRTC: RTMP's FLV layer (``ingest.flv``) and the packager
(``packager.hls.ts``, ``packager.ladder.codec``) import it, never the other way round.
"""
