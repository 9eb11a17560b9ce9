"""Custom emoji: local ones admins upload, remote ones other servers' posts and profiles use."""
