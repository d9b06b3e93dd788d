"""VOD media work: probing, transcoding, previews."""
