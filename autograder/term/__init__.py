"""The course's term: due dates, extensions and the late policy of course.toml."""
