"""Video on demand: probing, transcoding and previews of uploaded files (no HTTP, no SQL)."""
