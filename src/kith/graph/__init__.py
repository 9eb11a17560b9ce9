"""The social graph: follows, follow requests, blocks and mutes."""
