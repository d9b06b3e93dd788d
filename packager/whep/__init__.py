"""WHEP playback: a live's source rendition to browsers over WebRTC, under a second behind."""
