"""Recipe + project + measured inputs -> a Plan of typed steps with content cache keys."""
