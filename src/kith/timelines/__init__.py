"""Timelines: home, local, hashtag and profile lists of posts, cursor-paginated."""
