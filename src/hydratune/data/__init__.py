"""Data: raw rows -> conversations -> token ids + loss mask -> packed rows -> cached shards."""
