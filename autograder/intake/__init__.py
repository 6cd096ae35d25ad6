"""Finding the submissions to grade in a folder or an LMS zip: who each one is from, when it came, and
whether it is within the intake limits before anything parses it."""
