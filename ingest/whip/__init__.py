"""WHIP (RFC 9725): WebRTC publishers into the same packager as RTMP."""
